//! Read keys: read-only credentials for displays, optionally limited to some streams.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{StreamName, ValidationError};
use crate::ids;

/// Longest read key name, in characters.
const MAX_NAME_CHARS: usize = 100;

/// A read key as stored and shown (the key itself is shown once, at creation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadKey {
    /// `r_` and 16 hex characters.
    pub id: String,
    /// What the key is for, e.g. the display it is installed on.
    pub name: String,
    /// The streams it may read; `None` means all.
    pub streams: Option<Vec<StreamName>>,
    /// The public key id of its `rk_…` credential.
    pub key_id: String,
    /// When it was issued.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// `POST /api/admin/read-keys` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadKeySpec {
    /// Display name: 1-100 characters, not only spaces, no control characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// See [`ReadKey::streams`].
    #[serde(default)]
    pub streams: Option<Vec<StreamName>>,
}

impl ReadKeySpec {
    /// Parses a read key document: a JSON object (serde alone would also take the
    /// array form `["name"]`).
    pub fn from_json(document: serde_json::Value) -> Result<Self, ValidationError> {
        super::read_document(document, "a read key")
    }
}

impl ReadKey {
    /// A new read key record for `spec`, with the key id of its credential.
    pub fn new(
        spec: ReadKeySpec,
        key_id: String,
        now: Timestamp,
    ) -> Result<ReadKey, ValidationError> {
        let name = spec.name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(ValidationError::field(
                "name",
                format!("must be 1-{MAX_NAME_CHARS} characters"),
            ));
        }
        Ok(ReadKey {
            id: format!("r_{}", ids::random_hex::<8>()),
            name: name.to_owned(),
            streams: spec.streams,
            key_id,
            created_at: now,
        })
    }

    /// Whether this key may read `stream`.
    pub fn allows(&self, stream: &str) -> bool {
        self.streams
            .as_ref()
            .is_none_or(|streams| streams.iter().any(|s| s.as_str() == stream))
    }
}
