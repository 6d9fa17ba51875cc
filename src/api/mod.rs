//! Request handlers. They parse, call the model and the store, and shape responses;
//! routing, request ids and error bodies live in [`crate::http`].

pub mod admin;
mod in_flight;
pub mod ingest;
pub mod openapi;
pub mod ops;
pub mod read;

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{header, HeaderMap, Uri};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::auth::{Credential, FailedAuthLimiter, KeyKind, KeyRecord, RateLimiter};
use crate::connectors::{Activity, Pollers, PushConnectors};
use crate::http::{ApiError, TrustedProxies};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::model::Secret;
use crate::outbound::Outbound;
use crate::store::Store;
use crate::ui::Sessions;

pub use in_flight::InFlight;

/// What every handler shares, behind one `Arc`: handing it to a request costs one
/// reference count.
pub type AppState = Arc<Services>;

/// The services handlers use.
pub struct Services {
    /// The store.
    pub store: Store,
    /// Fired when the server starts shutting down; `/readyz` turns 503 then.
    pub shutdown: CancellationToken,
    /// Failed admin/read authentications per client address.
    pub auth_failures: Arc<FailedAuthLimiter>,
    /// Submits writes to the journal and follows their application.
    pub ingest: Ingest,
    /// Push connectors by ingest key, cached; every connector write goes through it so
    /// that none leaves a revoked key cached.
    pub push: Arc<PushConnectors>,
    /// Token buckets per connector.
    pub rates: Arc<RateLimiter>,
    /// Slots for ingest requests in flight, in all and per connector.
    pub in_flight: InFlight,
    /// Idempotency keys whose first request is still being processed.
    pub keys_in_flight: Arc<ingest::KeysInFlight>,
    /// What each connector has been doing: state, log, monitoring.
    pub activity: Arc<Activity>,
    /// The SQL pollers' supervisor, told about every connector change.
    pub pollers: Arc<Pollers>,
    /// The subscriptions' delivery workers, told about every subscription change.
    pub outbound: Arc<Outbound>,
    /// The reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// What the server counts, for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The bearer token `/metrics` asks for, when the configuration sets one.
    pub metrics_token: Option<Secret>,
    /// The web UI's signed-in browsers, accepted by the admin and read APIs in place
    /// of the admin token.
    pub sessions: Sessions,
}

impl Services {
    /// The stored key a bearer token proves, or `None` when the token is malformed,
    /// unknown or wrong (all three look the same to the caller).
    pub fn authenticate(&self, token: &str) -> Result<Option<KeyRecord>, ApiError> {
        let Ok(credential) = Credential::parse(token) else {
            return Ok(None);
        };
        let record = self.store.key(credential.key_id())?;
        Ok(record.filter(|record| record.matches(&credential)))
    }

    /// Authenticates an admin or read request from `client`: 429 while that address is
    /// refused for failing too often, 401 (counted against it) for a missing or invalid
    /// token, else the key's record for the caller to check its rights.
    pub fn identify(
        &self,
        client: Option<IpAddr>,
        token: Option<&str>,
    ) -> Result<KeyRecord, ApiError> {
        self.check_not_refused(client)?;
        let record = match token {
            Some(token) => self.authenticate(token)?,
            None => None,
        };
        record.ok_or_else(|| {
            self.failed_authentication(
                client,
                "missing or invalid credential (Authorization: Bearer …)",
            )
        })
    }

    /// 429 while `client` is refused for failing to authenticate too often.
    pub fn check_not_refused(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        match client.and_then(|ip| self.auth_failures.blocked_for(ip)) {
            Some(wait) => Err(ApiError::rate_limited(
                "too many failed authentications from this address; try again later",
                wait.as_secs() + 1,
            )),
            None => Ok(()),
        }
    }

    /// Counts a failed authentication against `client`; the 401 to answer, saying
    /// `message`.
    pub fn failed_authentication(&self, client: Option<IpAddr>, message: &str) -> ApiError {
        if let Some(ip) = client {
            if self.auth_failures.record_failure(ip) {
                tracing::warn!(client = %ip, "refusing a client address after repeated failed authentications");
            }
        }
        ApiError::unauthorized(message)
    }
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether a route takes a key in the query string (`?key=`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum QueryKey {
    /// No: only `Authorization: Bearer`.
    Refused,
    /// A read key, for EventSource (SPEC §5).
    ReadKey,
}

/// The bearer token, else a key in the query where `query` allows it. Any other key in
/// the query is refused without being checked (nor counted as a failed attempt): a
/// credential in a URL ends up in browser histories and proxy logs, so only a read key,
/// and only where EventSource needs it, may travel there.
pub fn presented_token(
    uri: &Uri,
    headers: &HeaderMap,
    query: QueryKey,
) -> Result<Option<String>, ApiError> {
    let bearer = bearer_token(headers).map(str::to_owned);
    let Some(key) = query_key(uri) else {
        return Ok(bearer);
    };
    if query == QueryKey::Refused || KeyKind::claimed_by(&key) != Some(KeyKind::Read) {
        return Err(ApiError::unauthorized(
            "a key in the query string (?key=) is accepted only for a read key on \
             GET /api/streams/{stream}/events; send Authorization: Bearer <key>",
        ));
    }
    Ok(bearer.or(Some(key)))
}

/// The value of `?key=`, if the query has one.
fn query_key(uri: &Uri) -> Option<String> {
    let query = uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "key")
        .map(|(_, value)| value.into_owned())
}

/// A JSON request body: absent or JSON content type, else 415; invalid JSON is a 400
/// that says where.
pub fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    check_json_content_type(headers)?;
    parse_json(body)
}

/// Parses JSON, or a 400 that says what and where.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_payload(format!("invalid JSON: {e}")))
}

/// The media type of the `Content-Type` header, lowercased and without parameters.
pub fn content_type_essence(headers: &HeaderMap) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE)?;
    let essence = content_type
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("");
    Some(essence.trim().to_ascii_lowercase())
}

/// Accepts an absent `Content-Type` or a JSON one (`application/json`, `*/*+json`,
/// with any parameters); anything else is 415.
pub fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    match content_type_essence(headers) {
        Some(essence) if essence != "application/json" && !essence.ends_with("+json") => {
            Err(ApiError::unsupported_media_type(format!(
                "the body must be JSON (Content-Type: application/json), not {essence:?}"
            )))
        }
        _ => Ok(()),
    }
}
