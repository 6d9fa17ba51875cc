//! `/api/admin/connectors`: create, list, read, patch, enable/disable, rotate the
//! ingest key, delete, test (SPEC §1.2, §4.3); uploads are in [`super::upload`].

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use super::upload::{received, upload_settings, FileQuery};
use super::{LogPage, Page};
use crate::api::{json_body, AppState};
use crate::auth::{Credential, KeyKind, KeyRecord};
use crate::connectors::probe::TestReport;
use crate::connectors::probe::{self, ProbeError};
use crate::http::ApiError;
use crate::model::{Connector, ConnectorSpec, ConnectorView, LogEntry, LogLevel};
use crate::store::StoreError;

/// Attempts at a read-modify-write before answering 409: another admin request
/// changing the same connector at the same moment makes one attempt fail.
const MODIFY_ATTEMPTS: usize = 3;

/// A connector answer: `{"connector", "ingestKey"?}` (SPEC §1.2).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorBody {
    /// The connector as stored, secrets shown as flags.
    pub connector: ConnectorView,
    /// The full ingest key, shown once: on create (webhook and api types) and rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest_key: Option<String>,
}

/// The body of `GET /api/admin/connectors`.
#[derive(Serialize, ToSchema)]
pub struct ConnectorList {
    /// Every connector.
    pub connectors: Vec<ConnectorView>,
}

/// The body of `POST /api/admin/connectors/{id}/test`.
#[derive(Serialize, ToSchema)]
pub struct TestBody {
    /// What the test found.
    pub test: TestReport,
}

/// `POST /api/admin/connectors` → 201 `{"connector", "ingestKey"?}`; the key is shown
/// here and never again.
#[utoipa::path(post, path = "/api/admin/connectors", tag = "admin", operation_id = "createConnector",
    request_body(content = ConnectorSpec, content_type = "application/json"),
    responses((status = 201, description = "Created; the ingest key is shown only here", body = ConnectorBody)))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<ConnectorBody>), ApiError> {
    let spec = ConnectorSpec::from_json(json_body(&headers, &body)?)?;
    let now = Timestamp::now();
    let key = spec
        .kind
        .is_push()
        .then(|| Credential::generate(KeyKind::Ingest));
    let connector = Connector::new(spec, key.as_ref().map(|k| k.key_id().to_owned()), now);
    let record = key.as_ref().map(|k| k.record(&connector.id, now));
    state.push.create(&connector, record.as_ref()).await?;
    state.pollers.changed();
    state.activity.note(
        &connector.id,
        LogLevel::Info,
        "config",
        "connector created".into(),
    );
    tracing::info!(connector_id = %connector.id, key_id = ?connector.key_id, kind = connector.spec.kind.as_str(), "connector created");
    Ok((
        StatusCode::CREATED,
        Json(with_key(&state, &connector, key.as_ref())?),
    ))
}

/// `GET /api/admin/connectors` → `{"connectors": […]}`.
#[utoipa::path(get, path = "/api/admin/connectors", tag = "admin", operation_id = "listConnectors",
    responses((status = 200, description = "Every connector", body = ConnectorList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<ConnectorList>, ApiError> {
    let connectors = state
        .store
        .connectors()?
        .iter()
        .map(|c| Ok(ConnectorView(c.view(state.activity.state(c)?))))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Json(ConnectorList { connectors }))
}

/// `GET /api/admin/connectors/{id}` → `{"connector"}`.
#[utoipa::path(get, path = "/api/admin/connectors/{id}", tag = "admin", operation_id = "getConnector",
    responses((status = 200, description = "The connector", body = ConnectorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ConnectorBody>, ApiError> {
    let connector = load(&state, &id)?;
    Ok(Json(with_key(&state, &connector, None)?))
}

/// `PATCH /api/admin/connectors/{id}` with a JSON Merge Patch → `{"connector"}`.
#[utoipa::path(patch, path = "/api/admin/connectors/{id}", tag = "admin", operation_id = "updateConnector",
    request_body(content = serde_json::Value, content_type = "application/merge-patch+json",
        description = "A JSON Merge Patch (RFC 7396) of the connector document; `null` removes a member. What a read shows may be sent back: derived members and `…Set` flags are ignored"),
    responses((status = 200, description = "The changed connector", body = ConnectorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ConnectorBody>, ApiError> {
    let patch = json_body(&headers, &body)?;
    let connector = modify(&state, &id, |current| {
        Ok((current.patched(&patch, Timestamp::now())?, None))
    })
    .await?;
    tracing::info!(connector_id = %id, "connector updated");
    state
        .activity
        .note(&id, LogLevel::Info, "config", "connector updated".into());
    Ok(Json(with_key(&state, &connector, None)?))
}

/// `POST /api/admin/connectors/{id}/enable` → `{"connector"}`.
#[utoipa::path(post, path = "/api/admin/connectors/{id}/enable", tag = "admin", operation_id = "enableConnector",
    responses((status = 200, description = "The enabled connector", body = ConnectorBody)))]
pub async fn enable(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ConnectorBody>, ApiError> {
    set_enabled(&state, &id, true).await
}

/// `POST /api/admin/connectors/{id}/disable` → `{"connector"}`; pushes then get 403
/// and polls stop.
#[utoipa::path(post, path = "/api/admin/connectors/{id}/disable", tag = "admin", operation_id = "disableConnector",
    responses((status = 200, description = "The disabled connector", body = ConnectorBody)))]
pub async fn disable(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ConnectorBody>, ApiError> {
    set_enabled(&state, &id, false).await
}

async fn set_enabled(
    state: &AppState,
    id: &str,
    enabled: bool,
) -> Result<Json<ConnectorBody>, ApiError> {
    let connector = modify(state, id, |current| {
        Ok((
            current.changed(Timestamp::now(), |spec| spec.enabled = enabled),
            None,
        ))
    })
    .await?;
    tracing::info!(connector_id = %id, enabled, "connector enabled changed");
    let message = if enabled {
        "connector enabled"
    } else {
        "connector disabled"
    };
    state
        .activity
        .note(id, LogLevel::Info, "config", message.into());
    Ok(Json(with_key(state, &connector, None)?))
}

/// `POST /api/admin/connectors/{id}/rotate-key` → `{"connector", "ingestKey"}`; the
/// old key stops working in the same transaction that stores the new one.
#[utoipa::path(post, path = "/api/admin/connectors/{id}/rotate-key", tag = "admin", operation_id = "rotateConnectorKey",
    responses((status = 200, description = "The new ingest key, shown only here", body = ConnectorBody)))]
pub async fn rotate_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ConnectorBody>, ApiError> {
    let mut issued = None;
    let connector = modify(&state, &id, |current| {
        if !current.spec.kind.is_push() {
            return Err(ApiError::conflict(format!(
                "connector {id} is of type {}: only webhook and api connectors have ingest keys",
                current.spec.kind.as_str()
            )));
        }
        let now = Timestamp::now();
        let key = Credential::generate(KeyKind::Ingest);
        let mut next = current.changed(now, |_| {});
        next.key_id = Some(key.key_id().to_owned());
        let record = key.record(&next.id, now);
        issued = Some(key);
        Ok((next, Some(record)))
    })
    .await?;
    tracing::info!(connector_id = %id, key_id = ?connector.key_id, "ingest key rotated");
    let message = format!(
        "ingest key rotated; the new key id is {}",
        connector.key_id.as_deref().unwrap_or("-")
    );
    state.activity.note(&id, LogLevel::Info, "config", message);
    Ok(Json(with_key(&state, &connector, issued.as_ref())?))
}

/// `DELETE /api/admin/connectors/{id}` → 204; its ingest key stops working, and its
/// log and activity go with it.
#[utoipa::path(delete, path = "/api/admin/connectors/{id}", tag = "admin", operation_id = "deleteConnector",
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .push
        .delete(&id)
        .await
        .map_err(|e| not_found_as(e, &id))?;
    state.activity.forget(&id).await?;
    state.pollers.changed();
    tracing::info!(connector_id = %id, "connector deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/admin/connectors/{id}/test` → `{"test": {"ok", "rowCount", "file"?,
/// "truncated", "durationMs", "fields": [{"name", "type"}], "sample": [{"id",
/// "fields"}]}}`: fetches once as a poll would (also for a disabled connector) and
/// writes nothing. An upload connector reads the file sent as for an upload. A failed
/// fetch answers 502 `SOURCE_ERROR` with the classified reason; a bad uploaded file 400.
#[utoipa::path(post, path = "/api/admin/connectors/{id}/test", tag = "admin", operation_id = "testConnector",
    params(FileQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "For an upload connector only: the file to test, as for an upload (raw, or multipart/form-data with the field `file`)"),
    responses(
        (status = 200, description = "What a fetch would store; nothing is written", body = TestBody),
        (status = 502, description = "The source failed (`SOURCE_ERROR`, with the classified reason)"),
    ))]
pub async fn test(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<FileQuery>,
    request: Request,
) -> Result<Json<TestBody>, ApiError> {
    let connector = load(&state, &id)?;
    let upload = match upload_settings(&connector) {
        Some(settings) => Some(received(settings, query, request).await?),
        None => None,
    };
    let uploaded = upload.is_some();
    match probe::test(&connector, upload).await {
        Ok(report) => Ok(Json(TestBody { test: report })),
        Err(error @ ProbeError::NotTestable { .. }) => Err(ApiError::conflict(error.to_string())),
        Err(error @ (ProbeError::NoFile | ProbeError::File(_))) if uploaded => {
            Err(ApiError::invalid_payload(error.to_string()))
        }
        Err(ProbeError::Sql(error)) => {
            tracing::info!(connector_id = %id, kind = error.kind(), "connector test failed");
            Err(ApiError::source_error(error.to_string()))
        }
        Err(error) => {
            tracing::info!(connector_id = %id, %error, "connector test failed");
            Err(ApiError::source_error(error.to_string()))
        }
    }
}

/// The connector `id`, or 404.
pub(super) fn load(state: &AppState, id: &str) -> Result<Connector, ApiError> {
    state.store.connector(id)?.ok_or_else(|| unknown(id))
}

/// Reads the connector, applies `change`, and stores the result with the key record
/// `change` returns, retrying when another request changed the connector meanwhile.
async fn modify(
    state: &AppState,
    id: &str,
    mut change: impl FnMut(&Connector) -> Result<(Connector, Option<KeyRecord>), ApiError>,
) -> Result<Connector, ApiError> {
    let mut attempt = 1;
    loop {
        let (next, key) = change(&load(state, id)?)?;
        match state.push.update(&next, key.as_ref()).await {
            Err(StoreError::Changed) if attempt < MODIFY_ATTEMPTS => attempt += 1,
            result => {
                state.pollers.changed();
                return result.map(|()| next).map_err(|e| not_found_as(e, id));
            }
        }
    }
}

fn with_key(
    state: &AppState,
    connector: &Connector,
    key: Option<&Credential>,
) -> Result<ConnectorBody, ApiError> {
    Ok(ConnectorBody {
        connector: ConnectorView(connector.view(state.activity.state(connector)?)),
        ingest_key: key.map(|key| key.expose().to_owned()),
    })
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!("no connector with id {id:?}"))
}

fn not_found_as(error: StoreError, id: &str) -> ApiError {
    match error {
        StoreError::NotFound => unknown(id),
        other => other.into(),
    }
}

/// `GET /api/admin/connectors/{id}/logs?limit=&cursor=` → `{"entries","nextCursor"}`,
/// newest first.
#[utoipa::path(get, path = "/api/admin/connectors/{id}/logs", tag = "admin", operation_id = "getConnectorLogs",
    params(LogPage),
    responses((status = 200, description = "One page of the log, newest first", body = Page<LogEntry>)))]
pub async fn logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<LogPage>,
) -> Result<Json<Page<LogEntry>>, ApiError> {
    load(&state, &id)?;
    state.activity.flush()?;
    let (before, limit) = page.parse()?;
    let (entries, next) = state.store.logs(&id, before.as_deref(), limit)?;
    Ok(Json(Page {
        entries,
        next_cursor: next.map(hex::encode),
    }))
}
