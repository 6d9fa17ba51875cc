//! What connectors have been doing, counted in memory and written to their logs in
//! aggregated entries every few seconds, so a flood of rejected requests or a poll
//! every second costs counters, not disk writes or log lines (SPEC §3.1, §7).
//! A connector that starts failing, or works again, is also announced to subscribers
//! (`connector.error`, `connector.recovered`, SPEC §6): once per change of state.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::http::ApiError;
use crate::metrics::Metrics;
use crate::model::{
    ActivitySummary, Connector, ConnectorState, ConnectorType, EventCode, LogEntry, LogLevel,
};
use crate::store::{Store, StoreError};

/// How often aggregated entries and summaries are written: a busy connector gets one
/// `push` entry a minute, not one per request. Reading the log or the monitoring
/// summary writes what is pending first.
const FLUSH_EVERY: Duration = Duration::from_secs(60);
/// At most one process-log line per connector or client address in this period.
const PROCESS_LOG_EVERY: Duration = Duration::from_secs(60);
/// Throttle entries kept at once; older ones are dropped first.
const MAX_THROTTLED: usize = 10_000;

/// Error codes that mean the sender or its data is wrong: they put the connector in
/// Error until the next success. Other refusals (paused, rate limited) are warnings.
const FAILURES: [&str; 6] = [
    "UNAUTHORIZED",
    "INVALID_SIGNATURE",
    "INVALID_PAYLOAD",
    "PAYLOAD_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE",
    "STREAM_NOT_FOUND",
];

/// Counts per connector since the last flush, plus its state summary.
#[derive(Default)]
struct Tracked {
    summary: ActivitySummary,
    summary_changed: bool,
    requests: u64,
    items: u64,
    handling: Duration,
    /// When the last of `requests` was accepted.
    last_accepted: Option<Timestamp>,
    /// Refusals by code: how many, the last message, and when the last happened.
    refused: BTreeMap<&'static str, (u64, String, Timestamp)>,
    /// Successful polls since the last flush.
    polls: u64,
    /// Items the last of `polls` returned.
    poll_items: u64,
    /// Time the `polls` took together.
    polling: Duration,
    /// When the last of `polls` finished.
    last_polled: Option<Timestamp>,
    /// Entries written as they happen (recoveries, configuration, warnings).
    notes: Vec<LogEntry>,
}

impl Tracked {
    /// Marks a success at `now`; after failures, logs the recovery as `message`.
    /// Whether it was a recovery.
    fn succeeded(&mut self, now: Timestamp, message: &str) -> bool {
        let recovered = self.summary.failing_since.take().is_some();
        if recovered {
            self.notes
                .push(entry(now, LogLevel::Info, "recovered", message.to_owned()));
        }
        self.summary.last_success_at = Some(now);
        self.summary_changed = true;
        recovered
    }

    /// Marks a failure at `now`, unless one is already marked. Whether it was the
    /// first failure since the last success.
    fn failed(&mut self, now: Timestamp) -> bool {
        let first = self.summary.failing_since.is_none();
        if first {
            self.summary.failing_since = Some(now);
            self.summary_changed = true;
        }
        first
    }
}

/// The activity of every connector; shared by handlers and the flusher.
pub struct Activity {
    store: Store,
    tracked: Mutex<HashMap<String, Tracked>>,
    throttle: Mutex<HashMap<String, Instant>>,
    /// Where errors and poll durations are counted for `/metrics`.
    metrics: Arc<Metrics>,
}

impl Activity {
    /// A tracker writing to `store` and counting into `metrics`.
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        Activity {
            store,
            tracked: Mutex::default(),
            throttle: Mutex::default(),
            metrics,
        }
    }

    /// The connector's state now.
    pub fn state(&self, connector: &Connector) -> Result<ConnectorState, StoreError> {
        let summary = self.with(&connector.id, |t| t.summary.clone())?;
        Ok(summary.state(connector, Timestamp::now()))
    }

    /// The connector's summary (last success, failing since).
    pub fn summary(&self, connector_id: &str) -> Result<ActivitySummary, StoreError> {
        self.with(connector_id, |t| t.summary.clone())
    }

    /// Counts an accepted request; a success after failures is logged and announced
    /// as a recovery.
    pub fn accepted(&self, connector_id: &str, items: usize, handling: Duration) {
        self.succeeded(connector_id, "data is accepted again", |t, now| {
            t.requests += 1;
            t.items += items as u64;
            t.handling += handling;
            t.last_accepted = Some(now);
        });
    }

    /// Counts a refused request of a known connector.
    pub fn refused(&self, connector_id: &str, error: &ApiError) {
        let failure = error.status().is_server_error() || FAILURES.contains(&error.code());
        if failure {
            self.metrics.connector_error(connector_id);
        }
        let now = Timestamp::now();
        let failing = self.record(connector_id, |t| {
            let slot = t
                .refused
                .entry(error.code())
                .or_insert((0, String::new(), now));
            slot.0 += 1;
            slot.1 = error.message().to_owned();
            slot.2 = now;
            failure && t.failed(now)
        });
        if failing {
            let message = format!("a push was refused: {}", error.message());
            self.announce(connector_id, EventCode::ConnectorError, message);
        }
        if self.allow_process_log(connector_id) {
            tracing::warn!(%connector_id, code = error.code(), "refusing pushes to this connector (at most one line a minute)");
        }
    }

    /// Counts a successful poll of `items` items; the first after failures is logged as
    /// a recovery.
    pub fn polled(&self, connector_id: &str, items: usize, took: Duration) {
        self.succeeded(connector_id, "polling works again", |t, now| {
            t.polls += 1;
            t.poll_items = items as u64;
            t.polling += took;
            t.last_polled = Some(now);
        });
    }

    /// Counts a success with `count`; the first after failures is logged and announced
    /// as a recovery, with `message`.
    fn succeeded(
        &self,
        connector_id: &str,
        message: &'static str,
        count: impl FnOnce(&mut Tracked, Timestamp),
    ) {
        let now = Timestamp::now();
        let recovered = self.record(connector_id, |t| {
            count(t, now);
            t.succeeded(now, message)
        });
        if recovered {
            self.announce(connector_id, EventCode::ConnectorRecovered, message.into());
        }
    }

    /// Logs a failed poll (an `error` entry with the reason) and puts the connector in
    /// Error until a poll succeeds; the first failure is announced.
    pub fn poll_failed(&self, connector_id: &str, message: String) {
        self.metrics.connector_error(connector_id);
        let now = Timestamp::now();
        let announced = message.clone();
        let failing = self.record(connector_id, |t| {
            t.notes.push(entry(now, LogLevel::Error, "error", message));
            t.failed(now)
        });
        if failing {
            self.announce(connector_id, EventCode::ConnectorError, announced);
        }
    }

    /// Counts a poll of a `kind` connector, successful or not, that took `took`.
    pub fn poll_took(&self, kind: ConnectorType, took: Duration) {
        self.metrics.poll_took(kind, took);
    }

    /// Notes a refusal that no connector can be named for (an unknown or wrong key).
    pub fn refused_unknown(&self, client: Option<IpAddr>) {
        let who = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        if self.allow_process_log(&format!("client {who}")) {
            tracing::warn!(client = %who, "refusing pushes with a missing or invalid ingest key (at most one line a minute)");
        }
    }

    /// Adds an entry to a connector's log as it happens.
    pub fn note(&self, connector_id: &str, level: LogLevel, event: &str, message: String) {
        let note = entry(Timestamp::now(), level, event, message);
        self.record(connector_id, |t| t.notes.push(note));
    }

    /// Forgets a deleted connector; its log may hold 30 days of entries, so they are
    /// removed off the async runtime.
    pub async fn forget(&self, connector_id: &str) -> Result<(), StoreError> {
        self.tracked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(connector_id);
        let id = connector_id.to_owned();
        self.store
            .blocking(move |store| store.forget_activity(&id))
            .await
    }

    /// Writes what was counted since the last flush as log entries, and changed
    /// summaries. Blocking: call it off the async runtime.
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut entries = Vec::new();
        let mut summaries = Vec::new();
        {
            let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
            for (id, t) in tracked.iter_mut() {
                entries.extend(t.notes.drain(..).map(|e| (id.clone(), e)));
                if let Some(at) = t.last_accepted.take() {
                    let average = t.handling.as_millis() / u128::from(t.requests.max(1));
                    let message = format!("{} accepted", requests(t.requests));
                    let mut push = entry(at, LogLevel::Info, "push", message);
                    push.items = Some(t.items);
                    push.count = Some(t.requests);
                    push.duration_ms = Some(u64::try_from(average).unwrap_or(u64::MAX));
                    entries.push((id.clone(), push));
                    (t.requests, t.items, t.handling) = (0, 0, Duration::ZERO);
                }
                if let Some(at) = t.last_polled.take() {
                    entries.push((id.clone(), poll_entry(t, at)));
                    (t.polls, t.polling) = (0, Duration::ZERO);
                }
                for (code, (count, message, at)) in std::mem::take(&mut t.refused) {
                    let level = if FAILURES.contains(&code) {
                        LogLevel::Error
                    } else {
                        LogLevel::Warn
                    };
                    let message = format!("{} rejected: {code}: {message}", requests(count));
                    let mut refused = entry(at, level, "rejected", message);
                    refused.count = Some(count);
                    entries.push((id.clone(), refused));
                }
                if std::mem::take(&mut t.summary_changed) {
                    summaries.push((id.clone(), t.summary.clone()));
                }
            }
        }
        if !entries.is_empty() {
            self.store.append_logs(&entries)?;
        }
        for (id, summary) in summaries {
            self.store.save_activity(&id, &summary)?;
        }
        Ok(())
    }

    /// Records activity: bookkeeping must never fail the request it describes, so a
    /// store error here is logged and the activity dropped.
    fn record<T: Default>(&self, connector_id: &str, f: impl FnOnce(&mut Tracked) -> T) -> T {
        self.with(connector_id, f).unwrap_or_else(|error| {
            tracing::warn!(%connector_id, %error, "connector activity could not be recorded");
            T::default()
        })
    }

    /// Enqueues `event` of a connector for its subscribers. The outbox write is a
    /// durable store change, so on the runtime it runs on a blocking thread.
    fn announce(&self, connector_id: &str, event: EventCode, message: String) {
        let store = self.store.clone();
        let id = connector_id.to_owned();
        let work = move || {
            let enqueued = store.connector(&id).and_then(|connector| match connector {
                Some(connector) => store.enqueue_connector_event(event, &connector, &message),
                None => Ok(0),
            });
            if let Err(error) = enqueued {
                tracing::warn!(connector_id = %id, event = event.as_str(), %error, "a connector event could not be enqueued for subscribers");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(work)),
            Err(_) => work(),
        }
    }

    /// Runs `f` on the connector's counters, loading its summary on first use.
    fn with<T>(
        &self,
        connector_id: &str,
        f: impl FnOnce(&mut Tracked) -> T,
    ) -> Result<T, StoreError> {
        let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        if !tracked.contains_key(connector_id) {
            let summary = self.store.activity(connector_id)?;
            tracked.insert(
                connector_id.to_owned(),
                Tracked {
                    summary,
                    ..Tracked::default()
                },
            );
        }
        let t = tracked.get_mut(connector_id).ok_or(StoreError::NotFound)?;
        Ok(f(t))
    }

    fn allow_process_log(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut throttle = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
        if throttle.len() >= MAX_THROTTLED {
            throttle.retain(|_, at| now.duration_since(*at) < PROCESS_LOG_EVERY);
        }
        match throttle.get(key) {
            Some(at) if now.duration_since(*at) < PROCESS_LOG_EVERY => false,
            _ => {
                throttle.insert(key.to_owned(), now);
                true
            }
        }
    }
}

fn requests(count: u64) -> String {
    if count == 1 {
        "1 request".to_owned()
    } else {
        format!("{count} requests")
    }
}

/// The aggregated `poll` entry of the polls counted since the last flush.
fn poll_entry(t: &Tracked, at: Timestamp) -> LogEntry {
    let average = t.polling.as_millis() / u128::from(t.polls.max(1));
    let message = match t.polls {
        1 => format!("polled: {} items", t.poll_items),
        n => format!("{n} polls; the last returned {} items", t.poll_items),
    };
    let mut poll = entry(at, LogLevel::Info, "poll", message);
    poll.items = Some(t.poll_items);
    poll.count = Some(t.polls);
    poll.duration_ms = Some(u64::try_from(average).unwrap_or(u64::MAX));
    poll
}

fn entry(at: Timestamp, level: LogLevel, event: &str, message: String) -> LogEntry {
    LogEntry {
        at,
        level,
        event: event.to_owned(),
        message,
        items: None,
        count: None,
        duration_ms: None,
    }
}

/// Flushes every `FLUSH_EVERY` (a minute) until `stop` fires, then once more.
pub async fn run_flusher(activity: Arc<Activity>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.cancelled() => true,
        };
        let activity = activity.clone();
        match tokio::task::spawn_blocking(move || activity.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "writing connector activity failed"),
            Err(error) => tracing::warn!(%error, "the activity flush task failed"),
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_forgotten_connector_leaves_nothing_for_the_next_flush() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let activity = Activity::new(store.clone(), Arc::default());
        for id in ["c_kept", "c_gone"] {
            activity.accepted(id, 3, Duration::from_millis(2));
            activity.note(id, LogLevel::Info, "config", "changed".into());
        }
        activity.flush().expect("flush");
        activity.accepted("c_gone", 1, Duration::from_millis(1));
        activity.forget("c_gone").await.expect("forget");
        activity.flush().expect("flush");
        assert!(store.logs("c_gone", None, 10).expect("log").0.is_empty());
        assert_eq!(
            store.activity("c_gone").expect("summary"),
            ActivitySummary::default(),
            "no summary is kept"
        );
        assert!(store
            .activity("c_kept")
            .expect("summary")
            .last_success_at
            .is_some());
        assert_eq!(store.logs("c_kept", None, 10).expect("log").0.len(), 2);
    }
}
