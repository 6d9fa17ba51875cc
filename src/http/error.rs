//! Errors as the API shows them, and the request id every response carries.
//!
//! Every failure answers `{"error":{"code","message","requestId"}}` with the same id
//! as the `X-Request-Id` header. Handlers return [`ApiError`]; [`in_context`] (run by
//! the router's [`request_context`] middleware and by the webhook hot path) stamps the
//! id and also turns errors from outside the handlers (unknown routes, rejected bodies,
//! panics) into that same shape, with the headers that say what to do next: the
//! challenges of a 401, the `Retry-After` of a 429 or 503.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use tracing::Instrument;
use utoipa::ToSchema;

use super::ClientAddr;
use crate::auth::Credential;
use crate::ids;
use crate::ingest::IngestError;
use crate::model::ValidationError;
use crate::store::StoreError;

/// Longest body of a foreign error response read back to become the message.
const FOREIGN_MESSAGE_LIMIT: usize = 4096;
/// `Retry-After` of every 503: overload passes and a restart completes within a few
/// seconds, and a sender that waits this long does not hammer a server that is busy or
/// coming back.
pub const UNAVAILABLE_RETRY_AFTER_SECONDS: u64 = 5;
/// The challenge of every 401: an ingest, read or admin key as a bearer token.
const BEARER_CHALLENGE: HeaderValue = HeaderValue::from_static("Bearer");
/// The extra challenge of a 401 where HTTP Basic is accepted: clients that send Basic
/// credentials only once challenged (.NET, Java) then do.
const BASIC_CHALLENGE: HeaderValue = HeaderValue::from_static("Basic realm=\"datapool\"");

/// `req_` and 16 hex characters: names one request in responses and logs.
#[derive(Clone, Debug)]
pub struct RequestId(String);

impl RequestId {
    fn generate() -> Self {
        RequestId(["req_", &ids::sequential_hex()].concat())
    }

    /// The id as it appears in responses and logs.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An error answer: status, a stable code for scripts, and a message for people.
#[derive(Clone, Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
    basic_challenge: bool,
}

impl ApiError {
    /// Every error is made here, so every 503 carries `Retry-After`.
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: (status == StatusCode::SERVICE_UNAVAILABLE)
                .then_some(UNAVAILABLE_RETRY_AFTER_SECONDS),
            basic_challenge: false,
        }
    }

    /// 400 `INVALID_PAYLOAD`: a request body or parameter is invalid.
    pub fn invalid_payload(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_PAYLOAD", message)
    }

    /// 401 `UNAUTHORIZED`: no credential, or one that is not valid.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    /// 403 `FORBIDDEN`: a valid credential without the right.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// 401 `INVALID_SIGNATURE`: the request's signature is missing, stale or wrong.
    pub fn invalid_signature(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE", message)
    }

    /// 403 `CONNECTOR_DISABLED`: the key is valid but its connector is paused.
    pub fn connector_disabled(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "CONNECTOR_DISABLED", message)
    }

    /// 404 `STREAM_NOT_FOUND`: the key does not write to the stream in the URL.
    pub fn stream_not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "STREAM_NOT_FOUND", message)
    }

    /// 413 `PAYLOAD_TOO_LARGE`: the body is over the route's limit.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", message)
    }

    /// 404 `NOT_FOUND`: unknown id or path.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// 409 `CONFLICT`: the request clashes with what is stored.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "CONFLICT", message)
    }

    /// 415 `UNSUPPORTED_MEDIA_TYPE`: the body is not of a type this route reads.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            message,
        )
    }

    /// 429 `RATE_LIMITED` with `Retry-After: seconds`.
    pub fn rate_limited(message: impl Into<String>, retry_after_seconds: u64) -> Self {
        let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message);
        error.retry_after = Some(retry_after_seconds.max(1));
        error
    }

    /// 502 `SOURCE_ERROR`: a connector's source (a database) failed; the message is
    /// the classified reason with the source's own words.
    pub fn source_error(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "SOURCE_ERROR", message)
    }

    /// 408 `REQUEST_TIMEOUT`: the request body did not arrive in time, so a slow sender
    /// cannot hold a request slot and its buffer forever.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "REQUEST_TIMEOUT", message)
    }

    /// 503 `UNAVAILABLE` with `Retry-After`: overloaded or shutting down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
    }

    /// 500 `INTERNAL`: logs `cause` once, here, and tells the caller only that it
    /// failed and which request id to quote.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error; the server log has the cause",
        )
    }

    /// This 401 also offers HTTP Basic (`WWW-Authenticate: Basic realm="datapool"`),
    /// for a request to where Basic is accepted.
    pub fn with_basic_challenge(mut self) -> Self {
        self.basic_challenge = true;
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        ApiError::invalid_payload(error.0)
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::Stopped => ApiError::unavailable("shutting down"),
            IngestError::Store(cause) => ApiError::internal(cause),
            too_large @ IngestError::TooLarge { .. } => {
                ApiError::payload_too_large(too_large.to_string())
            }
            refused => {
                let mut error = ApiError::unavailable(refused.to_string());
                error.retry_after = refused.retry_after_seconds();
                error
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NameTaken(..) | StoreError::Changed => {
                ApiError::conflict(error.to_string())
            }
            StoreError::NotFound => ApiError::not_found("not found"),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    /// The status, with the error kept for [`in_context`] to render with its headers.
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// The router's outermost middleware: [`in_context`] for the client address the
/// listener's dispatch put among the request's extensions, around the rest, which finds
/// the id there.
pub async fn request_context(request: Request, next: Next) -> Response {
    let client = request.extensions().get::<ClientAddr>().map(|c| c.0);
    in_context(request, client, |mut request, id| {
        request.extensions_mut().insert(id);
        next.run(request)
    })
    .await
}

/// Runs `handler` on `request` and its id in the request's context: the id names the
/// tracing span and the `X-Request-Id` header, and every error body is rendered with it.
/// The span also names the `client` address (see [`ClientAddr`]).
pub async fn in_context<F, Fut>(request: Request, client: Option<IpAddr>, handler: F) -> Response
where
    F: FnOnce(Request, RequestId) -> Fut,
    Fut: Future<Output = Response>,
{
    let id = RequestId::generate();
    // Every field given here, none recorded later: a field recorded into an open span
    // makes the log formatter render all its fields again (with the JSON log format,
    // about a tenth of a push's instructions).
    let client = client.map(tracing::field::display);
    let span = tracing::info_span!("request", request_id = %id, client, method = %request.method(), path = %logged_path(request.uri().path()));
    let mut response = handler(request, id.clone()).instrument(span.clone()).await;
    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        response = with_body(response, &error, &id);
    } else if response.status().is_client_error() || response.status().is_server_error() {
        let error = foreign_error(&mut response).await;
        response = with_body(response, &error, &id);
    }
    if let Ok(value) = HeaderValue::from_str(&id.0) {
        response.headers_mut().insert("x-request-id", value);
    }
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "request done"));
    response
}

/// The path as logged: an ingest key in a `…/k/{ingestKey}` URL (SPEC §3.4) shows only
/// its public key id, never its secret.
fn logged_path(path: &str) -> Cow<'_, str> {
    let Some(start) = path
        .strip_prefix("/api/webhook/")
        .and_then(|rest| rest.find("/k/"))
        .map(|at| "/api/webhook/".len() + at + "/k/".len())
    else {
        return Cow::Borrowed(path);
    };
    let end = path[start..].find('/').map_or(path.len(), |at| start + at);
    let shown = match Credential::parse(&path[start..end]) {
        Ok(key) => format!("ik_{}_…", key.key_id()),
        Err(_) => "…".to_owned(),
    };
    Cow::Owned(format!("{}{shown}{}", &path[..start], &path[end..]))
}

/// Every error answer's body (SPEC §3.1): `{"error":{"code","message","requestId"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    /// What went wrong.
    pub error: ErrorDetail<'a>,
}

/// The contents of an [`ErrorBody`].
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail<'a> {
    /// A stable code for scripts, e.g. `INVALID_PAYLOAD`, `UNAUTHORIZED`, `NOT_FOUND`.
    pub code: &'a str,
    /// What went wrong, for people.
    pub message: &'a str,
    /// The request's id, also in the `X-Request-Id` header: quote it when asking why.
    #[schema(pattern = "^req_[0-9a-f]{16,}$")]
    pub request_id: &'a str,
}

fn with_body(response: Response, error: &ApiError, id: &RequestId) -> Response {
    let body = json!(ErrorBody {
        error: ErrorDetail {
            code: error.code,
            message: &error.message,
            request_id: &id.0,
        },
    });
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    add_hints(&mut parts.headers, error);
    Response::from_parts(parts, Body::from(body.to_string()))
}

/// The headers that tell a client what to do next: the challenges of a 401, the
/// `Retry-After` of a 429 or 503.
fn add_hints(headers: &mut HeaderMap, error: &ApiError) {
    if error.status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, BEARER_CHALLENGE);
        if error.basic_challenge {
            headers.append(header::WWW_AUTHENTICATE, BASIC_CHALLENGE);
        }
    }
    if let Some(seconds) = error.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
}

/// An error response not made by [`ApiError`] (an unknown route, a rejected body, a
/// caught panic): its status gives the code, its text the message.
async fn foreign_error(response: &mut Response) -> ApiError {
    let status = response.status();
    let body = std::mem::take(response.body_mut());
    let text = axum::body::to_bytes(body, FOREIGN_MESSAGE_LIMIT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() || status.is_server_error() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "INVALID_PAYLOAD",
        StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
        StatusCode::FORBIDDEN => "FORBIDDEN",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::REQUEST_TIMEOUT => "REQUEST_TIMEOUT",
        StatusCode::CONFLICT => "CONFLICT",
        StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
        StatusCode::TOO_MANY_REQUESTS => "RATE_LIMITED",
        StatusCode::SERVICE_UNAVAILABLE => "UNAVAILABLE",
        s if s.is_server_error() => "INTERNAL",
        _ => "INVALID_PAYLOAD",
    };
    ApiError::new(status, code, message)
}
