//! Background sweeps: expired idempotency keys, connector log entries past 30 days,
//! subscription delivery logs and finished deliveries past 30 days, and changes older than the change log's retention (after which SSE clients resuming
//! from them get `event: reset`).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How long the change log keeps a change (SPEC §5: 7 days).
pub const CHANGE_RETENTION: SignedDuration = SignedDuration::from_hours(7 * 24);
/// How long a connector's log keeps an entry (SPEC §7: 30 days).
pub const LOG_RETENTION: SignedDuration = SignedDuration::from_hours(30 * 24);
/// How often the sweeps run.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Sweeps every `SWEEP_EVERY` (a minute) until `stop` fires.
pub async fn run(store: Store, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let store = store.clone();
        let swept = tokio::task::spawn_blocking(move || {
            let now = Timestamp::now();
            let keys = store.sweep_idempotency(now)?;
            let changes =
                store.sweep_changes(now.checked_sub(CHANGE_RETENTION).unwrap_or(Timestamp::MIN))?;
            let deliveries =
                store.sweep_deliveries(now.checked_sub(LOG_RETENTION).unwrap_or(Timestamp::MIN))?;
            Ok::<_, crate::store::StoreError>((keys, changes, deliveries))
        })
        .await;
        match swept {
            Ok(Ok((keys, changes, deliveries))) if keys + changes + deliveries > 0 => {
                tracing::debug!(
                    keys,
                    changes,
                    deliveries,
                    "swept expired idempotency keys, old changes and old deliveries"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "retention sweep failed"),
            Err(error) => tracing::warn!(%error, "retention sweep task failed"),
        }
    }
}
