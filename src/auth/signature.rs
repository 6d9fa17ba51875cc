//! Request signature verification, on the raw body bytes before any parsing.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::{Signing, SigningScheme};

/// How far a signed timestamp may be from now unless the connector sets it (SPEC §3.1).
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;

/// Why a signature was refused; the message tells the sender what to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// A header the scheme needs is absent or unreadable.
    #[error("missing or unreadable {0} header")]
    Missing(&'static str),
    /// The signed timestamp is too far from now.
    #[error("the timestamp is more than {0} seconds from now")]
    Stale(u64),
    /// The signature does not match the body and the connector's secret.
    #[error("the signature does not match")]
    Mismatch,
    /// The connector's scheme is not verified by this version.
    #[error("the {0:?} signing scheme is not supported yet")]
    Unsupported(SigningScheme),
}

/// Verifies `body` and `headers` against the connector's signing settings at unix time `now`.
pub fn verify(
    signing: &Signing,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let tolerance = signing
        .tolerance_seconds
        .unwrap_or(DEFAULT_TOLERANCE_SECONDS);
    match signing.scheme {
        SigningScheme::Inspire => inspire(
            signing.secret.expose().as_bytes(),
            headers,
            body,
            now,
            tolerance,
        ),
        other => Err(SignatureError::Unsupported(other)),
    }
}

/// `X-Webhook-Timestamp: <unix seconds>` and
/// `X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`.
fn inspire(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    tolerance: u64,
) -> Result<(), SignatureError> {
    let timestamp = header(headers, "x-webhook-timestamp")?;
    let signature = header(headers, "x-webhook-signature")?;
    let seconds: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Missing("X-Webhook-Timestamp"))?;
    if now.abs_diff(seconds) > tolerance {
        return Err(SignatureError::Stale(tolerance));
    }
    let hex_signature = signature
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Mismatch)?;
    let expected = hex::decode(hex_signature).map_err(|_| SignatureError::Mismatch)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, SignatureError> {
    let label = match name {
        "x-webhook-timestamp" => "X-Webhook-Timestamp",
        "x-webhook-signature" => "X-Webhook-Signature",
        other => other,
    };
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or(SignatureError::Missing(label))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::model::Secret;

    fn signing() -> Signing {
        Signing {
            scheme: SigningScheme::Inspire,
            secret: Secret::new("whk_test"),
            header: None,
            algorithm: None,
            encoding: None,
            prefix: None,
            signed: None,
            timestamp_header: None,
            tolerance_seconds: None,
        }
    }

    fn signed(timestamp: &str, body: &[u8], secret: &[u8]) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-webhook-timestamp",
            HeaderValue::from_str(timestamp).expect("ascii"),
        );
        let value = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        headers.insert(
            "x-webhook-signature",
            HeaderValue::from_str(&value).expect("ascii"),
        );
        headers
    }

    #[test]
    fn inspire_accepts_a_fresh_signature_over_timestamp_and_body() {
        let body = br#"{"region":"North"}"#;
        let headers = signed("1700000000", body, b"whk_test");
        assert_eq!(verify(&signing(), &headers, body, 1_700_000_100), Ok(()));
    }

    /// An independent vector: `printf '1700000000.{}' | openssl dgst -sha256 -hmac whk_test`.
    #[test]
    fn inspire_matches_a_vector_computed_by_openssl() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-webhook-timestamp",
            HeaderValue::from_static("1700000000"),
        );
        headers.insert(
            "x-webhook-signature",
            HeaderValue::from_static(
                "sha256=44dace0c02beea4a6d87ad0aedbef42c4cdb54075b39aa4c17ab51dc85230a3e",
            ),
        );
        assert_eq!(verify(&signing(), &headers, b"{}", 1_700_000_000), Ok(()));
    }

    #[test]
    fn inspire_refuses_tampering_wrong_secrets_staleness_and_missing_headers() {
        let body = br#"{"region":"North"}"#;
        let headers = signed("1700000000", body, b"whk_test");
        assert_eq!(
            verify(&signing(), &headers, b"{}", 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        let wrong = signed("1700000000", body, b"other");
        assert_eq!(
            verify(&signing(), &wrong, body, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&signing(), &headers, body, 1_700_000_301),
            Err(SignatureError::Stale(300))
        );
        assert!(matches!(
            verify(&signing(), &HeaderMap::new(), body, 0),
            Err(SignatureError::Missing(_))
        ));
    }
}
