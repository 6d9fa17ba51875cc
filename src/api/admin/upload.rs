//! `POST /api/admin/connectors/{id}/upload` (SPEC §4.2, §7): a file for an upload
//! connector, as the raw body (`?filename=` optional) or as the multipart field
//! `file`, imported at once: 200 `{"import": {"file", "items", "changed", "deleted",
//! "durationMs"}}` once its changes are applied, or, for a malformed file, 400 with the
//! reason, nothing stored and the connector in Error. The same reading of a file
//! serves the test of an upload connector.

use std::time::Instant;

use axum::extract::{Path, Query, Request, State};
use axum::Json;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::connectors::load;
use crate::api::{content_type_essence, AppState};
use crate::connectors::file::{Fetched, Imported};
use crate::connectors::PollError;
use crate::http::{body_failure, read_limited, ApiError};
use crate::model::{Connector, FileSettings, FileSource, LogLevel, Settings};

/// Bytes a multipart body may carry beyond its file: part headers, boundaries, a few
/// small fields.
const MULTIPART_SLACK_BYTES: u64 = 64 * 1024;
/// Longest file name kept, in characters; longer ones are cut.
const MAX_NAME_CHARS: usize = 255;
/// Name of a file uploaded without one.
const UNNAMED: &str = "upload";

/// Query of an upload or a test: the file's name, for the log and the answer.
#[derive(Debug, Default, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// The file's name, for the log and the answer (a multipart part's own name wins).
    filename: Option<String>,
}

/// The body of an upload's answer.
#[derive(Serialize, ToSchema)]
pub struct ImportBody {
    /// What the import did.
    pub import: Imported,
}

/// `POST /api/admin/connectors/{id}/upload` → 200 `{"import": {…}}`.
#[utoipa::path(post, path = "/api/admin/connectors/{id}/upload", tag = "admin", operation_id = "uploadConnectorFile",
    params(FileQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The file as the raw body, or `multipart/form-data` with the field `file`"),
    responses((status = 200, description = "Imported and applied", body = ImportBody)))]
pub async fn upload(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<FileQuery>,
    request: Request,
) -> Result<Json<ImportBody>, ApiError> {
    let connector = load(&state, &id)?;
    let Some(settings) = upload_settings(&connector) else {
        return Err(ApiError::conflict(format!(
            "connector {id} does not take uploads: only a file connector with source kind upload does"
        )));
    };
    if !connector.spec.enabled {
        return Err(ApiError::connector_disabled(format!(
            "connector {id} is disabled; enable it to upload"
        )));
    }
    let file = received(settings, query, request).await?;
    let name = file.name.clone();
    let started = Instant::now();
    match state
        .pollers
        .import_upload(&connector, settings, file)
        .await
    {
        Ok(imported) => {
            tracing::info!(connector_id = %id, file = %name, items = imported.items, changed = imported.changed, deleted = imported.deleted, "file imported");
            state
                .activity
                .accepted(&id, imported.items, started.elapsed());
            state
                .activity
                .note(&id, LogLevel::Info, "import", imported.summary());
            Ok(Json(ImportBody { import: imported }))
        }
        Err(PollError::File(error)) => {
            tracing::info!(connector_id = %id, file = %name, %error, "uploaded file refused");
            state.activity.poll_failed(&id, format!("{name}: {error}"));
            Err(ApiError::invalid_payload(format!("{name}: {error}")))
        }
        Err(PollError::Ingest(error)) => Err(error.into()),
        Err(PollError::Store(error)) => Err(error.into()),
        Err(error @ PollError::Sql(_)) => Err(ApiError::internal(error)),
    }
}

/// The settings of an upload connector; None for any other.
pub fn upload_settings(connector: &Connector) -> Option<&FileSettings> {
    match &connector.spec.settings {
        Some(Settings::File(settings)) if settings.source == FileSource::Upload => Some(settings),
        _ => None,
    }
}

/// The file a request carries: the multipart field `file`, else the whole body; at
/// most the connector's `maxBytes` (413 past it, without reading the rest).
pub async fn received(
    settings: &FileSettings,
    query: FileQuery,
    request: Request,
) -> Result<Fetched, ApiError> {
    let cap = settings.byte_cap();
    let (parts, body) = request.into_parts();
    if content_type_essence(&parts.headers).as_deref() != Some("multipart/form-data") {
        let limit = usize::try_from(cap).unwrap_or(usize::MAX);
        let bytes = read_limited(&parts.headers, body, limit).await?;
        return Ok(Fetched {
            name: file_name(query.filename.as_deref()),
            bytes,
        });
    }
    let content_type = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ApiError::invalid_payload(format!("invalid multipart body: {e}")))?;
    let limits = multer::SizeLimit::new()
        .whole_stream(cap.saturating_add(MULTIPART_SLACK_BYTES))
        .per_field(cap);
    let mut multipart = multer::Multipart::with_constraints(
        body.into_data_stream(),
        boundary,
        multer::Constraints::new().size_limit(limits),
    );
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        if field.name() != Some("file") {
            continue;
        }
        let name = file_name(field.file_name().or(query.filename.as_deref()));
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            bytes.extend_from_slice(&chunk);
        }
        return Ok(Fetched {
            name,
            bytes: bytes.into(),
        });
    }
    Err(ApiError::invalid_payload(
        "the multipart body has no field named file",
    ))
}

/// A multipart failure: 413 past a size limit, 408 for a body that did not arrive in
/// time, else 400.
fn multipart_error(error: multer::Error) -> ApiError {
    match error {
        multer::Error::FieldSizeExceeded { limit, .. }
        | multer::Error::StreamSizeExceeded { limit } => {
            ApiError::payload_too_large(format!("the file exceeds {limit} bytes"))
        }
        multer::Error::StreamReadFailed(cause) => body_failure(cause, ""),
        other => ApiError::invalid_payload(format!("invalid multipart body: {other}")),
    }
}

/// The name a file is logged and answered under: its last path segment, without
/// control characters, at most [`MAX_NAME_CHARS`].
fn file_name(given: Option<&str>) -> String {
    let last = given.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let name: String = last
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    if name.trim().is_empty() {
        UNNAMED.to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn a_file_name_is_its_last_segment_without_control_characters() {
        assert_eq!(file_name(Some("C:\\data\\sales.csv")), "sales.csv");
        assert_eq!(file_name(Some("../../etc/x\n.csv")), "x.csv");
        assert_eq!(file_name(Some("dir/")), "upload");
        assert_eq!(file_name(None), "upload");
    }
}
