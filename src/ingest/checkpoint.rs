//! The checkpoint: every second, if anything was applied since the last one, flushes
//! and syncs the pool, then deletes the journal files it covers.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often the pool is made durable. Journal files wait this long at most, after
/// being applied, before they can be deleted.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Checkpoints until `stop` fires (the shutdown's final flush does the last one).
pub(super) async fn run(
    store: Store,
    applied: watch::Receiver<u64>,
    mut durable: u64,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        if *applied.borrow() == durable {
            continue;
        }
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.checkpoint()).await {
            Ok(Ok(covered)) => durable = covered,
            Ok(Err(error)) => {
                tracing::warn!(%error, "checkpoint failed; the journal keeps everything until one succeeds")
            }
            Err(error) => tracing::warn!(%error, "checkpoint task failed"),
        }
    }
}
