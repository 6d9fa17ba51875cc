//! Pushing data in: `POST /api/webhook/{stream}` (SPEC §3.1, seeds 000 and 001)
//! through the real binary, with webhook connectors made through the admin API.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    all_items, assert_error, create_connector, get_item, is_utc_timestamp, push, push_ok, send,
    unix_now, wait_for_item, webhook, Answer, Options, TestServer, EVENTUALLY,
};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// A webhook connector document for `stream`, with `extra` fields merged in.
fn connector(name: &str, stream: &str, extra: Value) -> Value {
    let mut doc = json!({"name": name, "type": "webhook", "stream": stream});
    if let (Some(doc), Value::Object(extra)) = (doc.as_object_mut(), extra) {
        doc.extend(extra);
    }
    doc
}

/// Pushes `text` byte for byte as `application/json`.
async fn push_text(server: &TestServer, stream: &str, key: &str, text: &str) -> Answer {
    send(
        webhook(server, stream, key)
            .header("content-type", "application/json")
            .body(text.to_owned()),
    )
    .await
}

/// The ids of every item of `stream`, read with the admin token.
async fn ids(server: &TestServer, stream: &str) -> BTreeSet<String> {
    all_items(server, stream, &server.token())
        .await
        .iter()
        .map(|item| item["id"].as_str().expect("item id").to_owned())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

fn version(item: &Value) -> u64 {
    item["version"].as_u64().expect("version is a number")
}

/// Asserts a 202 whose body is `{"status":"accepted","requestId":"req_…","stream","itemsReceived"}`.
fn assert_accepted(answer: &Answer, stream: &str, items: u64) {
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let request_id = answer.body["requestId"].as_str().expect("requestId");
    assert!(request_id.starts_with("req_"), "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"status": "accepted", "requestId": request_id, "stream": stream, "itemsReceived": items})
    );
}

// Seed 000's examples, verbatim.
const SINGLE: &str = r#"{ "region": "North", "sales": 142000, "target": 130000, "updated": "2026-04-06T10:30:00Z" }"#;
const MANY: &str = r#"[ { "region": "North", "sales": 142000, "target": 130000 }, { "region": "South", "sales": 98000, "target": 110000 }, { "region": "East", "sales": 156000, "target": 140000 } ]"#;
const NESTED: &str = r#"{ "location": { "city": "London", "country": "UK" }, "metrics": { "footfall": 1250, "dwell_time": 3.5 } }"#;

#[tokio::test]
async fn a_single_object_is_one_item_named_by_its_position() {
    let server = TestServer::start().await;
    let (connector_id, key) =
        create_connector(&server, &connector("Sales", "sales", json!({}))).await;

    let answer = push_text(&server, "sales", &key, SINGLE).await;
    assert_accepted(&answer, "sales", 1);

    let item = wait_for_item(&server, "sales", "0", |_| true).await;
    assert_eq!(item["id"], "0");
    assert_eq!(
        item["fields"],
        json!({"region": "North", "sales": 142000, "target": 130000, "updated": "2026-04-06T10:30:00Z"})
    );
    assert!(version(&item) >= 1, "{item}");
    assert!(
        item["updatedAt"].as_str().is_some_and(is_utc_timestamp),
        "{item}"
    );
    assert_eq!(item["connectorId"], connector_id.as_str());
    assert_eq!(ids(&server, "sales").await, set(&["0"]));
}

#[tokio::test]
async fn an_array_is_many_items_named_by_their_positions() {
    let server = TestServer::start().await;
    let (_, key) = create_connector(&server, &connector("Sales", "sales", json!({}))).await;

    let answer = push_text(&server, "sales", &key, MANY).await;
    assert_accepted(&answer, "sales", 3);

    let expected = [
        (
            "0",
            json!({"region": "North", "sales": 142000, "target": 130000}),
        ),
        (
            "1",
            json!({"region": "South", "sales": 98000, "target": 110000}),
        ),
        (
            "2",
            json!({"region": "East", "sales": 156000, "target": 140000}),
        ),
    ];
    for (id, fields) in expected {
        let item = wait_for_item(&server, "sales", id, |_| true).await;
        assert_eq!(item["fields"], fields, "item {id}");
    }
    assert_eq!(ids(&server, "sales").await, set(&["0", "1", "2"]));
}

#[tokio::test]
async fn nested_objects_flatten_to_dotted_fields_and_arrays_stay_values() {
    let server = TestServer::start().await;
    let (_, key) = create_connector(&server, &connector("Footfall", "footfall", json!({}))).await;

    assert_accepted(
        &push_text(&server, "footfall", &key, NESTED).await,
        "footfall",
        1,
    );
    let item = wait_for_item(&server, "footfall", "0", |_| true).await;
    assert_eq!(
        item["fields"],
        json!({"location.city": "London", "location.country": "UK",
               "metrics.footfall": 1250, "metrics.dwell_time": 3.5})
    );

    let odd = json!({"id": "odd", "tags": ["a", "b"], "empty": {},
                     "deep": {"none": {}, "list": [{"x": 1}, 2], "more": {"flag": true}}});
    let answer = send(
        webhook(&server, "footfall", &key)
            .header("x-item-key", "id")
            .json(&odd),
    )
    .await;
    assert_accepted(&answer, "footfall", 1);
    let item = wait_for_item(&server, "footfall", "odd", |_| true).await;
    assert_eq!(
        item["fields"],
        json!({"id": "odd", "tags": ["a", "b"], "deep.list": [{"x": 1}, 2], "deep.more.flag": true}),
        "arrays are kept as JSON values and empty objects add no field"
    );
}

#[tokio::test]
async fn x_item_key_names_the_item_and_later_pushes_merge_into_it() {
    let server = TestServer::start().await;
    let (_, key) = create_connector(&server, &connector("Sales", "sales", json!({}))).await;
    let keyed = |body: &str| {
        webhook(&server, "sales", &key)
            .header("content-type", "application/json")
            .header("x-item-key", "region")
            .body(body.to_owned())
    };

    assert_accepted(
        &send(keyed(r#"{ "region": "North", "sales": 142000 }"#)).await,
        "sales",
        1,
    );
    let first = wait_for_item(&server, "sales", "North", |_| true).await;
    assert_eq!(first["fields"], json!({"region": "North", "sales": 142000}));

    assert_accepted(
        &send(keyed(
            r#"{ "region": "North", "sales": 150000, "target": 130000 }"#,
        ))
        .await,
        "sales",
        1,
    );
    let second = wait_for_item(&server, "sales", "North", |i| {
        i["fields"]["sales"] == 150000
    })
    .await;
    assert!(version(&second) > version(&first), "{first} then {second}");

    assert_accepted(
        &send(keyed(
            r#"{ "region": "North", "updated": "2026-04-06T11:00:00Z" }"#,
        ))
        .await,
        "sales",
        1,
    );
    let third = wait_for_item(&server, "sales", "North", |i| {
        i["fields"].get("updated").is_some()
    })
    .await;
    assert_eq!(
        third["fields"],
        json!({"region": "North", "sales": 150000, "target": 130000, "updated": "2026-04-06T11:00:00Z"}),
        "fields the push does not carry stay"
    );
    assert!(version(&third) > version(&second), "{second} then {third}");
    assert_eq!(
        ids(&server, "sales").await,
        set(&["North"]),
        "one item, not three"
    );

    let dotted = send(
        webhook(&server, "sales", &key)
            .header("x-item-key", "meta.code")
            .json(&json!({"meta": {"code": 7}, "v": 1})),
    )
    .await;
    assert_accepted(&dotted, "sales", 1);
    let item = wait_for_item(&server, "sales", "7", |_| true).await;
    assert_eq!(
        item["fields"],
        json!({"meta.code": 7, "v": 1}),
        "a dotted, numeric key"
    );
}

#[tokio::test]
async fn the_connectors_item_key_applies_when_no_header_names_one() {
    let server = TestServer::start().await;
    let doc = connector("Sales", "sales", json!({"itemKey": "region"}));
    let (_, key) = create_connector(&server, &doc).await;

    let many = json!([{"region": "North", "sales": 1}, {"region": "South", "sales": 2}]);
    assert_accepted(&push(&server, "sales", &key, &many).await, "sales", 2);
    let south = wait_for_item(&server, "sales", "South", |_| true).await;
    assert_eq!(south["fields"], json!({"region": "South", "sales": 2}));

    let header_wins = send(
        webhook(&server, "sales", &key)
            .header("x-item-key", "code")
            .json(&json!({"region": "West", "code": "w-1"})),
    )
    .await;
    assert_accepted(&header_wins, "sales", 1);
    wait_for_item(&server, "sales", "w-1", |_| true).await;
    assert_eq!(
        ids(&server, "sales").await,
        set(&["North", "South", "w-1"]),
        "X-Item-Key wins over the connector's itemKey"
    );
}

#[tokio::test]
async fn replace_mode_replaces_the_whole_item() {
    let server = TestServer::start().await;
    let doc = connector(
        "Sales",
        "sales",
        json!({"itemKey": "region", "upsertMode": "replace"}),
    );
    let (_, key) = create_connector(&server, &doc).await;

    push_ok(
        &server,
        "sales",
        &key,
        &json!({"region": "North", "sales": 1, "target": 2}),
    )
    .await;
    wait_for_item(&server, "sales", "North", |_| true).await;
    push_ok(
        &server,
        "sales",
        &key,
        &json!({"region": "North", "sales": 3}),
    )
    .await;
    let item = wait_for_item(&server, "sales", "North", |i| i["fields"]["sales"] == 3).await;
    assert_eq!(item["fields"], json!({"region": "North", "sales": 3}));
}

/// `{"region": region, "a": {"a": … {"v": 1}}}` with `depth` nested objects.
fn nested(region: &str, depth: usize) -> String {
    format!(
        r#"{{"region": "{region}", {}"v": 1{}}}"#,
        r#""a": {"#.repeat(depth),
        "}".repeat(depth)
    )
}

/// An item with `count` fields in all, its key included.
fn wide(region: &str, count: usize) -> Value {
    let mut fields = serde_json::Map::new();
    fields.insert("region".to_owned(), json!(region));
    for i in 1..count {
        fields.insert(format!("f{i:04}"), json!(i));
    }
    Value::Object(fields)
}

#[tokio::test]
async fn invalid_payloads_are_400_and_nothing_of_them_is_stored() {
    let server = TestServer::start().await;
    let doc = connector("Sales", "sales", json!({"itemKey": "region"}));
    let (_, key) = create_connector(&server, &doc).await;

    let cases = [
        (r#"{"region": "North", "#.to_owned(), "bad JSON"),
        ("42".to_owned(), "a scalar"),
        (r#""North""#.to_owned(), "a string"),
        (
            r#"[{"region": "North"}, 5]"#.to_owned(),
            "an array holding a non-object",
        ),
        (
            r#"{"region": true}"#.to_owned(),
            "a key that is neither string nor number",
        ),
        (nested("deep", 40), "nesting deeper than 32"),
        (wide("wide", 1001).to_string(), "more than 1,000 fields"),
    ];
    for (body, why) in cases {
        let answer = push_text(&server, "sales", &key, &body).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{why}: {}",
            answer.body
        );
        assert_error(&answer, StatusCode::BAD_REQUEST, "INVALID_PAYLOAD");
    }

    let mut missing: Vec<Value> = (0..12)
        .map(|i| json!({"region": format!("r{i:02}"), "sales": i}))
        .collect();
    missing.push(json!({"sales": 12}));
    let answer = push(&server, "sales", &key, &json!(missing)).await;
    let message = assert_error(&answer, StatusCode::BAD_REQUEST, "INVALID_PAYLOAD");
    assert!(
        message.contains("12"),
        "the message names the item's index: {message}"
    );

    let deep = push_text(&server, "sales", &key, &nested("deep-ok", 20)).await;
    assert_eq!(
        deep.status,
        StatusCode::ACCEPTED,
        "20 levels are fine: {}",
        deep.body
    );
    push_ok(&server, "sales", &key, &wide("wide-ok", 1000)).await;
    let item = wait_for_item(&server, "sales", "wide-ok", |_| true).await;
    assert_eq!(item["fields"].as_object().map(|f| f.len()), Some(1000));
    let deep = get_item(&server, "sales", "deep-ok")
        .await
        .expect("deep-ok stored");
    let deepest = format!("{}v", "a.".repeat(20));
    assert_eq!(deep["fields"][&deepest], 1, "{deep}");
    assert_eq!(
        ids(&server, "sales").await,
        set(&["deep-ok", "wide-ok"]),
        "no item of a rejected request was stored, not even its valid ones"
    );
}

/// Plain webhook pushes are served beside the router, the ingest hot path; every other
/// form of the URL goes through the router. Both answer alike.
#[tokio::test]
async fn every_form_of_the_webhook_url_answers_alike() {
    let server = TestServer::start().await;
    let doc = connector("Sales", "sales", json!({"itemKey": "region"}));
    let (_, key) = create_connector(&server, &doc).await;
    let post = |path: &str, region: &str| {
        server
            .client()
            .post(server.url(path))
            .bearer_auth(&key)
            .json(&json!({"region": region}))
    };
    let forms = [
        ("/api/webhook/sales", "plain"),
        ("/api/webhook/sales/batch", "batch"),
        ("/api/webhook/%73ales", "encoded"),
        ("/api/webhook/%73ales/batch", "encoded-batch"),
    ];
    for (path, region) in forms {
        let answer = send(post(path, region)).await;
        assert_accepted(&answer, "sales", 1);
        assert_eq!(
            answer.headers.get("x-request-id").map(|v| v.as_bytes()),
            answer.body["requestId"].as_str().map(str::as_bytes),
            "{path}"
        );
    }
    let unknown = send(webhook(&server, "sales", "ik_nope").json(&json!({"region": "x"}))).await;
    assert_error(&unknown, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    let not_a_push = send(server.client().get(server.url("/api/webhook/sales"))).await;
    assert_error(
        &not_a_push,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    );
    for path in ["/api/webhook/sales/", "/api/webhook/sales/batch/more"] {
        let answer = send(post(path, "nowhere")).await;
        assert_error(&answer, StatusCode::NOT_FOUND, "NOT_FOUND");
    }

    wait_for_item(&server, "sales", "encoded-batch", |_| true).await;
    let stored = set(&["plain", "batch", "encoded", "encoded-batch"]);
    assert_eq!(ids(&server, "sales").await, stored);
}

#[tokio::test]
async fn ingest_keys_are_checked_401_403_404() {
    let server = TestServer::start().await;
    let doc = connector("Sales", "sales", json!({"itemKey": "region"}));
    let (id, key) = create_connector(&server, &doc).await;
    let (_, other_key) = create_connector(&server, &connector("Other", "other", json!({}))).await;
    let body = |region: &str| json!({"region": region, "sales": 1});

    let none = send(webhook(&server, "sales", "").json(&body("no-key"))).await;
    let key_id = key.split('_').nth(1).expect("key id");
    let wrong_secret = format!("ik_{key_id}_{}", "A".repeat(40));
    let cases = [
        ("no key", none),
        (
            "a malformed key",
            push(&server, "sales", "ik_not-a-key", &body("malformed")).await,
        ),
        (
            "the right key id with a wrong secret",
            push(&server, "sales", &wrong_secret, &body("wrong")).await,
        ),
    ];
    for (why, answer) in cases {
        assert_error(&answer, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert_eq!(
            answer.headers.get("www-authenticate").map(|v| v.as_bytes()),
            Some(&b"Bearer"[..]),
            "{why}"
        );
    }

    let elsewhere = push(&server, "sales", &other_key, &body("elsewhere")).await;
    assert_error(&elsewhere, StatusCode::NOT_FOUND, "STREAM_NOT_FOUND");
    let nowhere = push(&server, "nowhere", &key, &body("nowhere")).await;
    assert_error(&nowhere, StatusCode::NOT_FOUND, "STREAM_NOT_FOUND");

    let disabled = server.connector_action(&id, "disable").await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    let paused = push(&server, "sales", &key, &body("paused")).await;
    assert_error(&paused, StatusCode::FORBIDDEN, "CONNECTOR_DISABLED");
    server.connector_action(&id, "enable").await;
    push_ok(&server, "sales", &key, &body("enabled")).await;

    let rotated = server
        .admin(
            Method::POST,
            &format!("/api/admin/connectors/{id}/rotate-key"),
            None,
        )
        .await;
    let new_key = rotated.body["ingestKey"]
        .as_str()
        .expect("new key")
        .to_owned();
    let old = push(&server, "sales", &key, &body("old-key")).await;
    assert_error(&old, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    push_ok(&server, "sales", &new_key, &body("new-key")).await;

    wait_for_item(&server, "sales", "new-key", |_| true).await;
    assert_eq!(
        ids(&server, "sales").await,
        set(&["enabled", "new-key"]),
        "refused pushes store nothing"
    );
}

/// A TLS connection to the server speaking HTTP/1.1, trusting its certificate.
async fn raw_tls(server: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(server.cert_file()).expect("certificate file") {
        roots
            .add(cert.expect("PEM certificate"))
            .expect("a usable root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(server.https)
        .await
        .expect("TCP connect");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(server.https.ip().into()), tcp)
        .await
        .expect("TLS handshake")
}

/// Reads one HTTP/1.1 response: its status and body (as far as it came).
async fn read_response(reader: &mut (impl AsyncRead + Unpin)) -> (u16, Vec<u8>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => panic!(
                "the connection ended before a response: {:?}",
                String::from_utf8_lossy(&buffer)
            ),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    let header = |name: &str| {
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    let length: Option<usize> = header("content-length").and_then(|v| v.parse().ok());
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let mut body = buffer.split_off(head_end + 4);
    loop {
        let complete = match length {
            Some(length) => body.len() >= length,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    if chunked {
        body = dechunk(&body);
    }
    (status, body)
}

/// Decodes a chunked body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_owned();
        let size = usize::from_str_radix(&size_text, 16).unwrap_or(0);
        raw = &raw[line_end + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        body.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or(&[]);
    }
    body
}

/// A prefix of a valid JSON array whose one string never ends: `len` bytes in all.
fn endless_json(len: usize) -> Vec<u8> {
    let mut body = br#"[{"region": "big", "pad": ""#.to_vec();
    body.resize(len, b'x');
    body
}

const MIB: usize = 1024 * 1024;

/// Sends `head` over a raw HTTP/1.1 connection and then `body` (a few MiB at most,
/// stopping quietly if the server stops reading), never finishing the request, and
/// reads the response meanwhile: it must come without the rest of the body.
async fn oversized(server: &TestServer, head: String, body: Vec<u8>) -> (u16, Value) {
    let (mut reader, mut writer) = tokio::io::split(raw_tls(server).await);
    let writing = tokio::spawn(async move {
        if writer.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for chunk in body.chunks(64 * 1024) {
            if writer.write_all(chunk).await.is_err() || writer.flush().await.is_err() {
                return;
            }
        }
        // Keep the connection open without finishing the body.
        std::future::pending::<()>().await;
    });
    let (status, body) = tokio::time::timeout(Duration::from_secs(15), read_response(&mut reader))
        .await
        .expect("the server answers without waiting for the whole body");
    writing.abort();
    let body = serde_json::from_slice(&body).unwrap_or_else(|_| {
        panic!(
            "non-JSON body ({status}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, body)
}

fn assert_too_large(status: u16, body: &Value, why: &str) {
    assert_eq!(status, 413, "{why}: {body}");
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE", "{why}: {body}");
    assert!(
        body["error"]["requestId"]
            .as_str()
            .is_some_and(|id| id.starts_with("req_")),
        "{why}: {body}"
    );
}

/// An item near the 1 MiB limit is larger than the store keeps inside its log: it is
/// stored, read back whole, and still there after a restart.
#[tokio::test]
async fn an_item_near_1_mib_is_stored_whole_and_survives_a_restart() {
    let mut server = TestServer::start().await;
    let doc = connector("Large", "large", json!({"itemKey": "id"}));
    let (_, key) = create_connector(&server, &doc).await;
    let text = "x".repeat(MIB - 1024);
    push_ok(&server, "large", &key, &json!({"id": "big", "text": text})).await;
    let whole = |item: &Value| item["fields"]["text"].as_str() == Some(text.as_str());
    wait_for_item(&server, "large", "big", whole).await;
    server.restart().await;
    let item = get_item(&server, "large", "big")
        .await
        .expect("still there after a restart");
    assert!(whole(&item), "the text came back whole");
}

#[tokio::test]
async fn bodies_over_1_mib_get_413_without_being_read_whole() {
    let server = TestServer::start().await;
    let doc = connector("Sales", "sales", json!({"itemKey": "region"}));
    let (_, key) = create_connector(&server, &doc).await;
    let head = |framing: &str| {
        format!(
            "POST /api/webhook/sales HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\n{framing}\r\n\r\n",
            server.https
        )
    };

    let declared = head(&format!("Content-Length: {}", 50 * MIB));
    let (status, body) = oversized(&server, declared, endless_json(2 * MIB)).await;
    assert_too_large(status, &body, "a declared Content-Length of 50 MiB");

    let mut chunked_body = Vec::new();
    for chunk in endless_json(3 * MIB).chunks(64 * 1024) {
        chunked_body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked_body.extend_from_slice(chunk);
        chunked_body.extend_from_slice(b"\r\n");
    }
    let (status, body) = oversized(&server, head("Transfer-Encoding: chunked"), chunked_body).await;
    assert_too_large(status, &body, "a chunked body passing 1 MiB");

    // HTTP/2 (what reqwest negotiates) with a streamed body of unknown length.
    let first = endless_json(64 * 1024);
    let stream = futures_util::stream::iter(
        std::iter::once(first)
            .chain(std::iter::repeat_n(vec![b'x'; 64 * 1024], 47))
            .map(Ok::<_, std::io::Error>),
    )
    .chain(futures_util::stream::pending());
    let request = webhook(&server, "sales", &key)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let response = tokio::time::timeout(Duration::from_secs(15), request)
        .await
        .expect("the server answers without waiting for the whole body")
        .expect("an answer");
    let answer = common::answer(response).await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");

    let mut fits = wide("fits", 2);
    fits["pad"] = json!("y".repeat(900 * 1024));
    push_ok(&server, "sales", &key, &fits).await;
    wait_for_item(&server, "sales", "fits", |_| true).await;
    assert_eq!(ids(&server, "sales").await, set(&["fits"]));
}

#[tokio::test]
async fn only_json_content_types_are_accepted() {
    let server = TestServer::start().await;
    let doc = connector("Sales", "sales", json!({"itemKey": "region"}));
    let (_, key) = create_connector(&server, &doc).await;
    let typed = |content_type: Option<&str>, region: &str| {
        let request = webhook(&server, "sales", &key).body(json!({"region": region}).to_string());
        match content_type {
            Some(content_type) => request.header("content-type", content_type),
            None => request,
        }
    };

    let plain = send(typed(Some("text/plain"), "plain")).await;
    assert_error(
        &plain,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    for (content_type, region) in [
        (Some("application/json; charset=utf-8"), "charset"),
        (Some("application/cloudevents+json"), "cloudevents"),
        (None, "untyped"),
    ] {
        let answer = send(typed(content_type, region)).await;
        assert_accepted(&answer, "sales", 1);
    }
    wait_for_item(&server, "sales", "untyped", |_| true).await;
    assert_eq!(
        ids(&server, "sales").await,
        set(&["charset", "cloudevents", "untyped"])
    );
}

#[tokio::test]
async fn a_connectors_rate_limit_answers_429_with_retry_after() {
    let server = TestServer::start().await;
    let doc = connector(
        "Sales",
        "sales",
        json!({"itemKey": "region", "rateLimit": {"perSecond": 1, "burst": 2}}),
    );
    let (_, key) = create_connector(&server, &doc).await;
    let (_, other_key) = create_connector(
        &server,
        &connector("Other", "other", json!({"itemKey": "region"})),
    )
    .await;

    let mut statuses = Vec::new();
    let mut limited = None;
    for i in 0..3 {
        let answer = push(&server, "sales", &key, &json!({"region": format!("r{i}")})).await;
        statuses.push(answer.status);
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(answer);
        }
    }
    assert_eq!(
        statuses,
        [
            StatusCode::ACCEPTED,
            StatusCode::ACCEPTED,
            StatusCode::TOO_MANY_REQUESTS
        ],
        "a burst of 2, then refused"
    );
    let limited = limited.expect("a 429");
    assert_error(&limited, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("Retry-After in whole seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");

    push_ok(&server, "other", &other_key, &json!({"region": "o"})).await;
    wait_for_item(&server, "sales", "r1", |_| true).await;
    assert_eq!(ids(&server, "sales").await, set(&["r0", "r1"]));
}

const SIGNING_SECRET: &str = "seed-001-signing-key";

/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let message = format!("{timestamp}.{body}");
    let tag = ring::hmac::sign(&key, message.as_bytes());
    format!("sha256={}", hex::encode(tag.as_ref()))
}

/// Pushes `body` with the given signature headers (each left out when `None`).
async fn signed(
    server: &TestServer,
    key: &str,
    body: &str,
    timestamp: Option<String>,
    signature: Option<String>,
) -> Answer {
    let mut request = webhook(server, "signed", key)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(timestamp) = timestamp {
        request = request.header("x-webhook-timestamp", timestamp);
    }
    if let Some(signature) = signature {
        request = request.header("x-webhook-signature", signature);
    }
    send(request).await
}

#[tokio::test]
async fn a_signing_key_requires_a_fresh_valid_signature_over_the_raw_body() {
    let server = TestServer::start().await;
    let doc = connector(
        "Signed",
        "signed",
        json!({"itemKey": "region", "signing": {"scheme": "inspire", "secret": SIGNING_SECRET}}),
    );
    let (_, key) = create_connector(&server, &doc).await;
    let body = |region: &str| format!(r#"{{ "region": "{region}", "sales": 1 }}"#);
    let proper = |region: &str, at: i64| {
        let body = body(region);
        let signature = signature(SIGNING_SECRET, at, &body);
        (body, Some(at.to_string()), Some(signature))
    };

    let now = unix_now();
    let (text, at, sig) = proper("now", now);
    assert_accepted(&signed(&server, &key, &text, at, sig).await, "signed", 1);
    let (text, at, sig) = proper("skewed", now - 200);
    assert_accepted(&signed(&server, &key, &text, at, sig).await, "signed", 1);

    let mut refused: Vec<(&str, String, Option<String>, Option<String>)> = Vec::new();
    let text = body("wrong-secret");
    let sig = signature("another-secret", now, &text);
    refused.push(("a wrong secret", text, Some(now.to_string()), Some(sig)));
    refused.push(("no signature headers", body("unsigned"), None, None));
    let (text, _, sig) = proper("no-timestamp", now);
    refused.push(("no timestamp", text, None, sig));
    let (text, at, _) = proper("no-signature", now);
    refused.push(("no signature", text, at, None));
    let (text, at, sig) = proper("changed", now);
    refused.push((
        "a body changed after signing",
        text.replace("1", "2"),
        at,
        sig,
    ));
    let (text, _, sig) = proper("moved", now);
    refused.push((
        "another timestamp than signed",
        text,
        Some((now + 1).to_string()),
        sig,
    ));
    let (text, at, sig) = proper("stale", now - 301);
    refused.push(("a timestamp 301 s old", text, at, sig));
    let (text, at, sig) = proper("future", now + 310);
    refused.push(("a timestamp 310 s ahead", text, at, sig));
    refused.push((
        "a garbled signature",
        body("garbled"),
        Some(now.to_string()),
        Some("sha256=zz".to_owned()),
    ));
    refused.push((
        "bad JSON with a bad signature (signature before body)",
        "{oops".to_owned(),
        Some(now.to_string()),
        Some(signature("another-secret", now, "{oops")),
    ));
    for (why, text, at, sig) in refused {
        let answer = signed(&server, &key, &text, at, sig).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{why}: {}",
            answer.body
        );
        assert_error(&answer, StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE");
    }

    let bad_json = signed(
        &server,
        &key,
        "{oops",
        Some(now.to_string()),
        Some(signature(SIGNING_SECRET, now, "{oops")),
    )
    .await;
    assert_error(&bad_json, StatusCode::BAD_REQUEST, "INVALID_PAYLOAD");
    let (text, at, sig) = proper("bad-key", now);
    let bad_key = signed(
        &server,
        "ik_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &text,
        at,
        sig,
    )
    .await;
    assert_error(&bad_key, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    let (text, at, sig) = proper("last", unix_now());
    assert_accepted(&signed(&server, &key, &text, at, sig).await, "signed", 1);
    wait_for_item(&server, "signed", "last", |_| true).await;
    assert_eq!(
        ids(&server, "signed").await,
        set(&["last", "now", "skewed"])
    );
}

fn replayed(answer: &Answer) -> bool {
    answer
        .headers
        .get("idempotent-replayed")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
}

/// Pushes `body` with `Idempotency-Key: idempotency_key`.
async fn push_once(
    server: &TestServer,
    stream: &str,
    key: &str,
    idempotency_key: &str,
    body: &Value,
) -> Answer {
    send(
        webhook(server, stream, key)
            .header("idempotency-key", idempotency_key)
            .json(body),
    )
    .await
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_even_after_a_restart() {
    let mut server = TestServer::start().await;
    let doc = connector("Sales", "sales", json!({"itemKey": "region"}));
    let (_, key) = create_connector(&server, &doc).await;

    let first = push_once(
        &server,
        "sales",
        &key,
        "abc",
        &json!({"region": "North", "sales": 1}),
    )
    .await;
    assert_accepted(&first, "sales", 1);
    assert!(!replayed(&first), "the first answer is no replay");
    let stored = wait_for_item(&server, "sales", "North", |_| true).await;

    let again = push_once(
        &server,
        "sales",
        &key,
        "abc",
        &json!({"region": "North", "sales": 1}),
    )
    .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    assert!(replayed(&again), "Idempotent-Replayed: true");
    assert_eq!(
        again.body, first.body,
        "the first response's body, request id included"
    );

    let quoted = push_once(
        &server,
        "sales",
        &key,
        "\"abc\"",
        &json!({"region": "North", "sales": 2}),
    )
    .await;
    assert_eq!(quoted.status, StatusCode::ACCEPTED, "{}", quoted.body);
    assert!(replayed(&quoted), "\"abc\" is the same key as abc");
    assert_eq!(quoted.body, first.body, "whatever the new body");

    // Pushes to one stream apply in order: once this one shows, the replays would have.
    push_ok(&server, "sales", &key, &json!({"region": "South"})).await;
    wait_for_item(&server, "sales", "South", |_| true).await;
    let item = get_item(&server, "sales", "North").await.expect("North");
    assert_eq!(
        item["fields"]["sales"], 1,
        "replays are not processed again"
    );
    assert_eq!(version(&item), version(&stored), "the version did not move");

    server.restart().await;
    let after = push_once(
        &server,
        "sales",
        &key,
        "abc",
        &json!({"region": "North", "sales": 3}),
    )
    .await;
    assert_eq!(after.status, StatusCode::ACCEPTED, "{}", after.body);
    assert!(replayed(&after), "remembered across a restart");
    assert_eq!(after.body, first.body);
    push_ok(&server, "sales", &key, &json!({"region": "East"})).await;
    wait_for_item(&server, "sales", "East", |_| true).await;
    let item = get_item(&server, "sales", "North").await.expect("North");
    assert_eq!(item["fields"]["sales"], 1);
    assert_eq!(version(&item), version(&stored));
}

#[tokio::test]
async fn a_rejected_request_does_not_use_up_its_idempotency_key() {
    let server = TestServer::start().await;
    let doc = connector("Sales", "sales", json!({"itemKey": "region"}));
    let (_, key) = create_connector(&server, &doc).await;
    let (_, other_key) = create_connector(
        &server,
        &connector("Other", "other", json!({"itemKey": "region"})),
    )
    .await;

    let invalid = send(
        webhook(&server, "sales", &key)
            .header("idempotency-key", "def")
            .header("content-type", "application/json")
            .body("{oops"),
    )
    .await;
    assert_error(&invalid, StatusCode::BAD_REQUEST, "INVALID_PAYLOAD");
    let valid = push_once(
        &server,
        "sales",
        &key,
        "def",
        &json!({"region": "West", "sales": 7}),
    )
    .await;
    assert_accepted(&valid, "sales", 1);
    assert!(!replayed(&valid), "the 400 was not remembered");
    assert_ne!(valid.body["requestId"], invalid.body["error"]["requestId"]);
    wait_for_item(&server, "sales", "West", |_| true).await;

    let wrong_key = format!(
        "ik_{}_{}",
        key.split('_').nth(1).expect("key id"),
        "B".repeat(40)
    );
    let unauthorized = push_once(
        &server,
        "sales",
        &wrong_key,
        "ghi",
        &json!({"region": "Central"}),
    )
    .await;
    assert_error(&unauthorized, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let valid = push_once(&server, "sales", &key, "ghi", &json!({"region": "Central"})).await;
    assert_accepted(&valid, "sales", 1);
    assert!(!replayed(&valid), "the 401 was not remembered");
    wait_for_item(&server, "sales", "Central", |_| true).await;

    let other = push_once(
        &server,
        "other",
        &other_key,
        "def",
        &json!({"region": "Elsewhere"}),
    )
    .await;
    assert_accepted(&other, "other", 1);
    assert!(!replayed(&other), "keys are scoped to their connector");
    wait_for_item(&server, "other", "Elsewhere", |_| true).await;
}

#[tokio::test]
async fn every_accepted_push_survives_a_kill_9() {
    const PUSHES: usize = 300;
    const AT_ONCE: usize = 16;
    let mut server = TestServer::start().await;
    let doc = connector(
        "Burst",
        "burst",
        json!({"itemKey": "id", "rateLimit": {"perSecond": 10000, "burst": 10000}}),
    );
    let (_, key) = create_connector(&server, &doc).await;

    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..AT_ONCE {
        let (client, url, key, next) = (
            server.client(),
            server.url("/api/webhook/burst"),
            key.clone(),
            next.clone(),
        );
        workers.spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= PUSHES {
                    return outcomes;
                }
                let id = format!("d{n:03}");
                let response = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"id": id, "n": n}))
                    .send()
                    .await
                    .expect("push sent");
                outcomes.push((id, response.status()));
            }
        });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = workers.join_next().await {
        outcomes.extend(done.expect("worker"));
    }
    server.stop("KILL").await;

    let accepted: BTreeSet<String> = outcomes
        .iter()
        .filter(|(_, status)| *status == StatusCode::ACCEPTED)
        .map(|(id, _)| id.clone())
        .collect();
    let refused: Vec<_> = outcomes
        .iter()
        .filter(|(_, status)| *status != StatusCode::ACCEPTED)
        .collect();
    assert!(refused.is_empty(), "refused before the kill: {refused:?}");

    let restarted = TestServer::start_with(Options {
        data_dir: Some(server.data_dir().to_owned()),
        ..Default::default()
    })
    .await;
    let token = restarted.token();
    let deadline = Instant::now() + EVENTUALLY;
    let items = loop {
        let items = all_items(&restarted, "burst", &token).await;
        if items.len() >= accepted.len() || Instant::now() > deadline {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let listed: Vec<String> = items
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect();
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "an item is listed twice");
    let lost: Vec<_> = accepted.difference(&unique).collect();
    assert!(
        lost.is_empty(),
        "{} accepted items lost: {lost:?}",
        lost.len()
    );
    assert_eq!(unique, accepted, "nothing else either");
    for item in &items {
        let n: usize = item["id"].as_str().expect("id")[1..].parse().expect("n");
        assert_eq!(item["fields"], json!({"id": item["id"], "n": n}));
    }
}

#[tokio::test]
async fn pushes_to_one_stream_apply_in_the_order_they_were_accepted() {
    let server = TestServer::start().await;
    let doc = connector("Counter", "counter", json!({"itemKey": "id"}));
    let (_, key) = create_connector(&server, &doc).await;

    for n in 1..=50 {
        push_ok(&server, "counter", &key, &json!({"id": "counter", "n": n})).await;
    }
    let twice = json!([{"id": "twice", "n": 1}, {"id": "twice", "n": 2}]);
    push_ok(&server, "counter", &key, &twice).await;
    push_ok(&server, "counter", &key, &json!({"id": "marker"})).await;
    wait_for_item(&server, "counter", "marker", |_| true).await;

    let counter = get_item(&server, "counter", "counter")
        .await
        .expect("counter");
    assert_eq!(counter["fields"]["n"], 50, "the last push wins: {counter}");
    let twice = get_item(&server, "counter", "twice").await.expect("twice");
    assert_eq!(
        twice["fields"]["n"], 2,
        "and within one payload the later item: {twice}"
    );
}

#[tokio::test]
async fn a_field_mapping_renames_mapped_fields_and_drops_the_rest() {
    let server = TestServer::start().await;
    let mapping = json!({"amt": "sales", "location.city": "city", "region": "region"});
    let doc = connector(
        "Mapped",
        "mapped",
        json!({"itemKey": "region", "fieldMapping": mapping}),
    );
    let (_, key) = create_connector(&server, &doc).await;

    let first = json!([
        {"region": "North", "amt": 5, "location": {"city": "Leeds", "country": "UK"}, "secret": "x"},
        {"region": "South", "amt": 7, "note": "dropped"},
    ]);
    assert_accepted(&push(&server, "mapped", &key, &first).await, "mapped", 2);
    let north = wait_for_item(&server, "mapped", "North", |_| true).await;
    assert_eq!(
        north["fields"],
        json!({"region": "North", "sales": 5, "city": "Leeds"})
    );
    let south = wait_for_item(&server, "mapped", "South", |_| true).await;
    assert_eq!(south["fields"], json!({"region": "South", "sales": 7}));

    // Merging: a mapped field updates, an unmapped one is still not stored.
    let later = json!({"region": "North", "amt": 6, "target": 9});
    push_ok(&server, "mapped", &key, &later).await;
    let north = wait_for_item(&server, "mapped", "North", |i| i["fields"]["sales"] == 6).await;
    assert_eq!(
        north["fields"],
        json!({"region": "North", "sales": 6, "city": "Leeds"})
    );

    // The item key is read from the source fields, before the mapping: it need not be
    // mapped itself.
    let doc = connector(
        "Unkeyed",
        "unkeyed",
        json!({"itemKey": "code", "fieldMapping": {"amt": "sales"}}),
    );
    let (_, key) = create_connector(&server, &doc).await;
    push_ok(&server, "unkeyed", &key, &json!({"code": "K1", "amt": 3})).await;
    let item = wait_for_item(&server, "unkeyed", "K1", |_| true).await;
    assert_eq!(item["fields"], json!({"sales": 3}));
}

#[tokio::test]
async fn a_repeat_after_the_idempotency_window_is_processed_again() {
    let server = TestServer::start().await;
    let doc = connector(
        "Windowed",
        "windowed",
        json!({"itemKey": "region", "idempotencyWindowSeconds": 1}),
    );
    let (_, key) = create_connector(&server, &doc).await;

    let first = push_once(
        &server,
        "windowed",
        &key,
        "once",
        &json!({"region": "North", "sales": 1}),
    )
    .await;
    assert_accepted(&first, "windowed", 1);
    let stored = wait_for_item(&server, "windowed", "North", |_| true).await;

    // Past the one-second window (and the second it was remembered in).
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let again = push_once(
        &server,
        "windowed",
        &key,
        "once",
        &json!({"region": "North", "sales": 2}),
    )
    .await;
    assert_accepted(&again, "windowed", 1);
    assert!(!replayed(&again), "an expired key is no replay");
    assert_ne!(
        again.body["requestId"], first.body["requestId"],
        "a new answer"
    );
    let item = wait_for_item(&server, "windowed", "North", |i| i["fields"]["sales"] == 2).await;
    assert!(version(&item) > version(&stored), "a second write");
}

/// One item of a body under 1 MiB whose field names, flattened, add up to about 40 MB: a
/// long key holding 999 fields repeats in each of their dotted names.
fn item_flattening_to_40_mb(n: usize) -> Value {
    let leaves: serde_json::Map<String, Value> =
        (0..999).map(|i| (format!("f{i}"), json!(i))).collect();
    json!({"id": n, "k".repeat(40_000): Value::Object(leaves)})
}

/// A request whose items, flattened, pass the journal's 64 MiB record limit is refused
/// on its own with 413; requests committed beside it are accepted and stored.
#[tokio::test]
async fn a_request_too_large_once_flattened_is_refused_alone_and_its_neighbours_are_stored() {
    let server = TestServer::start().await;
    let (_, key) = create_connector(
        &server,
        &connector("Wide", "wide", json!({"itemKey": "id"})),
    )
    .await;
    let huge = json!([item_flattening_to_40_mb(1), item_flattening_to_40_mb(2)]);
    let small = (0..20).map(|n| {
        let (server, key) = (&server, &key);
        async move { push(server, "wide", key, &json!({"id": format!("s{n}"), "v": n})).await }
    });
    let (refused, neighbours) = tokio::join!(
        push(&server, "wide", &key, &huge),
        futures_util::future::join_all(small)
    );
    let message = assert_error(&refused, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert!(message.contains("limit"), "{message}");
    for answer in &neighbours {
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    }
    let expected: BTreeSet<String> = (0..20).map(|n| format!("s{n}")).collect();
    let deadline = Instant::now() + EVENTUALLY;
    while ids(&server, "wide").await != expected {
        assert!(
            Instant::now() < deadline,
            "the small pushes were not all stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
