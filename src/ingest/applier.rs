//! The applier: moves committed journal records into the pool, strictly in journal
//! order, and announces the applied mark and the last change sequence.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use super::{Committed, IngestError, UnappliedKeys};
use crate::store::Store;

/// Journal records applied in one transaction: amortizes the transaction's cost
/// without making one transaction hold too much (a record may carry many items).
const RECORDS_PER_TRANSACTION: usize = 32;
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
    while let Some(mut group) = committed.recv().await {
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

/// Applies a group in order, [`RECORDS_PER_TRANSACTION`] records per transaction;
/// the last sequence applied, the last change made and the group itself, or the error
/// with the records not yet applied.
async fn apply(
    store: &Store,
    group: Committed,
) -> Result<(u64, Option<u64>, Committed), (IngestError, Committed)> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut last = (0, None);
        for (index, chunk) in group.chunks(RECORDS_PER_TRANSACTION).enumerate() {
            match store.apply(chunk) {
                Ok(made) => {
                    let seq = chunk.last().map_or(last.0, |(seq, _)| *seq);
                    last = (seq, made.last().map(|c| c.seq).or(last.1));
                }
                Err(error) => {
                    let rest = group
                        .into_iter()
                        .skip(index * RECORDS_PER_TRANSACTION)
                        .collect();
                    return Err((IngestError::from(error), rest));
                }
            }
        }
        Ok((last.0, last.1, group))
    })
    .await
    .map_err(|_| (IngestError::Stopped, Vec::new()))?
}
