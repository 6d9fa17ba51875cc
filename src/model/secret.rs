//! A write-only value: accepted from the admin API, kept for the server's own use,
//! never shown back or logged.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret string (signing key, password, connection string). `Debug` prints `***`;
/// the admin API replaces it with a `…Set: true` flag on every read.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the code that must use it (verifying, connecting).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
