//! Connectors: configured sources that each write to one stream (SPEC §1, §1.1).
//!
//! The admin API speaks one JSON document per connector. [`ConnectorSpec`] is that
//! document parsed and validated — all four types, every option, as typed values —
//! and [`Connector`] adds what the server assigns (id, key id, timestamps). Secrets in
//! it are write-only: [`Connector::view`] replaces them with `…Set` flags.

mod pull;
mod push;

use std::collections::BTreeMap;
use std::fmt::Display;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

pub use pull::{
    AfterProcessing, FileFormat, FileSettings, FileSource, FolderSource, SqlDriver, SqlSettings,
    TextEncoding, UrlAuth, UrlSource,
};
pub use push::{
    Dedup, HmacAlgorithm, PushAuth, RateLimit, SecretHeader, SignatureEncoding, SignedContent,
    Signing, SigningScheme,
};

use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;

use super::{merge_patch, view, StreamName, ValidationError, DEFAULT_PUSH_IDLE_SECONDS};
use crate::ids;

/// Longest connector name, in characters.
const MAX_NAME_CHARS: usize = 100;
/// Longest item key or field name, in bytes (item ids are at most 256 bytes too).
const MAX_FIELD_NAME_BYTES: usize = 256;

/// Secrets inside the document: where each sits (a JSON pointer to its parent object),
/// its field, and the flag a read shows instead of it.
const WRITE_ONLY: [(&str, &str, &str); 4] = [
    ("/signing", "secret", "secretSet"),
    ("/auth/secretHeader", "value", "valueSet"),
    ("/settings/source/auth", "password", "passwordSet"),
    ("/settings/source/auth", "token", "tokenSet"),
];
/// Fields the server derives; a PATCH may repeat them from a read, and they are ignored.
const DERIVED: [&str; 3] = ["state", "createdAt", "updatedAt"];

/// The four kinds of source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorType {
    /// Pushed JSON on `/api/webhook/{stream}`.
    Webhook,
    /// The Data Ingest API, `/api/ingest` (premium and custom integrations).
    Api,
    /// A SQL query polled on a schedule.
    Sql,
    /// A file uploaded, fetched from a URL, or picked up from a folder.
    File,
}

impl ConnectorType {
    /// Whether senders push to this connector with an ingest key.
    pub fn is_push(self) -> bool {
        matches!(self, ConnectorType::Webhook | ConnectorType::Api)
    }

    /// The type's name in the JSON document.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorType::Webhook => "webhook",
            ConnectorType::Api => "api",
            ConnectorType::Sql => "sql",
            ConnectorType::File => "file",
        }
    }
}

/// How new data for an existing item is combined with what is stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UpsertMode {
    /// New fields overwrite, other fields stay.
    #[default]
    Merge,
    /// The new data replaces the whole item.
    Replace,
}

/// Where a connector stands, as the Data Sources list shows it (SPEC §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorState {
    /// Data arrived within its idle window.
    Active,
    /// Enabled, with no data within its idle window (a new connector starts here).
    Idle,
    /// The last push or fetch failed, and nothing has succeeded since.
    Error,
    /// Paused by an operator: pushes are refused and polls stop.
    Disabled,
}

impl ConnectorState {
    /// The monitoring colour: green active, yellow idle, red error, grey disabled.
    pub fn colour(self) -> &'static str {
        match self {
            ConnectorState::Active => "green",
            ConnectorState::Idle => "yellow",
            ConnectorState::Error => "red",
            ConnectorState::Disabled => "grey",
        }
    }
}

/// The connector document of SPEC §1.1, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectorSpec {
    /// Unique display name (compared without regard to case): 1-100 characters, not
    /// only spaces, no control characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// The kind of source; fixed once created.
    #[serde(rename = "type")]
    pub kind: ConnectorType,
    /// The one stream this connector writes to.
    pub stream: StreamName,
    /// The source field that identifies an item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_key: Option<String>,
    /// Source field → DataPool field; when set, unmapped fields are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_mapping: Option<BTreeMap<String, String>>,
    /// Merge into or replace existing items.
    #[serde(default)]
    pub upsert_mode: UpsertMode,
    /// Whether the connector accepts pushes or polls.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Seconds without data after which Active turns Idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_after_seconds: Option<u64>,
    /// Push types: request signature verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<Signing>,
    /// Push types: extra ways to present the ingest key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<PushAuth>,
    /// Push types: the status a success answers with (202, or 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_status: Option<u16>,
    /// Push types: where a retried delivery's id comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<Dedup>,
    /// Push types: a request header stored as a field of every item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_header: Option<String>,
    /// Push types: the token bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Push types: how long an idempotency key is remembered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_window_seconds: Option<u64>,
    /// Pull types: what to poll and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
}

fn enabled_by_default() -> bool {
    true
}

/// `settings` of a pull connector; which kind is told by the fields present.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Settings {
    /// A `sql` connector's settings.
    Sql(SqlSettings),
    /// A `file` connector's settings.
    File(FileSettings),
}

impl<'de> Deserialize<'de> for Settings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(deserializer)?;
        let has = |field: &str| value.get(field).is_some();
        if has("connectionString") || has("query") {
            SqlSettings::deserialize(value)
                .map(Settings::Sql)
                .map_err(D::Error::custom)
        } else if has("format") || has("source") {
            FileSettings::deserialize(value)
                .map(Settings::File)
                .map_err(D::Error::custom)
        } else {
            Err(D::Error::custom(
                "expected SQL settings (connectionString, query, …) or file settings (format, source, …)",
            ))
        }
    }
}

impl ConnectorSpec {
    /// Seconds without data after which Active turns Idle when `idleAfterSeconds` is
    /// not set: three poll intervals for a poller (SQL, file URL or folder), else the
    /// push default (SPEC §1.1).
    pub fn default_idle_seconds(&self) -> u64 {
        match &self.settings {
            Some(Settings::Sql(sql)) => sql.poll_interval().saturating_mul(3),
            Some(Settings::File(file)) => file
                .poll_interval()
                .map_or(DEFAULT_PUSH_IDLE_SECONDS, |s| s.saturating_mul(3)),
            None => DEFAULT_PUSH_IDLE_SECONDS,
        }
    }

    /// Parses and validates a connector document.
    pub fn from_json(document: Value) -> Result<Self, ValidationError> {
        let spec: ConnectorSpec = super::read_document(document, "a connector")?;
        spec.validate()?;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let name = self.name.trim();
        ensure(
            !name.is_empty() && name.chars().count() <= MAX_NAME_CHARS,
            "name",
            format!("must be 1-{MAX_NAME_CHARS} characters"),
        )?;
        ensure(
            !self.name.chars().any(char::is_control),
            "name",
            "must not contain control characters",
        )?;
        if let Some(key) = &self.item_key {
            field_name("itemKey", key)?;
        }
        for (from, to) in self.field_mapping.iter().flatten() {
            field_name("fieldMapping", from)?;
            field_name("fieldMapping", to)?;
        }
        if let Some(seconds) = self.idle_after_seconds {
            check(seconds, 1, u64::from(u32::MAX), "idleAfterSeconds")?;
        }
        if self.kind.is_push() {
            self.validate_push()
        } else {
            self.validate_pull()
        }
    }

    fn validate_push(&self) -> Result<(), ValidationError> {
        ensure(
            self.settings.is_none(),
            "settings",
            "applies only to sql and file connectors",
        )?;
        if let Some(signing) = &self.signing {
            signing.validate()?;
        }
        if let Some(auth) = &self.auth {
            auth.validate()?;
        }
        if let Some(dedup) = &self.dedup {
            dedup.validate()?;
        }
        if let Some(rate) = &self.rate_limit {
            rate.validate()?;
        }
        push::validate_scalars(
            self.success_status,
            self.source_header.as_deref(),
            self.idempotency_window_seconds,
        )
    }

    fn validate_pull(&self) -> Result<(), ValidationError> {
        let push_only = [
            ("signing", self.signing.is_some()),
            ("auth", self.auth.is_some()),
            ("successStatus", self.success_status.is_some()),
            ("dedup", self.dedup.is_some()),
            ("sourceHeader", self.source_header.is_some()),
            ("rateLimit", self.rate_limit.is_some()),
            (
                "idempotencyWindowSeconds",
                self.idempotency_window_seconds.is_some(),
            ),
        ];
        if let Some((field, _)) = push_only.iter().find(|(_, set)| *set) {
            return Err(ValidationError::field(
                field,
                "applies only to webhook and api connectors",
            ));
        }
        match (self.kind, &self.settings) {
            (ConnectorType::Sql, Some(Settings::Sql(sql))) => sql.validate(),
            (ConnectorType::File, Some(Settings::File(file))) => file.validate(),
            (ConnectorType::Sql, _) => Err(ValidationError::field(
                "settings",
                "a sql connector needs SQL settings: connectionString and query",
            )),
            _ => Err(ValidationError::field(
                "settings",
                "a file connector needs file settings: format and source",
            )),
        }
    }
}

/// A connector as the admin API shows it: [`Connector::view`].
#[derive(Serialize)]
#[serde(transparent)]
pub struct ConnectorView(pub Value);

impl utoipa::PartialSchema for ConnectorView {
    /// The document's schema with secrets as their flags, plus what [`Connector::view`]
    /// adds.
    fn schema() -> RefOr<Schema> {
        let timestamp = json!({"type": "string", "format": "date-time"});
        view::read_view::<ConnectorSpec>(
            "A connector as the admin API shows it: its document with each secret replaced by a `…Set` flag and the connection string's password by `***`, plus what the server assigned",
            &WRITE_ONLY,
            vec![
                ("id", json!({"type": "string", "description": "`c_` and 16 hex characters"}), true),
                ("state", json!(ConnectorState::schema()), true),
                ("createdAt", timestamp.clone(), true),
                ("updatedAt", timestamp, true),
                ("keyId", json!({"type": "string", "description": "The public id of the current ingest key (webhook and api connectors)"}), false),
            ],
        )
    }
}

impl utoipa::ToSchema for ConnectorView {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        ConnectorSpec::schemas(schemas);
    }
}

/// A stored connector: the operator's document plus what the server assigned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connector {
    /// `c_` and 16 hex characters; never changes.
    pub id: String,
    /// The key id of the current ingest key (push types only); changes on rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// When the connector was created.
    pub created_at: Timestamp,
    /// When its document last changed.
    pub updated_at: Timestamp,
    /// Grows by one on every change, so concurrent updates cannot overwrite each other.
    pub revision: u64,
    /// The validated document.
    pub spec: ConnectorSpec,
}

impl Connector {
    /// A new connector with a fresh id; `key_id` is set when its ingest key is issued.
    pub fn new(spec: ConnectorSpec, key_id: Option<String>, now: Timestamp) -> Self {
        Connector {
            id: format!("c_{}", ids::random_hex::<8>()),
            key_id,
            created_at: now,
            updated_at: now,
            revision: 0,
            spec,
        }
    }

    /// A copy with `change` applied to its document and the bookkeeping advanced.
    pub fn changed(&self, now: Timestamp, change: impl FnOnce(&mut ConnectorSpec)) -> Self {
        let mut next = self.clone();
        change(&mut next.spec);
        next.updated_at = now;
        next.revision += 1;
        next
    }

    /// The connector as the admin API shows it: the document with secrets replaced by
    /// flags, the connection string masked, plus id, `state`, key id and timestamps.
    pub fn view(&self, state: ConnectorState) -> Value {
        let mut doc = self.document();
        for (parent, field, flag) in WRITE_ONLY {
            if let Some(Value::Object(object)) = doc.pointer_mut(parent) {
                if object.remove(field).is_some() {
                    object.insert(flag.to_owned(), Value::Bool(true));
                }
            }
        }
        if let Some(Settings::Sql(sql)) = &self.spec.settings {
            doc["settings"]["connectionString"] = Value::String(sql.masked_connection_string());
        }
        doc["id"] = json!(self.id);
        doc["state"] = json!(state);
        doc["createdAt"] = json!(self.created_at);
        doc["updatedAt"] = json!(self.updated_at);
        if let Some(key_id) = &self.key_id {
            doc["keyId"] = json!(key_id);
        }
        doc
    }

    /// This connector with a JSON Merge Patch (RFC 7396) applied to its document.
    ///
    /// A patch may repeat what a read showed: derived fields and `…Set` flags are
    /// ignored, and a connection string's `***` password stands for the stored one. The id,
    /// key id and type cannot change.
    pub fn patched(&self, patch: &Value, now: Timestamp) -> Result<Self, ValidationError> {
        let Value::Object(_) = patch else {
            return Err(ValidationError(
                "a PATCH body is a JSON object (a JSON Merge Patch)".into(),
            ));
        };
        let mut patch = patch.clone();
        self.strip_read_view(&mut patch)?;
        let mut doc = self.document();
        merge_patch(&mut doc, &patch);
        let spec = ConnectorSpec::from_json(doc)?;
        Ok(self.changed(now, |current| *current = spec))
    }

    /// Removes from `patch` what only a read shows, refusing changes to fixed fields.
    fn strip_read_view(&self, patch: &mut Value) -> Result<(), ValidationError> {
        let assigned = "is assigned by the server and cannot change";
        let fixed = [
            ("id", Some(self.id.as_str()), assigned),
            ("keyId", self.key_id.as_deref(), assigned),
            (
                "type",
                Some(self.spec.kind.as_str()),
                "cannot change; create a new connector of the other type",
            ),
        ];
        let Some(object) = patch.as_object_mut() else {
            return Ok(());
        };
        for (field, current, message) in fixed {
            if let Some(value) = object.remove(field) {
                ensure(value.as_str() == current, field, message)?;
            }
        }
        for field in DERIVED {
            object.remove(field);
        }
        for (parent, _, flag) in WRITE_ONLY {
            if let Some(Value::Object(object)) = patch.pointer_mut(parent) {
                object.remove(flag);
            }
        }
        if let Some(Settings::Sql(sql)) = &self.spec.settings {
            if let Some(Value::String(submitted)) = patch.pointer_mut("/settings/connectionString")
            {
                *submitted = sql.unmasked_connection_string(submitted);
            }
        }
        Ok(())
    }

    /// The document with secrets in clear, for the server's own use (patching).
    fn document(&self) -> Value {
        // A spec holds only strings, numbers, booleans and string-keyed maps, which
        // always serialize.
        serde_json::to_value(&self.spec).unwrap_or_default()
    }
}

/// Fails with `message` about `path` unless `ok`.
fn ensure(ok: bool, path: &str, message: impl Display) -> Result<(), ValidationError> {
    if ok {
        Ok(())
    } else {
        Err(ValidationError::field(path, message))
    }
}

/// Fails unless `min <= value <= max`.
fn check(value: u64, min: u64, max: u64, path: &str) -> Result<(), ValidationError> {
    ensure(
        (min..=max).contains(&value),
        path,
        format!("must be between {min} and {max}"),
    )
}

/// Checks a field or key name: 1-256 bytes, no control characters.
fn field_name(path: &str, name: &str) -> Result<(), ValidationError> {
    ensure(
        !name.is_empty()
            && name.len() <= MAX_FIELD_NAME_BYTES
            && !name.chars().any(char::is_control),
        path,
        format!(
            "{name:?} is not a field name: 1-{MAX_FIELD_NAME_BYTES} bytes, no control characters"
        ),
    )
}

#[cfg(test)]
mod tests;
