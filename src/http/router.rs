//! Every route of the server and the layers around them.

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{delete, get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use super::error::request_context;
use super::ApiError;
use crate::api::{admin, ingest, ops, read, AppState};

/// Largest admin API body: connector documents are a few KiB.
const ADMIN_BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// The application's routes, wrapped (outermost first) in request ids and error
/// bodies, panic recovery, and the body limit.
pub fn router(state: AppState) -> Router {
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
        .route("/connectors/{id}/test", post(connectors::test))
        .route("/monitoring", get(admin::monitoring::monitoring))
        .route(
            "/read-keys",
            get(admin::read_keys::list).post(admin::read_keys::create),
        )
        .route("/read-keys/{id}", delete(admin::read_keys::delete))
        .route_layer(from_fn_with_state(state.clone(), admin::require_admin));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
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
        .route("/api/streams/{stream}/events", get(read::events))
        .nest("/api/admin", admin)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT_BYTES))
        .layer(CatchPanicLayer::new())
        .layer(from_fn(request_context))
        .with_state(state)
}
