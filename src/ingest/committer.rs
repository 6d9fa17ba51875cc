//! The group committer: one thread of its own, taking every request that queued while
//! the previous commit was on disk and committing them together: one journal append,
//! one `fdatasync`. This is what makes a durable 202 fast: never a sync per request.
//!
//! Under load it starts a commit at most every [`MIN_COMMIT_INTERVAL`] (see
//! [`Pacer`]): an `fdatasync` costs tens of microseconds of CPU whatever it carries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::budget::Budget;
use super::pacer::Pacer;
use super::{Committed, CommittedGroup, IngestError, Pending, UnappliedKeys};
use crate::metrics::{Metrics, Stage};
use crate::store::{Accepted, StoreError, Wal};

/// Most requests in one group commit, bounding one append's size.
const MAX_GROUP: usize = 512;
/// Shortest time from the start of one commit to the start of the next. The
/// `fdatasync` itself is the window in which the next group gathers; this only keeps a
/// disk that syncs in a few microseconds from costing a commit per request. 500 µs
/// held 32 closed-loop senders to 34,000 req/s against a 0.15 ms `fdatasync`; 50 µs
/// let them reach 43,000 at the same CPU per request (bench/README.md).
const MIN_COMMIT_INTERVAL: Duration = Duration::from_micros(50);

/// Runs on its own thread (it blocks on the journal) until every [`super::Ingest`]
/// handle is gone, then returns once the queue is empty (dropping `to_applier`, which
/// lets the applier finish). A committed group's idempotency keys go to `unapplied` and
/// its shares of the byte budget to `budget`, until it is applied; its last sequence
/// goes to `acknowledged` before any of its requests is answered; its stages are timed
/// into `metrics`.
pub(super) fn run(
    mut journal: Wal,
    mut requests: mpsc::Receiver<Pending>,
    to_applier: SyncSender<CommittedGroup>,
    marks: Marks<'_>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut pacer = Pacer::new(MIN_COMMIT_INTERVAL);
    while let Some(first) = requests.blocking_recv() {
        group.push(first);
        let wait = pacer.next_turn();
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(pending) => group.push(pending),
                Err(_) => break,
            }
        }
        let starting = Instant::now();
        for pending in &group {
            let queued = starting.saturating_duration_since(pending.queued);
            marks.metrics.stage_took(Stage::CommitQueue, queued);
        }
        commit_group(&mut journal, &mut group, &to_applier, marks);
    }
    tracing::debug!("committer stopped: no more writers");
}

/// What the committer keeps up to date besides the journal.
#[derive(Clone, Copy)]
pub(super) struct Marks<'a> {
    /// Idempotency keys of committed records not yet applied.
    pub(super) unapplied: &'a UnappliedKeys,
    /// The byte budget, holding committed records' shares until they are applied.
    pub(super) budget: &'a Budget,
    /// The last sequence committed and acknowledged (or about to be).
    pub(super) acknowledged: &'a AtomicU64,
    /// Where the stages are timed.
    pub(super) metrics: &'a Metrics,
}

/// Commits `group` (drained) and answers each request; what the requests hold is
/// dropped last, once their keys are among the unapplied ones (or refused). A group the
/// journal refuses because one request's record is over its limit is committed a
/// request at a time, so only that request is refused.
fn commit_group(
    journal: &mut Wal,
    group: &mut Vec<Pending>,
    to_applier: &SyncSender<CommittedGroup>,
    marks: Marks<'_>,
) {
    let metrics = marks.metrics;
    let mut holds = Vec::new();
    let (accepted, waiting): (Vec<Accepted>, Vec<_>) = group
        .drain(..)
        .map(|p| {
            holds.extend(p.hold);
            (p.accepted, (p.share, (p.queued, p.done)))
        })
        .unzip();
    let alone = accepted.len() == 1;
    match commit(journal, &accepted, metrics) {
        Ok((seqs, synced)) => {
            let records: Committed = seqs.into_iter().zip(accepted).collect();
            marks.unapplied.add(&records);
            let (shares, replies): (Vec<_>, Vec<_>) = waiting.into_iter().unzip();
            if let Some((last, _)) = records.last() {
                marks
                    .budget
                    .hold(*last, shares.into_iter().flatten().collect());
                marks.acknowledged.store(*last, Ordering::Release);
                metrics.committed(*last);
            }
            for ((_, reply), (seq, _)) in replies.into_iter().zip(&records) {
                let _ = reply.send(Ok((*seq, synced)));
            }
            if to_applier.send((synced, records)).is_err() {
                tracing::error!(
                    "the applier has stopped; committed writes are applied on the next start"
                );
            }
        }
        Err(StoreError::RecordTooLarge { .. }) if !alone => {
            for (accepted, (share, (queued, done))) in accepted.into_iter().zip(waiting) {
                let mut one = vec![Pending {
                    accepted,
                    share,
                    hold: None,
                    queued,
                    done,
                }];
                commit_group(journal, &mut one, to_applier, marks);
            }
        }
        Err(StoreError::RecordTooLarge { bytes, max }) => {
            for (_, (_, reply)) in waiting {
                let _ = reply.send(Err(IngestError::TooLarge { bytes, max }));
            }
        }
        Err(error) => {
            tracing::error!(%error, requests = waiting.len(), "group commit failed; the requests get 500");
            for (_, (_, reply)) in waiting {
                let _ = reply.send(Err(IngestError::Store(error.to_string())));
            }
        }
    }
    drop(holds);
}

/// Appends `accepted` as one group and syncs it; their sequences, and when the sync
/// finished.
fn commit(
    journal: &mut Wal,
    accepted: &[Accepted],
    metrics: &Metrics,
) -> Result<(Vec<u64>, Instant), StoreError> {
    fail::fail_point!("committer::commit");
    let started = Instant::now();
    let seqs = journal.append(accepted)?;
    let synced = Instant::now();
    let took = synced - started;
    metrics.stage_took(Stage::JournalSync, took);
    tracing::debug!(
        requests = seqs.len(),
        micros = took.as_micros() as u64,
        "group committed"
    );
    Ok((seqs, synced))
}
