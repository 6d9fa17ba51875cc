//! The push routes (SPEC §3): `POST /api/webhook/{stream}`, its `/batch` and `/bulk`
//! forms and their key-in-URL twins (`…/k/{ingestKey}…`), and `POST /api/ingest`. They
//! share one path: authenticate, check the sender's options, verify, deduplicate,
//! parse, make durable, answer.
//!
//! Checks run in the contract's order — credential, signature, idempotency, body — and
//! a refused request stores nothing and is never remembered as an idempotency key.

mod bulk;
mod credentials;
mod idempotency;
mod items;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

pub use bulk::{BulkBody, RejectedItem};
pub use idempotency::KeysInFlight;
pub use items::{IngestBody, IngestItem, RequestedId};

use super::{check_json_content_type, parse_json, AppState};
use crate::auth::{verify_signature, SignatureError, DEFAULT_RATE_LIMIT};
use crate::http::{read_limited, ApiError, ClientAddr, RequestId};
use crate::ingest::Charge;
use crate::metrics::Stage;
use crate::model::{name_bytes, Connector, Dedup, StreamName, Upsert, Write};
use crate::store::Accepted;

/// Largest webhook and ingest API body (SPEC §3.1), enforced while reading.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Which push route a request came in on, which says what its body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// `/api/webhook/{stream}` and `…/batch`: an object or an array of objects.
    Webhook,
    /// `/api/webhook/{stream}/bulk`: a streamed import.
    Bulk,
    /// `/api/ingest`: explicit ids, fields and deletes.
    Api,
}

/// What the push handlers take from a request: the path's stream and key, the
/// request id, the client's address, the headers and the unread body.
pub struct PushRequest {
    stream: Option<String>,
    url_key: Option<String>,
    request_id: RequestId,
    client: Option<IpAddr>,
    headers: HeaderMap,
    body: Body,
}

impl PushRequest {
    /// A request as the push handlers use it; `stream` and `url_key` come from the
    /// path.
    fn new(
        headers: HeaderMap,
        body: Body,
        (stream, url_key): (Option<String>, Option<String>),
        request_id: RequestId,
        client: Option<IpAddr>,
    ) -> Self {
        PushRequest {
            stream,
            url_key,
            request_id,
            client,
            headers,
            body,
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for PushRequest {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let Path(mut params) =
            Path::<HashMap<String, String>>::from_request_parts(&mut parts, state)
                .await
                .map_err(|e| ApiError::invalid_payload(format!("invalid path: {e}")))?;
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .ok_or_else(|| ApiError::internal("the request has no id"))?;
        let client = parts.extensions.get::<ClientAddr>().map(|c| c.0);
        let path = (params.remove("stream"), params.remove("key"));
        Ok(PushRequest::new(
            parts.headers,
            body,
            path,
            request_id,
            client,
        ))
    }
}

/// The stream of a request the listeners hand straight to [`webhook_direct`]: `POST
/// /api/webhook/{stream}` or `…/{stream}/batch` with a stream segment that needs no
/// percent-decoding. Every other request, the key-in-URL and bulk forms included, goes
/// through the router.
pub fn direct_webhook_stream<'a>(method: &Method, path: &'a str) -> Option<&'a str> {
    if method != Method::POST {
        return None;
    }
    let rest = path.strip_prefix("/api/webhook/")?;
    let stream = rest.strip_suffix("/batch").unwrap_or(rest);
    (!stream.is_empty() && !stream.contains(['/', '%'])).then_some(stream)
}

/// Serves a request to `stream` that [`direct_webhook_stream`] chose exactly as the
/// router's [`webhook`] route would, without the router's per-request routing and
/// boxing: the ingest hot path. `request_id` and `client` come as arguments, not as
/// request extensions.
pub async fn webhook_direct(
    state: &AppState,
    request: Request,
    stream: String,
    request_id: RequestId,
    client: IpAddr,
) -> Response {
    // The URI, like the headers and the body, is a view of the connection's read
    // buffer: dropped here rather than with the answer, it no longer holds that buffer
    // while the request waits for its commit, and the connection reads its next
    // request into the same buffer instead of a new one.
    let (Parts { headers, .. }, body) = request.into_parts();
    let path = (Some(stream), None);
    let request = PushRequest::new(headers, body, path, request_id, Some(client));
    serve(state, Route::Webhook, request).await.into_response()
}

/// `POST /api/webhook/{stream}` and `…/batch`, with the key in a header or the URL.
/// (The OpenAPI description lists the `/batch` and key-in-URL twins beside this one.)
#[utoipa::path(post, path = "/api/webhook/{stream}", tag = "ingest", operation_id = "pushWebhook",
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "One JSON object (one item) or an array of objects (many items); free-form: the items' fields are whatever the sender sends"),
    responses(
        (status = 202, description = "Durably on disk", body = AcceptedBody),
    ))]
pub async fn webhook(
    State(state): State<AppState>,
    request: PushRequest,
) -> Result<Response, ApiError> {
    serve(&state, Route::Webhook, request).await
}

/// `POST /api/webhook/{stream}/bulk`, with the key in a header or the URL.
#[utoipa::path(post, path = "/api/webhook/{stream}/bulk", tag = "ingest", operation_id = "pushBulk",
    request_body(description = "Up to 64 MiB, parsed as it arrives: NDJSON (one object a line) or `{\"items\":[…]}` / `{\"signals\":[…]}`",
        content(
            (serde_json::Value = "application/json"),
            (String = "application/x-ndjson"),
        )),
    responses(
        (status = 202, description = "The valid items are durably on disk", body = BulkBody),
    ))]
pub async fn bulk(
    State(state): State<AppState>,
    request: PushRequest,
) -> Result<Response, ApiError> {
    serve(&state, Route::Bulk, request).await
}

/// `POST /api/ingest`.
#[utoipa::path(post, path = "/api/ingest", tag = "ingest", operation_id = "ingest",
    request_body(content = items::IngestBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Durably on disk", body = AcceptedBody),
    ))]
pub async fn ingest_api(
    State(state): State<AppState>,
    request: PushRequest,
) -> Result<Response, ApiError> {
    serve(&state, Route::Api, request).await
}

/// Admits the request, authenticates it, hands it on, and records the outcome in the
/// connector's activity.
async fn serve(state: &AppState, route: Route, request: PushRequest) -> Result<Response, ApiError> {
    let _slot = state
        .in_flight
        .admit()
        .ok_or_else(|| ApiError::unavailable("too many requests in flight; retry shortly"))?;
    if state.shutdown.is_cancelled() {
        return Err(ApiError::unavailable("shutting down"));
    }
    let Some((target, presented)) = credentials::authenticate(state, &request)? else {
        state.activity.refused_unknown(request.client);
        return Err(credentials::refusal(state, &request)?);
    };
    let connector = &target.connector;
    let _connector_slot = state
        .in_flight
        .admit_connector(&connector.id)
        .ok_or_else(|| {
            ApiError::unavailable("this connector has too many requests in flight; retry shortly")
        })?;
    let started = Instant::now();
    let result = accept(state, connector, presented, route, request).await;
    match &result {
        Ok((_, items)) => {
            let took = started.elapsed();
            state.metrics.ingest_took(took);
            state.activity.accepted(&connector.id, *items, took);
        }
        Err(error) => state.activity.refused(&connector.id, error),
    }
    result.map(|(response, _)| response)
}

/// Everything after the key is known; the answer and the number of items accepted.
async fn accept(
    state: &AppState,
    connector: &Connector,
    presented: credentials::Presented,
    route: Route,
    request: PushRequest,
) -> Result<(Response, usize), ApiError> {
    credentials::check_sender(connector, presented, &request.headers)?;
    if let Some(stream) = &request.stream {
        check_stream(connector, stream)?;
    }
    if !connector.spec.enabled {
        return Err(ApiError::connector_disabled("the connector is disabled"));
    }
    let limit = connector
        .spec
        .rate_limit
        .as_ref()
        .unwrap_or(&DEFAULT_RATE_LIMIT);
    if let Err(wait) = state.rates.take(&connector.id, limit) {
        return Err(ApiError::rate_limited(
            "the connector's rate limit is exceeded",
            wait.as_secs() + 1,
        ));
    }
    match route {
        // Boxed: an import's state is large, and inline it would size every webhook
        // request's future too.
        Route::Bulk => Box::pin(bulk::accept(state, connector, request)).await,
        Route::Webhook | Route::Api => whole(state, connector, route, request).await,
    }
}

/// 404 unless `stream` is the connector's stream.
fn check_stream(connector: &Connector, stream: &str) -> Result<(), ApiError> {
    if connector.spec.stream.as_str() != stream || !connector.spec.kind.is_push() {
        return Err(ApiError::stream_not_found(format!(
            "this key does not write to stream {stream:?}"
        )));
    }
    Ok(())
}

/// A webhook, batch or ingest API request: its whole body is read (at most
/// [`MAX_BODY_BYTES`]), verified and parsed before anything is stored.
async fn whole(
    state: &AppState,
    connector: &Connector,
    route: Route,
    request: PushRequest,
) -> Result<(Response, usize), ApiError> {
    let PushRequest {
        request_id,
        headers,
        body,
        ..
    } = request;
    check_json_content_type(&headers)?;
    let reading = Instant::now();
    let raw = read_limited(&headers, body, MAX_BODY_BYTES).await?;
    let parsing = Instant::now();
    state.metrics.stage_took(Stage::ReadBody, parsing - reading);
    verify(connector, &headers, &raw)?;
    let parsed = match connector.spec.dedup {
        Some(Dedup::JsonPointer(_)) => Some(parse_json(&raw)?),
        _ => None,
    };
    let key = idempotency::key(&headers, connector, parsed.as_ref())?;
    let digest = key.as_ref().map(|_| idempotency::digest(&raw));
    let claim = match idempotency::claim(state, connector, key.as_deref(), digest.as_deref())? {
        idempotency::Claim::Proceed(guard) => guard,
        idempotency::Claim::Replay(response) => return Ok((response, 0)),
    };
    let value = match parsed {
        Some(value) => value,
        None => parse_json(&raw)?,
    };
    let rules = items::ItemRules::new(connector, &headers)?;
    let (upserts, deletes) = match route {
        Route::Api => {
            let document = items::ingest_document(value, &rules)?;
            check_stream(connector, &document.stream)?;
            (document.upserts, Some(document.deletes))
        }
        Route::Webhook | Route::Bulk => (items::webhook_items(value, &rules)?, None),
    };
    // The headers and the body share the connection's read buffer: released before
    // the wait for the commit, the connection can read its next request into that
    // buffer rather than allocate another.
    drop(rules);
    // What the write holds until applied: the body, and the flattened field names,
    // which can be many times the body's size.
    let held_bytes = raw.len() + name_bytes(&upserts);
    drop((headers, raw));
    let items = upserts.len();
    let body = AcceptedBody {
        deletes_received: deletes.as_ref().map(Vec::len),
        ..accepted_body(&request_id, connector, items)
    };
    let idempotency = match key.zip(digest) {
        Some((key, digest)) => Some((key, idempotency::remembered(connector, digest, &body)?)),
        None => None,
    };
    let accepted = Accepted {
        write: write_for(connector, upserts, deletes.unwrap_or_default()),
        idempotency,
    };
    state.metrics.stage_took(Stage::Parse, parsing.elapsed());
    idempotency::submit_holding(state, accepted, Charge::OrRefuse(held_bytes), claim).await?;
    Ok((success(connector, body), items))
}

/// Checks the request's signature when the connector has a signing key.
fn verify(connector: &Connector, headers: &HeaderMap, raw: &[u8]) -> Result<(), ApiError> {
    match &connector.spec.signing {
        Some(signing) => verify_signature(signing, headers, raw, Timestamp::now().as_second())
            .map_err(invalid_signature),
        None => Ok(()),
    }
}

/// 401 `INVALID_SIGNATURE`, saying what to fix.
fn invalid_signature(error: SignatureError) -> ApiError {
    ApiError::invalid_signature(error.to_string())
}

/// The success body of the push routes (SPEC §3.1), members in name order.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedBody<'a> {
    /// Deletions received: only for the ingest API, which also deletes.
    #[serde(skip_serializing_if = "Option::is_none")]
    deletes_received: Option<usize>,
    /// Items received (a bulk import: items stored).
    items_received: usize,
    /// The request's id, as in `X-Request-Id`.
    request_id: &'a str,
    /// Always `accepted`: the request is durably on disk.
    #[schema(value_type = String, pattern = "^accepted$")]
    status: &'static str,
    /// The stream written to.
    stream: &'a str,
}

/// The success body every push route starts from.
fn accepted_body<'a>(
    request_id: &'a RequestId,
    connector: &'a Connector,
    items: usize,
) -> AcceptedBody<'a> {
    AcceptedBody {
        deletes_received: None,
        items_received: items,
        request_id: request_id.as_str(),
        status: "accepted",
        stream: connector.spec.stream.as_str(),
    }
}

/// The connector's success status (202, or 200 for senders that insist) with `body`.
fn success(connector: &Connector, body: impl Serialize) -> Response {
    let status = match connector.spec.success_status {
        Some(200) => StatusCode::OK,
        _ => StatusCode::ACCEPTED,
    };
    (status, axum::Json(body)).into_response()
}

/// A write of `upserts` and `deletes` by `connector` into its stream.
fn write_for(connector: &Connector, upserts: Vec<Upsert>, deletes: Vec<String>) -> Write {
    Write {
        stream: StreamName::clone(&connector.spec.stream),
        connector_id: connector.id.clone(),
        mode: connector.spec.upsert_mode,
        upserts,
        deletes,
        deletes_own_only: false,
        accepted_at: Timestamp::now(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::direct_webhook_stream;

    #[test]
    fn only_plain_webhook_posts_skip_the_router() {
        let post = |path| direct_webhook_stream(&Method::POST, path);
        assert_eq!(post("/api/webhook/sales"), Some("sales"));
        assert_eq!(post("/api/webhook/sales/batch"), Some("sales"));
        assert_eq!(post("/api/webhook/batch"), Some("batch"));
        for routed in [
            "/api/webhook/",
            "/api/webhook//batch",
            "/api/webhook/sales/",
            "/api/webhook/sales/bulk",
            "/api/webhook/sales/k/ik_a_b",
            "/api/webhook/sales/batch/more",
            "/api/webhook/%73ales",
            "/api/ingest",
        ] {
            assert_eq!(post(routed), None, "{routed}");
        }
        assert_eq!(
            direct_webhook_stream(&Method::GET, "/api/webhook/sales"),
            None
        );
    }
}
