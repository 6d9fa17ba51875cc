//! Operating it (SPEC §7, §1.2): connector state, the monitoring summary and the
//! connector log, as pushes succeed and fail.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    assert_error, create_connector, eventually, is_utc_timestamp, log_entries, push, push_ok, send,
    unix_now, webhook, Answer, TestServer, EVENTUALLY,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SIGNING_SECRET: &str = "activity-signing-key";

/// A webhook connector on `stream` keyed by `id`, with `extra` fields merged in.
async fn connector(server: &TestServer, stream: &str, extra: Value) -> (String, String) {
    let mut doc = json!({"name": format!("Conn {stream}"), "type": "webhook", "stream": stream, "itemKey": "id"});
    if let (Some(doc), Value::Object(extra)) = (doc.as_object_mut(), extra) {
        doc.extend(extra);
    }
    create_connector(server, &doc).await
}

/// A connector that requires inspire signatures.
async fn signed_connector(server: &TestServer, stream: &str) -> (String, String) {
    let signing = json!({"signing": {"scheme": "inspire", "secret": SIGNING_SECRET}});
    connector(server, stream, signing).await
}

/// Pushes `body` signed with `secret` (the right one or not).
async fn push_signed(
    server: &TestServer,
    stream: &str,
    key: &str,
    secret: &str,
    body: &Value,
) -> Answer {
    let text = body.to_string();
    let timestamp = unix_now();
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&hmac, format!("{timestamp}.{text}").as_bytes());
    send(
        webhook(server, stream, key)
            .header("content-type", "application/json")
            .header("x-webhook-timestamp", timestamp.to_string())
            .header(
                "x-webhook-signature",
                format!("sha256={}", hex::encode(tag)),
            )
            .body(text),
    )
    .await
}

/// `GET /api/admin/connectors/{id}` → the connector.
async fn shown(server: &TestServer, id: &str) -> Value {
    let answer = server
        .admin(Method::GET, &format!("/api/admin/connectors/{id}"), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["connector"].clone()
}

/// This connector's entry in `GET /api/admin/monitoring`.
async fn monitored(server: &TestServer, id: &str) -> Value {
    let answer = server
        .admin(Method::GET, "/api/admin/monitoring", None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["connectors"]
        .as_array()
        .expect("connectors")
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} is monitored: {}", answer.body))
}

/// Waits until the connector's state is `state`; returns the connector.
async fn wait_for_state(server: &TestServer, id: &str, state: &str) -> Value {
    eventually(EVENTUALLY, &format!("state {state}"), async || {
        let connector = shown(server, id).await;
        (connector["state"] == state).then_some(connector)
    })
    .await
}

/// Waits until the connector's monitoring entry satisfies `ready`; returns it.
async fn wait_for_monitoring(
    server: &TestServer,
    id: &str,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    eventually(EVENTUALLY, what, async || {
        let entry = monitored(server, id).await;
        ready(&entry).then_some(entry)
    })
    .await
}

/// Asserts the shape of a log entry.
fn assert_entry(entry: &Value) {
    assert!(
        entry["at"].as_str().is_some_and(is_utc_timestamp),
        "{entry}"
    );
    assert!(
        matches!(entry["level"].as_str(), Some("info" | "warn" | "error")),
        "{entry}"
    );
    assert!(
        entry["event"].as_str().is_some_and(|e| !e.is_empty()),
        "{entry}"
    );
    assert!(
        entry["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{entry}"
    );
    if let Some(items) = entry.get("items") {
        assert!(items.is_u64(), "{entry}");
    }
}

fn of_event<'a>(entries: &'a [Value], event: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["event"] == event).collect()
}

#[tokio::test]
async fn a_webhook_connector_is_idle_until_data_arrives_then_active() {
    let server = TestServer::start().await;
    let (id, key) = connector(&server, "sales", json!({})).await;

    assert_eq!(shown(&server, &id).await["state"], "idle");
    let entry = monitored(&server, &id).await;
    assert_eq!(entry["name"], "Conn sales", "{entry}");
    assert_eq!(entry["type"], "webhook", "{entry}");
    assert_eq!(entry["stream"], "sales", "{entry}");
    assert_eq!(entry["state"], "idle", "{entry}");
    assert_eq!(entry["status"], "yellow", "idle is yellow: {entry}");
    assert_eq!(entry["lastSuccessAt"], Value::Null, "{entry}");
    assert_eq!(entry["itemCount"], 0, "{entry}");
    assert_eq!(entry["errors24h"], 0, "{entry}");

    push_ok(&server, "sales", &key, &json!([{"id": "a"}, {"id": "b"}])).await;
    wait_for_state(&server, &id, "active").await;
    let entry =
        wait_for_monitoring(&server, &id, "two items counted", |e| e["itemCount"] == 2).await;
    assert_eq!(entry["state"], "active", "{entry}");
    assert_eq!(entry["status"], "green", "active is green: {entry}");
    assert!(
        entry["lastSuccessAt"]
            .as_str()
            .is_some_and(is_utc_timestamp),
        "{entry}"
    );
    assert_eq!(entry["errors24h"], 0, "{entry}");
}

#[tokio::test]
async fn a_disabled_connector_is_grey() {
    let server = TestServer::start().await;
    let (id, key) = connector(&server, "sales", json!({})).await;
    push_ok(&server, "sales", &key, &json!({"id": "a"})).await;
    wait_for_state(&server, &id, "active").await;

    let disabled = server.connector_action(&id, "disable").await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    assert_eq!(shown(&server, &id).await["state"], "disabled");
    let entry = monitored(&server, &id).await;
    assert_eq!(entry["state"], "disabled", "{entry}");
    assert_eq!(entry["status"], "grey", "{entry}");
}

#[tokio::test]
async fn bad_signatures_put_a_connector_in_error_until_a_push_succeeds() {
    let server = TestServer::start().await;
    let (id, key) = signed_connector(&server, "signed").await;

    for i in 0..3 {
        let body = json!({"id": format!("forged-{i}")});
        let answer = push_signed(&server, "signed", &key, "not-the-secret", &body).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE");
    }
    wait_for_state(&server, &id, "error").await;
    let entry = wait_for_monitoring(&server, &id, "errors counted", |e| {
        e["errors24h"].as_u64().is_some_and(|n| n > 0)
    })
    .await;
    assert_eq!(entry["state"], "error", "{entry}");
    assert_eq!(entry["status"], "red", "error is red: {entry}");

    let good = push_signed(
        &server,
        "signed",
        &key,
        SIGNING_SECRET,
        &json!({"id": "real"}),
    )
    .await;
    assert_eq!(good.status, StatusCode::ACCEPTED, "{}", good.body);
    wait_for_state(&server, &id, "active").await;
    let entry = wait_for_monitoring(&server, &id, "green again", |e| e["status"] == "green").await;
    assert_eq!(entry["state"], "active", "{entry}");
    assert!(
        entry["errors24h"].as_u64().is_some_and(|n| n > 0),
        "the errors of the last 24 h are still counted: {entry}"
    );
}

#[tokio::test]
async fn the_log_records_pushes_and_rejections_newest_first() {
    let server = TestServer::start().await;
    let (id, key) = connector(&server, "sales", json!({})).await;

    push_ok(&server, "sales", &key, &json!({"id": "a"})).await;
    push_ok(
        &server,
        "sales",
        &key,
        &json!([{"id": "b"}, {"id": "c"}, {"id": "d"}]),
    )
    .await;
    let entries = eventually(EVENTUALLY, "push entries for 4 items", async || {
        let entries = log_entries(&server, &id).await;
        let items: u64 = of_event(&entries, "push")
            .iter()
            .filter_map(|e| e["items"].as_u64())
            .sum();
        (items == 4).then_some(entries)
    })
    .await;
    entries.iter().for_each(assert_entry);

    let disabled = server.connector_action(&id, "disable").await;
    assert_eq!(disabled.status, StatusCode::OK);
    let refused = push(&server, "sales", &key, &json!({"id": "e"})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "CONNECTOR_DISABLED");
    let entries = eventually(EVENTUALLY, "a rejected entry", async || {
        let entries = log_entries(&server, &id).await;
        (!of_event(&entries, "rejected").is_empty()).then_some(entries)
    })
    .await;
    entries.iter().for_each(assert_entry);
    let times: Vec<jiff::Timestamp> = entries
        .iter()
        .map(|e| e["at"].as_str().expect("at").parse().expect("RFC 3339"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {entries:?}"
    );
    let position = |event: &str| {
        entries
            .iter()
            .position(|e| e["event"] == event)
            .unwrap_or_else(|| panic!("a {event} entry: {entries:?}"))
    };
    assert!(
        position("rejected") < position("push"),
        "the rejection is newer than the pushes: {entries:?}"
    );

    let output = server.cli(&["connector", "logs", &id], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("push") && stdout.contains("rejected"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_flood_of_bad_signatures_is_aggregated_in_both_logs() {
    const FLOOD: usize = 200;
    const AT_ONCE: usize = 8;
    let server = TestServer::start().await;
    let (id, key) = signed_connector(&server, "signed").await;

    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..AT_ONCE {
        let (client, url, key, next) = (
            server.client(),
            server.url("/api/webhook/signed"),
            key.clone(),
            next.clone(),
        );
        workers.spawn(async move {
            let mut statuses = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < FLOOD {
                let response = client
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .header("x-webhook-timestamp", unix_now().to_string())
                    .header("x-webhook-signature", format!("sha256={}", "0".repeat(64)))
                    .body(r#"{"id": "forged"}"#)
                    .send()
                    .await
                    .expect("push sent");
                statuses.push(response.status());
            }
            statuses
        });
    }
    let mut statuses = Vec::new();
    while let Some(done) = workers.join_next().await {
        statuses.extend(done.expect("worker"));
    }
    assert_eq!(statuses.len(), FLOOD);
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );

    eventually(EVENTUALLY, "a rejected entry", async || {
        let entries = log_entries(&server, &id).await;
        (!of_event(&entries, "rejected").is_empty()).then_some(())
    })
    .await;
    // Entries written one per request would keep coming in; give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let entries = log_entries(&server, &id).await;
    entries.iter().for_each(assert_entry);
    assert!(
        entries.len() < 10,
        "{} entries for {FLOOD} rejected pushes: {entries:?}",
        entries.len()
    );

    // Lines about admin API requests (the polling above) do not count.
    let key_id = key.split('_').nth(1).expect("key id");
    let logs = server.logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains(&id) || line.contains(key_id))
        .filter(|line| !line.contains("/api/admin/"))
        .collect();
    assert!(
        lines.len() < 10,
        "{} process log lines about the connector:\n{}",
        lines.len(),
        lines.join("\n")
    );
}
