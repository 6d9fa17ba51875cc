//! Probes for supervisors and load balancers, which need no credential, and the
//! metrics Prometheus scrapes, which need one only when the configuration sets it.

use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::Timestamp;
use serde::Serialize;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::{bearer_token, AppState, Services};
use crate::http::{ApiError, ClientAddr};
use crate::metrics::{self, StoreFigures};
use crate::store::{Store, StoreError};

/// The body of `/healthz` and `/readyz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    #[schema(value_type = String, pattern = "^(ok|ready)$")]
    pub status: &'static str,
}

/// `GET /healthz`: the process is up and answering.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /readyz`: the store is open, accepted writes are being applied (those the
/// journal held at start included) and the server is not shutting down, so new work
/// will be taken and reads show every acknowledged write.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Ready for work", body = Health),
    (status = 503, description = "Replaying the journal, the store failing, or shutting down"),
))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::unavailable("shutting down"));
    }
    state.ingest.ready()?;
    Ok(Json(Health { status: "ready" }))
}

/// `GET /metrics`: what the server counts, in OpenMetrics text (see [`crate::metrics`]);
/// with `metrics_token_file` configured, only for a bearer of that token.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    security((), ("metricsToken" = [])),
    responses(
        (status = 200, description = "OpenMetrics text",
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 401, description = "A metrics token is configured and was not presented"),
        (status = 429, description = "Too many failed authentications from this address"),
    ))]
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
