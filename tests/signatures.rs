//! Signature presets through the real binary (SPEC §3.4): for each scheme a request
//! signed by an independent implementation — the scheme's official library where it has
//! one, else Python's standard library — is accepted and stored, one signed with another
//! secret is refused with 401 `INVALID_SIGNATURE`, and for the schemes that sign a
//! timestamp one signed ten minutes ago is refused too.
//!
//! The signers run as `python3 tests/sign.py` with the libraries of
//! `tests/requirements.txt`. Without them the tests are skipped with a printed reason,
//! except under `CI=true`, where they fail.

mod common;

use common::{
    assert_error, create_connector, get_item, send, unix_now, wait_for_item, webhook, Answer,
    TestServer,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// How old a "stale" signature is: past the default 300 s tolerance.
const STALE_SECONDS: i64 = 600;

/// Whether python3 can import `modules` (else skipped, or failed under `CI=true`).
fn signer_ready(modules: &[&str]) -> bool {
    let imports = ["json", "hmac", "hashlib", "base64"]
        .iter()
        .chain(modules)
        .map(|module| format!("import {module}"))
        .collect::<Vec<_>>()
        .join("; ");
    common::tool_ready(
        "python3",
        &["-c", &imports],
        &format!("python3 with {modules:?} is needed to sign requests independently"),
        common::PYTHON_REQUIREMENTS,
    )
}

/// The headers `tests/sign.py` produces for `request` (see its docstring).
fn sign(request: &Value) -> Vec<(String, String)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sign.py");
    let output = common::python(&[script], request.to_string().as_bytes(), "sign.py");
    let headers: Value = serde_json::from_slice(&output).expect("headers as JSON");
    headers
        .as_object()
        .expect("a JSON object")
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().expect("text").to_owned()))
        .collect()
}

/// One preset's case: the connector's `signing` document (also what the signer reads,
/// besides the secret, body and timestamp it is given), and a secret of the same shape
/// that is not the connector's.
struct Preset {
    stream: &'static str,
    signing: Value,
    wrong_secret: &'static str,
}

impl Preset {
    /// Whether the scheme signs a timestamp, so a stale one must be refused.
    fn timestamped(&self) -> bool {
        let scheme = self.signing["scheme"].as_str();
        matches!(
            scheme,
            Some("inspire" | "standard-webhooks" | "stripe" | "slack")
        ) || self.signing["signed"] == "timestamp.body"
    }

    /// Runs the case against a fresh server, if the signer's `modules` are installed:
    /// accepted and stored when signed right; refused and not stored with another
    /// secret, a body changed after signing, or (timestamped schemes) a stale timestamp.
    async fn check(self, modules: &[&str]) {
        if !signer_ready(modules) {
            return;
        }
        let server = TestServer::start().await;
        let doc = json!({"name": self.stream, "type": "webhook", "stream": self.stream,
                         "itemKey": "id", "signing": self.signing});
        let (_, key) = create_connector(&server, &doc).await;
        let secret = self.signing["secret"].as_str().expect("secret");
        let now = unix_now();

        let accepted = self.push(&server, &key, "good", secret, now, None).await;
        assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
        let item = wait_for_item(&server, self.stream, "good", |_| true).await;
        assert_eq!(item["fields"]["city"], "Zürich", "{item}");

        let refusals = [
            ("wrong", self.wrong_secret, now, None, "match"),
            ("tampered", secret, now, Some("Zurich"), "match"),
            ("stale", secret, now - STALE_SECONDS, None, "300 seconds"),
        ];
        let checked = if self.timestamped() { 3 } else { 2 };
        for (id, secret, timestamp, sent_city, says) in &refusals[..checked] {
            let answer = self
                .push(&server, &key, id, secret, *timestamp, *sent_city)
                .await;
            let message = assert_error(&answer, StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE");
            assert!(message.contains(says), "{id}: {message}");
            assert!(get_item(&server, self.stream, id).await.is_none(), "{id}");
        }
    }

    /// Pushes item `id` signed with `secret` at `timestamp` by the independent signer;
    /// with `sent_city`, the body sent differs from the body signed.
    async fn push(
        &self,
        server: &TestServer,
        key: &str,
        id: &str,
        secret: &str,
        timestamp: i64,
        sent_city: Option<&str>,
    ) -> Answer {
        let body = |city: &str| format!(r#"{{"id": "{id}", "city": "{city}",  "n": 1}}"#);
        let mut request = self.signing.clone();
        request["secret"] = json!(secret);
        request["body"] = json!(body("Zürich"));
        request["timestamp"] = json!(timestamp);
        request["id"] = json!(format!("msg_{id}"));
        let mut builder = webhook(server, self.stream, key)
            .header("content-type", "application/json")
            .body(body(sent_city.unwrap_or("Zürich")));
        for (name, value) in sign(&request) {
            builder = builder.header(name, value);
        }
        send(builder).await
    }
}

#[tokio::test]
async fn inspire_signatures_from_python_hmac_are_verified() {
    Preset {
        stream: "inspire",
        signing: json!({"scheme": "inspire", "secret": "whk_inspire_secret"}),
        wrong_secret: "whk_other_secret",
    }
    .check(&[])
    .await;
}

#[tokio::test]
async fn standard_webhooks_signatures_from_the_official_library_are_verified() {
    Preset {
        stream: "standard-webhooks",
        signing: json!({"scheme": "standard-webhooks",
                        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
        wrong_secret: "whsec_b3RoZXIgc2VjcmV0IGtleQ==",
    }
    .check(&["standardwebhooks"])
    .await;
}

#[tokio::test]
async fn stripe_signatures_from_the_official_library_are_verified() {
    Preset {
        stream: "stripe",
        signing: json!({"scheme": "stripe", "secret": "whsec_stripe_endpoint_secret"}),
        wrong_secret: "whsec_another_endpoint",
    }
    .check(&["stripe"])
    .await;
}

#[tokio::test]
async fn slack_signatures_from_the_official_sdk_are_verified() {
    Preset {
        stream: "slack",
        signing: json!({"scheme": "slack", "secret": "8f742231b10e8888abcd99yyyzzz85a5"}),
        wrong_secret: "0000000000000000aaaaaaaaaaaaaaaa",
    }
    .check(&["slack_sdk"])
    .await;
}

#[tokio::test]
async fn github_signatures_from_python_hmac_are_verified() {
    Preset {
        stream: "github",
        signing: json!({"scheme": "github", "secret": "It's a Secret to Everybody"}),
        wrong_secret: "It's a Secret to Nobody",
    }
    .check(&[])
    .await;
}

#[tokio::test]
async fn shopify_signatures_from_python_hmac_are_verified() {
    Preset {
        stream: "shopify",
        signing: json!({"scheme": "shopify", "secret": "shpss_shop_secret"}),
        wrong_secret: "shpss_other_shop",
    }
    .check(&[])
    .await;
}

#[tokio::test]
async fn generic_hmac_sha512_base64_over_timestamp_and_body_is_verified() {
    Preset {
        stream: "generic",
        signing: json!({"scheme": "hmac", "secret": "generic-secret", "header": "X-Signature",
                        "algorithm": "sha512", "encoding": "base64", "prefix": "sha512=",
                        "signed": "timestamp.body", "timestampHeader": "X-Timestamp"}),
        wrong_secret: "generic-other",
    }
    .check(&[])
    .await;
}

/// Seed 002's sender: HMAC-SHA1 of the body, in hex, in a header of its own, with no
/// timestamp; a body changed after signing is refused like every other preset's.
#[tokio::test]
async fn seed_002_hmac_sha1_hex_over_the_body_is_verified_and_tampering_refused() {
    Preset {
        stream: "inqud",
        signing: json!({"scheme": "hmac", "secret": "inqud-callback-secret",
                        "header": "X-Signature", "algorithm": "sha1", "encoding": "hex"}),
        wrong_secret: "not-the-callback-secret",
    }
    .check(&[])
    .await;
}

/// A sender that signs the body with HMAC-SHA1 and retries a delivery it thinks failed:
/// every retry is verified and answered with the first answer, the item is written
/// once, and a retry whose body was altered on the way is refused.
#[tokio::test]
async fn hmac_sha1_retries_are_verified_and_deduplicated() {
    if !signer_ready(&[]) {
        return;
    }
    let server = TestServer::start().await;
    let signing = json!({"scheme": "hmac", "secret": "callback-secret", "header": "X-Signature",
                         "algorithm": "sha1", "encoding": "hex"});
    let doc = json!({"name": "Payments", "type": "webhook", "stream": "payments", "itemKey": "id",
                     "signing": signing, "dedup": {"jsonPointer": "/id"}});
    let (_, key) = create_connector(&server, &doc).await;
    let body = r#"{"id": "pay_81", "status": "PAID", "amount": "12.50"}"#;
    let mut request = signing.clone();
    request["body"] = json!(body);
    request["timestamp"] = json!(unix_now());
    request["id"] = json!("pay_81");
    let headers = sign(&request);
    let deliver = |body: &'static str| {
        let mut builder = webhook(&server, "payments", &key)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in &headers {
            builder = builder.header(name, value);
        }
        send(builder)
    };
    let first = deliver(body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    for _ in 0..2 {
        let retry = deliver(body).await;
        assert_eq!(retry.status, StatusCode::ACCEPTED, "{}", retry.body);
        assert_eq!(retry.headers["idempotent-replayed"], "true");
        assert_eq!(retry.body, first.body);
    }
    let altered = deliver(r#"{"id": "pay_81", "status": "PAID", "amount": "1250.00"}"#).await;
    assert_error(&altered, StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE");
    let item = wait_for_item(&server, "payments", "pay_81", |_| true).await;
    assert_eq!(item["version"], 1, "{item}");
    assert_eq!(item["fields"]["amount"], "12.50");
}

/// A signed bulk import is verified over its whole body before any of it is stored (the
/// server spools it to disk rather than holding it), and a body altered after signing
/// stores nothing at all; the spool file is gone afterwards.
#[tokio::test]
async fn a_signed_bulk_import_is_verified_whole_before_anything_is_stored() {
    if !signer_ready(&[]) {
        return;
    }
    let server = TestServer::start().await;
    let signing = json!({"scheme": "github", "secret": "bulk-secret"});
    let doc = json!({"name": "Imports", "type": "webhook", "stream": "imports", "itemKey": "id",
                     "signing": signing});
    let (_, key) = create_connector(&server, &doc).await;
    let lines = |prefix: &str| -> String {
        (0..3000)
            .map(|n| format!("{{\"id\": \"{prefix}{n}\", \"n\": {n}}}\n"))
            .collect()
    };
    let mut request = signing.clone();
    request["body"] = json!(lines("a"));
    request["timestamp"] = json!(unix_now());
    request["id"] = json!("bulk-1");
    let headers = sign(&request);
    let post = |body: String| {
        let mut builder = server
            .client()
            .post(server.url("/api/webhook/imports/bulk"))
            .bearer_auth(&key)
            .header("content-type", "application/x-ndjson")
            .body(body);
        for (name, value) in &headers {
            builder = builder.header(name, value);
        }
        send(builder)
    };
    let altered = post(lines("a").replacen("\"n\": 2999", "\"n\": 3000", 1)).await;
    assert_error(&altered, StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE");
    let stored = server
        .admin(reqwest::Method::GET, "/api/streams/imports/items", None)
        .await;
    assert_eq!(
        stored.status,
        StatusCode::NOT_FOUND,
        "nothing was stored: {}",
        stored.body
    );

    let accepted = post(lines("a")).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    assert_eq!(accepted.body["itemsReceived"], 3000);
    wait_for_item(&server, "imports", "a2999", |item| {
        item["fields"]["n"] == 2999
    })
    .await;
    let spool = server.data_dir().join("spool");
    let left = std::fs::read_dir(&spool).map_or(0, |entries| entries.count());
    assert_eq!(left, 0, "spool files are removed");
}
