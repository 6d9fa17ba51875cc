//! Tells systemd how the server is doing when a `Type=notify` unit runs it (systemd
//! sets `NOTIFY_SOCKET`): READY once the listeners answer and the journal is replayed,
//! so units ordered after datapool find every accepted write readable; the watchdog fed
//! while accepted writes are applied, so a server that can no longer apply them is
//! restarted; STOPPING once shutdown begins. Outside systemd all of it does nothing.

use std::future::Future;
use std::sync::Arc;

use sd_notify::NotifyState;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::ingest::{Health, IngestError};

/// Sends READY, with `status` (what the server listens on) as the unit's status line,
/// once `replayed` resolves; nothing when `shutdown` fires first or the replay fails
/// (systemd then fails the start when `TimeoutStartSec` runs out, and restarts it).
pub async fn ready_once_replayed(
    replayed: impl Future<Output = Result<(), IngestError>>,
    status: String,
    shutdown: CancellationToken,
) {
    tokio::select! {
        replayed = replayed => match replayed {
            Ok(()) => notify(&[NotifyState::Ready, NotifyState::Status(&status)]).await,
            Err(error) => tracing::error!(%error, "the journal was not replayed: not telling systemd that datapool is ready"),
        },
        () = shutdown.cancelled() => {}
    }
}

/// Sends STOPPING: systemd shows the unit as deactivating while requests drain.
pub async fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("draining requests in flight"),
    ])
    .await;
}

/// Feeds systemd's watchdog when the unit sets `WatchdogSec` (`WATCHDOG_USEC`, and
/// `WATCHDOG_PID` naming this process if set): every half of its timeout, as systemd
/// advises, while `health` says accepted writes are applied. A store that fails them
/// stops the feeding, so systemd restarts datapool and the journal replays what was
/// accepted. Returns when `shutdown` fires: systemd watches only a running service.
pub async fn feed_watchdog(health: Arc<Health>, shutdown: CancellationToken) {
    let Some(period) = sd_notify::watchdog_enabled()
        .map(|timeout| timeout / 2)
        .filter(|period| !period.is_zero())
    else {
        return;
    };
    tracing::debug!(?period, "feeding the systemd watchdog");
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut feeding = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let healthy = health.check();
        match &healthy {
            Ok(()) => notify(&[NotifyState::Watchdog]).await,
            Err(error) if feeding => tracing::error!(
                %error,
                timeout = ?period * 2,
                "no longer feeding the systemd watchdog: systemd restarts datapool once it expires"
            ),
            Err(_) => {}
        }
        feeding = healthy.is_ok();
    }
}

/// Sends `states` to systemd, off the async runtime: the datagram blocks while
/// systemd's socket is full. A failure is logged and otherwise ignored: the server
/// keeps serving whether or not systemd hears about it.
async fn notify(states: &[NotifyState<'_>]) {
    let lines: Vec<String> = states.iter().map(ToString::to_string).collect();
    let sent = tokio::task::spawn_blocking(move || {
        let states: Vec<NotifyState<'_>> = lines.iter().map(|l| NotifyState::Custom(l)).collect();
        sd_notify::notify(&states)
    })
    .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "cannot notify systemd"),
        Err(error) => tracing::warn!(%error, "notifying systemd did not finish"),
    }
}
