//! Options of push connectors (`webhook`, `api`): request signing, sender
//! authentication styles, deduplication and rate limits (SPEC §1.1, §3.4).

use axum::http::HeaderName;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{check, ensure};
use crate::model::{Secret, ValidationError};

/// Longest idempotency window a connector may ask for: 30 days.
const MAX_IDEMPOTENCY_WINDOW_SECONDS: u64 = 30 * 24 * 3600;
/// Widest timestamp tolerance a signing scheme may be given: one day.
const MAX_TOLERANCE_SECONDS: u64 = 24 * 3600;
/// Highest sustained rate a connector may be given, in requests per second.
const MAX_RATE_PER_SECOND: f64 = 1_000_000.0;

/// How pushed requests prove they come from the sender holding the signing secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Signing {
    /// Which header format and signed content to expect.
    pub scheme: SigningScheme,
    /// The shared signing key; write-only.
    pub secret: Secret,
    /// `hmac` only: the header carrying the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `hmac` only: the hash function (default sha256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<HmacAlgorithm>,
    /// `hmac` only: how the signature is written (default hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<SignatureEncoding>,
    /// `hmac` only: text before the signature in the header, e.g. `sha1=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `hmac` only: what is signed (default the body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<SignedContent>,
    /// `hmac` with `timestamp.body`: the header carrying the unix timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_header: Option<String>,
    /// Schemes that sign a timestamp: how far it may be from now (default 300 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_seconds: Option<u64>,
}

/// The signature formats of real senders (SPEC §3.1, §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SigningScheme {
    /// `X-Webhook-Timestamp` + `X-Webhook-Signature: sha256=<hex>` over `<ts>.<body>`.
    Inspire,
    /// `webhook-id/-timestamp/-signature`, `v1,<base64>`, `whsec_` secrets.
    StandardWebhooks,
    /// `X-Hub-Signature-256: sha256=<hex>` over the body.
    Github,
    /// `Stripe-Signature: t=…,v1=…`.
    Stripe,
    /// `X-Shopify-Hmac-Sha256: <base64>` over the body.
    Shopify,
    /// `X-Slack-Signature: v0=<hex>` over `v0:<ts>:<body>`.
    Slack,
    /// Any header, algorithm and encoding, configured field by field.
    Hmac,
}

impl SigningScheme {
    /// Whether the scheme signs a timestamp, so a tolerance applies.
    fn is_timestamped(self) -> bool {
        !matches!(
            self,
            SigningScheme::Github | SigningScheme::Shopify | SigningScheme::Hmac
        )
    }
}

/// Hash functions of the generic `hmac` scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// HMAC-SHA1, still used by older senders.
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How an `hmac` signature is written in its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    /// Lowercase or uppercase hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// What an `hmac` signature covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum SignedContent {
    /// The raw body bytes.
    #[serde(rename = "body")]
    Body,
    /// `<timestamp>.<raw body>`, with the timestamp from `timestampHeader`.
    #[serde(rename = "timestamp.body")]
    TimestampBody,
}

/// The ways a push request may present its ingest key besides `Authorization: Bearer`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushAuth {
    /// Accept HTTP Basic with any username and the full ingest key as password.
    #[serde(default)]
    pub basic: bool,
    /// Accept the key in the URL path (`…/k/{ingestKey}`), for senders that cannot set headers.
    #[serde(default)]
    pub key_in_url: bool,
    /// A second shared secret the request must carry in a header.
    #[serde(default)]
    pub secret_header: Option<SecretHeader>,
}

/// A header every request must carry with exactly this value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretHeader {
    /// The header's name, e.g. `X-Api-Secret`.
    pub name: String,
    /// The value it must carry; write-only.
    pub value: Secret,
}

/// Where a repeat delivery's identity comes from, for senders that retry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Dedup {
    /// A request header, e.g. `webhook-id` or `X-GitHub-Delivery`.
    Header(String),
    /// A JSON pointer into the body, e.g. `/messageId`.
    JsonPointer(String),
}

/// A token bucket: `perSecond` sustained, `burst` at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per second refilled into the bucket.
    pub per_second: f64,
    /// The bucket's size: requests allowed at once.
    pub burst: u32,
}

impl Signing {
    /// The HMAC key of a `standard-webhooks` secret: the base64 after `whsec_` decoded,
    /// as the scheme's reference libraries do (the prefix is optional there too).
    /// `None` when it is not base64 or decodes to nothing, so validation and the
    /// verifier agree on which secrets are usable.
    pub fn standard_webhooks_key(&self) -> Option<Vec<u8>> {
        let key = self.secret.expose();
        let key = key.strip_prefix("whsec_").unwrap_or(key);
        base64::engine::general_purpose::STANDARD
            .decode(key)
            .ok()
            .filter(|k| !k.is_empty())
    }

    pub(super) fn validate(&self) -> Result<(), ValidationError> {
        ensure(
            !self.secret.expose().is_empty(),
            "signing.secret",
            "must not be empty",
        )?;
        if self.scheme == SigningScheme::StandardWebhooks {
            ensure(
                self.standard_webhooks_key().is_some(),
                "signing.secret",
                "a standard-webhooks secret is whsec_ followed by base64",
            )?;
        }
        if self.scheme == SigningScheme::Hmac {
            let header = self.header.as_deref().ok_or_else(|| {
                ValidationError::field(
                    "signing.header",
                    "the hmac scheme needs the signature header's name",
                )
            })?;
            header_name("signing.header", header)?;
            let timestamped = self.signed == Some(SignedContent::TimestampBody);
            match (&self.timestamp_header, timestamped) {
                (Some(name), true) => header_name("signing.timestampHeader", name)?,
                (None, true) => {
                    return Err(ValidationError::field(
                        "signing.timestampHeader",
                        "required when signed is \"timestamp.body\"",
                    ))
                }
                (Some(_), false) => {
                    return Err(ValidationError::field(
                        "signing.timestampHeader",
                        "applies only when signed is \"timestamp.body\"",
                    ))
                }
                (None, false) => {}
            }
        } else {
            let hmac_only = [
                ("header", self.header.is_some()),
                ("algorithm", self.algorithm.is_some()),
                ("encoding", self.encoding.is_some()),
                ("prefix", self.prefix.is_some()),
                ("signed", self.signed.is_some()),
                ("timestampHeader", self.timestamp_header.is_some()),
            ];
            if let Some((field, _)) = hmac_only.iter().find(|(_, set)| *set) {
                return Err(ValidationError::field(
                    &format!("signing.{field}"),
                    "applies only to the hmac scheme",
                ));
            }
        }
        if let Some(tolerance) = self.tolerance_seconds {
            let timestamped =
                self.scheme.is_timestamped() || self.signed == Some(SignedContent::TimestampBody);
            ensure(
                timestamped,
                "signing.toleranceSeconds",
                "this scheme signs no timestamp",
            )?;
            check(
                tolerance,
                1,
                MAX_TOLERANCE_SECONDS,
                "signing.toleranceSeconds",
            )?;
        }
        Ok(())
    }
}

impl PushAuth {
    pub(super) fn validate(&self) -> Result<(), ValidationError> {
        if let Some(secret) = &self.secret_header {
            header_name("auth.secretHeader.name", &secret.name)?;
            ensure(
                !secret.value.expose().is_empty(),
                "auth.secretHeader.value",
                "must not be empty",
            )?;
        }
        Ok(())
    }
}

impl Dedup {
    pub(super) fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Dedup::Header(name) => header_name("dedup.header", name),
            Dedup::JsonPointer(pointer) => ensure(
                pointer.starts_with('/'),
                "dedup.jsonPointer",
                "a JSON pointer starts with /, e.g. /messageId",
            ),
        }
    }
}

impl RateLimit {
    pub(super) fn validate(&self) -> Result<(), ValidationError> {
        ensure(
            self.per_second.is_finite()
                && self.per_second > 0.0
                && self.per_second <= MAX_RATE_PER_SECOND,
            "rateLimit.perSecond",
            format!("must be above 0 and at most {MAX_RATE_PER_SECOND}"),
        )?;
        ensure(self.burst >= 1, "rateLimit.burst", "must be at least 1")
    }
}

/// Checks the scalar push options: success status, source header, idempotency window.
pub(super) fn validate_scalars(
    success_status: Option<u16>,
    source_header: Option<&str>,
    idempotency_window_seconds: Option<u64>,
) -> Result<(), ValidationError> {
    if let Some(status) = success_status {
        ensure(
            matches!(status, 200 | 202),
            "successStatus",
            "must be 200 or 202",
        )?;
    }
    if let Some(name) = source_header {
        header_name("sourceHeader", name)?;
    }
    if let Some(window) = idempotency_window_seconds {
        check(
            window,
            1,
            MAX_IDEMPOTENCY_WINDOW_SECONDS,
            "idempotencyWindowSeconds",
        )?;
    }
    Ok(())
}

/// Checks that `name` is a valid HTTP header name.
pub(super) fn header_name(path: &str, name: &str) -> Result<(), ValidationError> {
    HeaderName::from_bytes(name.as_bytes())
        .map(drop)
        .map_err(|_| ValidationError::field(path, format!("{name:?} is not a valid header name")))
}
