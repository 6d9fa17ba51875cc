//! `POST /api/webhook/{stream}` (SPEC §3.1): authenticate, verify, deduplicate, parse,
//! make durable, answer 202.
//!
//! Checks run in the contract's order — credential, signature, idempotency, body — and
//! a refused request stores nothing and is never remembered as an idempotency key.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{bearer_token, check_json_content_type, parse_json, AppState};
use crate::auth::{verify_signature, DEFAULT_RATE_LIMIT};
use crate::connectors::PushTarget;
use crate::http::{ApiError, ClientAddr, RequestId};
use crate::model::{flatten, item_id, map_fields, Connector, LogLevel, StreamName, Upsert, Write};
use crate::store::{Accepted, IdempotencyRecord};

/// Largest webhook body (SPEC §3.1), enforced while reading.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long an idempotency key is remembered unless the connector says otherwise.
pub const DEFAULT_IDEMPOTENCY_WINDOW_SECONDS: u64 = 24 * 3600;
/// Longest idempotency key, in characters (SPEC §3.1).
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Idempotency keys (`connector id \0 key`) whose first request is still in flight: a
/// concurrent repeat gets 409 rather than being processed twice.
#[derive(Debug, Default)]
pub struct KeysInFlight(Mutex<HashSet<Vec<u8>>>);

/// Holds a key in [`KeysInFlight`] until dropped.
struct KeyGuard<'a> {
    keys: &'a KeysInFlight,
    key: Vec<u8>,
}

impl KeysInFlight {
    fn claim(&self, key: Vec<u8>) -> Option<KeyGuard<'_>> {
        let mut keys = self.0.lock().unwrap_or_else(|p| p.into_inner());
        keys.insert(key.clone())
            .then(|| KeyGuard { keys: self, key })
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        self.keys
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// `POST /api/webhook/{stream}`.
pub async fn webhook(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    Extension(request_id): Extension<RequestId>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let _permit = state
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::unavailable("too many requests in flight; retry shortly"))?;
    if state.shutdown.is_cancelled() {
        return Err(ApiError::unavailable("shutting down"));
    }
    let Some(target) = authenticate(&state, &headers)? else {
        state.activity.refused_unknown(client.map(|c| c.0 .0.ip()));
        return Err(ApiError::unauthorized(
            "missing or invalid ingest key (Authorization: Bearer ik_…)",
        ));
    };
    let started = Instant::now();
    let connector = &target.connector;
    let result = accept(&state, connector, &stream, &request_id, &headers, body).await;
    match &result {
        Ok((_, items)) => state
            .activity
            .accepted(&connector.id, *items, started.elapsed()),
        Err(error) => state.activity.refused(&connector.id, error),
    }
    result.map(|(response, _)| response)
}

/// Everything after authentication; the answer and the number of items accepted.
async fn accept(
    state: &AppState,
    connector: &Connector,
    stream: &str,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Response, usize), ApiError> {
    if connector.spec.stream.as_str() != stream || !connector.spec.kind.is_push() {
        return Err(ApiError::stream_not_found(format!(
            "this key does not write to stream {stream:?}"
        )));
    }
    if !connector.spec.enabled {
        return Err(ApiError::connector_disabled("the connector is disabled"));
    }
    let limit = connector
        .spec
        .rate_limit
        .as_ref()
        .unwrap_or(&DEFAULT_RATE_LIMIT);
    if let Err(wait) = state.rates.take(&connector.id, limit) {
        return Err(ApiError::rate_limited(
            "the connector's rate limit is exceeded",
            wait.as_secs() + 1,
        ));
    }
    check_json_content_type(headers)?;
    let raw = read_limited(headers, body).await?;
    if let Some(signing) = &connector.spec.signing {
        verify_signature(signing, headers, &raw, Timestamp::now().as_second())
            .map_err(|e| ApiError::invalid_signature(e.to_string()))?;
    }
    let idempotency = idempotency_key(headers, connector)?;
    // Claim the key before looking it up: of two repeats racing, one is processed and
    // the other gets 409 or, once the first is committed, its answer.
    let _claim = match &idempotency {
        Some(key) => {
            let claim = state.keys_in_flight.claim(key.clone()).ok_or_else(|| {
                ApiError::conflict("a request with this Idempotency-Key is still being processed")
            })?;
            if let Some(first) = state.ingest.idempotency(key, Timestamp::now())? {
                return Ok((replay(state, connector, &raw, first), 0));
            }
            Some(claim)
        }
        None => None,
    };
    let upserts = parse_items(&raw, headers, connector)?;
    let items = upserts.len();
    let body = json!({"status": "accepted", "requestId": request_id.to_string(), "stream": stream, "itemsReceived": items});
    let accepted = Accepted {
        write: write_for(connector, upserts),
        idempotency: idempotency.map(|key| (key, remembered(connector, &raw, &body))),
    };
    state.ingest.submit(accepted).await?;
    Ok((
        (success_status(connector), axum::Json(body)).into_response(),
        items,
    ))
}

fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Arc<PushTarget>>, ApiError> {
    match bearer_token(headers) {
        Some(token) => Ok(state.push.authenticate(token)?),
        None => Ok(None),
    }
}

/// Reads the body, refusing with 413 as soon as it passes [`MAX_BODY_BYTES`] (at once
/// when `Content-Length` already says so) without reading the rest.
async fn read_limited(headers: &HeaderMap, mut body: Body) -> Result<Bytes, ApiError> {
    let too_large =
        || ApiError::payload_too_large(format!("the body exceeds {MAX_BODY_BYTES} bytes"));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut buffer = Vec::with_capacity(declared.map_or(8 * 1024, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::invalid_payload(format!("the body could not be read: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if buffer.len() + data.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            buffer.extend_from_slice(data);
        }
    }
    Ok(Bytes::from(buffer))
}

/// The scoped idempotency key (`connector id \0 key`), if the request carries one.
/// The IETF draft's quoted form `"abc"` is the same key as `abc`.
fn idempotency_key(
    headers: &HeaderMap,
    connector: &Connector,
) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let invalid =
        || ApiError::invalid_payload("Idempotency-Key must be 1-255 printable ASCII characters");
    let text = value.to_str().map_err(|_| invalid())?.trim();
    let key = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !key.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Err(invalid());
    }
    let mut scoped = connector.id.as_bytes().to_vec();
    scoped.push(0);
    scoped.extend_from_slice(key.as_bytes());
    Ok(Some(scoped))
}

fn remembered(connector: &Connector, raw: &[u8], body: &Value) -> IdempotencyRecord {
    let window = connector
        .spec
        .idempotency_window_seconds
        .unwrap_or(DEFAULT_IDEMPOTENCY_WINDOW_SECONDS);
    let window = SignedDuration::from_secs(i64::try_from(window).unwrap_or(i64::MAX));
    IdempotencyRecord {
        body: body.clone(),
        body_sha256: hex::encode(Sha256::digest(raw)),
        expires_at: Timestamp::now()
            .checked_add(window)
            .unwrap_or(Timestamp::MAX),
    }
}

/// The first answer again, marked as a replay; nothing is processed. A different body
/// under the same key is noted as a warning in the connector's log.
fn replay(
    state: &AppState,
    connector: &Connector,
    raw: &[u8],
    first: IdempotencyRecord,
) -> Response {
    if hex::encode(Sha256::digest(raw)) != first.body_sha256 {
        let message = "an Idempotency-Key was repeated with a different body; answered with the first response";
        state
            .activity
            .note(&connector.id, LogLevel::Warn, "idempotency", message.into());
    }
    let mut response = (success_status(connector), axum::Json(first.body)).into_response();
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

fn success_status(connector: &Connector) -> StatusCode {
    match connector.spec.success_status {
        Some(200) => StatusCode::OK,
        _ => StatusCode::ACCEPTED,
    }
}

/// One object or an array of objects, flattened, each with its id: the `X-Item-Key`
/// field, else the connector's `itemKey`, else its position. Any bad item refuses the
/// whole request, naming the item's index.
fn parse_items(
    raw: &[u8],
    headers: &HeaderMap,
    connector: &Connector,
) -> Result<Vec<Upsert>, ApiError> {
    let objects: Vec<Map<String, Value>> = match parse_json(raw)? {
        Value::Object(object) => vec![object],
        Value::Array(values) => values
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Object(object) => Ok(object),
                _ => Err(ApiError::invalid_payload(format!(
                    "item {i} is not a JSON object"
                ))),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::invalid_payload(
                "the body must be a JSON object or an array of objects",
            ))
        }
    };
    let header_key = match headers.get("x-item-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid_payload("X-Item-Key is not readable text"))?
                .trim(),
        ),
        None => None,
    };
    let key_field = header_key.or(connector.spec.item_key.as_deref());
    objects
        .into_iter()
        .enumerate()
        .map(|(index, object)| {
            let fields = flatten(object).map_err(|e| ApiError::invalid_payload(format!("item {index}: {e}")))?;
            let id = match key_field {
                Some(field) => fields.get(field).and_then(item_id).ok_or_else(|| {
                    ApiError::invalid_payload(format!(
                        "item {index} has no usable {field:?} field (a non-empty string or number identifies the item)"
                    ))
                })?,
                None => index.to_string(),
            };
            let fields = match &connector.spec.field_mapping {
                Some(mapping) => map_fields(fields, mapping),
                None => fields,
            };
            Ok(Upsert { id, fields })
        })
        .collect()
}

fn write_for(connector: &Connector, upserts: Vec<Upsert>) -> Write {
    Write {
        stream: StreamName::clone(&connector.spec.stream),
        connector_id: connector.id.clone(),
        mode: connector.spec.upsert_mode,
        upserts,
        deletes: Vec::new(),
        accepted_at: Timestamp::now(),
    }
}
