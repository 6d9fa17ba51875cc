//! Probes for supervisors and load balancers; they need no credential.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;
use crate::http::ApiError;

/// `GET /healthz`: the process is up and answering.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store is open, accepted writes are being applied and the server
/// is not shutting down, so new work will be taken.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::unavailable("shutting down"));
    }
    state.ingest.ready()?;
    Ok(Json(json!({"status": "ready"})))
}
