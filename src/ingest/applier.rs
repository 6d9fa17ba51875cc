//! The applier: moves committed journal records into the pool, strictly in journal
//! order, and announces the applied mark and each changed stream's last change.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::budget::Budget;
use super::checkpoint::Checkpoint;
use super::feed::{ChangeFeed, Changed};
use super::pacer::Pacer;
use super::{Committed, CommittedGroup, Health, IngestError, UnappliedKeys};
use crate::metrics::{Metrics, Stage};
use crate::model::Change;
use crate::store::{Accepted, Replay, Store, StoreError};

/// Items (upserts and deletes) applied in one transaction, summed over its records (a
/// record with more is a transaction of its own). Each sled transaction writes out
/// sled's log buffer, so fewer, larger ones are cheaper; this bounds what one holds in
/// memory.
const ITEMS_PER_TRANSACTION: usize = 2_000;
/// Most journal records taken into one pass when several committed groups are waiting.
const RECORDS_PER_PASS: usize = 4_096;
/// Shortest time from the start of one pass to the start of the next (see [`Pacer`]).
/// A pass that changes something is a store transaction, whose cost is mostly fixed
/// (sled writes out its log buffer for each); this is what it adds, at most, to a
/// change's way to the read API and SSE.
const MIN_PASS_INTERVAL: Duration = Duration::from_millis(2);
/// Pause before retrying after the store failed to apply a record (sled 0.34 keeps
/// failing until reopened, but a retry costs little and catches a passing failure).
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);
/// How often that pause looks for the server stopping.
const STOP_CHECK_EVERY: Duration = Duration::from_millis(50);

/// Runs on a thread of its own: replays the journal's backlog first, a bounded group
/// at a time, then applies groups as they are committed, checkpointing between passes
/// ([`Checkpoint`]). Returns once the committer is gone and everything it sent is
/// applied, or when `stop` fires while it is waiting on a failing store (what is left
/// is replayed on the next start).
pub(super) fn run(
    replay: Replay,
    committed: Receiver<CommittedGroup>,
    mut checkpoint: Checkpoint,
    store: Store,
    announce: Announce,
    stop: CancellationToken,
) {
    let applier = Applier {
        store,
        announce,
        stop,
    };
    if !applier.replay(replay, &mut checkpoint) {
        return;
    }
    let mut pacer = Pacer::new(MIN_PASS_INTERVAL);
    let metrics = applier.announce.metrics.clone();
    while let Some((synced, mut group)) = next_group(&committed, &mut checkpoint) {
        let wait = pacer.next_turn();
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        let starting = Instant::now();
        metrics.stage_took(
            Stage::ApplyQueue,
            starting.saturating_duration_since(synced),
        );
        while group.len() < RECORDS_PER_PASS {
            match committed.try_recv() {
                Ok((synced, more)) => {
                    let waited = starting.saturating_duration_since(synced);
                    metrics.stage_took(Stage::ApplyQueue, waited);
                    group.extend(more);
                }
                Err(_) => break,
            }
        }
        if !applier.apply_all(group, &mut checkpoint) {
            return;
        }
        checkpoint.run_if_due();
    }
    tracing::debug!("applier stopped");
}

/// What applying needs besides the groups: the store, where to announce, and when to
/// give up retrying.
struct Applier {
    store: Store,
    announce: Announce,
    stop: CancellationToken,
}

impl Applier {
    /// Applies the journal's backlog, group by group as [`Replay`] reads it; `false`
    /// when `stop` fired while it was retrying.
    fn replay(&self, mut replay: Replay, checkpoint: &mut Checkpoint) -> bool {
        loop {
            match replay.next_group() {
                Ok(Some(group)) => {
                    if !self.apply_all(group, checkpoint) {
                        return false;
                    }
                    checkpoint.run_if_due();
                }
                Ok(None) => return true,
                Err(error) => {
                    self.announce.health.report_store_failure(&error.into());
                    if stopped_within(&self.stop, RETRY_AFTER_ERROR) {
                        return false;
                    }
                }
            }
        }
    }

    /// Applies `group` in order, retrying after a store error until it is all
    /// applied; `false` when `stop` fired while it was retrying.
    fn apply_all(&self, mut group: Committed, checkpoint: &mut Checkpoint) -> bool {
        let metrics = &self.announce.metrics;
        while !group.is_empty() {
            let started = Instant::now();
            let applied = apply(&self.store, group);
            let announcing = Instant::now();
            metrics.stage_took(Stage::Apply, announcing - started);
            match applied {
                Ok((done, changed, applied_group)) => {
                    self.announce.applied(done, &changed, &applied_group);
                    metrics.stage_took(Stage::Announce, announcing.elapsed());
                    checkpoint.applied(done);
                    group = Vec::new();
                }
                Err((error, rest, changed)) => {
                    self.announce.health.report_store_failure(&error);
                    self.announce.feed.announce(&changed);
                    group = rest;
                    if stopped_within(&self.stop, RETRY_AFTER_ERROR) {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// Where the applier tells what it applied.
pub(super) struct Announce {
    /// Idempotency keys of committed records, forgotten once the store has them.
    pub(super) unapplied: Arc<UnappliedKeys>,
    /// The byte budget, whose shares are given back once their records are applied.
    pub(super) budget: Arc<Budget>,
    /// Told when the store fails to apply and when it applies again.
    pub(super) health: Arc<Health>,
    /// The last journal sequence applied.
    pub(super) applied: watch::Sender<u64>,
    /// Each changed stream's last change (for SSE).
    pub(super) feed: Arc<ChangeFeed>,
    /// Told the applied mark, the items applied per stream, and the stages' timings.
    pub(super) metrics: Arc<Metrics>,
}

impl Announce {
    fn applied(&self, done: u64, changed: &Changed, group: &Committed) {
        self.unapplied.remove(group);
        self.feed.announce(changed);
        self.applied.send_replace(done);
        self.metrics.applied(done);
        let items = group.iter().map(|(_, accepted)| {
            let write = &accepted.write;
            (write.stream.as_str(), write.upserts.len() as u64)
        });
        self.metrics.ingested(items);
        self.budget.release_through(done);
        self.health.report_store_recovery();
    }
}

/// The next committed group, checkpointing whenever one falls due while waiting;
/// `None` once the committer is gone and everything it sent was taken.
fn next_group(
    committed: &Receiver<CommittedGroup>,
    checkpoint: &mut Checkpoint,
) -> Option<CommittedGroup> {
    loop {
        let Some(wait) = checkpoint.due_in() else {
            return committed.recv().ok();
        };
        match committed.recv_timeout(wait) {
            Ok(group) => return Some(group),
            Err(RecvTimeoutError::Timeout) => checkpoint.run_if_due(),
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// Waits `wait`, or less when `stop` fires first; whether it fired.
fn stopped_within(stop: &CancellationToken, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    while !stop.is_cancelled() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(STOP_CHECK_EVERY));
    }
    true
}

/// Applies a group in order, about [`ITEMS_PER_TRANSACTION`] items per transaction;
/// the last sequence applied, each changed stream's last change and the group itself,
/// or the error with the records not yet applied and the changes made before it.
fn apply(
    store: &Store,
    group: Committed,
) -> Result<(u64, Changed, Committed), (IngestError, Committed, Changed)> {
    fail::fail_point!("applier::before_apply", |delay: Option<String>| {
        let millis = delay.and_then(|d| d.parse().ok()).unwrap_or(0);
        std::thread::sleep(Duration::from_millis(millis));
        std::process::abort()
    });
    let mut last = 0;
    let mut changed = Changed::default();
    let mut done = 0;
    let mut failed = None;
    for chunk in transactions(&group) {
        match apply_transaction(store, chunk) {
            Ok(made) => {
                last = chunk.last().map_or(last, |(seq, _)| *seq);
                changed.note(&made);
                done += chunk.len();
            }
            Err(error) => {
                failed = Some(error);
                break;
            }
        }
    }
    if let Some(error) = failed {
        return Err((
            IngestError::from(error),
            group.into_iter().skip(done).collect(),
            changed,
        ));
    }
    Ok((last, changed, group))
}

/// Applies one transaction's records. The `applier::apply` fail point stands for a
/// store that fails (`return`) or a panic (`panic`) in tests.
fn apply_transaction(
    store: &Store,
    records: &[(u64, Accepted)],
) -> Result<Vec<Change>, StoreError> {
    fail::fail_point!("applier::apply", |_| Err(StoreError::Io {
        path: "db".into(),
        source: std::io::Error::other("injected by the applier::apply fail point"),
    }));
    store.apply(records)
}

/// `group` cut into consecutive runs of records holding at most
/// [`ITEMS_PER_TRANSACTION`] items together, each run at least one record.
fn transactions(group: &[(u64, Accepted)]) -> impl Iterator<Item = &[(u64, Accepted)]> {
    let mut rest = group;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut items = 0;
        let end = rest
            .iter()
            .position(|(_, accepted)| {
                items += accepted.write.upserts.len() + accepted.write.deletes.len();
                items > ITEMS_PER_TRANSACTION
            })
            .unwrap_or(rest.len())
            .max(1);
        let (run, after) = rest.split_at(end);
        rest = after;
        Some(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deleting(items: usize) -> Accepted {
        let ids = (0..items).map(|n| n.to_string()).collect();
        Accepted::for_test("s", "c_1", Vec::new(), ids)
    }

    #[test]
    fn transactions_hold_whole_records_up_to_the_item_budget() {
        let sizes = [1500, 600, 3000, 1, 1, 2000, 0];
        let group: Vec<(u64, Accepted)> = sizes
            .iter()
            .enumerate()
            .map(|(seq, items)| (seq as u64, deleting(*items)))
            .collect();
        let runs: Vec<Vec<u64>> = transactions(&group)
            .map(|run| run.iter().map(|(seq, _)| *seq).collect())
            .collect();
        assert_eq!(runs, [vec![0], vec![1], vec![2], vec![3, 4], vec![5, 6]]);
        assert_eq!(transactions(&[]).count(), 0);
    }
}
