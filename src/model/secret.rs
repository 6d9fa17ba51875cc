//! A write-only value: accepted from the admin API, kept for the server's own use,
//! never shown back or logged.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;

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

impl utoipa::PartialSchema for Secret {
    /// A string sent on create or patch; reads never show it back.
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("password".into())))
            .description(Some(
                "A secret: accepted on create and patch, never shown back (a read shows a `…Set` flag or `***` instead)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
