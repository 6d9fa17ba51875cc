//! Subscriptions: URLs datapool pushes change notifications to (SPEC §6, §1.1).
//!
//! [`SubscriptionSpec`] is the admin API's document parsed and validated;
//! [`Subscription`] adds what the server assigns. Secrets in it (the Basic auth
//! password, the signing secret, static header values) are write-only:
//! [`Subscription::view`] replaces them with flags.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;

use super::{merge_patch, patch_members, view, ChangeKind, Secret, StreamName, ValidationError};
use crate::ids;

/// Longest subscription name, in characters.
const MAX_NAME_CHARS: usize = 100;
/// Longest URL, in bytes: far past any receiver's, short enough to log.
const MAX_URL_BYTES: usize = 2048;
/// Seconds a receiver has to answer unless configured (SPEC §6).
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 10;
/// Longest timeout a subscription may set (SPEC §6): a receiver slower than a minute is
/// broken, and each waiting delivery holds one of the global in-flight slots.
const MAX_TIMEOUT_SECONDS: u64 = 60;
/// Most retries a policy may ask for: with exponential delays capped at
/// [`MAX_RETRY_DELAY`], 30 of them already span more than a week.
const MAX_RETRIES: u32 = 30;
/// Longest interval a policy may set: a day between attempts.
const MAX_INTERVAL_SECONDS: u64 = 86_400;
/// Longest delay exponential growth reaches: past it, retries come daily at most.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(86_400);
/// Share of an exponential delay added or taken at random, so receivers that failed
/// together are not retried in one burst.
const JITTER_SHARE: f64 = 0.2;
/// Most static headers per subscription.
const MAX_HEADERS: usize = 20;
/// How long a rotated-out signing secret keeps signing beside the new one (SPEC §6).
pub const PREVIOUS_SECRET_GRACE: SignedDuration = SignedDuration::from_hours(24);
/// Prefix of Standard Webhooks signing secrets.
const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a generated signing secret (Standard Webhooks suggests 24 to 64).
const GENERATED_SECRET_BYTES: usize = 32;
/// Accepted decoded lengths of a given signing secret, in bytes.
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// Headers a subscription may not set: datapool writes them itself.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];
/// What a read shows instead of a static header's value.
const MASK: &str = "***";
/// Secrets inside the document shown as flags: where each sits (a JSON pointer to its
/// parent object), its field, and the flag a read shows instead. (The signing secret
/// always shows as `secretSet`, static header values as `***`.)
const WRITE_ONLY: [(&str, &str, &str); 1] = [("/basicAuth", "password", "passwordSet")];
/// Fields the server derives; a PATCH may repeat them from a read, and they are ignored.
const DERIVED: [&str; 5] = [
    "id",
    "createdAt",
    "updatedAt",
    "secretSet",
    "secretRotatedUntil",
];

/// What a subscription can be told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventCode {
    /// An item that did not exist was written.
    #[serde(rename = "item.created")]
    ItemCreated,
    /// A field of an existing item changed.
    #[serde(rename = "item.updated")]
    ItemUpdated,
    /// An item was removed.
    #[serde(rename = "item.deleted")]
    ItemDeleted,
    /// A connector's push or fetch failed.
    #[serde(rename = "connector.error")]
    ConnectorError,
    /// A failing connector works again.
    #[serde(rename = "connector.recovered")]
    ConnectorRecovered,
}

impl EventCode {
    /// The code in payloads and documents.
    pub fn as_str(self) -> &'static str {
        match self {
            EventCode::ItemCreated => "item.created",
            EventCode::ItemUpdated => "item.updated",
            EventCode::ItemDeleted => "item.deleted",
            EventCode::ConnectorError => "connector.error",
            EventCode::ConnectorRecovered => "connector.recovered",
        }
    }

    /// The human-readable `eventName` of a payload.
    pub fn name(self) -> &'static str {
        match self {
            EventCode::ItemCreated => "An item was created",
            EventCode::ItemUpdated => "An item was updated",
            EventCode::ItemDeleted => "An item was deleted",
            EventCode::ConnectorError => "A connector failed",
            EventCode::ConnectorRecovered => "A connector recovered",
        }
    }
}

impl From<ChangeKind> for EventCode {
    fn from(kind: ChangeKind) -> Self {
        match kind {
            ChangeKind::Created => EventCode::ItemCreated,
            ChangeKind::Updated => EventCode::ItemUpdated,
            ChangeKind::Deleted => EventCode::ItemDeleted,
        }
    }
}

/// A subscription as the admin API shows it: [`Subscription::view`].
#[derive(Serialize)]
#[serde(transparent)]
pub struct SubscriptionView(pub Value);

impl utoipa::PartialSchema for SubscriptionView {
    /// The document's schema with secrets as their flags, plus what
    /// [`Subscription::view`] adds.
    fn schema() -> RefOr<Schema> {
        let timestamp = json!({"type": "string", "format": "date-time"});
        let write_only: Vec<_> = WRITE_ONLY
            .into_iter()
            .chain([("", "secret", "secretSet")])
            .collect();
        view::read_view::<SubscriptionSpec>(
            "A subscription as the admin API shows it: its document with secrets replaced by flags and header values by `***`, plus what the server assigned",
            &write_only,
            vec![
                ("id", json!({"type": "string", "description": "`s_` and 16 hex characters"}), true),
                ("secretSet", json!({"type": "boolean", "description": "Whether deliveries are signed; a read never shows the secret"}), true),
                ("secretRotatedUntil", json!({"type": "string", "format": "date-time", "description": "Until when the rotated-out secret also signs"}), false),
                ("createdAt", timestamp.clone(), true),
                ("updatedAt", timestamp, true),
            ],
        )
    }
}

impl utoipa::ToSchema for SubscriptionView {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        SubscriptionSpec::schemas(schemas);
    }
}

/// Basic auth sent with every delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name; no `:`.
    pub username: String,
    /// The password, write-only.
    pub password: Secret,
}

/// How retries are spaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RetryKind {
    /// Delays double from the interval, jittered.
    #[default]
    Exponential,
    /// The same interval every time, no jitter.
    Fixed,
}

/// The retry policy document: `{"policy", "maxRetries"?, "intervalSeconds"?}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Exponential (default) or fixed.
    #[serde(default)]
    pub policy: RetryKind,
    /// Retries after the first attempt [default: 10 exponential, 3 fixed].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// The first (exponential) or every (fixed) delay [default: 30 s exponential,
    /// 60 s fixed].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u64>,
}

impl RetryPolicy {
    /// Retries after the first attempt.
    pub fn max_retries(&self) -> u32 {
        self.max_retries.unwrap_or(match self.policy {
            RetryKind::Exponential => 10,
            RetryKind::Fixed => 3,
        })
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_seconds.unwrap_or(match self.policy {
            RetryKind::Exponential => 30,
            RetryKind::Fixed => 60,
        }))
    }

    /// The wait before retry number `retry` (1 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        match self.policy {
            RetryKind::Fixed => self.interval(),
            RetryKind::Exponential => {
                let factor = 2u32.saturating_pow(retry.saturating_sub(1));
                let base = self.interval().saturating_mul(factor).min(MAX_RETRY_DELAY);
                let [random] = ids::random_bytes::<1>();
                let share = (f64::from(random) / 255.0 * 2.0 - 1.0) * JITTER_SHARE;
                base.mul_f64(1.0 + share)
            }
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        ensure(
            self.max_retries() <= MAX_RETRIES,
            "retry.maxRetries",
            format!("must be between 0 and {MAX_RETRIES}"),
        )?;
        ensure(
            (1..=MAX_INTERVAL_SECONDS).contains(&self.interval().as_secs()),
            "retry.intervalSeconds",
            format!("must be between 1 and {MAX_INTERVAL_SECONDS}"),
        )
    }
}

/// The subscription document of SPEC §1.1, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionSpec {
    /// Display name: 1-100 characters, not only spaces, no control characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Where deliveries are POSTed: `http://` or `https://`.
    #[schema(max_length = 2048, pattern = "^[Hh][Tt][Tt][Pp][Ss]?://")]
    pub url: String,
    /// What it is told about; at least one.
    #[schema(min_items = 1)]
    pub events: Vec<EventCode>,
    /// Only changes of these streams; absent means every stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<Vec<StreamName>>,
    /// Basic auth for the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// The Standard Webhooks signing secret, `whsec_` and base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// A header that also carries the hex HMAC-SHA1 of the body, keyed with the whole
    /// signing secret, for receivers that predate Standard Webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_sha1_header: Option<String>,
    /// Headers sent with every delivery (e.g. `X-Api-Key`); values are write-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, Secret>>,
    /// Seconds the receiver has to answer [default: 10, at most 60].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// How failed deliveries are retried [default: exponential].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Whether it gets new events.
    #[serde(default = "active_by_default")]
    pub active: bool,
}

fn active_by_default() -> bool {
    true
}

impl SubscriptionSpec {
    /// Parses and validates a subscription document.
    pub fn from_json(document: Value) -> Result<Self, ValidationError> {
        let spec: SubscriptionSpec = super::read_document(document, "a subscription")?;
        spec.validate()?;
        Ok(spec)
    }

    /// The receiver's URL, parsed (validation made sure it parses).
    pub fn target(&self) -> Result<url::Url, ValidationError> {
        url::Url::parse(&self.url).map_err(|e| ValidationError::field("url", e))
    }

    /// Seconds the receiver has to answer.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry.unwrap_or_default()
    }

    /// Which changes it is told about, for the applier's in-memory check.
    pub fn filter(&self) -> Filter {
        Filter {
            events: self.events.clone(),
            streams: self.streams.clone(),
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let name = self.name.trim();
        ensure(
            !name.is_empty()
                && name.chars().count() <= MAX_NAME_CHARS
                && !name.chars().any(char::is_control),
            "name",
            format!("must be 1-{MAX_NAME_CHARS} characters, no control characters"),
        )?;
        ensure(
            self.url.len() <= MAX_URL_BYTES,
            "url",
            format!("must be at most {MAX_URL_BYTES} bytes"),
        )?;
        let url = self.target()?;
        ensure(
            matches!(url.scheme(), "http" | "https") && url.host().is_some(),
            "url",
            "must be an http:// or https:// URL with a host",
        )?;
        ensure(
            url.username().is_empty() && url.password().is_none(),
            "url",
            "must not hold credentials; use basicAuth",
        )?;
        ensure(
            !self.events.is_empty(),
            "events",
            "name at least one of item.created, item.updated, item.deleted, connector.error, connector.recovered",
        )?;
        if let Some(streams) = &self.streams {
            ensure(
                !streams.is_empty(),
                "streams",
                "must name at least one stream; leave it out for every stream",
            )?;
        }
        if let Some(auth) = &self.basic_auth {
            ensure(
                !auth.username.is_empty()
                    && !auth.username.contains(':')
                    && !auth.username.chars().any(char::is_control),
                "basicAuth.username",
                "must be non-empty, without ':' or control characters",
            )?;
            ensure(
                !auth.password.expose().chars().any(char::is_control),
                "basicAuth.password",
                "must not contain control characters",
            )?;
        }
        if let Some(secret) = &self.secret {
            signing_key(secret)?;
        }
        if let Some(header) = &self.legacy_sha1_header {
            header_name("legacySha1Header", header)?;
            ensure(
                self.secret.is_some(),
                "legacySha1Header",
                "needs a signing secret (secret) to key the HMAC",
            )?;
        }
        self.validate_headers()?;
        if let Some(seconds) = self.timeout_seconds {
            ensure(
                (1..=MAX_TIMEOUT_SECONDS).contains(&seconds),
                "timeoutSeconds",
                format!("must be between 1 and {MAX_TIMEOUT_SECONDS}"),
            )?;
        }
        self.retry_policy().validate()
    }

    fn validate_headers(&self) -> Result<(), ValidationError> {
        let Some(headers) = &self.headers else {
            return Ok(());
        };
        ensure(
            headers.len() <= MAX_HEADERS,
            "headers",
            format!("at most {MAX_HEADERS} headers"),
        )?;
        for (name, value) in headers {
            let path = format!("headers.{name}");
            header_name(&path, name)?;
            let lower = name.to_ascii_lowercase();
            ensure(
                !RESERVED_HEADERS.contains(&lower.as_str()),
                &path,
                "is set by datapool itself",
            )?;
            ensure(
                lower != "authorization" || self.basic_auth.is_none(),
                &path,
                "conflicts with basicAuth",
            )?;
            ensure(
                reqwest::header::HeaderValue::from_str(value.expose()).is_ok(),
                &path,
                "is not a valid header value",
            )?;
        }
        Ok(())
    }
}

/// Which changes a subscription is told about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    events: Vec<EventCode>,
    streams: Option<Vec<StreamName>>,
}

impl Filter {
    /// Whether an `event` of `stream` passes.
    pub fn matches(&self, event: EventCode, stream: &str) -> bool {
        self.events.contains(&event)
            && self
                .streams
                .as_ref()
                .is_none_or(|streams| streams.iter().any(|s| s.as_str() == stream))
    }
}

/// A signing secret replaced by a rotation, still signing until `until`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviousSecret {
    /// The old secret.
    pub secret: Secret,
    /// When it stops signing.
    pub until: Timestamp,
}

/// A stored subscription: the operator's document plus what the server assigned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// `s_` and 16 hex characters; never changes.
    pub id: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its document last changed.
    pub updated_at: Timestamp,
    /// Grows by one on every change, so concurrent updates cannot overwrite each other.
    pub revision: u64,
    /// The validated document.
    pub spec: SubscriptionSpec,
    /// The secret a rotation replaced, for its grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<PreviousSecret>,
}

impl Subscription {
    /// A new subscription with a fresh id.
    pub fn new(spec: SubscriptionSpec, now: Timestamp) -> Self {
        Subscription {
            id: format!("s_{}", ids::random_hex::<8>()),
            created_at: now,
            updated_at: now,
            revision: 0,
            spec,
            previous_secret: None,
        }
    }

    /// A copy with `change` applied to its document and the bookkeeping advanced.
    pub fn changed(&self, now: Timestamp, change: impl FnOnce(&mut SubscriptionSpec)) -> Self {
        let mut next = self.clone();
        change(&mut next.spec);
        next.updated_at = now;
        next.revision += 1;
        next
    }

    /// A copy signing with `secret`, the current one still signing for
    /// [`PREVIOUS_SECRET_GRACE`].
    pub fn rotated(&self, secret: Secret, now: Timestamp) -> Self {
        let previous = self.spec.secret.clone().map(|secret| PreviousSecret {
            secret,
            until: now.saturating_add(PREVIOUS_SECRET_GRACE).unwrap_or(now),
        });
        let mut next = self.changed(now, |spec| spec.secret = Some(secret));
        next.previous_secret = previous;
        next
    }

    /// The signing keys in force at `now`: the current secret's, then a rotated-out
    /// one's during its grace period.
    pub fn signing_keys(&self, now: Timestamp) -> Vec<Vec<u8>> {
        let previous = self
            .previous_secret
            .as_ref()
            .filter(|p| p.until > now)
            .map(|p| &p.secret);
        self.spec
            .secret
            .iter()
            .chain(previous)
            .filter_map(|secret| signing_key(secret).ok())
            .collect()
    }

    /// The subscription as the admin API shows it: secrets replaced by flags, plus id
    /// and timestamps.
    pub fn view(&self) -> Value {
        let mut doc = self.document();
        for (parent, field, flag) in WRITE_ONLY {
            if let Some(Value::Object(object)) = doc.pointer_mut(parent) {
                if object.remove(field).is_some() {
                    object.insert(flag.to_owned(), Value::Bool(true));
                }
            }
        }
        if let Some(Value::Object(headers)) = doc.get_mut("headers") {
            for value in headers.values_mut() {
                *value = json!(MASK);
            }
        }
        let object = doc.as_object_mut();
        if let Some(object) = object {
            object.remove("secret");
        }
        doc["secretSet"] = json!(self.spec.secret.is_some());
        if let Some(previous) = &self.previous_secret {
            doc["secretRotatedUntil"] = json!(previous.until);
        }
        doc["id"] = json!(self.id);
        doc["createdAt"] = json!(self.created_at);
        doc["updatedAt"] = json!(self.updated_at);
        doc
    }

    /// This subscription with a JSON Merge Patch (RFC 7396) applied to its document.
    ///
    /// A patch may repeat what a read showed: derived fields, `passwordSet` and masked
    /// header values (`***`, which keep the stored value) are ignored.
    pub fn patched(&self, patch: &Value, now: Timestamp) -> Result<Self, ValidationError> {
        let mut fields = patch_members(patch, &DERIVED)?;
        if fields.get("secret").and_then(Value::as_str) == Some("generate") {
            return Err(ValidationError::field(
                "secret",
                "\"generate\" is for creating; use POST …/rotate-secret for a new one",
            ));
        }
        if let Some(Value::Object(auth)) = fields.get_mut("basicAuth") {
            auth.remove("passwordSet");
        }
        if let Some(Value::Object(headers)) = fields.get_mut("headers") {
            headers.retain(|_, value| value.as_str() != Some(MASK));
        }
        let mut doc = self.document();
        merge_patch(&mut doc, &Value::Object(fields));
        let spec = SubscriptionSpec::from_json(doc)?;
        let mut next = self.changed(now, |current| *current = spec);
        if next.spec.secret.is_none() {
            next.previous_secret = None;
        }
        Ok(next)
    }

    /// The document with secrets in clear, for the server's own use (patching).
    fn document(&self) -> Value {
        // A spec holds only strings, numbers, booleans and string-keyed maps, which
        // always serialize.
        serde_json::to_value(&self.spec).unwrap_or_default()
    }
}

/// A new random signing secret, `whsec_` and base64.
pub fn generate_secret() -> Secret {
    let bytes = ids::random_bytes::<GENERATED_SECRET_BYTES>();
    Secret::new(format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// The HMAC key of a `whsec_` secret: its base64 part, decoded.
pub fn signing_key(secret: &Secret) -> Result<Vec<u8>, ValidationError> {
    let invalid = || {
        ValidationError::field(
            "secret",
            format!(
                "must be \"generate\" or whsec_ followed by base64 of {}-{} bytes",
                SECRET_BYTES.start(),
                SECRET_BYTES.end()
            ),
        )
    };
    let encoded = secret
        .expose()
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(invalid)?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| invalid())?;
    if !SECRET_BYTES.contains(&key.len()) {
        return Err(invalid());
    }
    Ok(key)
}

/// Checks an HTTP header name.
fn header_name(path: &str, name: &str) -> Result<(), ValidationError> {
    ensure(
        reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok(),
        path,
        format!("{name:?} is not a valid header name"),
    )
}

/// Fails with `message` about `path` unless `ok`.
fn ensure(ok: bool, path: &str, message: impl std::fmt::Display) -> Result<(), ValidationError> {
    if ok {
        Ok(())
    } else {
        Err(ValidationError::field(path, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(doc: Value) -> Result<SubscriptionSpec, ValidationError> {
        SubscriptionSpec::from_json(doc)
    }

    #[test]
    fn the_full_document_is_accepted_and_reads_hide_secrets() {
        let secret = generate_secret();
        let doc = json!({"name": "Reports", "url": "https://example.com/hook",
            "events": ["item.updated"], "streams": ["sales"],
            "basicAuth": {"username": "u", "password": "pw"}, "secret": secret.expose(),
            "legacySha1Header": "X-Signature", "headers": {"X-Api-Key": "k1"},
            "timeoutSeconds": 10, "retry": {"policy": "fixed", "maxRetries": 3, "intervalSeconds": 1},
            "active": true});
        let sub = Subscription::new(spec(doc).expect("valid"), Timestamp::now());
        let view = sub.view().to_string();
        for hidden in [secret.expose(), "\"pw\"", "k1"] {
            assert!(!view.contains(hidden), "{view}");
        }
        assert_eq!(sub.view()["basicAuth"]["passwordSet"], true);
        assert_eq!(sub.view()["secretSet"], true);
    }

    #[test]
    fn bad_documents_name_the_field() {
        let base = json!({"name": "n", "url": "http://10.0.0.1/x", "events": ["item.created"]});
        assert!(spec(base.clone()).is_ok());
        let cases = [
            ("url", json!("ftp://x/y")),
            ("url", json!("http://u:p@x/y")),
            ("events", json!([])),
            ("events", json!(["item.moved"])),
            ("streams", json!([])),
            ("streams", json!(["Bad Name"])),
            ("secret", json!("whsec_short")),
            ("timeoutSeconds", json!(61)),
            ("retry", json!({"policy": "fixed", "intervalSeconds": 0})),
            ("headers", json!({"webhook-id": "x"})),
            ("legacySha1Header", json!("X-Sig")),
        ];
        for (field, value) in cases {
            let mut doc = base.clone();
            doc[field] = value;
            let error = spec(doc).expect_err(field);
            assert!(error.0.starts_with(field), "{field}: {error}");
        }
    }

    #[test]
    fn fixed_retries_are_exact_and_exponential_ones_grow_within_their_jitter() {
        let fixed = RetryPolicy {
            policy: RetryKind::Fixed,
            max_retries: Some(3),
            interval_seconds: Some(2),
        };
        assert_eq!(fixed.delay(1), Duration::from_secs(2));
        assert_eq!(fixed.delay(3), Duration::from_secs(2));
        let exponential = RetryPolicy::default();
        assert_eq!(exponential.max_retries(), 10);
        for (retry, base) in [(1, 30.0), (4, 240.0)] {
            let delay = exponential.delay(retry).as_secs_f64();
            assert!(
                (base * 0.79..=base * 1.21).contains(&delay),
                "{retry}: {delay}"
            );
        }
        assert!(exponential.delay(40) <= MAX_RETRY_DELAY.mul_f64(1.21));
    }

    #[test]
    fn patches_keep_masked_values_and_rotation_keeps_the_old_key_for_its_grace() {
        let doc = json!({"name": "n", "url": "http://h/x", "events": ["item.created"],
            "headers": {"X-Api-Key": "k1"}, "secret": generate_secret().expose()});
        let now = Timestamp::now();
        let sub = Subscription::new(spec(doc).expect("valid"), now);
        let patched = sub
            .patched(
                &json!({"headers": {"X-Api-Key": "***", "X-Other": "v"}, "id": "s_x"}),
                now,
            )
            .expect("patch");
        let headers = patched.spec.headers.as_ref().expect("headers");
        assert_eq!(headers["X-Api-Key"].expose(), "k1");
        assert_eq!(headers["X-Other"].expose(), "v");
        let rotated = sub.rotated(generate_secret(), now);
        assert_eq!(rotated.signing_keys(now).len(), 2);
        let later = now.saturating_add(PREVIOUS_SECRET_GRACE).expect("later");
        assert_eq!(rotated.signing_keys(later).len(), 1);
    }
}
