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
mod budget;
mod checkpoint;
mod committer;
mod feed;
mod health;
mod pacer;
pub mod retention;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::{Metrics, Stage};
use crate::store::{Accepted, IdempotencyRecord, Store, StoreError};
use applier::Announce;
use budget::Budget;
pub use budget::Charge;
use checkpoint::Checkpoint;
pub use feed::{ChangeFeed, StreamChanges};
pub use health::Health;

/// Requests that may wait for the committer at once. The HTTP layer's in-flight cap
/// answers 503 before this fills; their memory is bounded by the byte budget
/// ([`Charge`]), not by this count.
const QUEUE_CAPACITY: usize = 4096;
/// Committed groups that may wait for the applier; past it, the committer waits, which
/// holds new 202s back. Their memory is bounded by the byte budget, not by this count,
/// which only has to outlast a checkpoint's pause of the applier: at a commit every
/// 50 µs, 1,024 groups are 50 ms of them.
const APPLY_QUEUE_GROUPS: usize = 1024;
/// `Retry-After` of a push refused because accepted writes fill the byte budget: the
/// applier usually frees budget within a second.
const BUSY_RETRY_AFTER_SECONDS: u64 = 1;
/// `Retry-After` of a push refused because writes cannot be applied: recovery takes a
/// restart, which a supervisor makes within seconds.
const FAILING_RETRY_AFTER_SECONDS: u64 = 10;

/// Why a write was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store could not make it durable.
    #[error("the write could not be made durable: {0}")]
    Store(String),
    /// The server is stopping and takes no more writes.
    #[error("the server is shutting down")]
    Stopped,
    /// Accepted writes waiting to be applied fill the byte budget.
    #[error("too many accepted writes are waiting to be applied; retry shortly")]
    Busy,
    /// The store refuses to apply accepted writes.
    #[error("the store cannot apply accepted writes; datapool needs a restart (see its log)")]
    StoreFailing,
    /// The applier has stopped; the server is exiting.
    #[error("accepted writes are no longer applied; datapool is restarting")]
    ApplierDied,
    /// Writes accepted before the restart are still being applied from the journal.
    #[error("replaying the journal: writes accepted before the restart are not all applied yet ({left} to go), so reads do not show them")]
    Replaying {
        /// Journal records still to apply.
        left: u64,
    },
    /// The request's journal record, its items as stored, is over the journal's limit.
    #[error("the request's items come to {bytes} bytes as stored, over the {max}-byte limit of one write; send fewer or smaller items")]
    TooLarge {
        /// The record's size.
        bytes: usize,
        /// The journal's record limit.
        max: usize,
    },
}

impl IngestError {
    /// Seconds a refused sender should wait before retrying, for a refusal that passes.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            IngestError::Busy | IngestError::Replaying { .. } => Some(BUSY_RETRY_AFTER_SECONDS),
            IngestError::StoreFailing | IngestError::ApplierDied => {
                Some(FAILING_RETRY_AFTER_SECONDS)
            }
            IngestError::Store(_) | IngestError::Stopped | IngestError::TooLarge { .. } => None,
        }
    }
}

impl From<StoreError> for IngestError {
    fn from(error: StoreError) -> Self {
        IngestError::Store(error.to_string())
    }
}

/// Waits until the applied mark reaches `seq`, or fails once writes stop being applied.
async fn applied(
    mut applied: watch::Receiver<u64>,
    health: Arc<Health>,
    seq: u64,
) -> Result<(), IngestError> {
    tokio::select! {
        done = applied.wait_for(|done| *done >= seq) => {
            done.map_err(|_| IngestError::Stopped)?;
            Ok(())
        }
        error = health.failing() => Err(error),
    }
}

/// A request waiting for its group commit.
struct Pending {
    accepted: Accepted,
    /// Its share of the byte budget, given back once it is applied (none for writers
    /// that wait for each write to be applied).
    share: Option<OwnedSemaphorePermit>,
    /// Dropped once its commit's outcome is known, whether or not anyone waits for it.
    hold: Option<Hold>,
    /// When it was queued.
    queued: Instant,
    done: oneshot::Sender<Result<Durable, IngestError>>,
}

/// What a write holds until its commit's outcome is known, and then drops: the claim on
/// its idempotency key. Carried with the write rather than by its request, so that a
/// client that hangs up once the write is queued does not free the key for a retry
/// while the write may still commit.
pub type Hold = Box<dyn Send>;

/// A request's answer from the committer: its journal sequence, and when its group's
/// sync finished.
type Durable = (u64, Instant);

/// Committed records on their way to the applier, in journal order.
type Committed = Vec<(u64, Accepted)>;

/// A committed group as the committer hands it to the applier: its records, and when
/// its sync finished.
type CommittedGroup = (Instant, Committed);

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

    /// Adds the keys of records replayed from the journal, known before they are read.
    fn add_keys(&self, added: Vec<(Vec<u8>, IdempotencyRecord)>) {
        self.lock().extend(added);
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
    budget: Arc<Budget>,
    health: Arc<Health>,
    queue: mpsc::Sender<Pending>,
    applied: watch::Receiver<u64>,
    /// The last journal sequence there was to replay at start (the applied mark when
    /// there was none).
    replay_end: u64,
    /// The last journal sequence acknowledged to a writer.
    acknowledged: Arc<AtomicU64>,
    feed: Arc<ChangeFeed>,
    metrics: Arc<Metrics>,
}

impl Ingest {
    /// Opens the journal and starts the committer and the applier on `tasks`, with
    /// `budget_bytes` for accepted writes not yet applied. The applier first replays
    /// what the journal holds beyond the pool, in bounded groups read from the journal
    /// files as it goes. Every stage is timed into `metrics`.
    pub fn start(
        store: Store,
        tasks: &TaskTracker,
        stop: CancellationToken,
        (budget_bytes, metrics): (usize, Arc<Metrics>),
    ) -> Result<Ingest, StoreError> {
        let (journal, mut replay) = store.open_journal()?;
        if replay.records() > 0 {
            tracing::info!(
                records = replay.records(),
                "replaying accepted writes not yet applied"
            );
        }
        let applied_seq = store.applied_seq()?;
        // Journal sequences follow each other without gaps (opening checks that).
        let replay_end = applied_seq.saturating_add(replay.records());
        metrics.applied(applied_seq);
        metrics.committed(replay_end);
        let (queue, requests) = mpsc::channel(QUEUE_CAPACITY);
        let (to_applier, committed) = std::sync::mpsc::sync_channel(APPLY_QUEUE_GROUPS);
        let (applied_tx, applied_rx) = watch::channel(applied_seq);
        let feed = Arc::new(ChangeFeed::default());
        let unapplied = Arc::new(UnappliedKeys::default());
        unapplied.add_keys(replay.take_keys());
        let budget = Arc::new(Budget::new(budget_bytes));
        let health = Arc::new(Health::default());
        let committer_keys = unapplied.clone();
        let committer_budget = budget.clone();
        let committer_health = health.clone();
        let committer_metrics = metrics.clone();
        let acknowledged = Arc::new(AtomicU64::new(journal.last_seq()));
        let committer_acknowledged = acknowledged.clone();
        tasks.spawn_blocking(move || {
            let marks = committer::Marks {
                unapplied: &committer_keys,
                budget: &committer_budget,
                acknowledged: &committer_acknowledged,
                metrics: &committer_metrics,
            };
            let run = || committer::run(journal, requests, to_applier, marks);
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).is_err() {
                committer_health.report_death("committer");
            }
        });
        let (flushed, flushes) = watch::channel(applied_seq);
        tasks.spawn(checkpoint::sync_and_release(store.clone(), flushes));
        let checkpoint = Checkpoint::new(store.clone(), flushed, metrics.clone());
        let announce = Announce {
            unapplied: unapplied.clone(),
            budget: budget.clone(),
            health: health.clone(),
            applied: applied_tx,
            feed: feed.clone(),
            metrics: metrics.clone(),
        };
        let applier_store = store.clone();
        let applier_health = health.clone();
        tasks.spawn_blocking(move || {
            let run = || applier::run(replay, committed, checkpoint, applier_store, announce, stop);
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).is_err() {
                applier_health.report_death("applier");
            }
        });
        Ok(Ingest {
            store,
            unapplied,
            budget,
            health,
            queue,
            applied: applied_rx,
            replay_end,
            acknowledged,
            feed,
            metrics,
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

    /// Makes `accepted` durable; returns its journal sequence once it is on disk. For
    /// writers that wait for their writes to be applied before making many more (SQL
    /// polls, deletes), so they take no share of the byte budget.
    pub async fn submit(&self, accepted: Accepted) -> Result<u64, IngestError> {
        self.health.check()?;
        self.enqueue(accepted, None, None).await
    }

    /// Like [`Ingest::submit`], paying for the memory the write holds until it is
    /// applied from the byte budget as `charge` says, and keeping `hold` until its
    /// commit's outcome is known.
    pub async fn submit_charged(
        &self,
        accepted: Accepted,
        charge: Charge,
        hold: Option<Hold>,
    ) -> Result<u64, IngestError> {
        self.health.check()?;
        // A write waiting for room gives up once writes stop being applied: the room
        // would never come.
        let share = tokio::select! {
            share = self.budget.take(charge) => share?,
            error = self.health.failing() => return Err(error),
        };
        self.enqueue(accepted, Some(share), hold).await
    }

    async fn enqueue(
        &self,
        accepted: Accepted,
        share: Option<OwnedSemaphorePermit>,
        hold: Option<Hold>,
    ) -> Result<u64, IngestError> {
        let (done, result) = oneshot::channel();
        self.queue
            .send(Pending {
                accepted,
                share,
                hold,
                queued: Instant::now(),
                done,
            })
            .await
            .map_err(|_| IngestError::Stopped)?;
        let (seq, synced) = result.await.map_err(|_| IngestError::Stopped)??;
        self.metrics
            .stage_took(Stage::CommitReply, synced.elapsed());
        Ok(seq)
    }

    /// Waits until journal record `seq` is applied to the pool (for callers that
    /// answer only once their change is visible, such as deletes); fails at once when
    /// writes stop being applied.
    pub async fn applied(&self, seq: u64) -> Result<(), IngestError> {
        applied(self.applied.clone(), self.health.clone(), seq).await
    }

    /// Resolves once what the journal held at start is applied, so reads show every
    /// write accepted before the restart; fails when writes stop being applied. Holds
    /// no handle on the pipeline, so it does not keep it from stopping.
    pub fn replayed(&self) -> impl Future<Output = Result<(), IngestError>> + Send + 'static {
        applied(self.applied.clone(), self.health.clone(), self.replay_end)
    }

    /// Waits until every write acknowledged so far is applied to the pool (for a backup,
    /// which must hold every write acknowledged before it started); fails at once when
    /// writes stop being applied.
    pub async fn caught_up(&self) -> Result<(), IngestError> {
        self.applied(self.acknowledged.load(Ordering::Acquire))
            .await
    }

    /// Whether accepted writes are being applied and what the journal held at start
    /// is applied, for `/readyz`: a load balancer should not send readers to a server
    /// whose reads still miss acknowledged writes.
    pub fn ready(&self) -> Result<(), IngestError> {
        self.health.check()?;
        let applied = *self.applied.borrow();
        match self.replay_end.checked_sub(applied) {
            Some(left) if left > 0 => Err(IngestError::Replaying { left }),
            _ => Ok(()),
        }
    }

    /// The pipeline's health, for the server to exit when the applier dies.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Follows the changes of `stream` as they land (for SSE).
    pub fn changes(&self, stream: &str) -> StreamChanges {
        self.feed.follow(stream)
    }
}
