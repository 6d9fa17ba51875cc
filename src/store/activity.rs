//! Connector activity: log entries (30 days), the state summary, and how many items
//! of the pool each connector last wrote.

use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;

use super::journal::seq_of;
use super::{decode, encode, Store, StoreError};
use crate::model::{ActivitySummary, LogEntry};

/// Tells log entries written in the same microsecond apart.
static LOG_SEQ: AtomicU64 = AtomicU64::new(0);

/// `owner id \0 microseconds \0 counter`: an owner's (connector's, subscription's)
/// log entries sort by time.
pub(super) fn log_key(owner: &str, at: Timestamp) -> Vec<u8> {
    let micros = u64::try_from(at.as_microsecond()).unwrap_or(0);
    let mut key = owner_prefix(owner);
    key.extend_from_slice(&micros.to_be_bytes());
    key.extend_from_slice(&LOG_SEQ.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    key
}

/// `owner id \0`: the start of every key of one owner's records.
pub(super) fn owner_prefix(owner: &str) -> Vec<u8> {
    let mut key = owner.as_bytes().to_vec();
    key.push(0);
    key
}

/// Up to `limit` entries of `owner`'s log in `tree` (keyed by [`log_key`]), newest
/// first, older than the opaque `before` cursor; with the cursor of the next page, if
/// there is one.
pub(super) fn newest_first<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    owner: &str,
    before: Option<&[u8]>,
    limit: usize,
) -> Result<(Vec<T>, Option<Vec<u8>>), StoreError> {
    let prefix = owner_prefix(owner);
    let end = match before {
        Some(suffix) => [prefix.as_slice(), suffix].concat(),
        None => [prefix.as_slice(), &[0xff; 17]].concat(),
    };
    let mut page = Vec::with_capacity(limit + 1);
    for entry in tree.range(prefix.clone()..end).rev().take(limit + 1) {
        let (key, value) = entry?;
        page.push((key, decode::<T>(&value)?));
    }
    let more = page.len() > limit;
    page.truncate(limit);
    // The range's end is exclusive: the next page ends at the last key shown here.
    let next = more
        .then(|| page.last().map(|(key, _)| key[prefix.len()..].to_vec()))
        .flatten();
    Ok((page.into_iter().map(|(_, entry)| entry).collect(), next))
}

/// When the entry under a [`log_key`] was logged, in microseconds: `owner \0
/// microseconds \0 counter` puts the time 16 bytes from the end.
pub(super) fn logged_at(key: &[u8]) -> Result<Option<u64>, StoreError> {
    key.len()
        .checked_sub(16)
        .and_then(|at| key.get(at..at + 8))
        .map(seq_of)
        .transpose()
}

/// Drops entries older than `cutoff` from a log tree keyed by [`log_key`]; returns how
/// many. Reads only keys: each holds its entry's time.
pub(super) fn sweep_log(tree: &sled::Tree, cutoff: Timestamp) -> Result<usize, StoreError> {
    let cutoff = u64::try_from(cutoff.as_microsecond()).unwrap_or(0);
    let mut removed = 0;
    for key in tree.iter().keys() {
        let key = key?;
        if logged_at(&key)?.is_some_and(|m| m < cutoff) {
            tree.remove(key)?;
            removed += 1;
        }
    }
    Ok(removed)
}

impl Store {
    /// Appends log entries, each to its connector's log.
    pub fn append_logs(&self, entries: &[(String, LogEntry)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (connector_id, entry) in entries {
            batch.insert(log_key(connector_id, entry.at), encode(entry)?);
        }
        self.inner.connector_logs.apply_batch(batch)?;
        Ok(())
    }

    /// Up to `limit` entries of a connector's log, newest first, older than the opaque
    /// `before` cursor; with the cursor of the next page, if there is one.
    pub fn logs(
        &self,
        connector_id: &str,
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<LogEntry>, Option<Vec<u8>>), StoreError> {
        newest_first(&self.inner.connector_logs, connector_id, before, limit)
    }

    /// Error-level requests in a connector's log since `since`.
    pub fn errors_since(&self, connector_id: &str, since: Timestamp) -> Result<u64, StoreError> {
        let prefix = owner_prefix(connector_id);
        let micros = u64::try_from(since.as_microsecond()).unwrap_or(0);
        let start = [prefix.as_slice(), &micros.to_be_bytes()].concat();
        let mut errors = 0;
        for entry in self
            .inner
            .connector_logs
            .range(start..)
            .take_while(|e| e.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
        {
            let entry: LogEntry = decode(&entry?.1)?;
            if entry.level == crate::model::LogLevel::Error {
                errors += entry.count.unwrap_or(1);
            }
        }
        Ok(errors)
    }

    /// A connector's persisted state summary.
    pub fn activity(&self, connector_id: &str) -> Result<ActivitySummary, StoreError> {
        Ok(self
            .inner
            .activity
            .get(connector_id)?
            .map(|v| decode(&v))
            .transpose()?
            .unwrap_or_default())
    }

    /// Saves a connector's state summary.
    pub fn save_activity(
        &self,
        connector_id: &str,
        summary: &ActivitySummary,
    ) -> Result<(), StoreError> {
        self.inner.activity.insert(connector_id, encode(summary)?)?;
        Ok(())
    }

    /// Items of the pool whose last writer is this connector.
    pub fn connector_item_count(&self, connector_id: &str) -> Result<u64, StoreError> {
        self.inner
            .connector_items
            .get(connector_id)?
            .map(|v| seq_of(&v))
            .transpose()
            .map(|n| n.unwrap_or(0))
    }

    /// Forgets a deleted connector's log and summary.
    pub fn forget_activity(&self, connector_id: &str) -> Result<(), StoreError> {
        for key in self
            .inner
            .connector_logs
            .scan_prefix(owner_prefix(connector_id))
            .keys()
        {
            self.inner.connector_logs.remove(key?)?;
        }
        self.inner.activity.remove(connector_id)?;
        Ok(())
    }
}
