//! Idle connections: one with no request open for the idle timeout is asked to close,
//! HTTP/1.1 keep-alive and HTTP/2 alike (hyper has no idle timeout for HTTP/2), so
//! idle peers do not hold connection slots and file descriptors.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body as AxumBody, Bytes};
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{sleep_until, Instant};

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
