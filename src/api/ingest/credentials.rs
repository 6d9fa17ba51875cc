//! How a push request proves who sends it (SPEC §3.1, §3.4): the ingest key as
//! `Authorization: Bearer`, and where the connector allows it as the password of HTTP
//! Basic or in the URL, plus an optional shared secret header.

use std::borrow::Cow;
use std::sync::Arc;

use axum::http::{header, HeaderMap};
use base64::Engine;
use subtle::ConstantTimeEq;

use super::PushRequest;
use crate::api::{bearer_token, Services};
use crate::connectors::PushTarget;
use crate::http::ApiError;
use crate::model::Connector;

/// Where the request carried its ingest key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Presented {
    /// `Authorization: Bearer ik_…`: always accepted.
    Bearer,
    /// `Authorization: Basic …` with the key as password: when `auth.basic` is set.
    Basic,
    /// `…/k/{ingestKey}` in the path: when `auth.keyInUrl` is set.
    Url,
}

/// The push connector the request's key belongs to, and how it was presented; `None`
/// for a missing, malformed, unknown or wrong key (all look the same to the caller).
pub(super) fn authenticate(
    services: &Services,
    request: &PushRequest,
) -> Result<Option<(Arc<PushTarget>, Presented)>, ApiError> {
    let (token, presented): (Cow<'_, str>, _) = match &request.url_key {
        Some(key) => (Cow::Borrowed(key), Presented::Url),
        None => match bearer_token(&request.headers) {
            Some(token) => (Cow::Borrowed(token), Presented::Bearer),
            None => match basic_password(&request.headers) {
                Some(password) => (Cow::Owned(password), Presented::Basic),
                None => return Ok(None),
            },
        },
    };
    Ok(services
        .push
        .authenticate(&token)?
        .map(|target| (target, presented)))
}

/// The 401 for a request without a valid key. It also offers HTTP Basic when the
/// request tried Basic or its stream has a push connector that accepts Basic: clients
/// that send Basic credentials only once challenged (.NET, Java) then do.
pub(super) fn refusal(services: &Services, request: &PushRequest) -> Result<ApiError, ApiError> {
    let error =
        ApiError::unauthorized("missing or invalid ingest key (Authorization: Bearer ik_…)");
    let tried_basic = basic_password(&request.headers).is_some();
    let offers_basic = tried_basic
        || match &request.stream {
            Some(stream) => services.push.accepts_basic(stream)?,
            None => false,
        };
    Ok(if offers_basic {
        error.with_basic_challenge()
    } else {
        error
    })
}

/// The password of an `Authorization: Basic` header (any username).
fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_owned())
}

/// 401 when the connector does not accept the key the way it was presented, or when
/// its secret header is missing or wrong.
pub(super) fn check_sender(
    connector: &Connector,
    presented: Presented,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let auth = connector.spec.auth.as_ref();
    match presented {
        Presented::Basic if !auth.is_some_and(|a| a.basic) => {
            return Err(ApiError::unauthorized(
                "this connector does not accept HTTP Basic authentication; send Authorization: Bearer <ingest key>",
            ))
        }
        Presented::Url if !auth.is_some_and(|a| a.key_in_url) => {
            return Err(ApiError::unauthorized(
                "this connector does not accept its key in the URL; send Authorization: Bearer <ingest key>",
            ))
        }
        _ => {}
    }
    if let Some(secret) = auth.and_then(|a| a.secret_header.as_ref()) {
        let expected = secret.value.expose().as_bytes();
        let given = headers.get(secret.name.as_str()).map(|v| v.as_bytes());
        if !given.is_some_and(|given| bool::from(given.ct_eq(expected))) {
            return Err(ApiError::unauthorized(format!(
                "missing or wrong {} header",
                secret.name
            )));
        }
    }
    Ok(())
}
