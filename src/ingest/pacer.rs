//! Pacing for the pipeline's batches. Under load, a step whose cost is mostly fixed
//! (the committer's `fdatasync`, the applier's store transaction) starts at most once
//! per interval, so each one serves more requests and the cores go to the requests
//! themselves; the first step after a quiet spell starts at once.

use std::time::{Duration, Instant};

/// Spaces the starts of batches at least an interval apart.
pub(super) struct Pacer {
    interval: Duration,
    last_start: Option<Instant>,
}

impl Pacer {
    /// A pacer whose first batch starts at once.
    pub(super) fn new(interval: Duration) -> Self {
        Pacer {
            interval,
            last_start: None,
        }
    }

    /// How long to wait before the next batch begins: until `interval` after the
    /// previous one began, or nothing when that is past. The batch counts as begun at
    /// the end of that wait. Call it once a batch's first piece has arrived; wait, then
    /// gather what else is waiting.
    pub(super) fn next_turn(&mut self) -> Duration {
        self.turn_at(Instant::now())
    }

    /// [`Pacer::next_turn`] as seen at `now`.
    fn turn_at(&mut self, now: Instant) -> Duration {
        let wait = self
            .last_start
            .map(|start| (start + self.interval).saturating_duration_since(now))
            .unwrap_or_default();
        self.last_start = Some(now + wait);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_waits_for_the_interval_only_when_the_last_one_began_within_it() {
        let ms = Duration::from_millis;
        let mut pacer = Pacer::new(ms(30));
        let start = Instant::now();
        assert_eq!(
            pacer.turn_at(start),
            ms(0),
            "the first batch waits for nothing"
        );
        assert_eq!(
            pacer.turn_at(start + ms(10)),
            ms(20),
            "the second waits for the rest of the interval"
        );
        assert_eq!(
            pacer.turn_at(start + ms(40)),
            ms(20),
            "the third counts from when the second began, after its wait"
        );
        assert_eq!(
            pacer.turn_at(start + ms(200)),
            ms(0),
            "after a quiet spell, none"
        );
    }
}
