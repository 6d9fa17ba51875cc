//! Outbound subscriptions against real local receivers: the payload and its Standard
//! Webhooks signature (checked by the standard's own library), Basic auth and static
//! headers, write-only secrets, filters, retries per policy with the delivery log,
//! re-sends, `Retry-After`, 410 Gone, isolation from a hanging receiver, delivery
//! after a kill -9, activation and deletion, the target guard, connector events
//! (`connector.error`, `connector.recovered`) and unique names.

mod common;

use std::time::Duration;

use base64::Engine;
use common::receiver::{verified_by_standard_library, Received, Receiver, Reply};
use common::{
    assert_error, create_connector, item_path, push_ok, send, webhook, Options, TestServer,
    EVENTUALLY,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// How long a test waits for deliveries that involve retries (seconds apart) on a
/// loaded machine; the contract's timing is not what this asserts.
const RETRIES_WITHIN: Duration = Duration::from_secs(20);

/// A server with a webhook connector writing stream `sales` (item key `id`); its key.
async fn server_with_sales() -> (TestServer, String) {
    let server = TestServer::start().await;
    let (_, key) = create_connector(
        &server,
        &json!({"name": "Sales", "type": "webhook", "stream": "sales", "itemKey": "id"}),
    )
    .await;
    (server, key)
}

/// Creates a subscription; its id and the whole answer.
async fn subscribe(server: &TestServer, doc: &Value) -> (String, Value) {
    let created = server
        .admin(Method::POST, "/api/admin/subscriptions", Some(doc))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["subscription"]["id"]
        .as_str()
        .expect("subscription id")
        .to_owned();
    (id, created.body)
}

/// A subscription document to `receiver` for every item event.
fn to(receiver: &Receiver, name: &str) -> Value {
    json!({"name": name, "url": receiver.url("/hook"),
           "events": ["item.created", "item.updated", "item.deleted"]})
}

/// The first page of a subscription's delivery log.
async fn delivery_log(server: &TestServer, id: &str) -> Vec<Value> {
    let answer = server
        .admin(
            Method::GET,
            &format!("/api/admin/subscriptions/{id}/deliveries"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["entries"].as_array().expect("entries").clone()
}

/// Waits until the delivery log holds an entry with `outcome`; the whole log.
async fn log_with_outcome(server: &TestServer, id: &str, outcome: &str) -> Vec<Value> {
    common::eventually(RETRIES_WITHIN, &format!("a {outcome} entry"), async || {
        let log = delivery_log(server, id).await;
        log.iter().any(|e| e["outcome"] == outcome).then_some(log)
    })
    .await
}

async fn action(server: &TestServer, id: &str, action: &str) -> common::Answer {
    server
        .admin(
            Method::POST,
            &format!("/api/admin/subscriptions/{id}/{action}"),
            None,
        )
        .await
}

fn message_ids(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.header("webhook-id").expect("webhook-id"))
        .collect()
}

#[tokio::test]
async fn a_change_arrives_signed_with_basic_auth_and_reads_never_show_secrets() {
    let (server, key) = server_with_sales().await;
    let receiver = Receiver::start().await;
    let mut doc = to(&receiver, "Reports");
    doc["secret"] = json!("generate");
    doc["basicAuth"] = json!({"username": "reports", "password": "pa55-word"});
    doc["headers"] = json!({"X-Api-Key": "static-key-1"});
    doc["legacySha1Header"] = json!("X-Legacy-Signature");
    let (id, created) = subscribe(&server, &doc).await;
    let secret = created["secret"].as_str().expect("generated secret");
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(created["subscription"]["active"], true);

    push_ok(
        &server,
        "sales",
        &key,
        &json!({"id": "north", "amount": 5, "geo": {"city": "Oslo"}}),
    )
    .await;
    let got = receiver.wait_for(1, EVENTUALLY).await;
    let body = got[0].json();
    let message_id = body["messageId"].as_str().expect("messageId");
    assert!(message_id.starts_with("wh-"), "{message_id}");
    assert_eq!(body["eventCode"], "item.created");
    assert!(body["eventName"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(common::is_utc_timestamp(
        body["timestamp"].as_str().expect("timestamp")
    ));
    assert_eq!(
        body["payload"],
        json!({"stream": "sales", "resourceId": "north", "path": "/api/streams/sales/items/north",
               "version": 1, "fields": {"id": "north", "amount": 5, "geo.city": "Oslo"}})
    );
    assert_eq!(got[0].header("webhook-id").as_deref(), Some(message_id));
    let basic = base64::engine::general_purpose::STANDARD.encode("reports:pa55-word");
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Basic {basic}"))
    );
    assert_eq!(got[0].header("x-api-key").as_deref(), Some("static-key-1"));
    assert_eq!(
        got[0].header("content-type").as_deref(),
        Some("application/json")
    );
    let legacy = got[0].header("x-legacy-signature").expect("legacy header");
    assert!(
        legacy.len() == 40 && legacy.bytes().all(|b| b.is_ascii_hexdigit()),
        "{legacy}"
    );
    if let Some(valid) = verified_by_standard_library(secret, &got[0]) {
        assert!(
            valid,
            "standardwebhooks refused the signature: {:?}",
            got[0].headers
        );
    }
    let mut tampered = got[0].clone();
    tampered.body = tampered.body.replace("Oslo", "Bergen");
    if let Some(valid) = verified_by_standard_library(secret, &tampered) {
        assert!(!valid, "a changed body must not verify");
    }

    let path = format!("/api/admin/subscriptions/{id}");
    for read in [
        server.admin(Method::GET, &path, None).await.body,
        server
            .admin(Method::GET, "/api/admin/subscriptions", None)
            .await
            .body,
    ] {
        let text = read.to_string();
        for hidden in [secret, "pa55-word", "static-key-1"] {
            assert!(!text.contains(hidden), "a read shows a secret: {text}");
        }
    }
    let shown = server.admin(Method::GET, &path, None).await.body;
    assert_eq!(
        shown["subscription"]["basicAuth"],
        json!({"username": "reports", "passwordSet": true})
    );
    assert_eq!(shown["subscription"]["secretSet"], true);
    assert!(
        !std::fs::read(server.data_dir().join("db/db"))
            .map(|db| db.windows(9).any(|w| w == b"pa55-word"))
            .unwrap_or(false),
        "the password is sealed at rest"
    );
}

#[tokio::test]
async fn updates_deletes_and_the_stream_and_event_filters() {
    let server = TestServer::start().await;
    let mut keys = Vec::new();
    for stream in ["sales", "stock"] {
        let doc = json!({"name": stream, "type": "webhook", "stream": stream, "itemKey": "id"});
        keys.push(create_connector(&server, &doc).await.1);
    }
    let all = Receiver::start().await;
    let stock_only = Receiver::start().await;
    let deletes_only = Receiver::start().await;
    subscribe(&server, &to(&all, "all")).await;
    let mut doc = to(&stock_only, "stock");
    doc["streams"] = json!(["stock"]);
    subscribe(&server, &doc).await;
    let mut doc = to(&deletes_only, "deletes");
    doc["events"] = json!(["item.deleted"]);
    subscribe(&server, &doc).await;

    push_ok(&server, "sales", &keys[0], &json!({"id": "a", "n": 1})).await;
    push_ok(&server, "sales", &keys[0], &json!({"id": "a", "n": 2})).await;
    push_ok(&server, "stock", &keys[1], &json!({"id": "b", "n": 1})).await;
    let deleted = server
        .admin(Method::DELETE, &item_path("sales", "a"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);

    let got = all.wait_for(4, EVENTUALLY).await;
    let events: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["eventCode"].as_str().expect("code").to_owned(),
                body["payload"]["resourceId"]
                    .as_str()
                    .expect("id")
                    .to_owned(),
            )
        })
        .collect();
    for expected in [
        ("item.created", "a"),
        ("item.updated", "a"),
        ("item.created", "b"),
        ("item.deleted", "a"),
    ] {
        assert!(
            events.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} missing from {events:?}"
        );
    }
    let delete = got
        .iter()
        .map(Received::json)
        .find(|b| b["eventCode"] == "item.deleted")
        .expect("delete");
    assert!(delete["payload"].get("fields").is_none(), "{delete}");
    let updated = got
        .iter()
        .map(Received::json)
        .find(|b| b["eventCode"] == "item.updated")
        .expect("update");
    assert_eq!(updated["payload"]["fields"]["n"], 2);

    let stock = stock_only.wait_for(1, EVENTUALLY).await;
    let deletes = deletes_only.wait_for(1, EVENTUALLY).await;
    // Everything the subscriptions were owed has reached `all`; a filtered-out change
    // would have been sent at the same time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stock_only.received().len(), 1);
    assert_eq!(stock[0].json()["payload"]["stream"], "stock");
    assert_eq!(deletes_only.received().len(), 1);
    assert_eq!(deletes[0].json()["eventCode"], "item.deleted");
    assert!(
        deletes[0].header("webhook-signature").is_none(),
        "unsigned without a secret"
    );
}

#[tokio::test]
async fn a_connector_that_starts_failing_and_recovers_is_announced_once_each() {
    let (server, key) = server_with_sales().await;
    let (other, _) = create_connector(
        &server,
        &json!({"name": "Stock", "type": "webhook", "stream": "stock"}),
    )
    .await;
    let receiver = Receiver::start().await;
    let mut doc = to(&receiver, "ops");
    doc["events"] = json!(["connector.error", "connector.recovered"]);
    doc["streams"] = json!(["sales"]);
    subscribe(&server, &doc).await;

    for _ in 0..2 {
        let refused = send(webhook(&server, "sales", &key).body("{not json")).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    }
    let failed = receiver.wait_for(1, EVENTUALLY).await;
    let body = failed[0].json();
    assert_eq!(body["eventCode"], "connector.error", "{body}");
    assert_eq!(body["eventName"], "A connector failed");
    assert!(body["messageId"]
        .as_str()
        .is_some_and(|m| m.starts_with("wh-")));
    let connector = body["payload"]["resourceId"]
        .as_str()
        .expect("connector id");
    assert!(connector.starts_with("c_") && connector != other, "{body}");
    assert_eq!(
        body["payload"]["path"],
        format!("/api/admin/connectors/{connector}")
    );
    assert_eq!(body["payload"]["stream"], "sales");
    let fields = &body["payload"]["fields"];
    assert_eq!(
        (&fields["name"], &fields["type"], &fields["state"]),
        (&json!("Sales"), &json!("webhook"), &json!("error"))
    );
    assert!(
        fields["message"]
            .as_str()
            .is_some_and(|m| m.contains("refused")),
        "{fields}"
    );

    push_ok(&server, "sales", &key, &json!({"id": "ok"})).await;
    push_ok(&server, "sales", &key, &json!({"id": "ok2"})).await;
    let got = receiver.wait_for(2, EVENTUALLY).await;
    let recovered = got[1].json();
    assert_eq!(recovered["eventCode"], "connector.recovered", "{recovered}");
    assert_eq!(recovered["payload"]["fields"]["state"], "active");
    assert_ne!(recovered["messageId"], body["messageId"]);
    // One event per change of state: the second refusal and the second success, and
    // the item changes this subscription does not want, sent nothing more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn subscription_names_are_unique_without_regard_to_case() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let (first, _) = subscribe(&server, &to(&receiver, "Reports")).await;
    let (second, _) = subscribe(&server, &to(&receiver, "Audit")).await;
    let taken = server
        .admin(
            Method::POST,
            "/api/admin/subscriptions",
            Some(&to(&receiver, "reports")),
        )
        .await;
    let message = assert_error(&taken, StatusCode::CONFLICT, "CONFLICT");
    assert!(message.contains("subscription named"), "{message}");
    let renamed = server
        .admin(
            Method::PATCH,
            &format!("/api/admin/subscriptions/{second}"),
            Some(&json!({"name": "REPORTS"})),
        )
        .await;
    assert_error(&renamed, StatusCode::CONFLICT, "CONFLICT");
    let kept = server
        .admin(
            Method::PATCH,
            &format!("/api/admin/subscriptions/{first}"),
            Some(&json!({"name": "reports"})),
        )
        .await;
    assert_eq!(
        kept.status,
        StatusCode::OK,
        "its own name, recased: {}",
        kept.body
    );
    let listed = server
        .admin(Method::GET, "/api/admin/subscriptions", None)
        .await;
    let names: Vec<&str> = listed.body["subscriptions"]
        .as_array()
        .expect("subscriptions")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.contains(&"reports") && names.contains(&"Audit"),
        "{names:?}"
    );
}

#[tokio::test]
async fn a_failing_receiver_is_retried_per_its_fixed_policy_then_exhausted_and_resent() {
    let (server, key) = server_with_sales().await;
    let receiver = Receiver::start().await;
    receiver.then(&[Reply::Status(500), Reply::Status(500)]);
    let mut doc = to(&receiver, "fixed");
    doc["retry"] = json!({"policy": "fixed", "maxRetries": 3, "intervalSeconds": 1});
    let (id, _) = subscribe(&server, &doc).await;

    push_ok(&server, "sales", &key, &json!({"id": "r1"})).await;
    let got = receiver.wait_for(3, RETRIES_WITHIN).await;
    let ids = message_ids(&got);
    assert!(ids.iter().all(|m| *m == ids[0]), "one message id: {ids:?}");
    for pair in got.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(900),
            "retries 1 s apart, not {gap:?}"
        );
    }
    let log = log_with_outcome(&server, &id, "delivered").await;
    let attempts: Vec<(u64, Value, &str)> = log
        .iter()
        .map(|e| {
            (
                e["attempt"].as_u64().expect("attempt"),
                e["status"].clone(),
                e["outcome"].as_str().expect("outcome"),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            (3, json!(200), "delivered"),
            (2, json!(500), "pending"),
            (1, json!(500), "pending")
        ]
    );
    for entry in &log {
        assert_eq!(entry["messageId"], ids[0].as_str());
        assert_eq!(entry["eventCode"], "item.created");
        assert!(
            entry["latencyMs"].is_u64()
                && entry["id"].as_str().is_some_and(|d| d.starts_with("d_"))
        );
        assert!(common::is_utc_timestamp(entry["at"].as_str().expect("at")));
    }

    // A receiver down for longer than the policy allows: exhausted, listed, re-sent.
    receiver.always(Reply::Status(500));
    push_ok(&server, "sales", &key, &json!({"id": "r2"})).await;
    let log = log_with_outcome(&server, &id, "exhausted").await;
    let exhausted = log
        .iter()
        .find(|e| e["outcome"] == "exhausted")
        .expect("exhausted");
    assert_eq!(exhausted["attempt"], 4);
    assert_eq!(log.iter().filter(|e| e["id"] == exhausted["id"]).count(), 4);
    receiver.always(Reply::Status(204));
    let before = receiver.received().len();
    let resent = server
        .admin(
            Method::POST,
            &format!(
                "/api/admin/subscriptions/{id}/deliveries/{}/resend",
                exhausted["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
    assert_eq!(resent.status, StatusCode::ACCEPTED, "{}", resent.body);
    let got = receiver.wait_for(before + 1, EVENTUALLY).await;
    assert_eq!(
        got[before].header("webhook-id").as_deref(),
        exhausted["messageId"].as_str()
    );
    let log = log_with_outcome(&server, &id, "delivered").await;
    assert_eq!(log[0]["attempt"], 5, "{log:?}");
    let unknown = server
        .admin(
            Method::POST,
            &format!("/api/admin/subscriptions/{id}/deliveries/d_00000000000fffff/resend"),
            None,
        )
        .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test]
async fn retry_after_is_honoured_and_410_gone_deactivates() {
    let (server, key) = server_with_sales().await;
    let receiver = Receiver::start().await;
    receiver.then(&[Reply::RetryAfter(503, 3)]);
    let mut doc = to(&receiver, "busy");
    doc["retry"] = json!({"policy": "fixed", "maxRetries": 3, "intervalSeconds": 1});
    let (id, _) = subscribe(&server, &doc).await;
    push_ok(&server, "sales", &key, &json!({"id": "r1"})).await;
    let got = receiver.wait_for(2, RETRIES_WITHIN).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(2900),
        "Retry-After: 3 waited only {gap:?}"
    );

    receiver.always(Reply::Status(410));
    push_ok(&server, "sales", &key, &json!({"id": "r2"})).await;
    receiver.wait_for(3, EVENTUALLY).await;
    let path = format!("/api/admin/subscriptions/{id}");
    common::eventually(EVENTUALLY, "the subscription deactivated", async || {
        let shown = server.admin(Method::GET, &path, None).await.body;
        (shown["subscription"]["active"] == false).then_some(())
    })
    .await;
    push_ok(&server, "sales", &key, &json!({"id": "r3"})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 3, "nothing after 410 Gone");
}

#[tokio::test]
async fn a_hanging_receiver_does_not_delay_a_healthy_one() {
    let (server, key) = server_with_sales().await;
    let hanging = Receiver::start().await;
    hanging.always(Reply::Hang);
    let healthy = Receiver::start().await;
    let mut doc = to(&hanging, "hanging");
    doc["timeoutSeconds"] = json!(30);
    subscribe(&server, &doc).await;
    subscribe(&server, &to(&healthy, "healthy")).await;
    for n in 0..3 {
        push_ok(&server, "sales", &key, &json!({"id": format!("i{n}")})).await;
        healthy.wait_for(n + 1, EVENTUALLY).await;
    }
    assert_eq!(
        hanging.received().len(),
        1,
        "the hanging receiver still holds the first"
    );
}

#[tokio::test]
async fn a_delivery_pending_at_a_kill_9_is_delivered_after_the_restart() {
    let (mut server, key) = server_with_sales().await;
    let receiver = Receiver::start().await;
    receiver.then(&[Reply::Hang]);
    let mut doc = to(&receiver, "durable");
    doc["timeoutSeconds"] = json!(60);
    let (id, _) = subscribe(&server, &doc).await;
    push_ok(&server, "sales", &key, &json!({"id": "r1", "v": 1})).await;
    let first = receiver.wait_for(1, EVENTUALLY).await;
    server.crash_and_restart().await;
    let got = receiver.wait_for(2, RETRIES_WITHIN).await;
    assert_eq!(got[1].header("webhook-id"), first[0].header("webhook-id"));
    assert_eq!(got[1].body, first[0].body);
    log_with_outcome(&server, &id, "delivered").await;
}

#[tokio::test]
async fn inactive_gets_nothing_reactivated_gets_new_events_and_delete_drops_pending() {
    let (server, key) = server_with_sales().await;
    let receiver = Receiver::start().await;
    let (id, _) = subscribe(&server, &to(&receiver, "toggled")).await;
    let off = action(&server, &id, "deactivate").await;
    assert_eq!(off.status, StatusCode::OK);
    assert_eq!(off.body["subscription"]["active"], false);
    push_ok(&server, "sales", &key, &json!({"id": "while-off"})).await;
    common::wait_for_item(&server, "sales", "while-off", |_| true).await;
    let on = action(&server, &id, "activate").await;
    assert_eq!(on.body["subscription"]["active"], true);
    push_ok(&server, "sales", &key, &json!({"id": "after"})).await;
    let got = receiver.wait_for(1, EVENTUALLY).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(got[0].json()["payload"]["resourceId"], "after");

    let failing = Receiver::start().await;
    failing.always(Reply::Status(500));
    let mut doc = to(&failing, "doomed");
    doc["retry"] = json!({"policy": "fixed", "maxRetries": 20, "intervalSeconds": 1});
    let (doomed, _) = subscribe(&server, &doc).await;
    push_ok(&server, "sales", &key, &json!({"id": "x"})).await;
    failing.wait_for(1, EVENTUALLY).await;
    let path = format!("/api/admin/subscriptions/{doomed}");
    assert_eq!(
        server.admin(Method::DELETE, &path, None).await.status,
        StatusCode::NO_CONTENT
    );
    let seen = failing.received().len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        failing.received().len() <= seen + 1,
        "a deleted subscription's delivery is retried"
    );
    assert_error(
        &server.admin(Method::GET, &path, None).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    assert!(
        common::get_item(&server, "sales", "x").await.is_some(),
        "the pool is untouched"
    );
}

#[tokio::test]
async fn generated_and_rotated_secrets_sign_and_the_old_one_keeps_signing() {
    let (server, key) = server_with_sales().await;
    let receiver = Receiver::start().await;
    let mut doc = to(&receiver, "rotating");
    doc["secret"] = json!("generate");
    let (id, created) = subscribe(&server, &doc).await;
    let old = created["secret"].as_str().expect("secret").to_owned();
    let rotated = action(&server, &id, "rotate-secret").await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new = rotated.body["secret"]
        .as_str()
        .expect("new secret")
        .to_owned();
    assert_ne!(old, new);
    assert!(!rotated.body["subscription"].to_string().contains(&new));
    push_ok(&server, "sales", &key, &json!({"id": "r1"})).await;
    let got = receiver.wait_for(1, EVENTUALLY).await;
    let signature = got[0].header("webhook-signature").expect("signature");
    assert_eq!(signature.matches("v1,").count(), 2, "{signature}");
    for secret in [&old, &new] {
        if let Some(valid) = verified_by_standard_library(secret, &got[0]) {
            assert!(valid, "{secret} does not verify {signature}");
        }
    }
    let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let chosen = server
        .admin(
            Method::POST,
            &format!("/api/admin/subscriptions/{id}/rotate-secret"),
            Some(&json!({"secret": given})),
        )
        .await;
    assert_eq!(chosen.body["secret"], given);
    for bad in [json!({"secret": "plain"}), json!([given])] {
        let refused = server
            .admin(
                Method::POST,
                &format!("/api/admin/subscriptions/{id}/rotate-secret"),
                Some(&bad),
            )
            .await;
        assert_error(&refused, StatusCode::BAD_REQUEST, "INVALID_PAYLOAD");
    }
}

#[tokio::test]
async fn link_local_targets_are_refused_and_private_ones_when_the_config_denies_them() {
    let server = TestServer::start().await;
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]:8080/hook",
    ] {
        let doc = json!({"name": "metadata", "url": url, "events": ["item.created"]});
        let refused = server
            .admin(Method::POST, "/api/admin/subscriptions", Some(&doc))
            .await;
        let message = assert_error(&refused, StatusCode::BAD_REQUEST, "INVALID_PAYLOAD");
        assert!(message.contains("link-local"), "{message}");
    }
    let invalid = [
        json!({"name": "n", "url": "ftp://example.com/", "events": ["item.created"]}),
        json!({"name": "n", "url": "http://example.com/", "events": []}),
        json!({"name": "n", "url": "http://example.com/", "events": ["item.created"], "timeoutSeconds": 61}),
    ];
    for doc in invalid {
        let refused = server
            .admin(Method::POST, "/api/admin/subscriptions", Some(&doc))
            .await;
        assert_error(&refused, StatusCode::BAD_REQUEST, "INVALID_PAYLOAD");
    }

    let closed = TestServer::start_with(Options {
        args: vec!["--outbound-deny-private".into(), "true".into()],
        ..Options::default()
    })
    .await;
    let (_, key) = create_connector(
        &closed,
        &json!({"name": "Sales", "type": "webhook", "stream": "sales", "itemKey": "id"}),
    )
    .await;
    let receiver = Receiver::start().await;
    let refused = closed
        .admin(
            Method::POST,
            "/api/admin/subscriptions",
            Some(&to(&receiver, "loopback")),
        )
        .await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "INVALID_PAYLOAD");
    // A name is checked when it is resolved, at connect time.
    let mut doc = to(&receiver, "by-name");
    doc["url"] = json!(format!("http://localhost:{}/hook", receiver.addr.port()));
    doc["retry"] = json!({"policy": "fixed", "maxRetries": 0, "intervalSeconds": 1});
    let (id, _) = subscribe(&closed, &doc).await;
    push_ok(&closed, "sales", &key, &json!({"id": "r1"})).await;
    let log = log_with_outcome(&closed, &id, "exhausted").await;
    assert_eq!(log[0]["status"], Value::Null);
    assert!(
        log[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{log:?}"
    );
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn the_cli_manages_subscriptions() {
    let (server, key) = server_with_sales().await;
    let receiver = Receiver::start().await;
    let url = receiver.url("/cli");
    let created = server.cli(
        &[
            "subscription",
            "create",
            "--name",
            "From CLI",
            "--receiver",
            &url,
            "--event",
            "item.created",
            "--sign",
        ],
        None,
    );
    let said = String::from_utf8_lossy(&created.stdout);
    assert!(
        created.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(
        said.contains("whsec_"),
        "the generated secret is shown once: {said}"
    );
    let listed = server.cli(&["subscription", "list", "--json"], None);
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("JSON list");
    let id = listed["subscriptions"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    push_ok(&server, "sales", &key, &json!({"id": "r1"})).await;
    receiver.wait_for(1, EVENTUALLY).await;
    log_with_outcome(&server, &id, "delivered").await;
    let log = server.cli(&["subscription", "deliveries", &id], None);
    let table = String::from_utf8_lossy(&log.stdout);
    assert!(
        table.contains("delivered") && table.contains("200"),
        "{table}"
    );
    let off = server.cli(&["subscription", "deactivate", &id, "--json"], None);
    let off: Value = serde_json::from_slice(&off.stdout).expect("JSON");
    assert_eq!(off["subscription"]["active"], false);
    let deleted = server.cli(&["subscription", "delete", &id], None);
    assert!(deleted.status.success());
    let gone = server.cli(&["subscription", "get", &id], None);
    assert!(!gone.status.success());
}
