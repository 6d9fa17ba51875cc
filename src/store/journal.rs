//! The journal: accepted writes, durable before their 202, kept until applied.
//!
//! The group committer hands [`Store::commit`] every request that arrived while the
//! previous commit was on disk; one transaction, one flush and one `fdatasync` then
//! serve them all. sled's own flush uses `sync_file_range`, which survives a process
//! crash but not a power cut, so the commit also syncs sled's files.

use std::fs::File;
use std::sync::atomic::Ordering;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sled::transaction::Transactional;

use super::{decode, encode, transact, Store, StoreError};
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

/// One accepted request's durable part.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// What it changes.
    pub write: Write,
    /// Its idempotency key (`connector id \0 key`) and first answer, if it carried one.
    pub idempotency: Option<(Vec<u8>, IdempotencyRecord)>,
}

/// The first free journal sequence: past both the journal's last record and the last
/// applied one (the journal is empty once everything is applied).
pub(super) fn next_seq(journal: &sled::Tree, meta: &sled::Tree) -> Result<u64, StoreError> {
    let last_record = journal
        .last()?
        .map(|(k, _)| seq_of(&k))
        .transpose()?
        .unwrap_or(0);
    let applied = meta
        .get(APPLIED_SEQ_KEY)?
        .map(|v| seq_of(&v))
        .transpose()?
        .unwrap_or(0);
    Ok(last_record.max(applied) + 1)
}

/// Reads a big-endian u64 key or value.
pub(super) fn seq_of(bytes: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("a sequence number is not 8 bytes".into()))
}

impl Store {
    /// Makes `batch` durable: journal records and idempotency keys in one transaction,
    /// then flushed and synced to disk. Returns each request's journal sequence.
    /// Blocking: call it off the async runtime. Only one caller at a time (the group
    /// committer), so sequences follow the order of `batch`.
    pub fn commit(&self, batch: &[Accepted]) -> Result<Vec<u64>, StoreError> {
        let inner = &self.inner;
        let mut journal = sled::Batch::default();
        let mut idempotency = sled::Batch::default();
        let mut seqs = Vec::with_capacity(batch.len());
        for accepted in batch {
            let seq = inner.next_journal_seq.fetch_add(1, Ordering::SeqCst);
            journal.insert(&seq.to_be_bytes(), encode(&accepted.write)?);
            if let Some((key, record)) = &accepted.idempotency {
                idempotency.insert(key.as_slice(), encode(record)?);
            }
            seqs.push(seq);
        }
        transact((&inner.journal, &inner.idempotency).transaction(|(j, i)| {
            j.apply_batch(&journal)?;
            i.apply_batch(&idempotency)?;
            Ok(())
        }))?;
        inner.db.flush()?;
        self.sync_files()?;
        Ok(seqs)
    }

    /// `fdatasync`s sled's data file and any blob files, then the directories.
    fn sync_files(&self) -> Result<(), StoreError> {
        let dir = &self.inner.db_dir;
        let io = |path: &std::path::Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        let data = dir.join("db");
        File::open(&data)
            .and_then(|f| f.sync_data())
            .map_err(io(&data))?;
        let blobs = dir.join("blobs");
        if let Ok(entries) = std::fs::read_dir(&blobs) {
            for entry in entries.map_while(Result::ok) {
                let path = entry.path();
                File::open(&path)
                    .and_then(|f| f.sync_data())
                    .map_err(io(&path))?;
            }
            File::open(&blobs)
                .and_then(|f| f.sync_all())
                .map_err(io(&blobs))?;
        }
        File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
    }

    /// Up to `limit` journal records after sequence `after`, oldest first.
    pub fn pending_writes(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Write)>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        self.inner
            .journal
            .range(start..)
            .take(limit)
            .map(|entry| {
                let (key, value) = entry?;
                Ok((seq_of(&key)?, decode(&value)?))
            })
            .collect()
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

    /// Forgets expired idempotency keys; returns how many.
    pub fn sweep_idempotency(&self, now: Timestamp) -> Result<usize, StoreError> {
        let mut removed = 0;
        for entry in self.inner.idempotency.iter() {
            let (key, value) = entry?;
            let record: IdempotencyRecord = decode(&value)?;
            if record.expires_at <= now {
                self.inner.idempotency.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
