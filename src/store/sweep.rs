//! Retention sweeps in bounded steps: each step looks at a bounded number of entries
//! from where the last one stopped, so a large backlog (a month of connector logs, a
//! flood of idempotency keys) is worked off over many short steps instead of one long
//! scan that holds the store's writers back.

use jiff::Timestamp;

use super::activity::logged_at;
use super::journal::IdempotencyRecord;
use super::{decode, Store, StoreError};
use crate::model::Change;

/// What one step of a sweep did, and where the next one starts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepStep {
    /// Entries removed (for the change log: changes removed).
    pub removed: usize,
    /// The first key of the next step; `None` once the step reached the end of the tree
    /// (the next one starts a new pass from the beginning).
    pub next: Option<Vec<u8>>,
}

/// Looks at up to `limit` entries of `tree` from `from` on and removes those `expired`
/// says; `expired` may also ask to skip ahead to a key (`Skip`), e.g. past the rest of
/// a stream whose later entries are all younger.
fn step(
    tree: &sled::Tree,
    from: &[u8],
    limit: usize,
    mut judge: impl FnMut(&[u8], &[u8]) -> Result<Verdict, StoreError>,
) -> Result<(Vec<sled::IVec>, Option<Vec<u8>>), StoreError> {
    let mut expired = Vec::new();
    let mut start = from.to_vec();
    let mut looked = 0;
    'pass: loop {
        for entry in tree.range(start.clone()..) {
            if looked == limit {
                let (key, _) = entry?;
                return Ok((expired, Some(key.to_vec())));
            }
            looked += 1;
            let (key, value) = entry?;
            match judge(&key, &value)? {
                Verdict::Expired => expired.push(key),
                Verdict::Kept => {}
                Verdict::Skip(to) => {
                    start = to;
                    continue 'pass;
                }
            }
        }
        return Ok((expired, None));
    }
}

/// What a sweep makes of one entry.
enum Verdict {
    /// Past its retention: removed.
    Expired,
    /// Still kept.
    Kept,
    /// Kept, and so is everything before this key: go on from it.
    Skip(Vec<u8>),
}

impl Store {
    /// One step of the sweep of idempotency keys that have expired by `now`.
    pub fn sweep_idempotency(
        &self,
        now: Timestamp,
        from: &[u8],
        limit: usize,
    ) -> Result<SweepStep, StoreError> {
        let _writing = self.writing();
        let tree = &self.inner.idempotency;
        let (expired, next) = step(tree, from, limit, |_, value| {
            let record: IdempotencyRecord = decode(value)?;
            Ok(if record.expires_at <= now {
                Verdict::Expired
            } else {
                Verdict::Kept
            })
        })?;
        remove(tree, expired, next)
    }

    /// One step of the sweep of connector log entries older than `cutoff`.
    pub fn sweep_logs(
        &self,
        cutoff: Timestamp,
        from: &[u8],
        limit: usize,
    ) -> Result<SweepStep, StoreError> {
        let cutoff = u64::try_from(cutoff.as_microsecond()).unwrap_or(0);
        let _writing = self.writing();
        let tree = &self.inner.connector_logs;
        let (expired, next) = step(tree, from, limit, |key, _| {
            Ok(if logged_at(key)?.is_some_and(|m| m < cutoff) {
                Verdict::Expired
            } else {
                Verdict::Kept
            })
        })?;
        remove(tree, expired, next)
    }

    /// One step of the sweep of the change log: removes each stream's entries whose
    /// changes are all older than `cutoff`, from its oldest on, and raises the mark
    /// before which changes are gone (readers resuming before it get `event: reset`)
    /// before removing them.
    pub fn sweep_changes(
        &self,
        cutoff: Timestamp,
        from: &[u8],
        limit: usize,
    ) -> Result<SweepStep, StoreError> {
        let _writing = self.writing();
        let tree = &self.inner.stream_changes;
        let mut through = 0;
        let mut changes = 0;
        let (expired, next) = step(tree, from, limit, |key, value| {
            let entry: Vec<Change> = decode(value)?;
            match entry.last() {
                Some(last) if last.at < cutoff => {
                    through = through.max(last.seq);
                    changes += entry.len();
                    Ok(Verdict::Expired)
                }
                // The stream's later entries are younger still: on to the next stream.
                _ => Ok(Verdict::Skip(next_stream(key))),
            }
        })?;
        self.raise_changes_kept_after(through)?;
        let step = remove(tree, expired, next)?;
        Ok(SweepStep {
            removed: changes,
            ..step
        })
    }
}

/// The first key after every key of `key`'s stream (`stream \0 sequence`): stream names
/// hold no byte below `\x01`.
fn next_stream(key: &[u8]) -> Vec<u8> {
    let stream = key.split(|b| *b == 0).next().unwrap_or(key);
    [stream, &[1]].concat()
}

fn remove(
    tree: &sled::Tree,
    expired: Vec<sled::IVec>,
    next: Option<Vec<u8>>,
) -> Result<SweepStep, StoreError> {
    let removed = expired.len();
    let mut batch = sled::Batch::default();
    for key in expired {
        batch.remove(key);
    }
    tree.apply_batch(batch)?;
    Ok(SweepStep { removed, next })
}
