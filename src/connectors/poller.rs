//! The pollers: one task per enabled `sql` connector and per `file` connector that
//! fetches a URL or watches a folder, polling at its interval with jitter, never
//! overlapping itself, backing off after failures (doubling, at most 5 minutes) and
//! writing each result through the same journal → pool path as pushes. A supervisor
//! keeps the set of tasks in step with the stored connectors: an admin change wakes
//! it, and it also looks every half minute. Uploaded files are imported through the
//! same context, one at a time per connector.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::file::{self, FileError, FolderPoller, Imported, UrlPoller};
use super::sink::{self, Sink};
use super::sql::{self, SqlError};
use super::Activity;
use crate::ingest::{Ingest, IngestError};
use crate::model::{Connector, FileSettings, FileSource, LogLevel, Settings, SqlSettings};
use crate::store::{Store, StoreError};

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
/// A poll returning more rows than this gets one warning per task: a DataPool is meant
/// for what dashboards show, not bulk copies.
const WARN_ROWS: usize = 1000;

/// Why a poll or an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The database or its result failed.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// The file could not be fetched or read.
    #[error(transparent)]
    File(#[from] FileError),
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

/// The handle admin handlers use to tell the supervisor that connectors changed, and
/// to import uploaded files.
pub struct Pollers {
    wake: Notify,
    context: PollContext,
    /// One lock per upload connector that has had an upload: two uploads to one
    /// connector at once would each mirror away the other's items.
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Pollers {
    /// Starts the supervisor on `tasks`; it and every poller stop when `stop` fires.
    pub fn start(context: PollContext, tasks: &TaskTracker, stop: CancellationToken) -> Arc<Self> {
        let pollers = Arc::new(Pollers {
            wake: Notify::new(),
            context: context.clone(),
            uploads: Mutex::default(),
        });
        tasks.spawn(supervise(pollers.clone(), context, tasks.clone(), stop));
        pollers
    }

    /// Asks the supervisor to start, restart or stop pollers after a connector changed.
    pub fn changed(&self) {
        self.wake.notify_one();
    }

    /// Imports an uploaded file for `connector`, after any upload to it still running.
    pub async fn import_upload(
        &self,
        connector: &Connector,
        settings: &FileSettings,
        upload: file::Fetched,
    ) -> Result<Imported, PollError> {
        let lock = {
            let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
            uploads.retain(|_, lock| Arc::strong_count(lock) > 1);
            uploads.entry(connector.id.clone()).or_default().clone()
        };
        let _one_at_a_time = lock.lock().await;
        file::import(&self.context, connector, settings, upload).await
    }
}

/// A running poller: the connector revision it polls and the token that stops it.
struct Running {
    revision: u64,
    stop: CancellationToken,
}

/// Keeps one poller per enabled polled connector until `stop` fires.
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
        .filter(|c| c.spec.enabled && Job::interval(c).is_some())
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

/// What one poller polls, with what it keeps between polls.
enum Job {
    /// A SQL query.
    Sql(SqlSettings),
    /// A file at a URL, with the validators of the last one imported.
    Url(Box<UrlPoller>),
    /// A watched folder, with the files seen at the last scan.
    Folder(Box<FolderPoller>),
}

impl Job {
    /// The job for `connector`, or the reason it cannot poll.
    fn of(connector: &Connector) -> Result<Option<Job>, FileError> {
        Ok(match &connector.spec.settings {
            Some(Settings::Sql(settings)) => Some(Job::Sql(settings.clone())),
            Some(Settings::File(settings)) => match &settings.source {
                FileSource::Upload => None,
                FileSource::Url(_) => Some(Job::Url(Box::new(UrlPoller::new(settings)?))),
                FileSource::Folder(source) => {
                    Some(Job::Folder(Box::new(FolderPoller::new(settings, source))))
                }
            },
            None => None,
        })
    }

    /// The interval between polls of `connector`; None for a connector nothing polls.
    fn interval(connector: &Connector) -> Option<Duration> {
        let seconds = match &connector.spec.settings {
            Some(Settings::Sql(settings)) => settings.poll_interval(),
            Some(Settings::File(settings)) => settings.poll_interval()?,
            None => return None,
        };
        Some(Duration::from_secs(seconds))
    }

    async fn poll(
        &mut self,
        connector: &Connector,
        context: &PollContext,
    ) -> Result<Outcome, PollError> {
        match self {
            Job::Sql(settings) => Ok(Outcome::polled(
                poll_sql(connector, settings, context).await?,
            )),
            Job::Url(poller) => poller.poll(connector, context).await,
            Job::Folder(poller) => poller.poll(connector, context).await,
        }
    }
}

/// Polls one connector until `stop` fires: at its interval after a success, backing
/// off after failures.
async fn poll_loop(connector: Connector, context: PollContext, stop: CancellationToken) {
    let id = connector.id.as_str();
    let Some(interval) = Job::interval(&connector) else {
        return;
    };
    let mut job = match Job::of(&connector) {
        Ok(Some(job)) => job,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(connector_id = %id, %error, "poller cannot start");
            context.activity.poll_failed(id, error.to_string());
            return;
        }
    };
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
            result = job.poll(&connector, &context) => result,
            _ = stop.cancelled() => break,
        };
        context
            .activity
            .poll_took(connector.spec.kind, started.elapsed());
        match result {
            Ok(outcome) => {
                if failures > 0 {
                    tracing::info!(connector_id = %id, failures, "poller recovered");
                }
                failures = 0;
                if let Some(polled) = outcome.polled {
                    context.activity.polled(id, polled.items, started.elapsed());
                    if let Job::Sql(settings) = &job {
                        warned |= warn_once(&context, id, settings, &polled, warned);
                    }
                    note_new(&context, id, &polled.warnings, &mut noted);
                }
                delay = if outcome.more {
                    Duration::ZERO
                } else {
                    jittered(interval)
                };
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
pub struct Polled {
    /// Rows or items read (for SQL at most the row cap).
    pub items: usize,
    /// Whether more rows than the cap were available.
    pub truncated: bool,
    /// What the source's values needed worked around (read as null).
    pub warnings: Vec<String>,
}

/// What one poll came to.
pub struct Outcome {
    /// The data it fetched; None when there was nothing new to fetch (no file in a
    /// watched folder), which keeps the connector's last success where it was.
    pub polled: Option<Polled>,
    /// Whether more is waiting already (further files in a watched folder), so the next
    /// poll should not wait for the interval.
    pub more: bool,
}

impl Outcome {
    /// A poll that fetched `polled`, with nothing more waiting.
    pub fn polled(polled: Polled) -> Self {
        Outcome {
            polled: Some(polled),
            more: false,
        }
    }
}

/// Runs the query once and writes the rows that change their items; with mirroring
/// (and a complete result), deletes this connector's items the result no longer holds.
/// Returns once the writes are applied, so the next poll compares with what this one
/// wrote.
#[tracing::instrument(skip_all, fields(connector_id = %connector.id))]
async fn poll_sql(
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
        let kept: HashSet<String> = upserts.iter().map(|u| u.id.clone()).collect();
        sink::gone(context, connector, |id| kept.contains(id)).await?
    } else {
        Vec::new()
    };
    let mut sink = Sink::new(context, connector);
    sink.upsert(upserts).await?;
    sink.finish(deletes).await?;
    Ok(Polled {
        items,
        truncated,
        warnings,
    })
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
