//! Request bodies: deadlines and limits. A body that does not arrive in time ends in an
//! error the handlers answer with 408 `REQUEST_TIMEOUT`, so a slow sender cannot hold a
//! request slot and its buffer forever; one past its route's limit gets 413.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Body as AxumBody, Bytes};
use axum::http::{header, HeaderMap};
use axum::BoxError;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{sleep, Sleep};

use super::ApiError;

/// How a body's deadline runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// The whole body within the timeout, counted from the first wait for it: webhook,
    /// ingest and admin bodies are at most a few MiB.
    Whole,
    /// No pause between two pieces longer than the timeout: a 64 MiB bulk import may
    /// take long on a slow link, but may not stall.
    Steady,
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The connection failed or the peer broke the body off.
    #[error(transparent)]
    Read(#[from] hyper::Error),
    /// [`Pace::Whole`]: the body was not complete within its timeout.
    #[error("the request body did not arrive within {0} s")]
    Late(u64),
    /// [`Pace::Steady`]: the body paused for longer than its timeout.
    #[error("the request body paused for more than {0} s")]
    Stalled(u64),
}

impl BodyError {
    /// Whether `error`, or an error it wraps, is a missed body deadline: handlers
    /// answer those with 408 rather than 400.
    pub fn is_timeout(error: &(dyn StdError + 'static)) -> bool {
        let mut current = Some(error);
        while let Some(error) = current {
            if let Some(BodyError::Late(_) | BodyError::Stalled(_)) = error.downcast_ref() {
                return true;
            }
            current = error.source();
        }
        false
    }
}

pin_project! {
    /// A request body that fails with [`BodyError::Late`] or [`BodyError::Stalled`]
    /// when it misses its deadline. The timer is armed only once the body has to be
    /// waited for: a body that came with its headers costs no timer.
    pub struct TimedBody {
        #[pin]
        inner: Incoming,
        #[pin]
        timer: Option<Sleep>,
        timeout: Duration,
        pace: Pace,
    }
}

impl TimedBody {
    /// `inner`, bounded by `timeout` as `pace` says.
    pub fn new(inner: Incoming, timeout: Duration, pace: Pace) -> Self {
        TimedBody {
            inner,
            timer: None,
            timeout,
            pace,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            if *this.pace == Pace::Steady {
                this.timer.set(None);
            }
            return Poll::Ready(frame.map(|frame| frame.map_err(BodyError::Read)));
        }
        if this.timer.is_none() {
            this.timer.set(Some(sleep(*this.timeout)));
        }
        if let Some(timer) = this.timer.as_pin_mut() {
            ready!(timer.poll(cx));
        }
        let seconds = this.timeout.as_secs();
        Poll::Ready(Some(Err(match this.pace {
            Pace::Whole => BodyError::Late(seconds),
            Pace::Steady => BodyError::Stalled(seconds),
        })))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The declared `Content-Length`, if any and readable.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads a whole body of at most `limit` bytes, refusing with 413 as soon as it passes
/// the limit (at once when `Content-Length` already says so) without reading the rest.
/// A body that came in one piece is kept as it came, without a copy.
pub async fn read_limited(
    headers: &HeaderMap,
    body: AxumBody,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::payload_too_large(format!("the body exceeds {limit} bytes"));
    if declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
        Err(error) => Err(unreadable(error)),
    }
}

/// A body that broke off, or did not arrive in time.
pub fn unreadable(error: impl Into<BoxError>) -> ApiError {
    body_failure(error, "")
}

/// A body that could not be read, `note` appended to the message: 408 when it did not
/// arrive in time, else 400.
pub fn body_failure(error: impl Into<BoxError>, note: &str) -> ApiError {
    let error = error.into();
    if BodyError::is_timeout(&*error) {
        ApiError::request_timeout(format!("{error}{note}"))
    } else {
        ApiError::invalid_payload(format!("the body could not be read: {error}{note}"))
    }
}
