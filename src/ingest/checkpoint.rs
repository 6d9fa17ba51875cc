//! The checkpoint, in two steps. About once a second while writes are being applied,
//! the applier flushes the pool between two passes ([`Checkpoint`]); then
//! [`sync_and_release`], a task beside it, `fdatasync`s the pool's files and deletes the
//! journal files the flush covers.
//!
//! The flush runs on the applier's thread, never beside a pass: a flush holds sled's
//! memory reclamation back while it runs, and passes applied meanwhile left their
//! garbage waiting (a 64 MiB bulk import into a fresh store peaked about 10 MiB higher
//! with the whole checkpoint on a thread of its own). The second step stays off that
//! thread: deleting a 64 MiB journal file takes 20 – 30 ms here, long enough to fill
//! the queue of committed groups under load and hold 202s back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::metrics::{Metrics, Stage};
use crate::store::Store;

/// How often the pool is made durable. Journal files wait about this long at most,
/// after being applied, before they can be deleted.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// When the next flush is due, and running it; owned by the applier.
pub(super) struct Checkpoint {
    store: Store,
    /// The applied mark the last flush covers, for [`sync_and_release`].
    flushed: watch::Sender<u64>,
    /// The applied mark passes have reached.
    applied: u64,
    /// When the last flush began.
    last: Instant,
    /// Told how long each flush takes.
    metrics: Arc<Metrics>,
}

impl Checkpoint {
    /// A checkpoint over `store`, whose pool is durable up to the applied mark that
    /// `flushed` holds; each flush's duration goes to `metrics`.
    pub(super) fn new(store: Store, flushed: watch::Sender<u64>, metrics: Arc<Metrics>) -> Self {
        let applied = *flushed.borrow();
        Checkpoint {
            store,
            flushed,
            applied,
            last: Instant::now(),
            metrics,
        }
    }

    /// Notes that the journal is applied up to `seq`.
    pub(super) fn applied(&mut self, seq: u64) {
        self.applied = self.applied.max(seq);
    }

    /// How long until the next flush is due; `None` when the last one covers
    /// everything applied, so there is nothing to wait for.
    pub(super) fn due_in(&self) -> Option<Duration> {
        (self.applied > *self.flushed.borrow())
            .then(|| (self.last + CHECKPOINT_EVERY).saturating_duration_since(Instant::now()))
    }

    /// Flushes the pool if a flush is due, and hands its mark to [`sync_and_release`].
    /// A failure is logged and retried a second later; the journal keeps everything
    /// meanwhile.
    pub(super) fn run_if_due(&mut self) {
        if self.due_in() != Some(Duration::ZERO) {
            return;
        }
        self.last = Instant::now();
        let flushed = self.store.flush_applied();
        self.metrics
            .stage_took(Stage::Checkpoint, self.last.elapsed());
        match flushed {
            Ok(covered) => {
                self.flushed.send_replace(covered);
            }
            Err(error) => tracing::warn!(
                %error,
                "flushing the pool failed; the journal keeps everything until a checkpoint succeeds"
            ),
        }
    }
}

/// Syncs the pool's files and deletes the journal files each flush covers, until the
/// applier is gone (the shutdown's final flush does the last checkpoint). A failure
/// is logged; the next flush tries again.
pub(super) async fn sync_and_release(store: Store, mut flushed: watch::Receiver<u64>) {
    while flushed.changed().await.is_ok() {
        let mark = *flushed.borrow_and_update();
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.sync_and_release(mark)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(
                %error,
                "syncing the pool failed; the journal keeps everything until a checkpoint succeeds"
            ),
            Err(error) => tracing::warn!(%error, "checkpoint task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Accepted;

    /// Backdates the last flush so that the next one is due now.
    fn make_due(checkpoint: &mut Checkpoint) {
        checkpoint.last = Instant::now()
            .checked_sub(CHECKPOINT_EVERY)
            .expect("the clock is past one interval");
    }

    #[test]
    fn a_flush_falls_due_an_interval_after_the_last_once_something_is_applied() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let (flushed, marks) = watch::channel(0);
        let mut checkpoint = Checkpoint::new(store.clone(), flushed, Arc::default());
        assert_eq!(
            checkpoint.due_in(),
            None,
            "nothing applied: nothing to wait for"
        );

        let record = Accepted::for_test("s", "c_1", Vec::new(), vec!["gone".into()]);
        store.apply(&[(1, record)]).expect("apply");
        checkpoint.applied(1);
        let wait = checkpoint.due_in().expect("due once something is applied");
        assert!(
            wait > Duration::ZERO && wait <= CHECKPOINT_EVERY,
            "{wait:?}"
        );
        checkpoint.run_if_due();
        assert_eq!(*marks.borrow(), 0, "not run before it is due");

        make_due(&mut checkpoint);
        assert_eq!(checkpoint.due_in(), Some(Duration::ZERO));
        checkpoint.run_if_due();
        assert_eq!(*marks.borrow(), 1, "the flush covers what is applied");
        assert_eq!(checkpoint.due_in(), None);
    }
}
