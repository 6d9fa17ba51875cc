//! From an accepted request to a visible change: the group committer makes each
//! request durable (journal + idempotency key, flushed and synced) before its 202, and
//! the applier moves journal records into the pool in order and announces the changes.
//!
//! ```text
//! handler ─submit─► committer ──commit (one fsync per group)──► journal
//!                                   │ committed seq (watch)
//!                                   ▼
//!                               applier ──apply (one transaction per record)──► pool + changes
//!                                   │ last change seq (watch): SSE, subscriptions
//! ```

mod applier;
mod committer;
pub mod retention;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{Accepted, Store, StoreError};

/// Requests that may wait for the committer at once. Past it, submitting waits, and
/// the HTTP layer's in-flight cap answers 503 before this fills.
const QUEUE_CAPACITY: usize = 4096;

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

/// The handle handlers use to submit writes; cheap to clone. When the last clone is
/// dropped (the HTTP layer has stopped), the committer commits what is queued and
/// stops, and the applier applies what is committed and stops.
#[derive(Clone)]
pub struct Ingest {
    queue: mpsc::Sender<Pending>,
    applied: watch::Receiver<u64>,
    changes: watch::Receiver<u64>,
}

impl Ingest {
    /// Starts the committer and the applier on `tasks`. The applier first replays what
    /// the journal holds from before a restart.
    pub fn start(
        store: Store,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<Ingest, StoreError> {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let applied_seq = store.applied_seq()?;
        let (committed_tx, committed_rx) = watch::channel(applied_seq);
        let (applied_tx, applied_rx) = watch::channel(applied_seq);
        let (changes_tx, changes_rx) = watch::channel(store.last_change_seq()?);
        tasks.spawn(committer::run(store.clone(), receiver, committed_tx));
        tasks.spawn(applier::run(
            store,
            committed_rx,
            applied_tx,
            changes_tx,
            stop,
        ));
        Ok(Ingest {
            queue,
            applied: applied_rx,
            changes: changes_rx,
        })
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

    /// The last change sequence applied, changing as changes land (for SSE).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }
}
