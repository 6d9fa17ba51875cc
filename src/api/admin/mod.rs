//! The admin API under `/api/admin/`: everything the UI and the CLI do, behind the
//! admin token.

pub mod connectors;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::{bearer_token, AppState};
use crate::auth::KeyKind;
use crate::http::{ApiError, ClientAddr};

/// Lets through requests bearing the admin token. A valid key of another kind gets
/// 403; anything else 401, counted against the client's address, which is refused
/// with 429 for the rest of the minute once it has failed too often.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let addr = request.extensions().get::<ClientAddr>().map(|c| c.0.ip());
    if let Some(wait) = addr.and_then(|ip| state.auth_failures.blocked_for(ip)) {
        return Err(ApiError::rate_limited(
            "too many failed authentications from this address; try again later",
            wait.as_secs() + 1,
        ));
    }
    let record = match bearer_token(request.headers()) {
        Some(token) => state.authenticate(token)?,
        None => None,
    };
    match record {
        Some(record) if record.kind == KeyKind::Admin => Ok(next.run(request).await),
        Some(record) => {
            tracing::info!(key_id = %record.key_id, "a non-admin key was used on the admin API");
            Err(ApiError::forbidden(
                "this key cannot use the admin API; use the admin token",
            ))
        }
        None => {
            if let Some(ip) = addr {
                if state.auth_failures.record_failure(ip) {
                    tracing::warn!(client = %ip, "refusing a client address after repeated failed authentications");
                }
            }
            Err(ApiError::unauthorized(
                "missing or invalid admin token (Authorization: Bearer at_…)",
            ))
        }
    }
}
