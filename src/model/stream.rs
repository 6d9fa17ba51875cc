//! Stream names, the top-level collections of the DataPool, and each stream's
//! settings: whether it keeps its fields' history (SPEC §5 "Snapshots").

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use super::{merge_patch, patch_members, read_document, ValidationError};

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

/// Days a stream keeps its fields' history unless its settings say otherwise.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// Longest history a stream may keep: ten years.
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// A stream's snapshot switch (SPEC §5): while `enabled`, every change of a field of
/// its items records a point of the field's history, kept `retention_days`. Off by
/// default, so streams that nobody charts cost no history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Snapshots {
    /// Whether changes are recorded now; points recorded before stay readable.
    pub enabled: bool,
    /// Days a point is kept, 1 – [`MAX_RETENTION_DAYS`].
    pub retention_days: u32,
}

impl Default for Snapshots {
    fn default() -> Self {
        Snapshots {
            enabled: false,
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }
}

/// A stream's settings document, as `PATCH /api/admin/streams/{stream}` merges into it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsDocument {
    snapshots: Snapshots,
}

/// Fields of a stream's admin document that describe it rather than set it: a patch may
/// repeat them as a read showed them, and they are ignored.
const DERIVED: [&str; 3] = ["name", "itemCount", "updatedAt"];

impl Snapshots {
    /// Whether these are the defaults (then nothing needs storing).
    pub fn is_default(&self) -> bool {
        *self == Snapshots::default()
    }

    /// The oldest time a point of history is kept at `now`.
    pub fn kept_since(&self, now: Timestamp) -> Timestamp {
        let days = i64::from(self.retention_days);
        now.checked_sub(SignedDuration::from_hours(24 * days))
            .unwrap_or(Timestamp::MIN)
    }

    /// These settings with a JSON Merge Patch (RFC 7396) of the stream's document
    /// (`{"snapshots":{"enabled","retentionDays"}}`) applied, validated.
    pub fn patched(&self, patch: &Value) -> Result<Snapshots, ValidationError> {
        let fields = patch_members(patch, &DERIVED)?;
        let mut document = json!({ "snapshots": self });
        merge_patch(&mut document, &Value::Object(fields));
        let SettingsDocument { snapshots } = read_document(document, "a stream")?;
        if !(1..=MAX_RETENTION_DAYS).contains(&snapshots.retention_days) {
            return Err(ValidationError::field(
                "snapshots.retentionDays",
                format!("must be a whole number of days from 1 to {MAX_RETENTION_DAYS}"),
            ));
        }
        Ok(snapshots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_settings_merge_and_refuse_bad_values() {
        let off = Snapshots::default();
        let on = off
            .patched(&json!({"snapshots": {"enabled": true, "retentionDays": 7}}))
            .expect("valid");
        assert_eq!(
            on,
            Snapshots {
                enabled: true,
                retention_days: 7
            }
        );
        let kept = on
            .patched(&json!({"name": "s", "itemCount": 3, "snapshots": {"enabled": false}}))
            .expect("derived fields are ignored");
        assert_eq!(kept.retention_days, 7);
        assert!(!kept.enabled);
        for bad in [
            json!({"snapshots": {"retentionDays": 0}}),
            json!({"snapshots": {"retentionDays": 3651}}),
            json!({"snapshots": {"retentionDays": -1}}),
            json!({"snapshots": {"retentionDays": 1.5}}),
            json!({"snapshots": {"enabled": "yes"}}),
            json!({"snapshots": {"other": 1}}),
            json!({"snapshots": null}),
            json!({"other": 1}),
            json!([1]),
        ] {
            assert!(off.patched(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            off.patched(&json!({"snapshots": {"retentionDays": 3650}}))
                .expect("the longest")
                .retention_days,
            3650
        );
    }

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
