//! What the journal holds and what commits and checkpoints do in the store.
//!
//! A request is durable once its record is in the write-ahead journal
//! ([`Wal`](super::Wal)); its idempotency key reaches sled when the record is applied
//! (until then the ingest pipeline remembers it in memory). A checkpoint flushes sled
//! and syncs its files, after which journal records up to the applied mark may go.

use std::fs::File;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::wal::{self, Replay, Wal};
use super::{decode, io_at, Store, StoreError};
use crate::model::Write;

/// `meta` key of the last journal sequence applied to the pool.
pub(super) const APPLIED_SEQ_KEY: &[u8] = b"applied_seq";

/// What an idempotency key remembers: the first answer, replayed until it expires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdempotencyRecord {
    /// The first answer's body.
    pub body: Value,
    /// Hex SHA-256 of the first request's body, to notice a different body on a repeat.
    pub body_sha256: String,
    /// When the key is forgotten.
    pub expires_at: Timestamp,
}

/// One accepted request's durable part: one journal record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Accepted {
    /// What it changes.
    pub write: Write,
    /// Its idempotency key (`connector id \0 key`) and first answer, if it carried one.
    pub idempotency: Option<(Vec<u8>, IdempotencyRecord)>,
}

#[cfg(test)]
impl Accepted {
    /// A merge by `connector_id` into `stream` without idempotency key, for tests.
    pub(crate) fn for_test(
        stream: &str,
        connector_id: &str,
        upserts: Vec<crate::model::Upsert>,
        deletes: Vec<String>,
    ) -> Accepted {
        Accepted {
            write: Write {
                stream: crate::model::StreamName::try_from(stream.to_owned())
                    .expect("a valid stream name"),
                connector_id: connector_id.into(),
                mode: crate::model::UpsertMode::Merge,
                upserts,
                deletes,
                deletes_own_only: false,
                accepted_at: Timestamp::now(),
            },
            idempotency: None,
        }
    }
}

/// Reads a big-endian u64 key or value.
pub(super) fn seq_of(bytes: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("a sequence number is not 8 bytes".into()))
}

impl Store {
    /// Opens the data dir's journal; returns it with the records not yet applied.
    /// Journal files the pool already has are deleted only once the pool's files are
    /// synced: the applied mark sled reports may still be only in the page cache, and
    /// a power cut would take it back. Blocking.
    pub fn open_journal(&self) -> Result<(Wal, Replay), StoreError> {
        let applied = self.applied_seq()?;
        let opened = Wal::open(&self.journal_dir(), applied)?;
        self.sync_and_release(applied)?;
        fail::fail_point!("store::after_startup_release", |_| std::process::abort());
        Ok(opened)
    }

    /// Makes everything applied so far durable ([`Store::flush_applied`], then
    /// [`Store::sync_and_release`]); returns the applied mark it covers. Blocking.
    pub fn checkpoint(&self) -> Result<u64, StoreError> {
        let applied = self.flush_applied()?;
        self.sync_and_release(applied)?;
        Ok(applied)
    }

    /// Writes out everything applied so far (sled's flush uses `sync_file_range`, which
    /// survives a process crash but not a power cut); returns the applied mark it
    /// covers. Blocking.
    pub fn flush_applied(&self) -> Result<u64, StoreError> {
        let applied = self.applied_seq()?;
        self.inner.db.flush()?;
        Ok(applied)
    }

    /// `fdatasync`s sled's files, so that what a flush covering the applied mark
    /// `flushed` wrote survives a power cut, then deletes the journal files it covers.
    /// Blocking.
    pub fn sync_and_release(&self, flushed: u64) -> Result<(), StoreError> {
        sync_files(&self.inner.data_dir.join("db"))?;
        fail::fail_point!("store::before_release", |_| std::process::abort());
        if let Err(error) = wal::release(&self.journal_dir(), flushed) {
            // They stay until a later checkpoint manages; nothing depends on it.
            tracing::warn!(%error, "cannot delete applied journal files");
        }
        Ok(())
    }

    fn journal_dir(&self) -> PathBuf {
        self.inner.data_dir.join("journal")
    }

    /// The last journal sequence applied to the pool (0 before any).
    pub fn applied_seq(&self) -> Result<u64, StoreError> {
        self.inner
            .meta
            .get(APPLIED_SEQ_KEY)?
            .map(|v| seq_of(&v))
            .transpose()
            .map(|s| s.unwrap_or(0))
    }

    /// The remembered answer for an idempotency key, if it has not expired.
    pub fn idempotency(
        &self,
        key: &[u8],
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let record: Option<IdempotencyRecord> = self
            .inner
            .idempotency
            .get(key)?
            .map(|v| decode(&v))
            .transpose()?;
        Ok(record.filter(|r| r.expires_at > now))
    }
}

/// `fdatasync`s sled's data file and any blob files, then their directories.
pub(super) fn sync_files(dir: &Path) -> Result<(), StoreError> {
    let data = dir.join("db");
    File::open(&data)
        .and_then(|f| f.sync_data())
        .map_err(io_at(&data))?;
    let blobs = dir.join("blobs");
    if let Ok(entries) = std::fs::read_dir(&blobs) {
        for entry in entries.map_while(Result::ok) {
            let path = entry.path();
            File::open(&path)
                .and_then(|f| f.sync_data())
                .map_err(io_at(&path))?;
        }
        File::open(&blobs)
            .and_then(|f| f.sync_all())
            .map_err(io_at(&blobs))?;
    }
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_at(dir))
}
