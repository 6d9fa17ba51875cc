//! The DataPool itself: items by stream, per-stream counts, and the change log.
//!
//! [`Store::apply`] moves journal records into the pool in a single transaction
//! (items, stream counts, change records, the deliveries of the changes to
//! subscribers, the points of history of streams with snapshots on, the applied mark),
//! so replaying the journal after a crash applies each record exactly once. Their
//! idempotency keys are written just before, as one batch (see
//! `Store::remember_keys`).
//!
//! Every sled insert copies the leaf it lands in, so a pass writes per item only the
//! item itself: per-connector counts and stream summaries are summed and written once,
//! and the change log is written per stream, in groups of the stream's consecutive
//! changes, each keyed by the stream and its last sequence. A reader of one stream
//! (an SSE client) thus reads and decodes only that stream's changes, however busy
//! the others are.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ops::Bound;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, Transactional, TransactionalTree};

use super::codec::encode_groups;
use super::history;
use super::journal::{seq_of, APPLIED_SEQ_KEY};
use super::outbox;
use super::Accepted;
use super::{abort, decode, encode, transact, Store, StoreError};
use crate::model::{
    Change, ChangeKind, Fields, Item, Snapshots, StreamName, Upsert, UpsertMode, Write,
};

/// `meta` key of the last change sequence handed out.
const CHANGE_SEQ_KEY: &[u8] = b"change_seq";
/// `meta` key of the sequence after which every change is still in the change log:
/// raised by each sweep, and on the upgrade from the global change log.
const CHANGES_KEPT_AFTER_KEY: &[u8] = b"changes_kept_after";
/// The tree of the change log as data dirs before the per-stream log kept it: one log
/// of every stream, by sequence. Retired when such a data dir is opened.
const GLOBAL_CHANGES_TREE: &[u8] = b"changes";
/// Most bytes of changes in one `stream_changes` entry (a bigger change is an entry of its
/// own). Small enough that a leaf of such entries stays far below the size at which
/// sled writes a page as a separate file, large enough that a pass of a bulk chunk
/// writes a few dozen entries instead of a thousand.
const CHANGE_GROUP_BYTES: usize = 16 * 1024;

/// A stream's summary, kept up to date by every write.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamStats {
    /// Items in the stream.
    pub item_count: u64,
    /// When an item of it last changed.
    pub updated_at: Option<Timestamp>,
    /// Whether it records its fields' history. Kept with the summary that every pass
    /// reads anyway, so a stream with snapshots off costs no lookup of its own.
    #[serde(default, skip_serializing_if = "Snapshots::is_default")]
    pub snapshots: Snapshots,
}

/// `stream \0 item id`: items sort by id within their stream.
fn item_key(stream: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + 1 + id.len());
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

/// `stream \0 sequence` (big-endian): a stream's change log entries sort by the last
/// sequence they hold, so the entry holding the change after `n` is the first one at
/// or after `n + 1`.
fn change_key(stream: &str, seq: u64) -> Vec<u8> {
    let mut key = item_key(stream, "");
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn tx_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> TxResult<T> {
    decode(bytes).map_err(ConflictableTransactionError::Abort)
}

fn tx_encode<T: Serialize>(value: &T) -> TxResult<Vec<u8>> {
    encode(value).map_err(ConflictableTransactionError::Abort)
}

pub(super) fn tx_seq(meta: &TransactionalTree, key: &[u8]) -> TxResult<u64> {
    match meta.get(key)? {
        Some(v) => seq_of(&v).map_err(ConflictableTransactionError::Abort),
        None => Ok(0),
    }
}

/// One transaction's worth of applying: the items tree, the change sequence, and what
/// is summed over the pass and written once at the end (stream summaries, how many
/// items each connector gained or lost, the changes made). Items and changes are
/// stamped with the time their write was accepted (journaled with it), so a replay
/// after a restart stamps what the first apply would have.
struct Pass<'t> {
    items: &'t TransactionalTree,
    /// Points of the fields' history, for streams with snapshots on.
    history: &'t TransactionalTree,
    change_seq: u64,
    stats: HashMap<String, StreamStats>,
    owned: HashMap<String, i64>,
    made: Vec<Change>,
}

impl Pass<'_> {
    fn write(&mut self, write: &Write, streams: &TransactionalTree) -> TxResult<()> {
        let stream = write.stream.as_str();
        if !self.stats.contains_key(stream) {
            let stats = match streams.get(stream)? {
                Some(v) => tx_decode(&v)?,
                None => StreamStats::default(),
            };
            self.stats.insert(stream.to_owned(), stats);
        }
        let recording = self
            .stats
            .get(stream)
            .is_some_and(|stats| stats.snapshots.enabled);
        let before = self.made.len();
        for upsert in &write.upserts {
            self.upsert(write, upsert, recording)?;
        }
        for id in &write.deletes {
            self.delete(write, id)?;
        }
        if let Some(stats) = self.stats.get_mut(stream) {
            let created = self.made[before..]
                .iter()
                .filter(|c| c.kind == ChangeKind::Created)
                .count();
            let deleted = self.made[before..]
                .iter()
                .filter(|c| c.kind == ChangeKind::Deleted)
                .count();
            stats.item_count = (stats.item_count + created as u64).saturating_sub(deleted as u64);
            if self.made.len() > before {
                stats.updated_at = stats.updated_at.max(Some(write.accepted_at));
            }
        }
        Ok(())
    }

    /// Applies one upsert; with `recording`, each field it changes also gets a point in
    /// the history.
    fn upsert(&mut self, write: &Write, upsert: &Upsert, recording: bool) -> TxResult<()> {
        let key = item_key(write.stream.as_str(), &upsert.id);
        let current: Option<Item> = self.items.get(&key)?.map(|v| tx_decode(&v)).transpose()?;
        let Some(item) = Item::upserted(
            current.as_ref(),
            upsert,
            write.mode,
            &write.connector_id,
            write.accepted_at,
        ) else {
            return Ok(());
        };
        if recording {
            for (field, value) in Item::changed_fields(current.as_ref(), upsert) {
                let point =
                    history::point_key(write.stream.as_str(), &upsert.id, field, write.accepted_at);
                self.history.insert(point, tx_encode(value)?)?;
            }
        }
        self.items.insert(key, tx_encode(&item)?)?;
        let previous_writer = current.as_ref().map(|c| c.connector_id.as_str());
        if previous_writer != Some(item.connector_id.as_str()) {
            self.own(&item.connector_id, 1);
            if let Some(previous) = previous_writer {
                self.own(previous, -1);
            }
        }
        let kind = if current.is_some() {
            ChangeKind::Updated
        } else {
            ChangeKind::Created
        };
        self.record(kind, write, item.id, item.version, Some(item.fields));
        Ok(())
    }

    fn delete(&mut self, write: &Write, id: &str) -> TxResult<()> {
        let key = item_key(write.stream.as_str(), id);
        let Some(old) = self.items.get(&key)? else {
            return Ok(());
        };
        let old: Item = tx_decode(&old)?;
        if write.deletes_own_only && old.connector_id != write.connector_id {
            return Ok(());
        }
        self.items.remove(key)?;
        self.own(&old.connector_id, -1);
        self.record(ChangeKind::Deleted, write, old.id, old.version, None);
        Ok(())
    }

    fn own(&mut self, connector_id: &str, delta: i64) {
        *self.owned.entry(connector_id.to_owned()).or_default() += delta;
    }

    /// Writes what the pass summed up: counts, summaries, the grouped changes.
    fn finish(
        &self,
        streams: &TransactionalTree,
        owners: &TransactionalTree,
        stream_changes: &TransactionalTree,
    ) -> TxResult<()> {
        for (connector_id, delta) in &self.owned {
            if *delta != 0 {
                count_owner(owners, connector_id, *delta)?;
            }
        }
        for (stream, stats) in &self.stats {
            streams.insert(stream.as_bytes(), tx_encode(stats)?)?;
        }
        let mut by_stream: HashMap<&str, Vec<&Change>> = HashMap::new();
        for change in &self.made {
            by_stream
                .entry(change.stream.as_str())
                .or_default()
                .push(change);
        }
        for (stream, changes) in by_stream {
            write_change_groups(stream_changes, stream, &changes)?;
        }
        Ok(())
    }

    fn record(
        &mut self,
        kind: ChangeKind,
        write: &Write,
        item_id: String,
        version: u64,
        fields: Option<Fields>,
    ) {
        self.change_seq += 1;
        self.made.push(Change {
            seq: self.change_seq,
            kind,
            stream: write.stream.clone(),
            item_id,
            version,
            fields,
            at: write.accepted_at,
        });
    }
}

/// Writes one stream's changes of a pass (in sequence order) as entries of at most
/// [`CHANGE_GROUP_BYTES`], each keyed by its last change.
fn write_change_groups(
    stream_changes: &TransactionalTree,
    stream: &str,
    changes: &[&Change],
) -> TxResult<()> {
    let groups =
        encode_groups(changes, CHANGE_GROUP_BYTES).map_err(ConflictableTransactionError::Abort)?;
    let ends: Vec<usize> = groups
        .iter()
        .skip(1)
        .map(|(first, _)| first - 1)
        .chain([changes.len() - 1])
        .collect();
    for ((_, group), end) in groups.into_iter().zip(ends) {
        stream_changes.insert(change_key(stream, changes[end].seq), group)?;
    }
    Ok(())
}

/// Adds `delta` to the count of items `connector_id` last wrote.
fn count_owner(owners: &TransactionalTree, connector_id: &str, delta: i64) -> TxResult<()> {
    let current = tx_seq(owners, connector_id.as_bytes())?;
    let next = current.saturating_add_signed(delta);
    owners.insert(connector_id.as_bytes(), &next.to_be_bytes())?;
    Ok(())
}

impl Store {
    /// Applies journal records, in order and in one transaction, and returns the
    /// changes they made (none for data equal to what is stored). Blocking: call it off
    /// the async runtime.
    pub fn apply(&self, records: &[(u64, Accepted)]) -> Result<Vec<Change>, StoreError> {
        let Some((last_seq, _)) = records.last() else {
            return Ok(Vec::new());
        };
        let _writing = self.writing();
        self.remember_keys(records)?;
        if self.changes_nothing(records)? {
            // A sled transaction writes out sled's log buffer; a pass that changes
            // nothing needs only the applied mark, and losing that in a crash just
            // replays records that change nothing again.
            self.inner
                .meta
                .insert(APPLIED_SEQ_KEY, &last_seq.to_be_bytes())?;
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let (routes, instance) = self.outbox_routes();
        let trees = (
            &inner.items,
            &inner.streams,
            &inner.stream_changes,
            &inner.meta,
            &inner.connector_items,
            &inner.subscriptions,
            &inner.deliveries,
            &inner.outbox,
            &inner.history,
        );
        let (made, queued) = transact(trees.transaction(
            |(
                items,
                streams,
                stream_changes,
                meta,
                owners,
                subscriptions,
                deliveries,
                outbox,
                history,
            )| {
                let mut pass = Pass {
                    items,
                    history,
                    change_seq: tx_seq(meta, CHANGE_SEQ_KEY)?,
                    stats: HashMap::new(),
                    owned: HashMap::new(),
                    made: Vec::new(),
                };
                for (_, Accepted { write, .. }) in records {
                    pass.write(write, streams)?;
                }
                pass.finish(streams, owners, stream_changes)?;
                let queue = outbox::Queue {
                    subscriptions,
                    deliveries,
                    outbox,
                };
                let queued = outbox::enqueue(&routes, instance, &pass.made, &queue)?;
                meta.insert(CHANGE_SEQ_KEY, &pass.change_seq.to_be_bytes())?;
                meta.insert(APPLIED_SEQ_KEY, &last_seq.to_be_bytes())?;
                Ok((pass.made, queued))
            },
        ))?;
        self.enqueued(queued);
        Ok(made)
    }

    /// Writes the idempotency keys of `records` as one batch, ahead of the pass that
    /// applies the records: each tree a transaction spans adds to its commit's cost,
    /// and a pass of keyed requests that change nothing needs no transaction at all.
    /// Written first, the keys survive any crash that keeps the pass's applied mark
    /// (sled recovers a prefix of its log); a crash that loses them loses the mark too,
    /// and the journal replays both.
    fn remember_keys(&self, records: &[(u64, Accepted)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut keys = 0;
        for (key, record) in records.iter().filter_map(|(_, a)| a.idempotency.as_ref()) {
            batch.insert(key.as_slice(), encode(record)?);
            keys += 1;
        }
        if keys > 0 {
            self.inner.idempotency.apply_batch(batch)?;
        }
        Ok(())
    }

    /// One item.
    pub fn item(&self, stream: &str, id: &str) -> Result<Option<Item>, StoreError> {
        self.inner
            .items
            .get(item_key(stream, id))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// One item's fields alone: what deciding whether an upsert changes the item needs,
    /// read without the rest (its id, times and writer are skipped, not decoded).
    fn item_fields(&self, stream: &str, id: &str) -> Result<Option<Fields>, StoreError> {
        /// The one part of a stored item this needs; serde skips the rest.
        #[derive(Deserialize)]
        struct StoredFields {
            fields: Fields,
        }
        self.inner
            .items
            .get(item_key(stream, id))?
            .map(|v| decode::<StoredFields>(&v).map(|stored| stored.fields))
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

    /// Ids of the items of `stream` that `connector_id` wrote last, in id order: what
    /// a mirroring poll compares its result with. Reads the whole stream, decoding only
    /// each item's id and writer. Blocking: call it off the async runtime.
    pub fn connector_item_ids(
        &self,
        stream: &str,
        connector_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        /// The two fields of a stored item this needs; serde skips the rest.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Owner {
            id: String,
            connector_id: String,
        }
        let mut ids = Vec::new();
        for entry in self.inner.items.scan_prefix(item_key(stream, "")) {
            let owner: Owner = decode(&entry?.1)?;
            if owner.connector_id == connector_id {
                ids.push(owner.id);
            }
        }
        Ok(ids)
    }

    /// The `upserts` that would change their item if applied in `mode` now: a poll of
    /// mostly unchanged rows journals only what changed. Blocking: call it off the
    /// async runtime.
    pub fn changing(
        &self,
        stream: &str,
        mode: UpsertMode,
        upserts: Vec<Upsert>,
    ) -> Result<Vec<Upsert>, StoreError> {
        let mut changing = Vec::new();
        for upsert in upserts {
            let current = self.item_fields(stream, &upsert.id)?;
            if Item::changed_by(current.as_ref(), &upsert, mode) {
                changing.push(upsert);
            }
        }
        Ok(changing)
    }

    /// Whether applying `records` would change nothing: no delete, and every upsert
    /// equal to its item (the applier is the pool's only
    /// writer, so this holds until it applies them). Each item is read once: a busy
    /// item is often upserted many times in one pass.
    fn changes_nothing(&self, records: &[(u64, Accepted)]) -> Result<bool, StoreError> {
        let mut items: HashMap<(&str, &str), Option<Fields>> = HashMap::new();
        for (_, Accepted { write, .. }) in records {
            if !write.deletes.is_empty() {
                return Ok(false);
            }
            let stream = write.stream.as_str();
            for upsert in &write.upserts {
                let current = match items.entry((stream, upsert.id.as_str())) {
                    Entry::Occupied(entry) => entry.into_mut(),
                    Entry::Vacant(entry) => entry.insert(self.item_fields(stream, &upsert.id)?),
                };
                if Item::changed_by(current.as_ref(), upsert, write.mode) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
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

    /// Sets the snapshot switch of `stream`, durably; its summary after, or
    /// [`StoreError::NotFound`] for a stream that never had items. Blocking.
    pub fn set_snapshots(
        &self,
        stream: &str,
        snapshots: Snapshots,
    ) -> Result<StreamStats, StoreError> {
        let tree = &self.inner.streams;
        self.durably(|| {
            transact(tree.transaction(|streams| {
                let Some(value) = streams.get(stream)? else {
                    return abort(StoreError::NotFound);
                };
                let mut stats: StreamStats = tx_decode(&value)?;
                stats.snapshots = snapshots;
                streams.insert(stream.as_bytes(), tx_encode(&stats)?)?;
                Ok(stats)
            }))
        })
    }

    /// Up to `limit` changes of `stream` after sequence `after`, oldest first. Reads
    /// only that stream's part of the change log.
    pub fn stream_changes_after(
        &self,
        stream: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        let prefix = item_key(stream, "");
        let start = change_key(stream, after.saturating_add(1));
        let mut found = Vec::new();
        for entry in self.inner.stream_changes.range(start..) {
            let (key, value) = entry?;
            if found.len() == limit || !key.starts_with(&prefix) {
                break;
            }
            let later = decode::<Vec<Change>>(&value)?
                .into_iter()
                .filter(|change| change.seq > after);
            found.extend(later.take(limit - found.len()));
        }
        Ok(found)
    }

    /// The sequence after which the change log still holds every change: a reader
    /// that has seen up to it (or later) can resume without a gap.
    pub fn changes_kept_after(&self) -> Result<u64, StoreError> {
        meta_seq(&self.inner.meta, CHANGES_KEPT_AFTER_KEY)
    }

    /// The last change sequence handed out (0 before any).
    pub fn last_change_seq(&self) -> Result<u64, StoreError> {
        meta_seq(&self.inner.meta, CHANGE_SEQ_KEY)
    }

    /// Raises the mark before which changes are gone to `seq` (it never goes back).
    pub(super) fn raise_changes_kept_after(&self, seq: u64) -> Result<(), StoreError> {
        raise_kept_after(&self.inner.meta, seq)
    }
}

/// A big-endian sequence kept in `meta` under `key` (0 when absent).
fn meta_seq(meta: &sled::Tree, key: &[u8]) -> Result<u64, StoreError> {
    meta.get(key)?
        .map(|v| seq_of(&v))
        .transpose()
        .map(|s| s.unwrap_or(0))
}

/// Raises the kept-after mark to `seq` (it never goes back).
fn raise_kept_after(meta: &sled::Tree, seq: u64) -> Result<(), StoreError> {
    if seq > meta_seq(meta, CHANGES_KEPT_AFTER_KEY)? {
        meta.insert(CHANGES_KEPT_AFTER_KEY, &seq.to_be_bytes())?;
    }
    Ok(())
}

/// Retires the global change log of a data dir written before the log was kept per
/// stream (or by such a datapool since): changes up to now are not in the per-stream
/// log, so readers resuming from before get `event: reset` and reload once. Blocking:
/// part of opening the store.
pub(super) fn retire_global_change_log(db: &sled::Db, meta: &sled::Tree) -> Result<(), StoreError> {
    if !db
        .tree_names()
        .iter()
        .any(|name| name.as_ref() == GLOBAL_CHANGES_TREE)
    {
        return Ok(());
    }
    raise_kept_after(meta, meta_seq(meta, CHANGE_SEQ_KEY)?)?;
    db.drop_tree(GLOBAL_CHANGES_TREE)?;
    Ok(())
}
