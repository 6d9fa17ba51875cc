//! Token buckets per connector: `perSecond` sustained, `burst` at once (SPEC §3.1).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::RateLimit;

/// The bucket a connector gets unless its document sets `rateLimit` (SPEC §3.1).
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    per_second: 100.0,
    burst: 200,
};
/// Buckets kept at once; past it, buckets idle for a minute are dropped (an idle
/// bucket is full, so dropping it changes nothing).
const MAX_BUCKETS: usize = 10_000;

/// One bucket per connector id.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// Takes one token from `id`'s bucket, or says how long until one is available.
    pub fn take(&self, id: &str, limit: &RateLimit) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(id) {
            buckets.retain(|_, b| now.duration_since(b.refilled) < Duration::from_secs(60));
        }
        let burst = f64::from(limit.burst);
        if !buckets.contains_key(id) {
            let full = Bucket {
                tokens: burst,
                refilled: now,
            };
            buckets.insert(id.to_owned(), full);
        }
        let Some(bucket) = buckets.get_mut(id) else {
            return Ok(());
        };
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / limit.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_the_wait() {
        let limiter = RateLimiter::default();
        let limit = RateLimit {
            per_second: 1.0,
            burst: 3,
        };
        for _ in 0..3 {
            assert!(limiter.take("c_1", &limit).is_ok());
        }
        let wait = limiter.take("c_1", &limit).expect_err("empty");
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::from_millis(900),
            "{wait:?}"
        );
        assert!(
            limiter.take("c_2", &limit).is_ok(),
            "buckets are per connector"
        );
    }
}
