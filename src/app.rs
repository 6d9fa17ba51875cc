//! Builds the services from a [`Config`], binds the listeners, runs until the shutdown
//! token fires, then drains connections and flushes the store, in that order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{InFlight, Services};
use crate::auth::{Credential, FailedAuthLimiter, KeyKind, RateLimiter};
use crate::config::Config;
use crate::connectors::{run_flusher, Activity, PollContext, Pollers, PushConnectors};
use crate::http::tls::{self, TlsError};
use crate::http::TrustedProxies;
use crate::ingest::{retention, Ingest};
use crate::metrics::Metrics;
use crate::outbound::{Outbound, OutboundError, TargetGuard};
use crate::store::{Store, StoreError};
use crate::ui::Sessions;
use crate::{http, private_file, systemd};

/// Name of the file in the data dir that holds the admin token (mode 0600).
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// Bytes in a MiB, for settings given in MiB.
const MIB: usize = 1024 * 1024;
/// Extra time, past the connection drain, for tasks to notice the shutdown.
const TASK_GRACE: Duration = Duration::from_secs(2);

/// Why the server cannot start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store cannot be opened or flushed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// TLS cannot be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The delivery client cannot be built.
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    /// A listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The admin token file cannot be written.
    #[error("cannot write the admin token to {}: {source}", .path.display())]
    AdminToken {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A blocking start-up step was cancelled.
    #[error("start-up was interrupted")]
    Interrupted,
    /// The applier stopped abnormally; exiting lets the supervisor restart the server,
    /// which replays the accepted writes from the journal.
    #[error("accepted writes were no longer applied (the applier stopped); exiting so that the server is restarted")]
    ApplierDied,
}

/// A server with its store open and its listeners bound, ready to run.
pub struct Server {
    config: Config,
    store: Store,
    tls: Arc<ServerConfig>,
    https: TcpListener,
    http: Option<TcpListener>,
}

impl Server {
    /// Opens the store, issues the admin token on first start, loads or generates the
    /// TLS material and binds the listeners (port 0 picks a free port).
    pub async fn bind(config: Config) -> Result<Server, AppError> {
        let data_dir = config.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&data_dir))
            .await
            .map_err(|_| AppError::Interrupted)??;
        let (admin_store, admin_dir) = (store.clone(), config.data_dir.clone());
        tokio::task::spawn_blocking(move || ensure_admin_token(&admin_store, &admin_dir))
            .await
            .map_err(|_| AppError::Interrupted)??;
        let operator = config.tls_cert.as_deref().zip(config.tls_key.as_deref());
        let tls = tls::server_config(operator, &config.data_dir)?;
        let https = bind(config.listen).await?;
        let http = match config.http_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Server {
            config,
            store,
            tls,
            https,
            http,
        })
    }

    /// Runs until `shutdown` fires; then stops accepting, lets requests in flight finish
    /// (bounded by the configured timeout), lets the committer and the applier finish
    /// what was accepted, and flushes the store last.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let background = TaskTracker::new();
        let stop_background = CancellationToken::new();
        let budget_bytes = self.config.max_unapplied_mib.saturating_mul(MIB);
        let metrics = Arc::new(Metrics::default());
        // Opening the journal reads and checks every file and syncs the store: off the
        // async runtime. The tasks it starts still run on the runtime's handle.
        let (store, tasks, stop, budget) = (
            self.store.clone(),
            background.clone(),
            stop_background.clone(),
            (budget_bytes, metrics.clone()),
        );
        let ingest =
            tokio::task::spawn_blocking(move || Ingest::start(store, &tasks, stop, budget))
                .await
                .map_err(|_| AppError::Interrupted)??;
        let health = ingest.health();
        let replayed = ingest.replayed();
        background.spawn(retention::run(self.store.clone(), shutdown.clone()));
        let activity = Arc::new(Activity::new(self.store.clone(), metrics.clone()));
        background.spawn(run_flusher(activity.clone(), stop_background.clone()));
        // Pollers stop when shutdown starts, releasing their handles on the ingest
        // pipeline so it can finish once the listeners have drained.
        let pollers = Pollers::start(
            PollContext {
                store: self.store.clone(),
                ingest: ingest.clone(),
                activity: activity.clone(),
            },
            &background,
            shutdown.clone(),
        );
        let outbound = Outbound::start(
            self.store.clone(),
            metrics.clone(),
            TargetGuard {
                deny_private: self.config.outbound_deny_private,
            },
            &background,
            shutdown.clone(),
        )?;
        let state = Arc::new(Services {
            store: self.store.clone(),
            shutdown: shutdown.clone(),
            auth_failures: Arc::new(FailedAuthLimiter::default()),
            ingest,
            push: Arc::new(PushConnectors::new(self.store.clone())),
            rates: Arc::new(RateLimiter::default()),
            in_flight: InFlight::new(self.config.max_ingest_in_flight),
            keys_in_flight: Arc::default(),
            activity,
            pollers,
            outbound,
            trusted_proxies: TrustedProxies::new(self.config.trusted_proxies.clone()),
            metrics,
            metrics_token: self.config.metrics_token.clone(),
            sessions: Sessions::default(),
        });
        let body_timeout = Duration::from_secs(self.config.request_body_timeout_seconds);
        let routes = http::Routes::new(state, body_timeout);
        let drain = Duration::from_secs(self.config.shutdown_timeout_seconds);
        let connections = http::Connections::new(
            self.config.max_connections,
            Duration::from_secs(self.config.idle_timeout_seconds),
            drain,
        );
        let listeners = TaskTracker::new();
        let mut serving = Vec::new();
        for (listener, tls) in [(Some(self.https), Some(self.tls)), (self.http, None)] {
            let Some(listener) = listener else { continue };
            if let Ok(addr) = listener.local_addr() {
                let scheme = if tls.is_some() { "https" } else { "http" };
                tracing::info!(%addr, scheme, "listening");
                serving.push(format!("{scheme}://{addr}"));
            }
            listeners.spawn(http::serve(
                listener,
                tls,
                routes.clone(),
                connections.clone(),
                shutdown.clone(),
            ));
        }
        // The listeners answer from here on; systemd hears so once the journal is replayed.
        background.spawn(systemd::ready_once_replayed(
            replayed,
            format!("serving {}", serving.join(" and ")),
            shutdown.clone(),
        ));
        background.spawn(systemd::feed_watchdog(health.clone(), shutdown.clone()));
        // The listeners hold the only handles to the ingest pipeline from here on: once
        // they have drained, the committer and the applier finish and stop.
        drop(routes);
        listeners.close();
        background.close();
        let applier_died = tokio::select! {
            () = shutdown.cancelled() => false,
            () = health.applier_dead() => {
                shutdown.cancel();
                true
            }
        };
        tracing::info!("shutting down: draining requests in flight");
        systemd::stopping().await;
        if tokio::time::timeout(drain + TASK_GRACE, listeners.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections did not finish in time");
        }
        stop_background.cancel();
        if tokio::time::timeout(TASK_GRACE, background.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time; writes not yet applied are replayed on the next start");
        }
        self.store.flush().await?;
        tracing::info!("stopped; the store is flushed");
        if applier_died {
            return Err(AppError::ApplierDied);
        }
        Ok(())
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })
}

/// On first start, issues the admin token (see [`issue_admin_token`]).
fn ensure_admin_token(store: &Store, data_dir: &Path) -> Result<(), AppError> {
    if let Some(key_id) = store.admin_key_id()? {
        tracing::debug!(%key_id, "admin token already issued");
        return Ok(());
    }
    issue_admin_token(store, data_dir)?;
    Ok(())
}

/// Creates a new admin token, writes it to the data dir's [`ADMIN_TOKEN_FILE`] and
/// stores only its hash; a previous token stops working. The log names the file,
/// never the token. Returns the file's path.
fn issue_admin_token(store: &Store, data_dir: &Path) -> Result<PathBuf, AppError> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let token = Credential::generate(KeyKind::Admin);
    // The file first: if writing it fails, no token exists that nobody knows.
    private_file::write(&path, format!("{}\n", token.expose()).as_bytes()).map_err(|source| {
        AppError::AdminToken {
            path: path.clone(),
            source,
        }
    })?;
    store.set_admin_key(&token.record("admin", jiff::Timestamp::now()))?;
    tracing::info!(file = %path.display(), key_id = %token.key_id(), "issued the admin token; read it from the file");
    Ok(path)
}

/// Replaces the admin token of a stopped server's data dir (offline: the data dir's
/// lock refuses while a server runs). For a lost or leaked token.
pub fn reset_admin_token(data_dir: &Path) -> Result<PathBuf, AppError> {
    let store = Store::open(data_dir)?;
    issue_admin_token(&store, data_dir)
}
