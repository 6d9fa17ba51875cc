//! Every route of the server and the layers around them.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use futures_util::FutureExt;
use hyper::body::Incoming;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;

use super::body::{read_limited, Pace, TimedBody};
use super::error::{in_context, request_context};
use super::{ApiError, ClientAddr};
use crate::api::{admin, ingest, ops, read, AppState};
use crate::ui;

/// Largest admin API body: connector documents are a few KiB.
const ADMIN_BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// Everything the listeners serve: webhook pushes go straight to their handler (the
/// ingest hot path, spared the router's per-request matching, boxing and layers), all
/// else through the router. Both get the same request context, body deadline and panic
/// recovery.
#[derive(Clone)]
pub struct Routes {
    router: Router,
    state: AppState,
    body_timeout: Duration,
}

impl Routes {
    /// The routes of a server whose handlers share `state`; request bodies must arrive
    /// within `body_timeout` (see [`Pace`]).
    pub fn new(state: AppState, body_timeout: Duration) -> Self {
        Routes {
            router: router(state.clone()),
            state,
            body_timeout,
        }
    }

    /// The response to `request` from `peer`, counted by route and status.
    pub fn respond(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response> + Send + 'static {
        let client = self
            .state
            .trusted_proxies
            .client(peer.ip(), request.headers());
        let pace = if is_bulk(request.uri().path()) {
            Pace::Steady
        } else {
            Pace::Whole
        };
        let timeout = self.body_timeout;
        let mut request = request.map(|body| Body::new(TimedBody::new(body, timeout, pace)));
        let direct = ingest::direct_webhook_stream(request.method(), request.uri().path())
            .map(str::to_owned);
        let route = self.state.metrics.requests.route(request.uri().path());
        let state = self.state.clone();
        let router = self.router.clone();
        async move {
            let response = if let Some(stream) = direct {
                in_context(request, Some(client), |request, id| {
                    recover_panics(ingest::webhook_direct(&state, request, stream, id, client))
                })
                .await
            } else {
                request.extensions_mut().insert(ClientAddr(client));
                match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            };
            state.metrics.requests.count(route, response.status());
            response
        }
    }
}

/// Whether `path` is a bulk import (`/api/webhook/{stream}/bulk`, or its key-in-URL
/// form) or a file upload (`/api/admin/connectors/{id}/upload`), whose body may take
/// long but must keep coming. A webhook to a stream named `bulk` is not one.
fn is_bulk(path: &str) -> bool {
    let bulk = path
        .strip_prefix("/api/webhook/")
        .and_then(|rest| rest.strip_suffix("/bulk"))
        .is_some_and(|stream| !stream.is_empty());
    let upload = path
        .strip_prefix("/api/admin/connectors/")
        .and_then(|rest| rest.strip_suffix("/upload"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'));
    bulk || upload
}

/// `handler`'s response, or a 500 if it panics (as [`CatchPanicLayer`] does for the
/// router). Not an `async fn`, which would hold `handler` twice in its state.
fn recover_panics(handler: impl Future<Output = Response>) -> impl Future<Output = Response> {
    AssertUnwindSafe(handler).catch_unwind().map(|result| {
        result.unwrap_or_else(|_| ApiError::internal("a request handler panicked").into_response())
    })
}

/// Reads an authenticated admin request's body before its handler: at most
/// [`ADMIN_BODY_LIMIT_BYTES`] (413), within the body deadline (408).
async fn read_admin_body(request: Request, next: Next) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_limited(&parts.headers, body, ADMIN_BODY_LIMIT_BYTES).await?;
    Ok(next.run(Request::from_parts(parts, Body::from(body))).await)
}

/// The application's routes, wrapped (outermost first) in request ids and error
/// bodies and panic recovery; admin routes read their bodies after authentication.
fn router(state: AppState) -> Router {
    use admin::connectors;
    let admin = Router::new()
        .route(
            "/connectors",
            get(connectors::list).post(connectors::create),
        )
        .route(
            "/connectors/{id}",
            get(connectors::show)
                .patch(connectors::update)
                .delete(connectors::delete),
        )
        .route("/connectors/{id}/enable", post(connectors::enable))
        .route("/connectors/{id}/disable", post(connectors::disable))
        .route("/connectors/{id}/rotate-key", post(connectors::rotate_key))
        .route("/connectors/{id}/logs", get(connectors::logs))
        .route("/monitoring", get(admin::monitoring::monitoring))
        .route(
            "/read-keys",
            get(admin::read_keys::list).post(admin::read_keys::create),
        )
        .route("/read-keys/{id}", delete(admin::read_keys::delete))
        .route("/backup", get(admin::backup::backup))
        .route(
            "/streams/{stream}",
            get(admin::streams::show).patch(admin::streams::update),
        )
        .merge(subscription_routes())
        .route_layer(from_fn(read_admin_body))
        .route_layer(from_fn_with_state(state.clone(), admin::require_admin));
    // Files are read by their handlers, up to the connector's own size cap.
    let files = Router::new()
        .route("/connectors/{id}/test", post(connectors::test))
        .route("/connectors/{id}/upload", post(admin::upload::upload))
        .route_layer(from_fn_with_state(state.clone(), admin::require_admin));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/api/webhook/{stream}", post(ingest::webhook))
        .route("/api/webhook/{stream}/batch", post(ingest::webhook))
        .route("/api/webhook/{stream}/bulk", post(ingest::bulk))
        .route("/api/webhook/{stream}/k/{key}", post(ingest::webhook))
        .route("/api/webhook/{stream}/k/{key}/batch", post(ingest::webhook))
        .route("/api/webhook/{stream}/k/{key}/bulk", post(ingest::bulk))
        .route("/api/ingest", post(ingest::ingest_api))
        .route("/api/streams", get(read::streams))
        .route("/api/streams/{stream}/items", get(read::items))
        .route(
            "/api/streams/{stream}/items/{id}",
            get(read::item).delete(read::delete_item),
        )
        .route(
            "/api/streams/{stream}/items/{id}/history",
            get(read::history),
        )
        .route("/api/streams/{stream}/events", get(read::events))
        .route(
            "/api/ui/session",
            get(ui::current).post(ui::sign_in).delete(ui::sign_out),
        )
        .route("/", get(ui::index))
        .route("/assets/{file}", get(ui::asset))
        .nest("/api/admin", admin.merge(files))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(CatchPanicLayer::new())
        .layer(from_fn(request_context))
        .with_state(state)
}

/// `/api/admin/subscriptions` and below (SPEC §6), inside the admin layers.
fn subscription_routes() -> Router<AppState> {
    use admin::subscriptions::{
        activate, create, deactivate, delete, deliveries, list, resend, rotate_secret, show, update,
    };
    Router::new()
        .route("/subscriptions", get(list).post(create))
        .route(
            "/subscriptions/{id}",
            get(show).patch(update).delete(delete),
        )
        .route("/subscriptions/{id}/activate", post(activate))
        .route("/subscriptions/{id}/deactivate", post(deactivate))
        .route("/subscriptions/{id}/rotate-secret", post(rotate_secret))
        .route("/subscriptions/{id}/deliveries", get(deliveries))
        .route(
            "/subscriptions/{id}/deliveries/{delivery}/resend",
            post(resend),
        )
}

#[cfg(test)]
mod tests {
    use super::is_bulk;

    #[test]
    fn only_bulk_routes_get_the_bulk_body_pace() {
        assert!(is_bulk("/api/webhook/sales/bulk"));
        assert!(is_bulk("/api/webhook/sales/k/ik_1_x/bulk"));
        assert!(
            !is_bulk("/api/webhook/bulk"),
            "a webhook to the stream `bulk`"
        );
        assert!(!is_bulk("/api/webhook/sales"));
        assert!(!is_bulk("/api/webhook/sales/batch"));
        assert!(!is_bulk("/api/streams/sales/bulk"));
        assert!(is_bulk("/api/admin/connectors/c_1/upload"));
        assert!(!is_bulk("/api/admin/connectors/c_1/test"));
    }
}
