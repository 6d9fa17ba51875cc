//! File connectors (SPEC §4.2): a CSV, Excel (xlsx, xls), JSON or XML file, uploaded
//! through the admin API, fetched from a URL or picked up from a watched folder,
//! becomes this connector's items.
//!
//! A file is all or nothing: it is parsed once whole (off the async runtime) to find
//! every item and any defect, and only a file without one is written, in a second
//! pass that hands items to the journal a thousand at a time. So a malformed file
//! stores nothing and leaves the last good data as it was, and a large one holds its
//! bytes and ids in memory, not all its items at once. With mirroring, this
//! connector's items the file no longer holds are deleted, as for SQL.
//!
//! - `text`: encodings and value typing; `csv`, `excel`, `json`, `xml`: the formats;
//! - `url`: fetching a URL on a schedule (conditional GET); `folder`: the watch folder.

mod csv;
mod excel;
mod folder;
mod json;
mod text;
mod url;
mod xml;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::{Map, Value};

use super::record::{self, Key};
use super::sink::{self, Sink, ITEMS_PER_WRITE};
use super::{PollContext, PollError};
use crate::ingest::IngestError;
use crate::model::{Connector, ConnectorSpec, FileFormat, FileSettings, FileSource, Upsert};

pub use folder::FolderPoller;
pub use url::UrlPoller;

/// Chunks of items the parsing thread may hold ready while the journal takes earlier
/// ones: enough to keep both busy, few enough to keep memory flat.
const CHUNKS_AHEAD: usize = 2;

/// Why a file could not be fetched or read; nothing of it is stored.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file is larger than the connector's `maxBytes`.
    #[error("the file is larger than maxBytes ({0} bytes)")]
    TooLarge(u64),
    /// The file holds nothing at all (not even a header row).
    #[error("the file is empty")]
    Empty,
    /// The bytes are not text in the expected encoding.
    #[error("{0}")]
    Text(String),
    /// A CSV defect: a ragged row, an unclosed quote.
    #[error("invalid CSV: {0}")]
    Csv(String),
    /// A workbook that cannot be read (truncated, not a workbook, no such sheet).
    #[error("invalid workbook: {0}")]
    Excel(String),
    /// A JSON document that is not valid or not an array of objects.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// An XML document that is not well-formed or lacks the path.
    #[error("invalid XML: {0}")]
    Xml(String),
    /// Records that cannot become items (no usable key, too deeply nested).
    #[error("the file cannot be stored: {0}")]
    Records(String),
    /// The URL could not be fetched.
    #[error("cannot fetch the file: {0}")]
    Fetch(String),
    /// The watched folder could not be read, or a file in it moved.
    #[error("watched folder: {0}")]
    Folder(String),
    /// The import stopped before it was written (the server is shutting down).
    #[error("the import was interrupted")]
    Interrupted,
}

/// A file as it arrived: its name (for logs and answers) and its bytes.
pub struct Fetched {
    /// The file's name: the upload's, the URL's last segment, the folder entry's.
    pub name: String,
    /// Its content, at most the connector's `maxBytes`.
    pub bytes: Bytes,
}

/// What an import did, as the upload answer and the connector log tell it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Imported {
    /// The file's name.
    pub file: String,
    /// Records the file holds.
    pub items: usize,
    /// Items created or changed by it.
    pub changed: usize,
    /// This connector's items deleted because the file no longer holds them.
    pub deleted: usize,
    /// Time to parse and write it.
    pub duration_ms: u64,
}

impl Imported {
    /// One line for the connector log.
    pub fn summary(&self) -> String {
        format!(
            "imported {}: {} items, {} changed, {} deleted",
            self.file, self.items, self.changed, self.deleted
        )
    }
}

/// What a record callback gets: the record as an object, the name of its first field
/// in file order (the default item key; None where position is the default), and its
/// 0-based position.
type EachRecord<'a> =
    &'a mut dyn FnMut(Map<String, Value>, Option<&str>, usize) -> Result<(), FileError>;

/// A file read into the form its format walks.
enum Document {
    Csv(csv::CsvFile),
    Excel(excel::Sheet),
    Json(json::JsonFile),
    Xml(xml::XmlFile),
}

impl Document {
    /// Reads `bytes` as `settings.format` says. Blocking: decoding, workbooks and JSON
    /// are parsed here.
    fn open(bytes: Bytes, settings: &FileSettings) -> Result<Self, FileError> {
        if bytes.is_empty() {
            return Err(FileError::Empty);
        }
        Ok(match settings.format {
            FileFormat::Csv => Document::Csv(csv::CsvFile::open(bytes, settings)?),
            FileFormat::Excel => Document::Excel(excel::Sheet::open(bytes, settings)?),
            FileFormat::Json => Document::Json(json::JsonFile::open(&bytes, settings)?),
            FileFormat::Xml => Document::Xml(xml::XmlFile::open(&bytes, settings)?),
        })
    }

    /// The word for one record in errors.
    fn record_name(&self) -> &'static str {
        match self {
            Document::Csv(_) | Document::Excel(_) => "row",
            Document::Json(_) | Document::Xml(_) => "element",
        }
    }

    /// Hands each record's upsert for `spec` to `each`, in file order; returns how
    /// many there were. Blocking.
    fn upserts(
        &self,
        spec: &ConnectorSpec,
        mut each: impl FnMut(Upsert) -> Result<(), FileError>,
    ) -> Result<usize, FileError> {
        let noun = self.record_name();
        let mut count = 0;
        let mut to_upsert = |object: Map<String, Value>, first: Option<&str>, index: usize| {
            let key = match (spec.item_key.as_deref(), first) {
                (Some(name), _) | (None, Some(name)) => Key::Field(name),
                (None, None) => Key::Position,
            };
            let upsert =
                record::upsert(object, key, spec, noun, index).map_err(FileError::Records)?;
            count += 1;
            each(upsert)
        };
        match self {
            Document::Csv(file) => file.records(&mut to_upsert),
            Document::Excel(sheet) => sheet.records(&mut to_upsert),
            Document::Json(file) => file.records(&mut to_upsert),
            Document::Xml(file) => file.records(&mut to_upsert),
        }?;
        Ok(count)
    }
}

/// Runs blocking `work` off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| FileError::Interrupted)?
}

/// Imports `file` for `connector`: every item that changes is written, and with
/// mirroring this connector's items the file no longer holds are deleted; or, for a
/// file with any defect, nothing at all. Returns once the writes are applied.
#[tracing::instrument(skip_all, fields(connector_id = %connector.id, file = %file.name))]
pub async fn import(
    context: &PollContext,
    connector: &Connector,
    settings: &FileSettings,
    file: Fetched,
) -> Result<Imported, PollError> {
    let started = Instant::now();
    let Fetched { name, bytes } = file;
    let (spec, open_settings) = (connector.spec.clone(), settings.clone());
    let (document, ids, items) = blocking(move || {
        let document = Document::open(bytes, &open_settings)?;
        let mut ids = HashSet::new();
        let items = document.upserts(&spec, |upsert| {
            ids.insert(upsert.id);
            Ok(())
        })?;
        Ok((document, ids, items))
    })
    .await?;
    let deletes = if settings.mirrors() {
        sink::gone(context, connector, |id| ids.contains(id)).await?
    } else {
        Vec::new()
    };
    drop(ids);
    let (chunks, mut ready) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
    let spec = connector.spec.clone();
    let parsing = tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::with_capacity(ITEMS_PER_WRITE);
        document.upserts(&spec, |upsert| {
            chunk.push(upsert);
            if chunk.len() == ITEMS_PER_WRITE {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(ITEMS_PER_WRITE));
                chunks
                    .blocking_send(full)
                    .map_err(|_| FileError::Interrupted)?;
            }
            Ok(())
        })?;
        if !chunk.is_empty() {
            chunks
                .blocking_send(chunk)
                .map_err(|_| FileError::Interrupted)?;
        }
        Ok::<(), FileError>(())
    });
    let mut sink = Sink::new(context, connector);
    while let Some(chunk) = ready.recv().await {
        sink.upsert(chunk).await?;
    }
    parsing.await.map_err(|_| IngestError::Stopped)??;
    let written = sink.finish(deletes).await?;
    Ok(Imported {
        file: name,
        items,
        changed: written.changed,
        deleted: written.deleted,
        duration_ms: millis(started.elapsed()),
    })
}

/// What a test of a file connector found: the records the file holds and the first
/// `limit` items as they would be stored.
pub struct Sample {
    /// Records in the file.
    pub items: usize,
    /// The first items.
    pub upserts: Vec<Upsert>,
}

/// Parses `file` whole for `connector` as an import would, keeping the first `limit`
/// items; writes nothing.
pub async fn sample(
    connector: &Connector,
    settings: &FileSettings,
    file: Fetched,
    limit: usize,
) -> Result<Sample, FileError> {
    let (spec, settings) = (connector.spec.clone(), settings.clone());
    let work = move || {
        let document = Document::open(file.bytes, &settings)?;
        let mut upserts = Vec::new();
        let items = document.upserts(&spec, |upsert| {
            if upserts.len() < limit {
                upserts.push(upsert);
            }
            Ok(())
        })?;
        Ok(Sample { items, upserts })
    };
    blocking(work).await
}

/// Fetches the file a poll of `settings`' source would read now, for a test: the URL
/// unconditionally, or the folder's oldest matching file (left where it is). An
/// upload source has nothing to fetch: None.
pub async fn fetch_now(settings: &FileSettings) -> Result<Option<Fetched>, FileError> {
    match &settings.source {
        FileSource::Upload => Ok(None),
        FileSource::Url(_) => Ok(Some(UrlPoller::new(settings)?.fetch_now().await?)),
        FileSource::Folder(source) => Ok(Some(folder::peek(source, settings.byte_cap()).await?)),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
