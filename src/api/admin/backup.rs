//! `GET /api/admin/backup`: a backup of the running server, streamed as one file.
//!
//! Every write acknowledged before the request arrived is in it: the handler first
//! waits for the applier to apply everything acknowledged so far, then copies the store
//! as of one moment into a spool file (the store's writers wait only for that copy,
//! never for the client), and streams the file. Pushes keep being acknowledged all
//! along.

use std::io::{BufWriter, IntoInnerError, Seek};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::io::AsyncReadExt;

use crate::api::AppState;
use crate::backup::format::Counts;
use crate::backup::{self, BackupError};
use crate::http::ApiError;
use crate::store::{Spool, Store};

/// The media type of a backup file.
pub const BACKUP_MEDIA_TYPE: &str = "application/vnd.datapool.backup";
/// Bytes read from the spool file per chunk of the response, and buffered while writing
/// it: a few hundred KiB keep system calls few without holding much memory.
const CHUNK_BYTES: usize = 256 * 1024;

/// `GET /api/admin/backup` → 200 with the backup file as the body.
#[utoipa::path(get, path = "/api/admin/backup", tag = "admin", operation_id = "downloadBackup",
    responses((status = 200, description = "The backup file: store, key file, certificate and credentials (restore it with `datapool restore`)",
        content_type = "application/vnd.datapool.backup", body = Vec<u8>)))]
pub async fn backup(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.ingest.caught_up().await?;
    let store = state.store.clone();
    let (spool, file, counts, bytes) = tokio::task::spawn_blocking(move || take(&store))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    tracing::info!(
        bytes,
        trees = counts.trees,
        entries = counts.entries,
        "backup taken; sending it"
    );
    let name = format!(
        "attachment; filename=\"datapool-{}.backup\"",
        jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
    );
    Ok((
        [
            (header::CONTENT_TYPE, BACKUP_MEDIA_TYPE.to_owned()),
            (header::CONTENT_LENGTH, bytes.to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        Body::from_stream(chunks(tokio::fs::File::from_std(file), spool)),
    )
        .into_response())
}

/// Writes a backup of `store` into a new spool file; the file, rewound, with its guard,
/// the counts and the size. Blocking.
fn take(store: &Store) -> Result<(Spool, std::fs::File, Counts, u64), BackupError> {
    let (spool, file) = store.spool()?;
    let (out, counts, bytes) = backup::write(store, BufWriter::with_capacity(CHUNK_BYTES, file))?;
    let mut file = out.into_inner().map_err(IntoInnerError::into_error)?;
    file.rewind()?;
    Ok((spool, file, counts, bytes))
}

/// The file's contents in chunks; the spool file is removed once the stream ends or
/// the client goes away.
fn chunks(
    file: tokio::fs::File,
    spool: Spool,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    stream::try_unfold((file, spool), |(mut file, spool)| async move {
        let mut chunk = vec![0u8; CHUNK_BYTES];
        let read = file.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        chunk.truncate(read);
        Ok(Some((Bytes::from(chunk), (file, spool))))
    })
}
