//! Whether accepted writes can still be applied. sled 0.34 keeps failing every write
//! after one failed (until the store is reopened), so a store error would otherwise
//! leave the applier retrying while pushes queue up and hang; here it becomes one log
//! line, `/readyz` 503 and pushes answered 503 at once, until a restart.

use tokio::sync::watch;

use super::IngestError;

/// What the applier last reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Writes are applied.
    Working,
    /// The store refused the last attempt; the applier keeps retrying.
    StoreFailing,
    /// The committer or the applier thread ended abnormally: nothing more is applied in
    /// this process.
    ApplierDied,
}

/// Shared by the applier (which reports), the handlers and `/readyz` (which check) and
/// the server (which exits once the applier has died).
pub struct Health {
    state: watch::Sender<State>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: watch::Sender::new(State::Working),
        }
    }
}

impl Health {
    /// `Ok` while writes are applied; else why a new write is refused.
    pub fn check(&self) -> Result<(), IngestError> {
        match *self.state.borrow() {
            State::Working => Ok(()),
            State::StoreFailing => Err(IngestError::StoreFailing),
            State::ApplierDied => Err(IngestError::ApplierDied),
        }
    }

    /// Resolves once the applier has died: the process should exit so that its
    /// supervisor starts it again (the journal replays what was accepted).
    pub async fn applier_dead(&self) {
        let mut state = self.state.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = state.wait_for(|s| *s == State::ApplierDied).await;
    }

    /// Resolves once writes stop being applied, for callers waiting on the applier.
    pub(super) async fn failing(&self) -> IngestError {
        let mut state = self.state.subscribe();
        let _ = state.wait_for(|s| *s != State::Working).await;
        self.check().err().unwrap_or(IngestError::StoreFailing)
    }

    /// The store refused to apply a write: logged once, not on every retry.
    pub(super) fn report_store_failure(&self, error: &IngestError) {
        let changed = self.state.send_if_modified(|state| {
            let was = *state;
            if was == State::Working {
                *state = State::StoreFailing;
            }
            was == State::Working
        });
        if changed {
            tracing::error!(
                %error,
                "the store cannot apply accepted writes: pushes get 503 and /readyz 503 until it can; \
                 restart datapool to recover (accepted writes are kept in the journal and applied after the restart)"
            );
        }
    }

    /// A write was applied after failures.
    pub(super) fn report_store_recovery(&self) {
        let changed = self.state.send_if_modified(|state| {
            let was = *state;
            if was == State::StoreFailing {
                *state = State::Working;
            }
            was == State::StoreFailing
        });
        if changed {
            tracing::warn!("the store applies accepted writes again");
        }
    }

    /// The thread of `part` (the committer or the applier) panicked: nothing more is
    /// committed or applied in this process.
    pub(super) fn report_death(&self, part: &'static str) {
        self.state.send_replace(State::ApplierDied);
        tracing::error!(
            part,
            "the {part} stopped abnormally: accepted writes are no longer applied; \
             datapool exits so that its supervisor restarts it (the journal keeps every accepted write)"
        );
    }
}
