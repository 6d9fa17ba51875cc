//! Outbound subscriptions at run time: one delivery worker per active subscription,
//! kept in step with the stored subscriptions by a supervisor, sharing one HTTP client
//! (rustls, no redirects, the [target guard](guard) on every connection) and a global
//! cap on deliveries in flight.
//!
//! ```text
//! applier ──Store::apply: change + its deliveries, one transaction──► outbox
//!                                                  │ wake (watch)
//!   supervisor ──starts/stops──► worker per active subscription ──POST──► receiver
//!                                  │ attempt, next state (retry / delivered / exhausted)
//!                                  ▼
//!                           deliveries + delivery log
//! ```
//!
//! A worker sends one delivery at a time, so a slow or hanging receiver holds up only
//! its own subscription (and at most one in-flight slot, for its timeout).

pub mod guard;
mod sign;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::store::Store;
pub use guard::{GuardError, TargetGuard};

/// Deliveries in flight at once across all subscriptions: each holds a connection and
/// may wait up to 60 s; 64 keeps a box with many slow receivers within a few dozen
/// sockets while a healthy receiver is never starved by up to 63 hanging ones.
pub const MAX_DELIVERIES_IN_FLIGHT: usize = 64;
/// How often the supervisor compares its workers with the store even without a
/// wake-up, so a missed notification costs at most this delay.
const RECONCILE_EVERY: Duration = Duration::from_secs(30);
/// Longest a delivery client waits to connect; the subscription's timeout bounds the
/// whole attempt as well.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the delivery machinery cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The HTTP client cannot be built.
    #[error("cannot build the delivery HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What the workers share.
struct Context {
    store: Store,
    client: reqwest::Client,
    guard: TargetGuard,
    /// The global in-flight cap.
    slots: Semaphore,
    /// Wakes the supervisor.
    wake: Notify,
    /// Where attempts are counted by outcome.
    metrics: Arc<Metrics>,
}

impl Context {
    fn changed(&self) {
        self.wake.notify_one();
    }
}

/// The handle admin handlers use: the target guard, and telling the supervisor that
/// subscriptions changed.
pub struct Outbound {
    context: Arc<Context>,
}

impl Outbound {
    /// Starts the supervisor on `tasks`; it and every worker stop when `stop` fires.
    /// Attempts are counted into `metrics`.
    pub fn start(
        store: Store,
        metrics: Arc<Metrics>,
        guard: TargetGuard,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, OutboundError> {
        let client = reqwest::Client::builder()
            .dns_resolver(guard.resolver())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        let context = Arc::new(Context {
            store,
            client,
            guard,
            slots: Semaphore::new(MAX_DELIVERIES_IN_FLIGHT),
            wake: Notify::new(),
            metrics,
        });
        tasks.spawn(supervise(context.clone(), tasks.clone(), stop));
        Ok(Arc::new(Outbound { context }))
    }

    /// The target guard subscriptions are checked against.
    pub fn guard(&self) -> TargetGuard {
        self.context.guard
    }

    /// Asks the supervisor to start or stop workers after a subscription changed.
    pub fn changed(&self) {
        self.context.changed();
    }
}

/// Keeps one worker per active subscription until `stop` fires.
async fn supervise(context: Arc<Context>, tasks: TaskTracker, stop: CancellationToken) {
    let mut running: HashMap<String, CancellationToken> = HashMap::new();
    loop {
        match context.store.subscriptions() {
            Ok(subscriptions) => {
                let active: Vec<String> = subscriptions
                    .into_iter()
                    .filter(|s| s.spec.active)
                    .map(|s| s.id)
                    .collect();
                running.retain(|id, token| {
                    let keep = active.contains(id) && !token.is_cancelled();
                    if !keep {
                        token.cancel();
                    }
                    keep
                });
                for id in active {
                    if running.contains_key(&id) {
                        continue;
                    }
                    let token = stop.child_token();
                    running.insert(id.clone(), token.clone());
                    tasks.spawn(run_worker(context.clone(), id, token));
                }
            }
            Err(error) => tracing::warn!(%error, "reading subscriptions for delivery failed"),
        }
        tokio::select! {
            () = context.wake.notified() => {}
            () = tokio::time::sleep(RECONCILE_EVERY) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Runs a worker; once it ends on its own (its subscription went inactive), its token
/// is cancelled so the supervisor starts a fresh one if the subscription is active.
async fn run_worker(context: Arc<Context>, id: String, token: CancellationToken) {
    worker::run(context.clone(), id, token.clone()).await;
    token.cancel();
}
