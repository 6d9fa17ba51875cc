//! Background sweeps: expired idempotency keys, connector log entries past 30 days,
//! changes older than the change log's retention (after which SSE clients resuming
//! from them get `event: reset`), subscription delivery logs and finished
//! deliveries past 30 days, and points of the fields' history past their stream's
//! retention or their field's cap.
//!
//! A pass starts every [`SWEEP_EVERY`]; it goes through the store in steps of at most
//! [`STEP_ENTRIES`] entries per sweep, a [`STEP_PAUSE`] apart, so that a large backlog
//! never holds the store's writers back for long.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::store::{HistorySweep, Store, StoreError, SweepStep};

/// How long the change log keeps a change (SPEC §5: 7 days).
pub const CHANGE_RETENTION: SignedDuration = SignedDuration::from_hours(7 * 24);
/// How long a connector's log keeps an entry (SPEC §7: 30 days).
pub const LOG_RETENTION: SignedDuration = SignedDuration::from_hours(30 * 24);
/// How often a pass starts.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Entries one step of a sweep looks at: a few milliseconds of work, during which the
/// store's writers (the applier among them) wait.
const STEP_ENTRIES: usize = 1_000;
/// Pause between the steps of a pass that has more to do: writers get the store for
/// most of the time, and a backlog of a million entries still clears in minutes.
const STEP_PAUSE: Duration = Duration::from_millis(100);

/// The sweeps, each with where its pass has got to.
#[derive(Debug, Default)]
struct Sweeps {
    /// Next key of each sweep's pass; `None` when it has no pass under way.
    cursors: [Option<Vec<u8>>; 3],
    /// Where the history sweep's pass has got to.
    history: HistorySweep,
}

/// The kinds of sweep, in the order of [`Sweeps::cursors`], then deliveries and history.
const KINDS: [&str; 5] = [
    "idempotency keys",
    "connector log entries",
    "changes",
    "deliveries",
    "history points",
];

impl Sweeps {
    /// One step of each sweep (a new pass for those that finished theirs), as of `now`;
    /// how many entries each removed. Blocking.
    fn step(&mut self, store: &Store, now: Timestamp) -> Result<[usize; 5], StoreError> {
        let before = |age: SignedDuration| now.checked_sub(age).unwrap_or(Timestamp::MIN);
        let fresh = !self.under_way();
        let mut removed = [0; 5];
        for (kind, cursor) in self.cursors.iter_mut().enumerate() {
            let from = cursor.take().unwrap_or_default();
            let SweepStep { removed: n, next } = match kind {
                0 => store.sweep_idempotency(now, &from, STEP_ENTRIES)?,
                1 => store.sweep_logs(before(LOG_RETENTION), &from, STEP_ENTRIES)?,
                _ => store.sweep_changes(before(CHANGE_RETENTION), &from, STEP_ENTRIES)?,
            };
            removed[kind] = n;
            *cursor = next;
        }
        // Deliveries are swept whole, once per pass: a subscription's finished
        // deliveries are few next to the logs and changes.
        if fresh {
            removed[3] = store.sweep_deliveries(before(LOG_RETENTION))?;
        }
        removed[4] = store.sweep_history(now, &mut self.history, STEP_ENTRIES)?;
        Ok(removed)
    }

    /// Whether a pass has more to do.
    fn under_way(&self) -> bool {
        self.cursors.iter().any(Option::is_some) || self.history.under_way()
    }
}

/// The time the sweeps judge ages by: now, or in tests as many days later as the
/// `retention::days_ahead` fail point says, so that a test sees retention at work
/// without waiting for it.
fn sweep_clock() -> Timestamp {
    let now = Timestamp::now();
    fail::fail_point!("retention::days_ahead", |days: Option<String>| {
        let days: i64 = days.and_then(|d| d.parse().ok()).unwrap_or(0);
        now.checked_add(SignedDuration::from_hours(24 * days))
            .unwrap_or(now)
    });
    now
}

/// Sweeps until `stop` fires: a pass at start and every [`SWEEP_EVERY`] after, in
/// bounded steps.
pub async fn run(store: Store, stop: CancellationToken) {
    let mut sweeps = Sweeps::default();
    // The first pass starts at once: a server that was down has a backlog.
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        let store = store.clone();
        let stepped = tokio::task::spawn_blocking(move || {
            let removed = sweeps.step(&store, sweep_clock());
            (sweeps, removed)
        })
        .await;
        match stepped {
            Ok((after, removed)) => {
                sweeps = after;
                match removed {
                    Ok(removed) => {
                        for (kind, n) in KINDS.iter().zip(removed).filter(|(_, n)| *n > 0) {
                            tracing::debug!(removed = n, kind, "retention sweep");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "retention sweep failed"),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "retention sweep task failed");
                sweeps = Sweeps::default();
            }
        }
        wait = if sweeps.under_way() {
            STEP_PAUSE
        } else {
            SWEEP_EVERY
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LogEntry, LogLevel};
    use crate::store::{Accepted, IdempotencyRecord};

    fn log_entry(at: Timestamp) -> LogEntry {
        LogEntry {
            at,
            level: LogLevel::Info,
            event: "push".into(),
            message: "pushed".into(),
            items: None,
            count: None,
            duration_ms: None,
        }
    }

    #[test]
    fn a_backlog_is_swept_in_bounded_steps_until_the_pass_ends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let now = Timestamp::now();
        let old = now - SignedDuration::from_hours(31 * 24);
        let backlog = 2 * STEP_ENTRIES + 10;
        let entries: Vec<(String, LogEntry)> = (0..backlog)
            .map(|n| (format!("c_{}", n % 3), log_entry(old)))
            .chain([("c_1".to_owned(), log_entry(now))])
            .collect();
        store.append_logs(&entries).expect("logs");
        let expired = IdempotencyRecord {
            body: serde_json::json!({}),
            body_sha256: String::new(),
            expires_at: now - SignedDuration::from_secs(1),
        };
        let kept = IdempotencyRecord {
            expires_at: now + SignedDuration::from_hours(1),
            ..expired.clone()
        };
        let write = |key: &str, record: &IdempotencyRecord, seq: u64| {
            let upsert = crate::model::Upsert {
                id: seq.to_string(),
                fields: serde_json::Map::new(),
            };
            let mut accepted = Accepted::for_test("s", "c_1", vec![upsert], Vec::new());
            accepted.idempotency = Some((key.as_bytes().to_vec(), record.clone()));
            store.apply(&[(seq, accepted)]).expect("apply");
        };
        write("c_1\0old", &expired, 1);
        write("c_1\0new", &kept, 2);

        let mut sweeps = Sweeps::default();
        let mut logs_removed = Vec::new();
        let mut keys_removed = 0;
        loop {
            let removed = sweeps.step(&store, now).expect("step");
            assert!(removed[1] <= STEP_ENTRIES, "a step is bounded");
            logs_removed.push(removed[1]);
            keys_removed += removed[0];
            if !sweeps.under_way() {
                break;
            }
        }
        assert_eq!(logs_removed.iter().sum::<usize>(), backlog);
        assert!(logs_removed.len() >= 3, "{logs_removed:?}");
        assert_eq!(keys_removed, 1);
        assert_eq!(store.logs("c_1", None, 10).expect("logs").0.len(), 1);
        assert!(store.idempotency(b"c_1\0new", now).expect("key").is_some());
        assert!(store
            .idempotency(b"c_1\0old", now - SignedDuration::from_hours(1))
            .expect("key")
            .is_none());
    }
}
