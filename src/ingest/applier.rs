//! The applier: moves committed journal records into the pool, strictly in journal
//! order, and announces the applied mark and the last change sequence.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use super::pacer::Pacer;
use super::{Committed, IngestError, UnappliedKeys};
use crate::store::{Accepted, Store};

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
/// Pause before retrying after the store failed to apply a record.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// Applies groups as they are committed (the journal's replay arrives first). Returns
/// once the committer is gone and everything it sent is applied, or when `stop` fires
/// while it is waiting on a failing store (what is left is replayed on the next start).
pub(super) async fn run(
    store: Store,
    mut committed: mpsc::Receiver<Committed>,
    applied: watch::Sender<u64>,
    changes: watch::Sender<u64>,
    unapplied: Arc<UnappliedKeys>,
    stop: CancellationToken,
) {
    let mut pacer = Pacer::new(MIN_PASS_INTERVAL);
    while let Some(mut group) = committed.recv().await {
        let wait = pacer.next_turn();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        while group.len() < RECORDS_PER_PASS {
            match committed.try_recv() {
                Ok(more) => group.extend(more),
                Err(_) => break,
            }
        }
        while !group.is_empty() {
            match apply(&store, group).await {
                Ok((done, last_change, applied_group)) => {
                    unapplied.remove(&applied_group);
                    if let Some(seq) = last_change {
                        changes.send_replace(seq);
                    }
                    applied.send_replace(done);
                    group = Vec::new();
                }
                Err((error, rest)) => {
                    tracing::error!(%error, "applying the journal failed; retrying");
                    group = rest;
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_AFTER_ERROR) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
    }
    tracing::debug!("applier stopped");
}

/// Applies a group in order, about [`ITEMS_PER_TRANSACTION`] items per transaction;
/// the last sequence applied, the last change made and the group itself, or the error
/// with the records not yet applied.
async fn apply(
    store: &Store,
    group: Committed,
) -> Result<(u64, Option<u64>, Committed), (IngestError, Committed)> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut last = (0, None);
        let mut done = 0;
        let mut failed = None;
        for chunk in transactions(&group) {
            match store.apply(chunk) {
                Ok(made) => {
                    let seq = chunk.last().map_or(last.0, |(seq, _)| *seq);
                    last = (seq, made.last().map(|c| c.seq).or(last.1));
                    done += chunk.len();
                }
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        match failed {
            Some(error) => Err((
                IngestError::from(error),
                group.into_iter().skip(done).collect(),
            )),
            None => Ok((last.0, last.1, group)),
        }
    })
    .await
    .map_err(|_| (IngestError::Stopped, Vec::new()))?
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
