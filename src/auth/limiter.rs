//! Slows down credential guessing: failed admin/read authentications are counted per
//! client address, and past [`MAX_FAILURES_PER_MINUTE`] that address is refused for the
//! rest of its minute.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an address may make in one minute before it is refused (SPEC §2).
pub const MAX_FAILURES_PER_MINUTE: u32 = 20;
/// Addresses tracked at once; past this, expired windows are dropped first and, if
/// none has expired, the oldest one is, so a spray of source addresses cannot grow
/// memory without bound.
const MAX_TRACKED_ADDRESSES: usize = 10_000;
const WINDOW: Duration = Duration::from_secs(60);

/// Counts failed authentications per client address in one-minute windows.
#[derive(Debug, Default)]
pub struct FailedAuthLimiter {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

impl FailedAuthLimiter {
    /// How long `addr` must still wait, if it has used up its failures this minute.
    pub fn blocked_for(&self, addr: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let window = windows.get(&addr)?;
        let left = WINDOW.checked_sub(now.duration_since(window.started))?;
        (window.failures >= MAX_FAILURES_PER_MINUTE && !left.is_zero()).then_some(left)
    }

    /// Counts one failed authentication from `addr`; true when this one used up the
    /// address's allowance (once per window, so the caller can log it once).
    pub fn record_failure(&self, addr: IpAddr) -> bool {
        let now = Instant::now();
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() >= MAX_TRACKED_ADDRESSES && !windows.contains_key(&addr) {
            windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
            if windows.len() >= MAX_TRACKED_ADDRESSES {
                let oldest = windows
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(a, _)| *a);
                if let Some(oldest) = oldest {
                    windows.remove(&oldest);
                }
            }
        }
        let window = windows.entry(addr).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
        window.failures == MAX_FAILURES_PER_MINUTE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_only_past_the_limit() {
        let limiter = FailedAuthLimiter::default();
        let addr: IpAddr = "192.0.2.7".parse().expect("literal address");
        let other: IpAddr = "192.0.2.8".parse().expect("literal address");
        for _ in 0..MAX_FAILURES_PER_MINUTE - 1 {
            assert!(!limiter.record_failure(addr));
        }
        assert!(limiter.blocked_for(addr).is_none());
        assert!(
            limiter.record_failure(addr),
            "the failure that crosses the limit is reported"
        );
        assert!(!limiter.record_failure(addr), "and only that one");
        let wait = limiter.blocked_for(addr).expect("blocked after the limit");
        assert!(wait <= WINDOW);
        assert!(limiter.blocked_for(other).is_none());
    }

    #[test]
    fn tracked_addresses_stay_bounded() {
        let limiter = FailedAuthLimiter::default();
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 + 50) {
            limiter.record_failure(IpAddr::from(i.to_be_bytes()));
        }
        let tracked = limiter.windows.lock().expect("not poisoned").len();
        assert!(tracked <= MAX_TRACKED_ADDRESSES);
    }
}
