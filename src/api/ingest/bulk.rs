//! `POST /api/webhook/{stream}/bulk` (SPEC §3.3): an import of up to 64 MiB, split into
//! items as it arrives and journaled in chunks, each durable before the 202. A chunk
//! is submitted only once the one before the last has been applied, so memory holds a
//! couple of chunks whatever the body's size; a chunk also waits for room in the byte
//! budget of unapplied writes rather than being refused.
//!
//! Valid items are stored even when others are not; the answer counts both and lists
//! the first errors by item index. A body that breaks off or whose framing is broken
//! gets no 202 and keeps the chunks already made durable: the sender resends, and
//! upserts make that safe.

use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::Response;
use http_body_util::BodyExt;
use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use utoipa::ToSchema;

use super::idempotency::KeyGuard;
use super::items::{value_item, ItemRules};
use super::{
    accepted_body, idempotency, invalid_signature, success, write_for, AcceptedBody, PushRequest,
};
use crate::api::{check_json_content_type, content_type_essence, AppState};
use crate::auth::Verifier;
use crate::http::{body_failure, declared_length, unreadable, ApiError, RequestId};
use crate::ingest::Charge;
use crate::model::bulk::{BulkFormat, Piece, SplitError, Splitter, MAX_ITEM_BYTES};
use crate::model::{name_bytes, Connector, Signing, Upsert};
use crate::store::{Accepted, IdempotencyRecord, Spool, MAX_WRITE_BYTES};

/// Largest bulk body (SPEC §3.3).
pub const MAX_BULK_BYTES: usize = 64 * 1024 * 1024;
/// Items per journal chunk: big enough that a chunk's commit is cheap per item, small
/// because an import holds up to three chunks of parsed items (one being filled, two in
/// the pipeline) and each is one store transaction: 250 instead of 1,000 took about
/// 12 MiB off the peak of a 64 MiB import into a fresh store.
const CHUNK_ITEMS: usize = 250;
/// Bytes per journal chunk, raw items and their flattened field names, so large items
/// make smaller chunks (the same memory reasoning as [`CHUNK_ITEMS`]).
const CHUNK_BYTES: usize = 256 * 1024;
/// Largest item once flattened (its text and its dotted field names, which repeat every
/// nested key): an item of a few hundred KiB can flatten to far more, and one past this
/// is refused alone rather than making its whole chunk too large to journal.
const MAX_FLAT_ITEM_BYTES: usize = MAX_WRITE_BYTES - CHUNK_BYTES;
/// Item errors listed in the answer; the rest are only counted.
const MAX_REPORTED_ERRORS: usize = 100;
/// Bytes read from a spool file at a time.
const FEED_BYTES: usize = 64 * 1024;

/// Content types of NDJSON bodies.
const NDJSON_TYPES: [&str; 5] = [
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/jsonlines",
];

/// Imports the request's body; the answer and the number of items stored.
pub(super) async fn accept(
    state: &AppState,
    connector: &Connector,
    request: PushRequest,
) -> Result<(Response, usize), ApiError> {
    let PushRequest {
        request_id,
        headers,
        body,
        ..
    } = request;
    let headers = &headers;
    let format = format(headers)?;
    if declared_length(headers).is_some_and(|n| n > MAX_BULK_BYTES as u64) {
        return Err(too_large(0));
    }
    let source = match &connector.spec.signing {
        Some(signing) => spool_verified(state, signing, headers, body).await?,
        None => Source::Streamed(body),
    };
    let key = idempotency::key(headers, connector, None)?;
    let claim = match idempotency::claim(state, connector, key.as_deref(), None)? {
        idempotency::Claim::Proceed(guard) => guard,
        idempotency::Claim::Replay(response) => return Ok((response, 0)),
    };
    let mut import = Import::new(
        state,
        connector,
        ItemRules::new(connector, headers)?,
        format,
        key,
    );
    match source {
        Source::Streamed(body) => import.stream(body).await?,
        Source::Spooled(spool, file) => {
            import.read(file).await?;
            drop(spool);
        }
    }
    let body = import.finish(&request_id, claim).await?;
    Ok((success(connector, body), import.stored))
}

/// The 202 body of a bulk import (SPEC §3.3): the push routes' body, plus what was
/// rejected.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkBody<'a> {
    /// As for every push route; `itemsReceived` counts the items stored.
    #[serde(flatten)]
    pub accepted: AcceptedBody<'a>,
    /// Items refused; the others are stored.
    pub items_rejected: usize,
    /// The first refused items, at most 100.
    pub errors: Vec<RejectedItem>,
}

/// An item a bulk import refused.
#[derive(Serialize, ToSchema)]
pub struct RejectedItem {
    /// The item's 0-based position (NDJSON: among non-blank lines).
    pub index: usize,
    /// `INVALID_PAYLOAD` or `PAYLOAD_TOO_LARGE`.
    pub code: &'static str,
    /// Why.
    pub message: String,
}

/// Where the import's bytes come from.
enum Source {
    /// An unsigned body, read as it arrives.
    Streamed(Body),
    /// A signed body, verified while it was written to a spool file, read back from it.
    Spooled(Spool, tokio::fs::File),
}

/// Writes a signed body to a spool file while verifying it, so nothing of it is stored
/// unless the whole body is signed right, and memory does not hold it.
async fn spool_verified(
    state: &AppState,
    signing: &Signing,
    headers: &HeaderMap,
    mut body: Body,
) -> Result<Source, ApiError> {
    let mut verifier = Verifier::start(signing, headers, Timestamp::now().as_second())
        .map_err(invalid_signature)?;
    let (spool, file) = state.store.spool()?;
    let mut file = tokio::fs::File::from_std(file);
    let mut read = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(unreadable)?;
        if let Some(data) = frame.data_ref() {
            read += data.len();
            if read > MAX_BULK_BYTES {
                return Err(too_large(0));
            }
            verifier.update(data);
            file.write_all(data).await.map_err(ApiError::internal)?;
        }
    }
    verifier.finish().map_err(invalid_signature)?;
    file.rewind().await.map_err(ApiError::internal)?;
    Ok(Source::Spooled(spool, file))
}

/// NDJSON by its content type; JSON for a JSON type or none; anything else is 415.
fn format(headers: &HeaderMap) -> Result<BulkFormat, ApiError> {
    match content_type_essence(headers) {
        Some(essence) if NDJSON_TYPES.contains(&essence.as_str()) => Ok(BulkFormat::Ndjson),
        _ => check_json_content_type(headers).map(|()| BulkFormat::Json),
    }
}

fn too_large(stored: usize) -> ApiError {
    ApiError::payload_too_large(format!(
        "the body exceeds {MAX_BULK_BYTES} bytes{}",
        stored_note(stored)
    ))
}

/// What a failed import already stored, for its error message.
fn stored_note(stored: usize) -> String {
    if stored == 0 {
        String::new()
    } else {
        format!("; {stored} items of earlier chunks were stored (resending is safe)")
    }
}

/// One import in progress.
struct Import<'a> {
    state: &'a AppState,
    connector: &'a Connector,
    rules: ItemRules<'a>,
    splitter: Splitter,
    pieces: Vec<Piece>,
    /// Items of the chunk being filled.
    chunk: Vec<Upsert>,
    chunk_bytes: usize,
    /// Items in chunks already durable.
    stored: usize,
    rejected: usize,
    errors: Vec<RejectedItem>,
    /// The journal sequence of the last chunk submitted.
    previous: Option<u64>,
    read: usize,
    /// The request's idempotency key and the digest of the body under it, computed
    /// only when there is a key to remember it with.
    key: Option<(Vec<u8>, Sha256)>,
}

impl<'a> Import<'a> {
    fn new(
        state: &'a AppState,
        connector: &'a Connector,
        rules: ItemRules<'a>,
        format: BulkFormat,
        key: Option<Vec<u8>>,
    ) -> Self {
        Import {
            state,
            connector,
            rules,
            splitter: Splitter::new(format),
            pieces: Vec::new(),
            chunk: Vec::new(),
            chunk_bytes: 0,
            stored: 0,
            rejected: 0,
            errors: Vec::new(),
            previous: None,
            read: 0,
            key: key.map(|key| (key, Sha256::new())),
        }
    }

    /// Reads the body frame by frame.
    async fn stream(&mut self, mut body: Body) -> Result<(), ApiError> {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| body_failure(e, &stored_note(self.stored)))?;
            if let Some(data) = frame.data_ref() {
                self.feed(data).await?;
            }
        }
        Ok(())
    }

    /// Reads a spooled body back.
    async fn read(&mut self, mut file: tokio::fs::File) -> Result<(), ApiError> {
        let mut buffer = vec![0; FEED_BYTES];
        loop {
            let read = file.read(&mut buffer).await.map_err(ApiError::internal)?;
            if read == 0 {
                return Ok(());
            }
            self.feed(&buffer[..read]).await?;
        }
    }

    /// Takes the next bytes of the body, committing each chunk as it fills.
    async fn feed(&mut self, data: &[u8]) -> Result<(), ApiError> {
        self.read += data.len();
        if self.read > MAX_BULK_BYTES {
            return Err(too_large(self.stored));
        }
        if let Some((_, digest)) = &mut self.key {
            digest.update(data);
        }
        let split = self.splitter.push(data, &mut self.pieces);
        self.take_pieces().await?;
        split.map_err(|e| self.broken(e))
    }

    fn broken(&self, error: SplitError) -> ApiError {
        ApiError::invalid_payload(format!("{error}{}", stored_note(self.stored)))
    }

    /// Adds the lines split so far to the chunk, committing it each time it fills. One
    /// frame can hold hundreds of KiB of lines (hyper hands over all it read while the
    /// chunk before was being applied), and a chunk must keep its size whatever the
    /// frame's: filled from whole frames, chunks of a 64 MiB import grew to thousands of
    /// items and its peak memory to twice the bound.
    async fn take_pieces(&mut self) -> Result<(), ApiError> {
        let pieces = std::mem::take(&mut self.pieces);
        for piece in pieces {
            self.add(piece);
            if self.chunk.len() >= CHUNK_ITEMS || self.chunk_bytes >= CHUNK_BYTES {
                self.commit(None, None).await?;
            }
        }
        Ok(())
    }

    fn add(&mut self, piece: Piece) {
        let (index, bytes) = match piece {
            Piece::Item { index, bytes } => (index, bytes),
            Piece::TooLarge { index } => {
                let message = format!("the item exceeds {MAX_ITEM_BYTES} bytes");
                return self.reject(index, "PAYLOAD_TOO_LARGE", message);
            }
        };
        let item = serde_json::from_slice(&bytes)
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(|value| value_item(&self.rules, index, value));
        match item {
            Ok(upsert) => {
                let size = bytes.len() + name_bytes(std::slice::from_ref(&upsert));
                if size > MAX_FLAT_ITEM_BYTES {
                    let message = format!(
                        "the item flattens to {size} bytes of fields, over {MAX_FLAT_ITEM_BYTES}"
                    );
                    return self.reject(index, "PAYLOAD_TOO_LARGE", message);
                }
                self.chunk_bytes += size;
                self.chunk.push(upsert);
            }
            Err(message) => self.reject(index, "INVALID_PAYLOAD", message),
        }
    }

    fn reject(&mut self, index: usize, code: &'static str, message: String) {
        self.rejected += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(RejectedItem {
                index,
                code,
                message,
            });
        }
    }

    /// Makes the chunk durable (with the idempotency record and the claim on its key,
    /// for the last), then waits until the chunk before it is applied, so at most two
    /// are ever held.
    async fn commit(
        &mut self,
        idempotency: Option<(Vec<u8>, IdempotencyRecord)>,
        claim: Option<KeyGuard>,
    ) -> Result<(), ApiError> {
        if self.chunk.is_empty() && idempotency.is_none() {
            return Ok(());
        }
        let upserts = std::mem::take(&mut self.chunk);
        let items = upserts.len();
        let bytes = std::mem::take(&mut self.chunk_bytes);
        let accepted = Accepted {
            write: write_for(self.connector, upserts, Vec::new()),
            idempotency,
        };
        let seq =
            idempotency::submit_holding(self.state, accepted, Charge::OrWait(bytes), claim).await?;
        self.stored += items;
        if let Some(previous) = self.previous.replace(seq) {
            self.state.ingest.applied(previous).await?;
        }
        Ok(())
    }

    /// Ends the body and commits the last chunk, releasing `claim` once it is
    /// committed; the 202 body.
    async fn finish<'r>(
        &mut self,
        request_id: &'r RequestId,
        claim: Option<KeyGuard>,
    ) -> Result<BulkBody<'r>, ApiError>
    where
        'a: 'r,
    {
        let split = self.splitter.finish(&mut self.pieces);
        self.take_pieces().await?;
        split.map_err(|e| self.broken(e))?;
        let items = self.stored + self.chunk.len();
        let body = BulkBody {
            accepted: accepted_body(request_id, self.connector, items),
            items_rejected: self.rejected,
            errors: std::mem::take(&mut self.errors),
        };
        let idempotency = match self.key.take() {
            Some((key, digest)) => {
                let digest = hex::encode(digest.finalize());
                Some((key, idempotency::remembered(self.connector, digest, &body)?))
            }
            None => None,
        };
        self.commit(idempotency, claim).await?;
        Ok(body)
    }
}
