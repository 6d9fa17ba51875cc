//! From an accepted request to a visible change: the group committer appends each
//! request to the write-ahead journal and syncs it before its 202; the applier moves
//! committed records into the pool in order, announces the changes, and between passes
//! flushes the pool; once a task beside it has synced the pool's files, the journal
//! files the flush covers are deleted (a checkpoint).
//!
//! ```text
//! handler ─submit─► committer ──append + fdatasync (one per group)──► journal files
//!                       │ committed records, in order                      ▲
//!                       ▼                                                  │ released
//!                   applier ──apply (batched transactions)──► pool + change log
//!                       │ applied mark (watch)   │ each changed stream's last change
//!                       │                        │ (feed): its SSE clients
//!                       └── checkpoint: flush sled about every second, then (a task
//!                           beside it) sync its files and delete applied journal files
//! ```

mod applier;
mod checkpoint;
mod committer;
mod feed;
mod pacer;
pub mod retention;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{Accepted, IdempotencyRecord, Store, StoreError};
use applier::Announce;
use checkpoint::Checkpoint;
pub use feed::{ChangeFeed, StreamChanges};

/// Requests that may wait for the committer at once. The HTTP layer's in-flight cap
/// answers 503 before this fills.
const QUEUE_CAPACITY: usize = 4096;
/// Committed groups that may wait for the applier; past it, the committer waits, which
/// holds new 202s back instead of growing memory.
const APPLY_QUEUE_GROUPS: usize = 64;

/// Why a write was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store could not make it durable.
    #[error("the write could not be made durable: {0}")]
    Store(String),
    /// The server is stopping and takes no more writes.
    #[error("the server is shutting down")]
    Stopped,
}

impl From<StoreError> for IngestError {
    fn from(error: StoreError) -> Self {
        IngestError::Store(error.to_string())
    }
}

/// A request waiting for its group commit.
struct Pending {
    accepted: Accepted,
    done: oneshot::Sender<Result<u64, IngestError>>,
}

/// Committed records on their way to the applier, in journal order.
type Committed = Vec<(u64, Accepted)>;

/// Idempotency keys of committed requests not yet applied (after which the store has
/// them), so a repeat in between is recognised without touching the store on the
/// commit path.
#[derive(Default)]
struct UnappliedKeys(Mutex<HashMap<Vec<u8>, IdempotencyRecord>>);

impl UnappliedKeys {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, IdempotencyRecord>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, records: &Committed) {
        let mut keys = self.lock();
        for (key, record) in records.iter().filter_map(|(_, a)| a.idempotency.as_ref()) {
            keys.insert(key.clone(), record.clone());
        }
    }

    fn remove(&self, records: &Committed) {
        let mut keys = self.lock();
        for (key, _) in records.iter().filter_map(|(_, a)| a.idempotency.as_ref()) {
            keys.remove(key);
        }
    }
}

/// The handle handlers use to submit writes; cheap to clone. When the last clone is
/// dropped (the HTTP layer has stopped), the committer commits what is queued and
/// stops, and the applier applies what was committed and stops.
#[derive(Clone)]
pub struct Ingest {
    store: Store,
    unapplied: Arc<UnappliedKeys>,
    queue: mpsc::Sender<Pending>,
    applied: watch::Receiver<u64>,
    feed: Arc<ChangeFeed>,
}

impl Ingest {
    /// Opens the journal and starts the committer and the applier on `tasks`. The
    /// applier first replays what the journal holds beyond the pool.
    pub fn start(
        store: Store,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<Ingest, StoreError> {
        let (journal, replay) = store.open_journal()?;
        if !replay.is_empty() {
            tracing::info!(
                records = replay.len(),
                "replaying accepted writes not yet applied"
            );
        }
        let applied_seq = store.applied_seq()?;
        let (queue, requests) = mpsc::channel(QUEUE_CAPACITY);
        let (to_applier, committed) = std::sync::mpsc::sync_channel(APPLY_QUEUE_GROUPS);
        let (applied_tx, applied_rx) = watch::channel(applied_seq);
        let feed = Arc::new(ChangeFeed::default());
        let unapplied = Arc::new(UnappliedKeys::default());
        unapplied.add(&replay);
        if !replay.is_empty() && to_applier.try_send(replay).is_err() {
            return Err(StoreError::Corrupt("the replay could not be queued".into()));
        }
        let committer_keys = unapplied.clone();
        tasks
            .spawn_blocking(move || committer::run(journal, requests, to_applier, &committer_keys));
        let (flushed, flushes) = watch::channel(applied_seq);
        tasks.spawn(checkpoint::sync_and_release(store.clone(), flushes));
        let checkpoint = Checkpoint::new(store.clone(), flushed);
        let announce = Announce {
            unapplied: unapplied.clone(),
            applied: applied_tx,
            feed: feed.clone(),
        };
        let applier_store = store.clone();
        tasks.spawn_blocking(move || {
            applier::run(committed, checkpoint, applier_store, announce, stop)
        });
        Ok(Ingest {
            store,
            unapplied,
            queue,
            applied: applied_rx,
            feed,
        })
    }

    /// The first answer remembered for an idempotency key, if it has not expired:
    /// committed requests are known before they are applied.
    pub fn idempotency(
        &self,
        key: &[u8],
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let pending = self.unapplied.lock().get(key).cloned();
        match pending {
            Some(record) => Ok(Some(record).filter(|r| r.expires_at > now)),
            None => self.store.idempotency(key, now),
        }
    }

    /// Makes `accepted` durable; returns its journal sequence once it is on disk.
    pub async fn submit(&self, accepted: Accepted) -> Result<u64, IngestError> {
        let (done, result) = oneshot::channel();
        self.queue
            .send(Pending { accepted, done })
            .await
            .map_err(|_| IngestError::Stopped)?;
        result.await.map_err(|_| IngestError::Stopped)?
    }

    /// Waits until journal record `seq` is applied to the pool (for callers that
    /// answer only once their change is visible, such as deletes).
    pub async fn applied(&self, seq: u64) -> Result<(), IngestError> {
        let mut applied = self.applied.clone();
        applied
            .wait_for(|done| *done >= seq)
            .await
            .map_err(|_| IngestError::Stopped)?;
        Ok(())
    }

    /// Follows the changes of `stream` as they land (for SSE).
    pub fn changes(&self, stream: &str) -> StreamChanges {
        self.feed.follow(stream)
    }
}
