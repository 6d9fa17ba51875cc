//! Request handlers. They parse, call the model and the store, and shape responses;
//! routing, request ids and error bodies live in [`crate::http`].

pub mod admin;
pub mod ops;

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::auth::{Credential, FailedAuthLimiter, KeyRecord};
use crate::http::ApiError;
use crate::store::Store;

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Fired when the server starts shutting down; `/readyz` turns 503 then.
    pub shutdown: CancellationToken,
    /// Failed admin/read authentications per client address.
    pub auth_failures: Arc<FailedAuthLimiter>,
}

impl AppState {
    /// The stored key a bearer token proves, or `None` when the token is malformed,
    /// unknown or wrong (all three look the same to the caller).
    pub fn authenticate(&self, token: &str) -> Result<Option<KeyRecord>, ApiError> {
        let Ok(credential) = Credential::parse(token) else {
            return Ok(None);
        };
        let record = self.store.key(credential.key_id())?;
        Ok(record.filter(|record| record.matches(&credential)))
    }
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A JSON request body: absent or JSON content type (`application/json`,
/// `*/*+json`), else 415; invalid JSON is a 400 that says where.
pub fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let essence = content_type
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::unsupported_media_type(format!(
                "the body must be JSON (Content-Type: application/json), not {essence:?}"
            )));
        }
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_payload(format!("invalid JSON: {e}")))
}
