//! The group committer: one thread of its own, taking every request that queued while
//! the previous commit was on disk and committing them together: one journal append,
//! one `fdatasync`. This is what makes a durable 202 fast: never a sync per request.
//!
//! Under load it starts a commit at most every [`MIN_COMMIT_INTERVAL`] (see
//! [`Pacer`]): an `fdatasync` costs tens of microseconds of CPU whatever it carries.

use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::budget::Budget;
use super::pacer::Pacer;
use super::{Committed, IngestError, Pending, UnappliedKeys};
use crate::store::{Accepted, StoreError, Wal};

/// Most requests in one group commit, bounding one append's size.
const MAX_GROUP: usize = 512;
/// Shortest time from the start of one commit to the start of the next. Long enough to
/// gather a busy moment's requests into one `fdatasync`, short against the 202's
/// latency budget.
const MIN_COMMIT_INTERVAL: Duration = Duration::from_micros(500);

/// Runs on its own thread (it blocks on the journal) until every [`super::Ingest`]
/// handle is gone, then returns once the queue is empty (dropping `to_applier`, which
/// lets the applier finish). A committed group's idempotency keys go to `unapplied` and
/// its shares of the byte budget to `budget`, until it is applied.
pub(super) fn run(
    mut journal: Wal,
    mut requests: mpsc::Receiver<Pending>,
    to_applier: SyncSender<Committed>,
    (unapplied, budget): (&UnappliedKeys, &Budget),
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
        let mut shares = Vec::with_capacity(group.len());
        let (accepted, replies): (Vec<Accepted>, Vec<_>) = group
            .drain(..)
            .map(|p| {
                shares.extend(p.share);
                (p.accepted, p.done)
            })
            .unzip();
        match commit(&mut journal, accepted) {
            Ok(records) => {
                unapplied.add(&records);
                if let Some((last, _)) = records.last() {
                    budget.hold(*last, shares);
                }
                for (reply, (seq, _)) in replies.into_iter().zip(&records) {
                    let _ = reply.send(Ok(*seq));
                }
                if to_applier.send(records).is_err() {
                    tracing::error!(
                        "the applier has stopped; committed writes are applied on the next start"
                    );
                }
            }
            Err(error) => {
                tracing::error!(%error, requests = replies.len(), "group commit failed; the requests get 500");
                for reply in replies {
                    let _ = reply.send(Err(IngestError::Store(error.to_string())));
                }
            }
        }
    }
    tracing::debug!("committer stopped: no more writers");
}

/// Appends `accepted` as one group and syncs it.
fn commit(journal: &mut Wal, accepted: Vec<Accepted>) -> Result<Committed, StoreError> {
    fail::fail_point!("committer::commit");
    let started = Instant::now();
    let seqs = journal.append(&accepted)?;
    tracing::debug!(
        requests = seqs.len(),
        micros = started.elapsed().as_micros() as u64,
        "group committed"
    );
    Ok(seqs.into_iter().zip(accepted).collect())
}
