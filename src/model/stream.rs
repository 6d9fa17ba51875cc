//! Stream names: the top-level collections of the DataPool.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use super::ValidationError;

/// Longest stream name, in characters (SPEC §1).
const MAX_LEN: usize = 64;
/// The alphabet of a stream name as a regular expression, for the OpenAPI description.
const PATTERN: &str = "^[a-z0-9][a-z0-9._-]*$";

/// A validated stream name: 1–64 characters of `a-z 0-9 - _ .`, starting with a letter
/// or digit. It appears in URLs, so the alphabet is kept URL-safe and lowercase.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamName(String);

impl StreamName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StreamName {
    type Error = ValidationError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b);
        let starts_well = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if name.len() > MAX_LEN || !starts_well || !name.bytes().all(allowed) {
            return Err(ValidationError(format!(
                "invalid stream name {name:?}: use 1-64 characters of a-z 0-9 - _ . starting with a letter or digit"
            )));
        }
        Ok(StreamName(name))
    }
}

impl From<StreamName> for String {
    fn from(name: StreamName) -> String {
        name.0
    }
}

impl utoipa::PartialSchema for StreamName {
    /// The rule [`StreamName::try_from`] enforces, as a pattern clients can check.
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_LEN))
            .pattern(Some(PATTERN))
            .description(Some(
                "A stream name: 1-64 characters of a-z 0-9 - _ . starting with a letter or digit",
            ))
            .into()
    }
}

impl utoipa::ToSchema for StreamName {}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in [
            "sales-by-region",
            "a",
            "0",
            "app.metrics_v2",
            &"x".repeat(64),
        ] {
            assert!(StreamName::try_from(ok.to_owned()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "Sales",
            "a b",
            "a/b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(StreamName::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }
}
