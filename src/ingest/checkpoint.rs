//! The checkpoint: about once a second while writes are being applied, the applier
//! flushes and syncs the pool between two passes, then deletes the journal files it
//! covers.
//!
//! It runs on the applier's thread, never beside a pass: a flush holds sled's memory
//! reclamation back while it runs, and passes applied meanwhile left their garbage
//! waiting (a 64 MiB bulk import into a fresh store peaked about 10 MiB higher with the
//! checkpoint on a thread of its own).

use std::time::{Duration, Instant};

use crate::store::Store;

/// How often the pool is made durable. Journal files wait about this long at most,
/// after being applied, before they can be deleted.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// When the next checkpoint is due, and running it.
pub(super) struct Checkpoint {
    store: Store,
    /// The applied mark the pool is durable up to.
    durable: u64,
    /// The applied mark passes have reached.
    applied: u64,
    /// When the last checkpoint began.
    last: Instant,
}

impl Checkpoint {
    /// A checkpoint over `store`, whose pool is durable up to `durable`.
    pub(super) fn new(store: Store, durable: u64) -> Self {
        Checkpoint {
            store,
            durable,
            applied: durable,
            last: Instant::now(),
        }
    }

    /// Notes that the journal is applied up to `seq`.
    pub(super) fn applied(&mut self, seq: u64) {
        self.applied = self.applied.max(seq);
    }

    /// How long until the next checkpoint is due; `None` when the pool is durable up to
    /// everything applied, so there is nothing to wait for.
    pub(super) fn due_in(&self) -> Option<Duration> {
        (self.applied > self.durable)
            .then(|| (self.last + CHECKPOINT_EVERY).saturating_duration_since(Instant::now()))
    }

    /// Flushes and syncs the pool if a checkpoint is due. A failure is logged and
    /// retried a second later; the journal keeps everything meanwhile.
    pub(super) fn run_if_due(&mut self) {
        if self.due_in() != Some(Duration::ZERO) {
            return;
        }
        self.last = Instant::now();
        match self.store.checkpoint() {
            Ok(covered) => self.durable = covered,
            Err(error) => tracing::warn!(
                %error,
                "checkpoint failed; the journal keeps everything until one succeeds"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Accepted;

    /// Backdates the last checkpoint so that the next one is due now.
    fn make_due(checkpoint: &mut Checkpoint) {
        checkpoint.last = Instant::now()
            .checked_sub(CHECKPOINT_EVERY)
            .expect("the clock is past one interval");
    }

    #[test]
    fn a_checkpoint_falls_due_an_interval_after_the_last_once_something_is_applied() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let mut checkpoint = Checkpoint::new(store.clone(), 0);
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
        assert_eq!(checkpoint.durable, 0, "not run before it is due");

        make_due(&mut checkpoint);
        assert_eq!(checkpoint.due_in(), Some(Duration::ZERO));
        checkpoint.run_if_due();
        assert_eq!(
            checkpoint.durable, 1,
            "the pool is durable up to what is applied"
        );
        assert_eq!(checkpoint.due_in(), None);
    }
}
