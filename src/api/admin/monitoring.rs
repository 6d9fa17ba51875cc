//! `GET /api/admin/monitoring`: the Data Sources summary (SPEC §5, §7).

use axum::extract::State;
use axum::Json;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::AppState;
use crate::http::ApiError;
use crate::model::{ConnectorState, ConnectorType, StreamName};

/// The window of `errors24h`.
const ERROR_WINDOW: SignedDuration = SignedDuration::from_hours(24);

/// The body of `GET /api/admin/monitoring`.
#[derive(Serialize, ToSchema)]
pub struct Monitoring {
    /// One row per connector.
    pub connectors: Vec<ConnectorHealth>,
}

/// A connector's row in [`Monitoring`].
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorHealth {
    /// The connector id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ConnectorType,
    /// The stream it writes to.
    pub stream: StreamName,
    /// Its state.
    pub state: ConnectorState,
    /// The state's colour: green = active, yellow = idle, red = error, grey = disabled.
    #[schema(value_type = String, pattern = "^(green|yellow|red|grey)$")]
    pub status: &'static str,
    /// When it last fetched or received data; null if never.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success_at: Option<Timestamp>,
    /// Items it last wrote.
    pub item_count: u64,
    /// Refused or failed requests and fetches in the last 24 hours.
    #[serde(rename = "errors24h")]
    pub errors_24h: u64,
}

/// Per connector: state and its colour, last success, items it last wrote, and
/// refused or failed requests in the last 24 hours.
#[utoipa::path(get, path = "/api/admin/monitoring", tag = "admin", operation_id = "getMonitoring",
    responses((status = 200, description = "The Data Sources summary", body = Monitoring)))]
pub async fn monitoring(State(state): State<AppState>) -> Result<Json<Monitoring>, ApiError> {
    state.activity.flush()?;
    let since = Timestamp::now()
        .checked_sub(ERROR_WINDOW)
        .unwrap_or(Timestamp::MIN);
    let mut rows = Vec::new();
    for connector in state.store.connectors()? {
        let summary = state.activity.summary(&connector.id)?;
        let status = summary.state(&connector, Timestamp::now());
        rows.push(ConnectorHealth {
            item_count: state.store.connector_item_count(&connector.id)?,
            errors_24h: state.store.errors_since(&connector.id, since)?,
            id: connector.id,
            name: connector.spec.name,
            kind: connector.spec.kind,
            stream: connector.spec.stream,
            state: status,
            status: status.colour(),
            last_success_at: summary.last_success_at,
        });
    }
    Ok(Json(Monitoring { connectors: rows }))
}
