//! Probes for supervisors and load balancers, which need no credential, and the
//! metrics Prometheus scrapes, which need one only when the configuration sets it.

use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::Timestamp;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::{bearer_token, AppState, Services};
use crate::http::{ApiError, ClientAddr};
use crate::metrics::{self, StoreFigures};
use crate::store::{Store, StoreError};

/// `GET /healthz`: the process is up and answering.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store is open, accepted writes are being applied (those the
/// journal held at start included) and the server is not shutting down, so new work
/// will be taken and reads show every acknowledged write.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::unavailable("shutting down"));
    }
    state.ingest.ready()?;
    Ok(Json(json!({"status": "ready"})))
}

/// `GET /metrics`: what the server counts, in OpenMetrics text (see [`crate::metrics`]);
/// with `metrics_token_file` configured, only for a bearer of that token.
pub async fn metrics(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    check_scraper(&state, &request)?;
    let figures = state.store.blocking(store_figures).await?;
    let text = state.metrics.scrape(figures);
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}

/// Lets a scrape through when no token is configured or it bears the token; a wrong or
/// missing one counts as a failed authentication of its client address.
fn check_scraper(state: &Services, request: &Request) -> Result<(), ApiError> {
    let Some(token) = &state.metrics_token else {
        return Ok(());
    };
    let client = request.extensions().get::<ClientAddr>().map(|c| c.0);
    state.check_not_refused(client)?;
    let presented = bearer_token(request.headers()).unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
        return Ok(());
    }
    Err(state.failed_authentication(
        client,
        "/metrics needs the configured metrics token (Authorization: Bearer …)",
    ))
}

/// The store's figures for a scrape: items per stream, bytes on disk, the outbox.
/// Blocking.
fn store_figures(store: &Store) -> Result<StoreFigures, StoreError> {
    let stream_items = store
        .streams()?
        .into_iter()
        .map(|(name, stats)| (name.as_str().to_owned(), stats.item_count))
        .collect();
    Ok(StoreFigures {
        stream_items,
        disk_bytes: store.disk_bytes().to_vec(),
        outbound_pending: store.outbox().pending(),
        outbound_oldest_pending_seconds: store.oldest_pending()?.map_or(0, |at| {
            u64::try_from(Timestamp::now().duration_since(at).as_secs()).unwrap_or(0)
        }),
    })
}
