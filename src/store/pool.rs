//! The DataPool itself: items by stream, per-stream counts, and the change log.
//!
//! [`Store::apply`] moves one journal record into the pool in a single transaction
//! (items, stream counts, change records, the applied mark, removal from the journal),
//! so replaying the journal after a crash applies each record exactly once.

use std::ops::Bound;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, Transactional, TransactionalTree};

use super::journal::{seq_of, APPLIED_SEQ_KEY};
use super::{decode, encode, transact, Store, StoreError};
use crate::model::{Change, ChangeKind, Item, StreamName, Write};

/// `meta` key of the last change sequence handed out.
const CHANGE_SEQ_KEY: &[u8] = b"change_seq";

/// A stream's summary, kept up to date by every write.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamStats {
    /// Items in the stream.
    pub item_count: u64,
    /// When an item of it last changed.
    pub updated_at: Option<Timestamp>,
}

/// `stream \0 item id`: items sort by id within their stream.
fn item_key(stream: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + 1 + id.len());
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn tx_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> TxResult<T> {
    decode(bytes).map_err(ConflictableTransactionError::Abort)
}

fn tx_encode<T: Serialize>(value: &T) -> TxResult<Vec<u8>> {
    encode(value).map_err(ConflictableTransactionError::Abort)
}

fn tx_seq(meta: &TransactionalTree, key: &[u8]) -> TxResult<u64> {
    match meta.get(key)? {
        Some(v) => seq_of(&v).map_err(ConflictableTransactionError::Abort),
        None => Ok(0),
    }
}

/// Adds `delta` to the count of items `connector_id` last wrote.
fn count_owner(owners: &TransactionalTree, connector_id: &str, delta: i64) -> TxResult<()> {
    let current = tx_seq(owners, connector_id.as_bytes())?;
    let next = current.saturating_add_signed(delta);
    owners.insert(connector_id.as_bytes(), &next.to_be_bytes())?;
    Ok(())
}

impl Store {
    /// Applies journal record `seq` to the pool and returns the changes it made (none
    /// for data equal to what is stored). Blocking: call it off the async runtime.
    pub fn apply(&self, seq: u64, write: &Write) -> Result<Vec<Change>, StoreError> {
        let inner = &self.inner;
        let trees = (
            &inner.journal,
            &inner.items,
            &inner.streams,
            &inner.changes,
            &inner.meta,
            &inner.connector_items,
        );
        transact(
            trees.transaction(|(journal, items, streams, changes, meta, owners)| {
                let stream = write.stream.as_str();
                let mut stats: StreamStats = match streams.get(stream)? {
                    Some(v) => tx_decode(&v)?,
                    None => StreamStats::default(),
                };
                let mut change_seq = tx_seq(meta, CHANGE_SEQ_KEY)?;
                let now = Timestamp::now();
                let mut made = Vec::new();
                for upsert in &write.upserts {
                    let key = item_key(stream, &upsert.id);
                    let current: Option<Item> =
                        items.get(&key)?.map(|v| tx_decode(&v)).transpose()?;
                    let Some(item) = Item::upserted(
                        current.as_ref(),
                        upsert,
                        write.mode,
                        &write.connector_id,
                        now,
                    ) else {
                        continue;
                    };
                    items.insert(key, tx_encode(&item)?)?;
                    if current.as_ref().map(|c| c.connector_id.as_str())
                        != Some(item.connector_id.as_str())
                    {
                        count_owner(owners, &item.connector_id, 1)?;
                        if let Some(previous) = &current {
                            count_owner(owners, &previous.connector_id, -1)?;
                        }
                    }
                    let kind = if current.is_some() {
                        ChangeKind::Updated
                    } else {
                        ChangeKind::Created
                    };
                    stats.item_count += u64::from(current.is_none());
                    change_seq += 1;
                    made.push(Change {
                        seq: change_seq,
                        kind,
                        stream: write.stream.clone(),
                        item_id: item.id,
                        version: item.version,
                        fields: Some(item.fields),
                        at: now,
                    });
                }
                for id in &write.deletes {
                    let Some(old) = items.remove(item_key(stream, id))? else {
                        continue;
                    };
                    let old: Item = tx_decode(&old)?;
                    count_owner(owners, &old.connector_id, -1)?;
                    stats.item_count = stats.item_count.saturating_sub(1);
                    change_seq += 1;
                    made.push(Change {
                        seq: change_seq,
                        kind: ChangeKind::Deleted,
                        stream: write.stream.clone(),
                        item_id: old.id,
                        version: old.version,
                        fields: None,
                        at: now,
                    });
                }
                for change in &made {
                    changes.insert(&change.seq.to_be_bytes(), tx_encode(change)?)?;
                }
                if !made.is_empty() {
                    stats.updated_at = Some(now);
                    streams.insert(stream, tx_encode(&stats)?)?;
                    meta.insert(CHANGE_SEQ_KEY, &change_seq.to_be_bytes())?;
                }
                meta.insert(APPLIED_SEQ_KEY, &seq.to_be_bytes())?;
                journal.remove(&seq.to_be_bytes())?;
                Ok(made)
            }),
        )
    }

    /// One item.
    pub fn item(&self, stream: &str, id: &str) -> Result<Option<Item>, StoreError> {
        self.inner
            .items
            .get(item_key(stream, id))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Up to `limit` items of `stream` in id order, starting after the id `after`.
    pub fn items(
        &self,
        stream: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let prefix = item_key(stream, "");
        let start = match after {
            Some(id) => Bound::Excluded(item_key(stream, id)),
            None => Bound::Included(prefix.clone()),
        };
        self.inner
            .items
            .range((start, Bound::Unbounded))
            .take_while(|entry| entry.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .take(limit)
            .map(|entry| decode(&entry?.1))
            .collect()
    }

    /// Every stream that has had items, with its summary, in name order.
    pub fn streams(&self) -> Result<Vec<(StreamName, StreamStats)>, StoreError> {
        self.inner
            .streams
            .iter()
            .map(|entry| {
                let (name, value) = entry?;
                let name = String::from_utf8(name.to_vec())
                    .ok()
                    .and_then(|n| StreamName::try_from(n).ok())
                    .ok_or_else(|| StoreError::Corrupt("a stream name is invalid".into()))?;
                Ok((name, decode(&value)?))
            })
            .collect()
    }

    /// One stream's summary, if it has had items.
    pub fn stream(&self, name: &str) -> Result<Option<StreamStats>, StoreError> {
        self.inner
            .streams
            .get(name)?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Up to `limit` changes after sequence `after`, oldest first.
    pub fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        self.inner
            .changes
            .range(start..)
            .take(limit)
            .map(|entry| decode(&entry?.1))
            .collect()
    }

    /// The oldest change still kept, if any.
    pub fn first_change_seq(&self) -> Result<Option<u64>, StoreError> {
        self.inner
            .changes
            .first()?
            .map(|(k, _)| seq_of(&k))
            .transpose()
    }

    /// The last change sequence handed out (0 before any).
    pub fn last_change_seq(&self) -> Result<u64, StoreError> {
        self.inner
            .meta
            .get(CHANGE_SEQ_KEY)?
            .map(|v| seq_of(&v))
            .transpose()
            .map(|s| s.unwrap_or(0))
    }

    /// Drops changes older than `cutoff`; returns how many.
    pub fn sweep_changes(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        let mut removed = 0;
        for entry in self.inner.changes.iter() {
            let (key, value) = entry?;
            let change: Change = decode(&value)?;
            if change.at >= cutoff {
                break;
            }
            self.inner.changes.remove(key)?;
            removed += 1;
        }
        Ok(removed)
    }
}
