//! The admin API under `/api/admin/`: everything the UI and the CLI do, behind the
//! admin token.

pub mod backup;
pub mod connectors;
pub mod monitoring;
pub mod read_keys;
pub mod upload;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::{presented_token, AppState, QueryKey};
use crate::auth::KeyKind;
use crate::http::{ApiError, ClientAddr};

/// Lets through requests bearing the admin token; a valid key of another kind gets
/// 403, anything else what [`Services::identify`](crate::api::Services::identify) answers.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let client = request.extensions().get::<ClientAddr>().map(|c| c.0);
    let token = presented_token(request.uri(), request.headers(), QueryKey::Refused)?;
    let record = state.identify(client, token.as_deref())?;
    if record.kind != KeyKind::Admin {
        tracing::info!(key_id = %record.key_id, "a non-admin key was used on the admin API");
        return Err(ApiError::forbidden(
            "this key cannot use the admin API; use the admin token",
        ));
    }
    Ok(next.run(request).await)
}
