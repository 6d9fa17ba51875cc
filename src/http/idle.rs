//! Idle connections: one with no request open for the idle timeout is asked to close,
//! HTTP/1.1 keep-alive and HTTP/2 alike (hyper has no idle timeout for HTTP/2), and one
//! whose peer stops reading what it is sent is closed once a write has waited that
//! long ([`StalledWrites`]), so idle and stalled peers do not hold connection slots
//! and file descriptors.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body as AxumBody, Bytes};
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, sleep_until, Instant, Sleep};

/// What one connection is doing: its open requests (a response still being sent
/// counts, a Server-Sent Events stream too) and when the last one ended.
pub struct Activity {
    open: AtomicUsize,
    /// Milliseconds from `since` to the end of the last request.
    last_end_ms: AtomicU64,
    since: Instant,
}

impl Activity {
    /// A connection that opened now, with no request yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            open: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            since: Instant::now(),
        })
    }

    /// Counts a request open until the returned guard is dropped.
    pub fn open(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::AcqRel);
        Open(self.clone())
    }

    /// Returns once the connection has had no request open for `timeout`.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let now = Instant::now();
            let wake = if self.open.load(Ordering::Acquire) > 0 {
                now + timeout
            } else {
                let last_end = Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
                let deadline = self.since + last_end + timeout;
                if deadline <= now {
                    return;
                }
                deadline
            };
            sleep_until(wake).await;
        }
    }
}

/// A request counted as open on its connection; dropping it ends the request.
pub struct Open(Arc<Activity>);

impl Drop for Open {
    fn drop(&mut self) {
        let activity = &self.0;
        let elapsed = u64::try_from(activity.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Stamped before the count drops, so a watcher that sees no request open sees
        // when the last one ended.
        activity.last_end_ms.store(elapsed, Ordering::Release);
        activity.open.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project! {
    /// A response body that keeps its request counted as open until hyper has sent
    /// it, or dropped it because the peer went away.
    pub struct TrackedBody {
        #[pin]
        inner: AxumBody,
        open: Open,
    }
}

impl TrackedBody {
    /// `inner`, its request open while it lives.
    pub fn new(inner: AxumBody, open: Open) -> Self {
        TrackedBody { inner, open }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// A connection's stream whose writes fail once one has waited `timeout` for the
    /// peer to read: a response counts as open until sent, so a peer that stops
    /// reading would otherwise never let its connection go idle.
    pub struct StalledWrites<S> {
        #[pin]
        inner: S,
        timeout: Duration,
        // Armed while a write waits for room in the socket; dropped on progress.
        stalled: Option<Pin<Box<Sleep>>>,
    }
}

impl<S> StalledWrites<S> {
    /// `inner`, its writes allowed to wait at most `timeout`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        StalledWrites {
            inner,
            timeout,
            stalled: None,
        }
    }
}

/// Passes `result` on, arming the stall timer while it is pending and failing the write
/// once the timer fires.
fn watch_progress<T>(
    result: Poll<io::Result<T>>,
    stalled: &mut Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> Poll<io::Result<T>> {
    if result.is_ready() {
        *stalled = None;
        return result;
    }
    let timer = stalled.get_or_insert_with(|| Box::pin(sleep(timeout)));
    match timer.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer stopped reading",
        ))),
        Poll::Pending => Poll::Pending,
    }
}

impl<S: AsyncRead> AsyncRead for StalledWrites<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for StalledWrites<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write(cx, buf);
        watch_progress(result, this.stalled, *this.timeout, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write_vectored(cx, bufs);
        watch_progress(result, this.stalled, *this.timeout, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let result = this.inner.poll_flush(cx);
        watch_progress(result, this.stalled, *this.timeout, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let result = this.inner.poll_shutdown(cx);
        watch_progress(result, this.stalled, *this.timeout, cx)
    }
}
