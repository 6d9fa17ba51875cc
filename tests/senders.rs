//! Sender compatibility (SPEC §3.2–§3.4) through the real binary: the Data Ingest
//! API, HTTP Basic, keys in the URL, shared secret headers, dedup sources, the
//! `sourceHeader` field and a 200 success status, in the shapes of real senders.

mod common;

use common::{all_items, assert_error, create_connector, send, wait_for_item, webhook, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A seed-004 style delivery (Inspectorio): a message id and a payload.
fn inspection(message_id: &str) -> Value {
    json!({
        "messageId": message_id,
        "eventCode": "report.created",
        "eventName": "An Inspection report is uploaded",
        "payload": {"resourceId": 12301, "path": "/reports/12301"}
    })
}

#[tokio::test]
async fn a_basic_auth_sender_that_wants_200_retries_and_ends_with_one_item() {
    let server = TestServer::start().await;
    let (_, key) = create_connector(
        &server,
        &json!({
            "name": "Inspections", "type": "webhook", "stream": "inspections",
            "itemKey": "messageId", "auth": {"basic": true}, "successStatus": 200,
            "dedup": {"jsonPointer": "/messageId"}
        }),
    )
    .await;
    let id = "wh-638ce960-1231-11e9-a15d-d1c47c8f7593";
    let deliver = || {
        server
            .client()
            .post(server.url("/api/webhook/inspections"))
            .basic_auth("inspectorio", Some(&key))
            .json(&inspection(id))
    };
    let first = send(deliver()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["itemsReceived"], 1);
    for _ in 0..2 {
        let retry = send(deliver()).await;
        assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
        assert_eq!(retry.headers["idempotent-replayed"], "true");
        assert_eq!(retry.body, first.body);
    }
    let item = wait_for_item(&server, "inspections", id, |_| true).await;
    assert_eq!(item["version"], 1, "{item}");
    assert_eq!(item["fields"]["payload.resourceId"], 12301);
    assert_eq!(
        all_items(&server, "inspections", &server.token())
            .await
            .len(),
        1
    );

    let bearer = send(webhook(&server, "inspections", &key).json(&inspection("wh-2"))).await;
    assert_eq!(
        bearer.status,
        StatusCode::OK,
        "bearer still works: {}",
        bearer.body
    );
    let wrong = server
        .client()
        .post(server.url("/api/webhook/inspections"))
        .basic_auth(
            "inspectorio",
            Some("ik_000000000000_0000000000000000000000000000000000000000"),
        );
    assert_error(
        &send(wrong.json(&inspection("x"))).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
}

#[tokio::test]
async fn basic_auth_and_url_keys_are_refused_unless_the_connector_enables_them() {
    let server = TestServer::start().await;
    let (_, key) = create_connector(
        &server,
        &json!({"name": "Plain", "type": "webhook", "stream": "plain"}),
    )
    .await;
    let basic = server
        .client()
        .post(server.url("/api/webhook/plain"))
        .basic_auth("any", Some(&key))
        .json(&json!({"a": 1}));
    let message = assert_error(&send(basic).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert!(message.contains("Basic"), "{message}");
    let in_url = server
        .client()
        .post(server.url(&format!("/api/webhook/plain/k/{key}")))
        .json(&json!({"a": 1}));
    let message = assert_error(
        &send(in_url).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    assert!(message.contains("URL"), "{message}");
    let stored = server
        .admin(Method::GET, "/api/streams/plain/items", None)
        .await;
    assert_eq!(stored.status, StatusCode::NOT_FOUND, "nothing was stored");
}

/// A seed-003 style sender (TrailSpark): the key in the URL, a shared secret header,
/// `X-Source`, and the batch and bulk forms.
#[tokio::test]
async fn a_signal_sender_with_the_key_in_the_url_a_secret_header_and_a_source() {
    let server = TestServer::start_with(common::Options {
        env: vec![("RUST_LOG".into(), "debug".into())],
        ..Default::default()
    })
    .await;
    let (_, key) = create_connector(
        &server,
        &json!({
            "name": "Signals", "type": "webhook", "stream": "signals", "itemKey": "email",
            "auth": {"keyInUrl": true, "secretHeader": {"name": "X-Api-Secret", "value": "s3cret"}},
            "sourceHeader": "X-Source"
        }),
    )
    .await;
    let post = |path: &str, body: Value| {
        server
            .client()
            .post(server.url(&format!("/api/webhook/signals/k/{key}{path}")))
            .header("X-Api-Secret", "s3cret")
            .header("X-Source", "website")
            .json(&body)
    };
    let single = send(post(
        "",
        json!({"email": "test@example.com", "event": "test"}),
    ))
    .await;
    assert_eq!(single.status, StatusCode::ACCEPTED, "{}", single.body);
    let item = wait_for_item(&server, "signals", "test@example.com", |_| true).await;
    assert_eq!(item["fields"]["X-Source"], "website", "{item}");
    assert_eq!(item["fields"]["event"], "test");

    let batch = send(post(
        "/batch",
        json!([{"email": "a@example.com", "event": "page_view"}, {"email": "b@example.com", "event": "form"}]),
    ))
    .await;
    assert_eq!(batch.status, StatusCode::ACCEPTED, "{}", batch.body);
    assert_eq!(batch.body["itemsReceived"], 2);

    let bulk = send(post(
        "/bulk",
        json!({"signals": [
            {"email": "lead1@example.com", "event": "page_view", "properties": {"page": "/pricing"}},
            {"email": "lead2@example.com", "event": "form_submission", "properties": {"form": "contact"}}
        ]}),
    ))
    .await;
    assert_eq!(bulk.status, StatusCode::ACCEPTED, "{}", bulk.body);
    assert_eq!(bulk.body["itemsReceived"], 2);
    assert_eq!(bulk.body["itemsRejected"], 0);
    assert_eq!(bulk.body["errors"], json!([]));
    let lead = wait_for_item(&server, "signals", "lead1@example.com", |_| true).await;
    assert_eq!(lead["fields"]["properties.page"], "/pricing");
    assert_eq!(lead["fields"]["X-Source"], "website");

    for secret in [None, Some("wrong")] {
        let mut request = server
            .client()
            .post(server.url(&format!("/api/webhook/signals/k/{key}")))
            .json(&json!({"email": "nope@example.com"}));
        if let Some(secret) = secret {
            request = request.header("X-Api-Secret", secret);
        }
        let message = assert_error(
            &send(request).await,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        );
        assert!(message.contains("X-Api-Secret"), "{message}");
    }
    assert_eq!(
        all_items(&server, "signals", &server.token()).await.len(),
        5
    );

    let secret_part = key.rsplit('_').next().expect("key secret");
    let logs = server.logs();
    let key_id = key.split('_').nth(1).expect("key id");
    assert!(
        logs.contains(&format!("/k/ik_{key_id}_…")),
        "the key id is logged"
    );
    assert!(
        !logs.contains(secret_part),
        "the key's secret is never logged"
    );
}

#[tokio::test]
async fn dedup_takes_the_key_from_a_header() {
    let server = TestServer::start().await;
    let (_, key) = create_connector(
        &server,
        &json!({"name": "Hooks", "type": "webhook", "stream": "hooks", "itemKey": "id",
                "dedup": {"header": "webhook-id"}}),
    )
    .await;
    let deliver = |delivery: &str, count: u64| {
        webhook(&server, "hooks", &key)
            .header("webhook-id", delivery)
            .json(&json!({"id": "x", "count": count}))
    };
    assert_eq!(send(deliver("msg_1", 1)).await.status, StatusCode::ACCEPTED);
    let repeat = send(deliver("msg_1", 2)).await;
    assert_eq!(repeat.headers["idempotent-replayed"], "true");
    let item = wait_for_item(&server, "hooks", "x", |_| true).await;
    assert_eq!(
        item["fields"]["count"], 1,
        "the repeat was not processed: {item}"
    );
    assert_eq!(send(deliver("msg_2", 3)).await.status, StatusCode::ACCEPTED);
    wait_for_item(&server, "hooks", "x", |item| item["fields"]["count"] == 3).await;
}

/// `POST /api/ingest` with `key` and `body`.
async fn ingest(server: &TestServer, key: &str, body: &Value) -> common::Answer {
    server
        .call(Method::POST, "/api/ingest", Some(key), Some(body))
        .await
}

#[tokio::test]
async fn the_ingest_api_takes_explicit_ids_fields_names_tags_and_deletes() {
    let server = TestServer::start().await;
    let (_, key) = create_connector(
        &server,
        &json!({"name": "Agents", "type": "api", "stream": "agents"}),
    )
    .await;
    let first = ingest(
        &server,
        &key,
        &json!({"stream": "agents", "items": [
            {"id": "a1", "fields": {"name": "Ann", "calls": 3, "team": {"lead": "Bo"}}},
            {"id": 7, "name": "Old", "tags": {"floor": "2"}}
        ]}),
    )
    .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(first.body["itemsReceived"], 2);
    assert_eq!(first.body["deletesReceived"], 0);
    assert_eq!(first.body["stream"], "agents");
    let ann = wait_for_item(&server, "agents", "a1", |_| true).await;
    assert_eq!(
        ann["fields"],
        json!({"name": "Ann", "calls": 3, "team.lead": "Bo"})
    );
    let old = wait_for_item(&server, "agents", "7", |_| true).await;
    assert_eq!(old["fields"], json!({"name": "Old", "tags.floor": "2"}));

    let second = ingest(
        &server,
        &key,
        &json!({"stream": "agents", "items": [{"id": "a1", "fields": {"calls": 4}}], "delete": ["7"]}),
    )
    .await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.body);
    assert_eq!(second.body["deletesReceived"], 1);
    let ann = wait_for_item(&server, "agents", "a1", |item| item["fields"]["calls"] == 4).await;
    assert_eq!(ann["fields"]["name"], "Ann", "upserts merge");
    common::eventually(common::EVENTUALLY, "item 7 deleted", async || {
        common::get_item(&server, "agents", "7")
            .await
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_ingest_api_refuses_bad_documents_whole_and_other_streams() {
    let server = TestServer::start().await;
    let (_, key) = create_connector(
        &server,
        &json!({"name": "Agents", "type": "api", "stream": "agents"}),
    )
    .await;
    let other = ingest(
        &server,
        &key,
        &json!({"stream": "sales", "items": [{"id": "a1", "fields": {}}]}),
    )
    .await;
    assert_error(&other, StatusCode::NOT_FOUND, "STREAM_NOT_FOUND");
    let cases = [
        (
            json!({"stream": "agents", "items": [{"id": "ok", "fields": {"a": 1}}, {"fields": {"a": 2}}]}),
            "items[1]",
        ),
        (
            json!({"stream": "agents", "items": [{"id": "ok", "feilds": {"a": 1}}]}),
            "feilds",
        ),
        (json!({"stream": "agents", "item": [{"id": "ok"}]}), "item"),
        (
            json!({"stream": "agents", "items": [{"id": "ok", "fields": [1]}]}),
            "fields",
        ),
        (json!({"stream": "agents", "delete": [""]}), "delete[0]"),
        (json!({"stream": "agents"}), "nothing to do"),
        (json!([{"id": "ok"}]), "object"),
    ];
    for (body, named) in cases {
        let answer = ingest(&server, &key, &body).await;
        let message = assert_error(&answer, StatusCode::BAD_REQUEST, "INVALID_PAYLOAD");
        assert!(message.contains(named), "{body}: {message}");
    }
    let replayed = |n: u64| {
        server
            .client()
            .post(server.url("/api/ingest"))
            .bearer_auth(&key)
            .header("Idempotency-Key", "batch-1")
            .json(&json!({"stream": "agents", "items": [{"id": "ok", "fields": {"n": n}}]}))
    };
    assert_eq!(send(replayed(1)).await.status, StatusCode::ACCEPTED);
    let repeat = send(replayed(2)).await;
    assert_eq!(repeat.status, StatusCode::ACCEPTED);
    assert_eq!(repeat.headers["idempotent-replayed"], "true");
    let item = wait_for_item(&server, "agents", "ok", |_| true).await;
    assert_eq!(
        item["fields"],
        json!({"n": 1}),
        "nothing of the refused documents was stored"
    );
    assert_eq!(all_items(&server, "agents", &server.token()).await.len(), 1);
}
