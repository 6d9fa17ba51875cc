//! The SQL pollers: one task per enabled `sql` connector, polling at its interval
//! with jitter, never overlapping itself, backing off after failures (doubling, at
//! most 5 minutes) and writing each result through the same journal → pool path as
//! pushes. A supervisor keeps the set of tasks in step with the stored connectors: an
//! admin change wakes it, and it also looks every half minute.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::sql::{self, SqlError};
use super::Activity;
use crate::ingest::{Ingest, IngestError};
use crate::model::{Connector, LogLevel, Settings, SqlSettings, Upsert, Write};
use crate::store::{Accepted, Store, StoreError, MAX_WRITE_BYTES};

/// How often the supervisor compares its tasks with the store even without a wake-up,
/// so a missed notification costs at most this delay.
const RECONCILE_EVERY: Duration = Duration::from_secs(30);
/// Longest pause between attempts while a connector fails (SPEC §4.1).
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest random delay before a new task's first poll, so connectors started
/// together do not all hit their databases in the same instant.
const MAX_START_JITTER: Duration = Duration::from_secs(5);
/// Share of an interval added or taken at random, spreading polls of equal intervals.
const JITTER_SHARE: f64 = 0.1;
/// Items per journal record: a large result becomes several records, so no single
/// record or apply transaction grows with the result.
const ITEMS_PER_WRITE: usize = 1000;
/// A poll returning more rows than this gets one warning per task: a DataPool is meant
/// for what dashboards show, not bulk copies.
const WARN_ROWS: usize = 1000;

/// Why a poll wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The database or its result failed.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// The write could not be made durable.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The pool could not be read for mirroring.
    #[error("reading the pool failed: {0}")]
    Store(#[from] StoreError),
}

/// What the pollers need: where to read connectors and items, where to write, and
/// where to record what happened.
#[derive(Clone)]
pub struct PollContext {
    /// Connectors, and the pool a mirroring poll compares with.
    pub store: Store,
    /// The durable write path.
    pub ingest: Ingest,
    /// Connector state and logs.
    pub activity: Arc<Activity>,
}

/// The handle admin handlers use to tell the supervisor that connectors changed.
#[derive(Default)]
pub struct Pollers {
    wake: Notify,
}

impl Pollers {
    /// Starts the supervisor on `tasks`; it and every poller stop when `stop` fires.
    pub fn start(context: PollContext, tasks: &TaskTracker, stop: CancellationToken) -> Arc<Self> {
        let pollers = Arc::new(Pollers::default());
        tasks.spawn(supervise(pollers.clone(), context, tasks.clone(), stop));
        pollers
    }

    /// Asks the supervisor to start, restart or stop pollers after a connector changed.
    pub fn changed(&self) {
        self.wake.notify_one();
    }
}

/// A running poller: the connector revision it polls and the token that stops it.
struct Running {
    revision: u64,
    stop: CancellationToken,
}

/// Keeps one poller per enabled `sql` connector until `stop` fires.
async fn supervise(
    pollers: Arc<Pollers>,
    context: PollContext,
    tasks: TaskTracker,
    stop: CancellationToken,
) {
    let mut running = HashMap::new();
    loop {
        match context.store.connectors() {
            Ok(connectors) => reconcile(&mut running, connectors, &context, &tasks, &stop),
            Err(error) => tracing::warn!(%error, "reading connectors for the pollers failed"),
        }
        tokio::select! {
            _ = pollers.wake.notified() => {}
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Stops pollers whose connector is gone, disabled or changed, and starts the missing.
fn reconcile(
    running: &mut HashMap<String, Running>,
    connectors: Vec<Connector>,
    context: &PollContext,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) {
    let wanted: HashMap<String, Connector> = connectors
        .into_iter()
        .filter(|c| c.spec.enabled && matches!(c.spec.settings, Some(Settings::Sql(_))))
        .map(|c| (c.id.clone(), c))
        .collect();
    running.retain(|id, poller| {
        let keep = wanted
            .get(id)
            .is_some_and(|c| c.revision == poller.revision);
        if !keep {
            poller.stop.cancel();
        }
        keep
    });
    for (id, connector) in wanted {
        if running.contains_key(&id) {
            continue;
        }
        let token = stop.child_token();
        running.insert(
            id,
            Running {
                revision: connector.revision,
                stop: token.clone(),
            },
        );
        tasks.spawn(poll_loop(connector, context.clone(), token));
    }
}

/// Polls one connector until `stop` fires: at its interval after a success, backing
/// off after failures.
async fn poll_loop(connector: Connector, context: PollContext, stop: CancellationToken) {
    let Some(Settings::Sql(settings)) = connector.spec.settings.clone() else {
        return;
    };
    let id = connector.id.as_str();
    let interval = Duration::from_secs(settings.poll_interval());
    tracing::info!(connector_id = %id, interval_s = interval.as_secs(), "poller started");
    let mut delay = MAX_START_JITTER.min(interval).mul_f64(random_unit());
    let mut failures = 0u32;
    let mut warned = false;
    let mut noted = HashSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => break,
        }
        let started = Instant::now();
        let result = tokio::select! {
            result = poll(&connector, &settings, &context) => result,
            _ = stop.cancelled() => break,
        };
        context
            .activity
            .poll_took(connector.spec.kind, started.elapsed());
        match result {
            Ok(polled) => {
                if failures > 0 {
                    tracing::info!(connector_id = %id, failures, "poller recovered");
                }
                failures = 0;
                context.activity.polled(id, polled.items, started.elapsed());
                warned |= warn_once(&context, id, &settings, &polled, warned);
                note_new(&context, id, &polled.warnings, &mut noted);
                delay = jittered(interval);
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                delay = jittered(backoff(interval, failures));
                tracing::warn!(connector_id = %id, %error, failures, retry_in_s = delay.as_secs(), "poll failed");
                context.activity.poll_failed(id, error.to_string());
            }
        }
    }
    tracing::info!(connector_id = %id, "poller stopped");
}

/// What a successful poll did.
struct Polled {
    /// Rows returned (at most the row cap).
    items: usize,
    /// Whether more rows than the cap were available.
    truncated: bool,
    /// What the query's values needed worked around (read as null).
    warnings: Vec<String>,
}

/// Runs the query once and writes the rows that change their items; with mirroring
/// (and a complete result), deletes this connector's items the result no longer holds.
/// Returns once the writes are applied, so the next poll compares with what this one
/// wrote.
#[tracing::instrument(skip_all, fields(connector_id = %connector.id))]
async fn poll(
    connector: &Connector,
    settings: &SqlSettings,
    context: &PollContext,
) -> Result<Polled, PollError> {
    let mut fetched = sql::fetch(settings, Timestamp::now()).await?;
    let truncated = fetched.truncated;
    let warnings = std::mem::take(&mut fetched.warnings);
    let upserts = sql::items(fetched, &connector.spec)?;
    let items = upserts.len();
    let deletes = if settings.mirrors() && !truncated {
        gone(context, connector, &upserts).await?
    } else {
        Vec::new()
    };
    let mode = connector.spec.upsert_mode;
    let upserts = off_runtime(context, connector, move |store, stream, _| {
        store.changing(stream, mode, upserts)
    })
    .await?;
    write(context, connector, upserts, deletes).await?;
    Ok(Polled {
        items,
        truncated,
        warnings,
    })
}

/// Ids this connector wrote last in its stream that `upserts` no longer hold.
async fn gone(
    context: &PollContext,
    connector: &Connector,
    upserts: &[Upsert],
) -> Result<Vec<String>, PollError> {
    let stored = off_runtime(context, connector, |store, stream, id| {
        store.connector_item_ids(stream, id)
    })
    .await?;
    let kept: std::collections::HashSet<&str> = upserts.iter().map(|u| u.id.as_str()).collect();
    Ok(stored
        .into_iter()
        .filter(|id| !kept.contains(id.as_str()))
        .collect())
}

/// Runs `read` on the store with the connector's stream and id, off the async runtime:
/// reading a whole stream is blocking work for sled.
async fn off_runtime<T: Send + 'static>(
    context: &PollContext,
    connector: &Connector,
    read: impl FnOnce(&Store, &str, &str) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, PollError> {
    let store = context.store.clone();
    let (stream, id) = (connector.spec.stream.to_string(), connector.id.clone());
    let result = tokio::task::spawn_blocking(move || read(&store, &stream, &id))
        .await
        .map_err(|_| IngestError::Stopped)?;
    Ok(result?)
}

/// Submits the poll's records one after the other and waits until the last is
/// applied. One at a time on purpose: submitted together, a large poll becomes one
/// commit group and few large apply transactions, which measured slower and took
/// twice the memory. Unchanged rows were left out before.
async fn write(
    context: &PollContext,
    connector: &Connector,
    upserts: Vec<Upsert>,
    deletes: Vec<String>,
) -> Result<(), PollError> {
    let mut last = None;
    for accepted in records(connector, upserts, deletes) {
        last = Some(context.ingest.submit(accepted).await?);
    }
    if let Some(seq) = last {
        context.ingest.applied(seq).await?;
    }
    Ok(())
}

/// The journal records of one poll: at most [`ITEMS_PER_WRITE`] upserts and
/// [`MAX_WRITE_BYTES`] of items each, the deletes last; none when there is nothing to write.
fn records(connector: &Connector, upserts: Vec<Upsert>, deletes: Vec<String>) -> Vec<Accepted> {
    let mut records = Vec::new();
    let mut chunk = Chunk::default();
    for upsert in upserts {
        let bytes = json_len(&upsert);
        if chunk.upserts.len() == ITEMS_PER_WRITE || chunk.is_full_for(bytes) {
            records.push(chunk.take(connector));
        }
        chunk.bytes += bytes;
        chunk.upserts.push(upsert);
    }
    for id in deletes {
        let bytes = json_len(&id);
        if chunk.is_full_for(bytes) {
            records.push(chunk.take(connector));
        }
        chunk.bytes += bytes;
        chunk.deletes.push(id);
    }
    if !chunk.is_empty() {
        records.push(chunk.take(connector));
    }
    records
}

/// The items of the journal record being filled, and their size as JSON.
#[derive(Default)]
struct Chunk {
    upserts: Vec<Upsert>,
    deletes: Vec<String>,
    bytes: usize,
}

impl Chunk {
    fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }

    /// Whether `bytes` more would take a record that holds something over [`MAX_WRITE_BYTES`].
    fn is_full_for(&self, bytes: usize) -> bool {
        !self.is_empty() && self.bytes + bytes > MAX_WRITE_BYTES
    }

    /// The record of what is gathered, leaving the chunk empty.
    fn take(&mut self, connector: &Connector) -> Accepted {
        let chunk = std::mem::take(self);
        let write = Write {
            stream: connector.spec.stream.clone(),
            connector_id: connector.id.clone(),
            mode: connector.spec.upsert_mode,
            upserts: chunk.upserts,
            deletes: chunk.deletes,
            deletes_own_only: true,
            accepted_at: Timestamp::now(),
        };
        Accepted {
            write,
            idempotency: None,
        }
    }
}

/// The length of `value` as JSON, as the journal will write it.
fn json_len(value: &impl serde::Serialize) -> usize {
    let mut counter = ByteCount(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => 0,
    }
}

/// A writer that only counts what is written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs, once per poller, that results are large or cut at the row cap. Returns
/// whether it logged.
fn warn_once(
    context: &PollContext,
    id: &str,
    settings: &SqlSettings,
    polled: &Polled,
    warned: bool,
) -> bool {
    let message = if polled.truncated {
        format!(
            "the query returned more than maxRows ({}) rows: only the first {} were stored and nothing was deleted; raise settings.maxRows or narrow the query",
            settings.row_cap(),
            polled.items
        )
    } else if polled.items > WARN_ROWS {
        format!(
            "the query returned {} rows; a DataPool is meant for what dashboards show, consider aggregating in the query",
            polled.items
        )
    } else {
        return false;
    };
    if !warned {
        context
            .activity
            .note(id, LogLevel::Warn, "warning", message);
    }
    true
}

/// Logs each of a poll's warnings this poller has not logged yet, so a value read as
/// null is told once, not at every poll.
fn note_new(context: &PollContext, id: &str, warnings: &[String], noted: &mut HashSet<String>) {
    for warning in warnings {
        if noted.insert(warning.clone()) {
            context
                .activity
                .note(id, LogLevel::Warn, "warning", warning.clone());
        }
    }
}

/// The pause after `failures` failures in a row: the interval, doubling with each
/// further failure, at most [`MAX_BACKOFF`].
fn backoff(interval: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    interval.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

/// `delay` moved at random by up to [`JITTER_SHARE`] either way.
fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(1.0 - JITTER_SHARE + 2.0 * JITTER_SHARE * random_unit())
}

/// A random number in [0, 1).
fn random_unit() -> f64 {
    let bits = u64::from_be_bytes(crate::ids::random_bytes::<8>()) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_interval_up_to_five_minutes() {
        let s = Duration::from_secs;
        let delays: Vec<u64> = (1..=11).map(|n| backoff(s(1), n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(s(60), 3), s(240));
        assert_eq!(backoff(s(3600), 1), s(300));
        assert_eq!(backoff(s(1), u32::MAX), s(300));
    }

    #[test]
    fn a_poll_becomes_records_of_a_thousand_items_with_the_deletes_last() {
        let spec = crate::model::ConnectorSpec::from_json(serde_json::json!({
            "name": "s", "type": "sql", "stream": "s",
            "settings": {"connectionString": "sqlite:///tmp/s.db", "query": "select 1"}}))
        .expect("valid");
        let connector = Connector::new(spec, None, Timestamp::now());
        let upserts = |n: usize| -> Vec<Upsert> {
            (0..n)
                .map(|i| Upsert {
                    id: i.to_string(),
                    fields: Default::default(),
                })
                .collect()
        };
        let shape = |records: Vec<Accepted>| -> Vec<(usize, usize)> {
            records
                .iter()
                .map(|r| (r.write.upserts.len(), r.write.deletes.len()))
                .collect()
        };
        let gone = || vec!["x".to_owned(), "y".to_owned()];
        assert_eq!(
            shape(records(&connector, upserts(2500), gone())),
            [(1000, 0), (1000, 0), (500, 2)]
        );
        assert_eq!(
            shape(records(&connector, upserts(1000), vec![])),
            [(1000, 0)]
        );
        assert_eq!(shape(records(&connector, upserts(0), gone())), [(0, 2)]);
        assert!(records(&connector, upserts(0), vec![]).is_empty());
    }

    #[test]
    fn a_poll_of_large_rows_becomes_records_within_the_journal_limit() {
        let spec = crate::model::ConnectorSpec::from_json(serde_json::json!({
            "name": "s", "type": "sql", "stream": "s",
            "settings": {"connectionString": "sqlite:///tmp/s.db", "query": "select 1"}}))
        .expect("valid");
        let connector = Connector::new(spec, None, Timestamp::now());
        let row = "x".repeat(MAX_WRITE_BYTES / 3);
        let upserts: Vec<Upsert> = (0..10)
            .map(|i| Upsert {
                id: i.to_string(),
                fields: serde_json::Map::from_iter([("text".to_owned(), row.clone().into())]),
            })
            .collect();
        let deletes: Vec<String> = (0..MAX_WRITE_BYTES / 100)
            .map(|i| format!("{i:0>96}"))
            .collect();
        let records = records(&connector, upserts, deletes);
        let items: usize = records
            .iter()
            .map(|r| r.write.upserts.len() + r.write.deletes.len())
            .sum();
        assert_eq!(
            items,
            10 + MAX_WRITE_BYTES / 100,
            "every item is in a record"
        );
        assert!(records.len() > 4, "{} records", records.len());
        for record in &records {
            let bytes = serde_json::to_vec(record).expect("encodes").len();
            assert!(
                bytes <= crate::store::MAX_RECORD_BYTES / 4,
                "a record of {bytes} bytes"
            );
        }
    }

    #[test]
    fn jitter_stays_within_a_tenth() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(10));
            assert!(
                d >= Duration::from_secs(9) && d <= Duration::from_secs(11),
                "{d:?}"
            );
        }
    }
}
