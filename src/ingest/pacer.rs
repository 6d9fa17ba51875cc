//! Pacing for the group committer's thread. Under load, a step whose cost is mostly
//! fixed (an `fdatasync`) starts at most once per interval, so each one serves more
//! requests and the cores go to the requests themselves; the first step after a quiet
//! spell starts at once.

use std::time::{Duration, Instant};

/// Spaces the starts of a thread's batches at least an interval apart.
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

    /// Sleeps until `interval` after the previous batch began (not at all when that is
    /// past), then marks a new batch as begun. Call it once a batch's first piece has
    /// arrived, before gathering what else is waiting. Blocking.
    pub(super) fn wait_turn(&mut self) {
        let due = self.last_start.map(|start| start + self.interval);
        if let Some(wait) = due.and_then(|due| due.checked_duration_since(Instant::now())) {
            std::thread::sleep(wait);
        }
        self.last_start = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_waits_for_the_interval_only_when_the_last_one_began_within_it() {
        let mut pacer = Pacer::new(Duration::from_millis(30));
        let started = Instant::now();
        pacer.wait_turn();
        assert!(
            started.elapsed() < Duration::from_millis(30),
            "the first batch waits for nothing"
        );
        pacer.wait_turn();
        assert!(
            started.elapsed() >= Duration::from_millis(30),
            "the second waits for the interval"
        );
        std::thread::sleep(Duration::from_millis(40));
        let quiet = Instant::now();
        pacer.wait_turn();
        assert!(
            quiet.elapsed() < Duration::from_millis(30),
            "after a quiet spell, none"
        );
    }
}
