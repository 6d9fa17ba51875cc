//! A latency histogram made of atomics: observing costs a binary search over the
//! bounds and two relaxed atomic adds, with no lock, so the hot paths (every push, every
//! group commit) can afford one per stage.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{MetricEncoder, NoLabelSet};

/// Bucket upper bounds in seconds: from a tenth of a millisecond, below one journal
/// `fdatasync` on a fast SSD, to a minute, a slow SQL poll. Every histogram shares
/// them, so stages can be compared bucket by bucket.
const BOUNDS_SECONDS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// [`BOUNDS_SECONDS`] in nanoseconds, the unit observations are counted in.
const BOUNDS_NANOS: [u64; BOUNDS_SECONDS.len()] = {
    let mut nanos = [0; BOUNDS_SECONDS.len()];
    let mut i = 0;
    while i < nanos.len() {
        nanos[i] = (BOUNDS_SECONDS[i] * 1e9) as u64;
        i += 1;
    }
    nanos
};

/// Durations counted by bucket, with their sum.
pub struct Histogram {
    /// Observations per bucket, not cumulative; the last one is past every bound.
    buckets: [AtomicU64; BOUNDS_SECONDS.len() + 1],
    /// The sum of the observations, in nanoseconds (585 years fit).
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

impl Histogram {
    /// Counts one duration.
    pub fn observe(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS.partition_point(|bound| *bound < nanos);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Writes the histogram. A scrape racing an observation may see its bucket but not
    /// yet its sum: off by one duration until the next scrape.
    pub(super) fn encode(&self, mut encoder: MetricEncoder<'_>) -> fmt::Result {
        let bounds = BOUNDS_SECONDS.iter().copied().chain([f64::MAX]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.buckets)
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_lands_in_the_first_bucket_whose_bound_holds_it() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(100));
        histogram.observe(Duration::from_micros(101));
        histogram.observe(Duration::from_secs(3600));
        let counts: Vec<u64> = histogram
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts[0], 1, "100 µs is within the 0.1 ms bound");
        assert_eq!(counts[1], 1, "101 µs is past it");
        assert_eq!(
            counts[BOUNDS_SECONDS.len()],
            1,
            "an hour is past every bound"
        );
        assert_eq!(histogram.count(), 3);
        assert_eq!(
            histogram.sum_nanos.load(Ordering::Relaxed),
            3_600_000_201_000
        );
    }
}
