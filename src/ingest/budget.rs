//! The byte budget of accepted writes not yet applied: what the committer's queue, the
//! committed groups waiting for the applier and the applier's pass hold in memory.
//! Bounding bytes rather than requests keeps memory bounded whatever the requests'
//! sizes (4096 queued requests of 1 MiB each would be 4 GiB).
//!
//! A write takes its share (its body's size, in KiB) before it is queued and gives it
//! back once it is applied; past the budget a push is refused with 503 and
//! `Retry-After` (or, for a bulk import, waits).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::IngestError;

/// The unit of the budget: a permit is a KiB, so a budget of some GiB still fits the
/// semaphore's permit count and a small request costs one permit.
const UNIT_BYTES: usize = 1024;

/// How a write pays for the memory it holds until it is applied.
#[derive(Clone, Copy, Debug)]
pub enum Charge {
    /// `bytes` of budget, refused at once when there is not enough: a webhook or an
    /// ingest API push, whose sender retries after `Retry-After`.
    OrRefuse(usize),
    /// `bytes` of budget, waiting until there is enough: a chunk of a bulk import,
    /// which is one long request better slowed down than failed.
    OrWait(usize),
}

/// The budget, shared by the submitting handlers, the committer and the applier.
pub(super) struct Budget {
    permits: Arc<Semaphore>,
    /// The budget in units, the most one write can take.
    units: usize,
    /// Shares of committed groups by their last journal sequence, oldest first, given
    /// back once the applier is past that sequence.
    held: Mutex<VecDeque<(u64, Vec<OwnedSemaphorePermit>)>>,
}

impl Budget {
    /// A budget of `bytes` (at least one unit).
    pub(super) fn new(bytes: usize) -> Self {
        let units = bytes.div_ceil(UNIT_BYTES).max(1);
        Budget {
            permits: Arc::new(Semaphore::new(units)),
            units,
            held: Mutex::default(),
        }
    }

    /// Takes the share `charge` asks for.
    pub(super) async fn take(&self, charge: Charge) -> Result<OwnedSemaphorePermit, IngestError> {
        match charge {
            Charge::OrRefuse(bytes) => self
                .permits
                .clone()
                .try_acquire_many_owned(self.units_of(bytes))
                .map_err(|_| IngestError::Busy),
            Charge::OrWait(bytes) => self
                .permits
                .clone()
                .acquire_many_owned(self.units_of(bytes))
                .await
                .map_err(|_| IngestError::Stopped),
        }
    }

    /// The units `bytes` take: rounded up, and never more than the whole budget, so a
    /// write larger than the budget can still go through alone.
    fn units_of(&self, bytes: usize) -> u32 {
        let units = bytes.div_ceil(UNIT_BYTES).clamp(1, self.units);
        u32::try_from(units).unwrap_or(u32::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Vec<OwnedSemaphorePermit>)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the shares of a committed group until the applier is past `last_seq`.
    pub(super) fn hold(&self, last_seq: u64, shares: Vec<OwnedSemaphorePermit>) {
        if !shares.is_empty() {
            self.lock().push_back((last_seq, shares));
        }
    }

    /// Gives back the shares of every group applied up to `applied`.
    pub(super) fn release_through(&self, applied: u64) {
        let mut held = self.lock();
        while held.front().is_some_and(|(seq, _)| *seq <= applied) {
            held.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shares_are_refused_past_the_budget_and_given_back_once_applied() {
        let budget = Budget::new(4 * UNIT_BYTES);
        let first = budget.take(Charge::OrRefuse(3 * UNIT_BYTES)).await;
        let first = first.expect("within the budget");
        assert!(matches!(
            budget.take(Charge::OrRefuse(2 * UNIT_BYTES)).await,
            Err(IngestError::Busy)
        ));
        budget.hold(7, vec![first]);
        budget.release_through(6);
        assert!(budget.take(Charge::OrRefuse(2 * UNIT_BYTES)).await.is_err());
        budget.release_through(7);
        let again = budget.take(Charge::OrRefuse(2 * UNIT_BYTES)).await;
        assert!(again.is_ok(), "given back once applied");
        let whole = budget.take(Charge::OrWait(100 * UNIT_BYTES));
        drop(again);
        assert!(whole.await.is_ok(), "a write over the budget goes alone");
    }
}
