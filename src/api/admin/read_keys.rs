//! `/api/admin/read-keys`: issue, list and revoke read keys for displays.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::{json_body, AppState};
use crate::auth::{Credential, KeyKind};
use crate::http::ApiError;
use crate::model::{ReadKey, ReadKeySpec};
use crate::store::StoreError;

/// `POST /api/admin/read-keys` `{"name","streams"?}` → 201 `{"readKey","key"}`; the key
/// is shown here only.
#[utoipa::path(post, path = "/api/admin/read-keys", tag = "admin", operation_id = "createReadKey",
    request_body(content = ReadKeySpec, content_type = "application/json"),
    responses((status = 201, description = "Issued; the key is shown only here", body = ReadKeyIssued)))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<ReadKeyIssued>), ApiError> {
    let spec = ReadKeySpec::from_json(json_body(&headers, &body)?)?;
    let now = Timestamp::now();
    let credential = Credential::generate(KeyKind::Read);
    let read_key = ReadKey::new(spec, credential.key_id().to_owned(), now)?;
    let (stored, record) = (read_key.clone(), credential.record(&read_key.id, now));
    state
        .store
        .blocking(move |store| store.create_read_key(&stored, &record))
        .await?;
    tracing::info!(read_key_id = %read_key.id, key_id = %read_key.key_id, "read key issued");
    Ok((
        StatusCode::CREATED,
        Json(ReadKeyIssued {
            key: credential.expose().to_owned(),
            read_key,
        }),
    ))
}

/// The body of `GET /api/admin/read-keys`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadKeyList {
    /// Every read key (never the keys themselves).
    pub read_keys: Vec<ReadKey>,
}

/// The body of `POST /api/admin/read-keys`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadKeyIssued {
    /// The read key's record.
    pub read_key: ReadKey,
    /// The full key `rk_…`, shown only here.
    pub key: String,
}

/// `GET /api/admin/read-keys` → `{"readKeys": […]}`.
#[utoipa::path(get, path = "/api/admin/read-keys", tag = "admin", operation_id = "listReadKeys",
    responses((status = 200, description = "Every read key", body = ReadKeyList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<ReadKeyList>, ApiError> {
    Ok(Json(ReadKeyList {
        read_keys: state.store.read_keys()?,
    }))
}

/// `DELETE /api/admin/read-keys/{id}` → 204; the key stops working at once.
#[utoipa::path(delete, path = "/api/admin/read-keys/{id}", tag = "admin", operation_id = "deleteReadKey",
    responses((status = 204, description = "Revoked")))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let revoked = id.clone();
    let deleted = state
        .store
        .blocking(move |store| store.delete_read_key(&revoked))
        .await;
    deleted.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found(format!("no read key with id {id:?}")),
        other => other.into(),
    })?;
    tracing::info!(read_key_id = %id, "read key revoked");
    Ok(StatusCode::NO_CONTENT)
}
