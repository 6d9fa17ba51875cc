//! `/api/admin/streams/{stream}`: a stream's summary and settings, and changing them
//! (the snapshot switch and its retention, SPEC §5).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use crate::api::read::unknown_stream;
use crate::api::{json_body, AppState};
use crate::http::ApiError;
use crate::store::{StoreError, StreamStats};

/// `GET /api/admin/streams/{stream}` → `{"stream":{"name","itemCount","updatedAt",
/// "snapshots":{"enabled","retentionDays"}}}`.
pub async fn show(
    State(state): State<AppState>,
    Path(stream): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stats = state
        .store
        .stream(&stream)?
        .ok_or_else(|| unknown_stream(&stream))?;
    Ok(view(&stream, &stats))
}

/// `PATCH /api/admin/streams/{stream}` with a JSON Merge Patch such as
/// `{"snapshots":{"enabled":true,"retentionDays":7}}` → the stream as `GET` shows it,
/// once the change is durable.
pub async fn update(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let patch = json_body(&headers, &body)?;
    let current = state
        .store
        .stream(&stream)?
        .ok_or_else(|| unknown_stream(&stream))?;
    let snapshots = current.snapshots.patched(&patch)?;
    let name = stream.clone();
    let stats = state
        .store
        .blocking(move |store| store.set_snapshots(&name, snapshots))
        .await
        .map_err(|e| match e {
            StoreError::NotFound => unknown_stream(&stream),
            other => other.into(),
        })?;
    tracing::info!(
        stream = %stream,
        enabled = snapshots.enabled,
        retention_days = snapshots.retention_days,
        "stream snapshots set"
    );
    Ok(view(&stream, &stats))
}

fn view(stream: &str, stats: &StreamStats) -> Json<Value> {
    Json(json!({"stream": {
        "name": stream,
        "itemCount": stats.item_count,
        "updatedAt": stats.updated_at,
        "snapshots": stats.snapshots,
    }}))
}
