//! The admin API under `/api/admin/`: everything the UI and the CLI do, behind the
//! admin token.

pub mod backup;
pub mod connectors;
pub mod monitoring;
pub mod read_keys;
pub mod streams;
pub mod subscriptions;
pub mod upload;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::{presented_token, AppState, QueryKey};
use crate::auth::KeyKind;
use crate::http::{ApiError, ClientAddr};
use crate::ui::SessionUse;

/// Lets through requests bearing the admin token, or else a web UI session that passes
/// its CSRF checks; a valid key of another kind gets 403, anything else what [`Services::identify`](crate::api::Services::identify) answers.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let client = request.extensions().get::<ClientAddr>().map(|c| c.0);
    let token = presented_token(request.uri(), request.headers(), QueryKey::Refused)?;
    if token.is_none()
        && state.sessions.admits(
            request.method(),
            request.uri(),
            request.headers(),
            SessionUse::Api,
        )?
    {
        return Ok(next.run(request).await);
    }
    let record = state.identify(client, token.as_deref())?;
    if record.kind != KeyKind::Admin {
        tracing::info!(key_id = %record.key_id, "a non-admin key was used on the admin API");
        return Err(ApiError::forbidden(
            "this key cannot use the admin API; use the admin token",
        ));
    }
    Ok(next.run(request).await)
}

/// Entries per log page unless `limit` says otherwise.
const DEFAULT_LOG_PAGE: usize = 100;
/// Largest log page: larger limits are clamped.
const MAX_LOG_PAGE: usize = 1000;

/// Query of a log listing (connector logs, delivery logs): `?limit=&cursor=`.
#[derive(Debug, serde::Deserialize)]
pub struct LogPage {
    limit: Option<usize>,
    cursor: Option<String>,
}

impl LogPage {
    /// The opaque cursor the previous page gave out, and the page size.
    pub fn parse(&self) -> Result<(Option<Vec<u8>>, usize), ApiError> {
        let before = self
            .cursor
            .as_deref()
            .map(|c| {
                hex::decode(c).map_err(|_| {
                    ApiError::invalid_payload("cursor is not one this server gave out")
                })
            })
            .transpose()?;
        let limit = self
            .limit
            .unwrap_or(DEFAULT_LOG_PAGE)
            .clamp(1, MAX_LOG_PAGE);
        Ok((before, limit))
    }
}
