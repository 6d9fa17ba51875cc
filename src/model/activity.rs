//! What a connector has been doing: its log entries and the summary its state is
//! derived from (SPEC §7).

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Connector, ConnectorState};

/// How long a push connector stays Active after data unless `idleAfterSeconds` says
/// otherwise (SPEC §1.1).
pub const DEFAULT_PUSH_IDLE_SECONDS: u64 = 900;

/// Severity of a log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Normal operation.
    Info,
    /// Worth a look; nothing failed on the connector's side.
    Warn,
    /// Data was refused or a fetch failed.
    Error,
}

/// One line of a connector's log, as `GET …/connectors/{id}/logs` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// When it happened (for aggregated entries, when the period ended).
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// Its severity.
    pub level: LogLevel,
    /// `push`, `rejected`, `recovered`, `config`, …
    pub event: String,
    /// What happened, for people.
    pub message: String,
    /// Items accepted, for `push`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    /// Requests this entry stands for, when it aggregates several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Average handling time, for `push`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// The persisted summary a connector's state is derived from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivitySummary {
    /// When data last arrived or was fetched successfully.
    pub last_success_at: Option<Timestamp>,
    /// When the last failure happened, if it came after the last success.
    pub failing_since: Option<Timestamp>,
}

impl ActivitySummary {
    /// The connector's state now: Disabled when paused, Error while failing, Active
    /// with data inside its idle window, Idle otherwise.
    pub fn state(&self, connector: &Connector, now: Timestamp) -> ConnectorState {
        if !connector.spec.enabled {
            return ConnectorState::Disabled;
        }
        if self.failing_since.is_some() {
            return ConnectorState::Error;
        }
        let idle = connector
            .spec
            .idle_after_seconds
            .unwrap_or_else(|| connector.spec.default_idle_seconds());
        let window = SignedDuration::from_secs(i64::try_from(idle).unwrap_or(i64::MAX));
        match self.last_success_at {
            Some(at) if now.duration_since(at) <= window => ConnectorState::Active,
            _ => ConnectorState::Idle,
        }
    }
}
