//! `GET /api/admin/monitoring`: the Data Sources summary (SPEC §5, §7).

use axum::extract::State;
use axum::Json;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use crate::api::AppState;
use crate::http::ApiError;

/// The window of `errors24h`.
const ERROR_WINDOW: SignedDuration = SignedDuration::from_hours(24);

/// Per connector: state and its colour, last success, items it last wrote, and
/// refused or failed requests in the last 24 hours.
pub async fn monitoring(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.activity.flush()?;
    let since = Timestamp::now()
        .checked_sub(ERROR_WINDOW)
        .unwrap_or(Timestamp::MIN);
    let mut rows = Vec::new();
    for connector in state.store.connectors()? {
        let summary = state.activity.summary(&connector.id)?;
        let status = summary.state(&connector, Timestamp::now());
        rows.push(json!({
            "id": connector.id,
            "name": connector.spec.name,
            "type": connector.spec.kind,
            "stream": connector.spec.stream,
            "state": status,
            "status": status.colour(),
            "lastSuccessAt": summary.last_success_at,
            "itemCount": state.store.connector_item_count(&connector.id)?,
            "errors24h": state.store.errors_since(&connector.id, since)?,
        }));
    }
    Ok(Json(json!({"connectors": rows})))
}
