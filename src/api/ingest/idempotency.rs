//! Idempotency (SPEC §3.1) and sender deduplication (§3.4): a repeat of a key within
//! the connector's window is answered with the first response and not processed again.
//! The key comes from `Idempotency-Key`, else from the connector's `dedup` source (a
//! header such as `webhook-id`, or a JSON pointer into the body such as `/messageId`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::success;
use crate::api::Services;
use crate::http::ApiError;
use crate::ingest::{Charge, Hold};
use crate::model::{item_id, Connector, Dedup, LogLevel};
use crate::store::{Accepted, IdempotencyRecord};

/// How long an idempotency key is remembered unless the connector says otherwise.
pub const DEFAULT_IDEMPOTENCY_WINDOW_SECONDS: u64 = 24 * 3600;
/// Longest idempotency key, in characters (SPEC §3.1).
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Idempotency keys (`connector id \0 key`) whose first request is still in flight: a
/// concurrent repeat gets 409 rather than being processed twice.
#[derive(Debug, Default)]
pub struct KeysInFlight(Mutex<HashSet<Vec<u8>>>);

/// Holds a key in [`KeysInFlight`] until dropped; owned, so that it can outlive the
/// request ([`submit_holding`]).
pub(super) struct KeyGuard {
    keys: Arc<KeysInFlight>,
    key: Vec<u8>,
}

impl KeysInFlight {
    fn claim(self: &Arc<Self>, key: &[u8]) -> Option<KeyGuard> {
        let mut keys = self.0.lock().unwrap_or_else(|p| p.into_inner());
        keys.insert(key.to_vec()).then(|| KeyGuard {
            keys: self.clone(),
            key: key.to_vec(),
        })
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.keys
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// The outcome of claiming a request's idempotency key.
pub(super) enum Claim {
    /// Process the request, holding the key (if it has one) until it is committed.
    Proceed(Option<KeyGuard>),
    /// A repeat: this is the first answer again.
    Replay(Response),
}

/// The scoped idempotency key (`connector id \0 key`), if the request carries one:
/// `Idempotency-Key` first, else the connector's dedup source. `body` is the parsed
/// body, needed (and given) only for a JSON pointer source. The IETF draft's quoted
/// form `"abc"` is the same key as `abc`.
pub(super) fn key(
    headers: &HeaderMap,
    connector: &Connector,
    body: Option<&Value>,
) -> Result<Option<Vec<u8>>, ApiError> {
    let text = match headers.get("idempotency-key") {
        Some(value) => Some(header_text(value, "Idempotency-Key")?),
        None => match &connector.spec.dedup {
            Some(Dedup::Header(name)) => headers
                .get(name.as_str())
                .map(|value| header_text(value, name))
                .transpose()?,
            Some(Dedup::JsonPointer(pointer)) => body
                .and_then(|body| body.pointer(pointer))
                .and_then(item_id),
            None => None,
        },
    };
    let Some(text) = text else {
        return Ok(None);
    };
    let key = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(&text);
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !key.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Err(ApiError::invalid_payload(
            "an idempotency key must be 1-255 printable ASCII characters",
        ));
    }
    let mut scoped = connector.id.as_bytes().to_vec();
    scoped.push(0);
    scoped.extend_from_slice(key.as_bytes());
    Ok(Some(scoped))
}

fn header_text(value: &HeaderValue, name: &str) -> Result<String, ApiError> {
    value
        .to_str()
        .map(|text| text.trim().to_owned())
        .map_err(|_| ApiError::invalid_payload(format!("the {name} header is not readable text")))
}

/// The SHA-256 of a body, to notice a key repeated with a different body.
pub(super) fn digest(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))
}

/// Claims `key` (if the request has one) for this request: 409 while another request
/// holds it, the first answer when it was seen before (a different body, when `digest`
/// is known, is noted as a warning in the connector's log), else the guard.
pub(super) fn claim(
    services: &Services,
    connector: &Connector,
    key: Option<&[u8]>,
    digest: Option<&str>,
) -> Result<Claim, ApiError> {
    let Some(key) = key else {
        return Ok(Claim::Proceed(None));
    };
    // Claim the key before looking it up: of two repeats racing, one is processed and
    // the other gets 409 or, once the first is committed, its answer.
    let guard = services.keys_in_flight.claim(key).ok_or_else(|| {
        ApiError::conflict("a request with this idempotency key is still being processed")
    })?;
    let Some(first) = services.ingest.idempotency(key, Timestamp::now())? else {
        return Ok(Claim::Proceed(Some(guard)));
    };
    if digest.is_some_and(|digest| digest != first.body_sha256) {
        let message = "an idempotency key was repeated with a different body; answered with the first response";
        services
            .activity
            .note(&connector.id, LogLevel::Warn, "idempotency", message.into());
    }
    let mut response = success(connector, first.body);
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(Claim::Replay(response))
}

/// Submits `accepted`, which carries the idempotency record of `claim`'s key; the
/// claim goes with the write to the committer, which releases the key only once the
/// commit's outcome is known. A client that hangs up after its write was queued drops
/// the request, but not the claim, so a retry meanwhile gets 409 and, once the write is
/// committed, the first answer (`Idempotent-Replayed`), never a second write.
pub(super) async fn submit_holding(
    services: &Services,
    accepted: Accepted,
    charge: Charge,
    claim: Option<KeyGuard>,
) -> Result<u64, ApiError> {
    let hold = claim.map(|claim| Box::new(claim) as Hold);
    Ok(services
        .ingest
        .submit_charged(accepted, charge, hold)
        .await?)
}

/// What to remember under the key: the answer, the body's digest, and until when.
pub(super) fn remembered(
    connector: &Connector,
    digest: String,
    body: &impl Serialize,
) -> Result<IdempotencyRecord, ApiError> {
    let window = connector
        .spec
        .idempotency_window_seconds
        .unwrap_or(DEFAULT_IDEMPOTENCY_WINDOW_SECONDS);
    let window = SignedDuration::from_secs(i64::try_from(window).unwrap_or(i64::MAX));
    Ok(IdempotencyRecord {
        body: serde_json::to_value(body).map_err(ApiError::internal)?,
        body_sha256: digest,
        expires_at: Timestamp::now()
            .checked_add(window)
            .unwrap_or(Timestamp::MAX),
    })
}
