//! Accept loops: one per listener, each connection on its own task, HTTP/1.1 and
//! HTTP/2 on the same port (ALPN for TLS, the preface for plain HTTP). The listeners
//! share a cap on open connections, and every connection closes once idle.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::Response;
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::idle::{Activity, StalledWrites, TrackedBody};
use super::Routes;

/// How long a client may take over the TLS handshake: a slow or silent client must not
/// hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often an HTTP/2 connection is pinged: often enough that a peer that vanished
/// (power loss, a dropped NAT mapping) is noticed within a minute.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed: generous for a
/// busy peer on a slow link.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Least time between two warnings that the connection cap is reached, so a server
/// held at its cap logs a line a minute, not one per connection.
const CAP_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// How the listeners treat connections; one value, cloned, is shared by all of them.
#[derive(Clone)]
pub struct Connections {
    slots: Arc<Semaphore>,
    max: usize,
    idle_timeout: Duration,
    drain: Duration,
}

impl Connections {
    /// At most `max` connections open across the listeners, each closed after
    /// `idle_timeout` with no request; on shutdown, requests in flight get `drain`.
    pub fn new(max: usize, idle_timeout: Duration, drain: Duration) -> Self {
        Connections {
            slots: Arc::new(Semaphore::new(max)),
            max,
            idle_timeout,
            drain,
        }
    }

    /// A slot for a connection just accepted; at the cap, waits for one to close.
    /// `None` on shutdown.
    async fn slot(
        &self,
        shutdown: &CancellationToken,
        warned: &mut Option<Instant>,
    ) -> Option<OwnedSemaphorePermit> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Some(slot);
        }
        if warned.is_none_or(|at| at.elapsed() >= CAP_WARNING_INTERVAL) {
            tracing::warn!(
                max_connections = self.max,
                "connection cap reached; new connections wait until one closes"
            );
            *warned = Some(Instant::now());
        }
        tokio::select! {
            _ = shutdown.cancelled() => None,
            slot = self.slots.clone().acquire_owned() => slot.ok(),
        }
    }
}

/// Serves `routes` on `listener` until `shutdown` fires, then stops accepting, lets
/// connections finish their requests in flight for up to the drain time, and returns.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    routes: Routes,
    connections: Connections,
    shutdown: CancellationToken,
) {
    let tls = tls.map(TlsAcceptor::from);
    let tasks = TaskTracker::new();
    let mut warned = None;
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // At the cap this one waits, unread, and the loop accepts no more until a
        // connection closes: later ones wait in the kernel's accept queue.
        let Some(slot) = connections.slot(&shutdown, &mut warned).await else {
            break;
        };
        let watch = Watch {
            activity: Activity::new(),
            idle_timeout: connections.idle_timeout,
            shutdown: shutdown.clone(),
        };
        let routes = routes.clone();
        tasks.spawn(serve_connection(
            stream,
            remote,
            tls.clone(),
            routes,
            watch,
            slot,
        ));
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(connections.drain, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tasks.len(),
            "connections still open after the drain timeout; closing them"
        );
    }
}

/// Serves one accepted connection, holding its `slot` until it closes: the TLS
/// handshake (bounded) when `tls` is set, then HTTP.
async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
    routes: Routes,
    watch: Watch,
    _slot: OwnedSemaphorePermit,
) {
    // Small writes (an SSE event, an HTTP/2 frame) go out at once, not after the
    // peer acknowledged the previous segment.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%remote, %error, "cannot set TCP_NODELAY");
    }
    // Beneath TLS, so that a handshake's writes are watched as well.
    let stream = StalledWrites::new(stream, watch.idle_timeout);
    let activity = watch.activity.clone();
    // A combinator, not an `async` block: a block awaiting the future it captured
    // would hold it twice (the capture and the awaited copy), doubling what hyper moves
    // into place for every request (9.4 KiB instead of 4.7).
    let service = service_fn(move |request: Request<Incoming>| {
        let open = activity.open();
        routes.respond(request, remote).map(move |response| {
            Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, open)))
        })
    });
    match tls {
        None => watch.serve(stream, service).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => watch.serve(stream, service).await,
                Ok(Err(error)) => tracing::debug!(%remote, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
        }
    }
}

/// What ends one connection early: the server shutting down, or the connection idle.
struct Watch {
    activity: Arc<Activity>,
    idle_timeout: Duration,
    shutdown: CancellationToken,
}

impl Watch {
    /// Runs one connection; on shutdown or once idle, asks it to finish what is in
    /// flight and close (HTTP/2: GOAWAY).
    async fn serve<S, Svc>(self, stream: S, service: Svc)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        Svc: Service<Request<Incoming>, Response = Response<TrackedBody>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        Svc::Future: Send + 'static,
    {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // HTTP/1: the next request's headers must arrive within the idle timeout.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.idle_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            _ = self.closing() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "connection ended with an error");
        }
    }

    /// Returns when the connection should close: shutdown, or no request for the idle
    /// timeout.
    async fn closing(&self) {
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            _ = self.activity.idle(self.idle_timeout) => {}
        }
    }
}
