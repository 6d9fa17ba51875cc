//! The applier: moves committed journal records into the pool, strictly in journal
//! order, and announces the last change sequence for SSE readers.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::IngestError;
use crate::store::{Store, StoreError};

/// Journal records read per pass.
const BATCH: usize = 256;
/// Pause before retrying after the store failed to apply a record.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// Applies records as they are committed; on start, first replays what the journal
/// holds. Returns once the committer is gone and everything committed is applied, or
/// when `stop` fires while it is waiting on a failing store.
pub(super) async fn run(
    store: Store,
    mut committed: watch::Receiver<u64>,
    applied: watch::Sender<u64>,
    changes: watch::Sender<u64>,
    stop: CancellationToken,
) {
    loop {
        match apply_pending(&store, &applied, &changes).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(error) => {
                tracing::error!(%error, "applying the journal failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_AFTER_ERROR) => continue,
                    _ = stop.cancelled() => return,
                }
            }
        }
        if committed.changed().await.is_err() {
            // The committer is gone: apply what it committed last, then stop.
            if let Err(error) = apply_pending(&store, &applied, &changes).await {
                tracing::error!(%error, "applying the journal at shutdown failed; it is replayed on the next start");
            }
            tracing::debug!("applier stopped");
            return;
        }
    }
}

/// Applies one batch of pending records; true when there may be more.
async fn apply_pending(
    store: &Store,
    applied: &watch::Sender<u64>,
    changes: &watch::Sender<u64>,
) -> Result<bool, IngestError> {
    let after = *applied.borrow();
    let store = store.clone();
    let (last_seq, last_change, count) = tokio::task::spawn_blocking(move || {
        let pending = store.pending_writes(after, BATCH)?;
        let count = pending.len();
        let mut last = (after, None);
        for (seq, write) in pending {
            let made = store.apply(seq, &write)?;
            last = (seq, made.last().map(|c| c.seq).or(last.1));
        }
        Ok::<_, StoreError>((last.0, last.1, count))
    })
    .await
    .map_err(|_| IngestError::Stopped)??;
    if let Some(seq) = last_change {
        changes.send_replace(seq);
    }
    applied.send_replace(last_seq);
    Ok(count == BATCH)
}
