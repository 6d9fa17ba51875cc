//! Durability and failure through the real binary: admin changes answered before a
//! SIGKILL are there after the restart; accepted writes waiting to be applied are
//! bounded in bytes; a store that fails writes or an applier that dies is visible and
//! recovered by a restart. Fail points (`FAILPOINTS`) stand for the failures.

mod common;

use std::time::Duration;

use common::{
    assert_error, create_connector, get_item, issue_read_key, push, send, wait_for_item, webhook,
    Options, TestServer,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Pushes one item with `key` to `stream`; the status.
async fn push_status(server: &TestServer, stream: &str, key: &str) -> StatusCode {
    push(server, stream, key, &json!({"id": "probe"}))
        .await
        .status
}

/// `GET /api/streams` with `key`; the status.
async fn read_status(server: &TestServer, key: &str) -> StatusCode {
    server
        .call(Method::GET, "/api/streams", Some(key), None)
        .await
        .status
}

#[tokio::test]
async fn admin_changes_answered_before_a_kill_survive_it() {
    let mut server = TestServer::start().await;
    let doc = json!({"name": "Orders", "type": "webhook", "stream": "orders", "itemKey": "id"});
    let (id, first_key) = create_connector(&server, &doc).await;
    server.crash_and_restart().await;
    let shown = server
        .admin(Method::GET, &format!("/api/admin/connectors/{id}"), None)
        .await;
    assert_eq!(shown.status, StatusCode::OK, "created: {}", shown.body);

    let rotated = server.connector_action(&id, "rotate-key").await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new_key = rotated.body["ingestKey"]
        .as_str()
        .expect("new key")
        .to_owned();
    server.crash_and_restart().await;
    assert_eq!(
        push_status(&server, "orders", &first_key).await,
        StatusCode::UNAUTHORIZED,
        "the rotated-out key stays revoked"
    );
    assert_eq!(
        push_status(&server, "orders", &new_key).await,
        StatusCode::ACCEPTED
    );

    let disabled = server.connector_action(&id, "disable").await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    server.crash_and_restart().await;
    let refused = push(&server, "orders", &new_key, &json!({"id": "probe"})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "CONNECTOR_DISABLED");

    let deleted = server
        .admin(Method::DELETE, &format!("/api/admin/connectors/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    server.crash_and_restart().await;
    let gone = server
        .admin(Method::GET, &format!("/api/admin/connectors/{id}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "deleted: {}", gone.body);
    assert_eq!(
        push_status(&server, "orders", &new_key).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn read_keys_issued_or_revoked_before_a_kill_stay_so() {
    let mut server = TestServer::start().await;
    let (id, key) = issue_read_key(&server, &json!({"name": "Lobby"})).await;
    server.crash_and_restart().await;
    assert_eq!(read_status(&server, &key).await, StatusCode::OK);

    let revoked = server
        .admin(Method::DELETE, &format!("/api/admin/read-keys/{id}"), None)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    server.crash_and_restart().await;
    assert_eq!(read_status(&server, &key).await, StatusCode::UNAUTHORIZED);
    let listed = server
        .admin(Method::GET, "/api/admin/read-keys", None)
        .await;
    assert_eq!(listed.body["readKeys"], Value::Array(Vec::new()));
}

/// A server started with `env` added to its environment.
async fn server_with(env: &[(&str, &str)]) -> TestServer {
    TestServer::start_with(Options {
        env: env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
        ..Options::default()
    })
    .await
}

/// A webhook connector writing to `stream`, items keyed by `id`; its ingest key.
async fn orders(server: &TestServer, stream: &str) -> String {
    let doc = json!({"name": stream, "type": "webhook", "stream": stream, "itemKey": "id"});
    create_connector(server, &doc).await.1
}

/// How many log lines contain `text`.
fn log_lines(server: &TestServer, text: &str) -> usize {
    server.logs().lines().filter(|l| l.contains(text)).count()
}

/// The log line a failing store writes, once.
const STORE_FAILING_LOG: &str = "the store cannot apply accepted writes";

#[tokio::test]
async fn pushes_past_the_unapplied_byte_budget_get_503_with_retry_after() {
    // The first pass is held up for a while, so that accepted writes pile up unapplied.
    let server = server_with(&[
        ("DATAPOOL_MAX_UNAPPLIED_MIB", "1"),
        ("FAILPOINTS", "applier::apply=1*sleep(5000)"),
    ])
    .await;
    let key = orders(&server, "big").await;
    let pad = "x".repeat(200 * 1024);
    let mut accepted = Vec::new();
    let mut refused = None;
    for n in 0..12 {
        let answer = push(
            &server,
            "big",
            &key,
            &json!({"id": n.to_string(), "pad": pad}),
        )
        .await;
        if answer.status == StatusCode::ACCEPTED {
            accepted.push(n.to_string());
        } else {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("a push past 1 MiB of unapplied writes is refused");
    assert_error(&refused, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
    assert!(
        refused.headers.contains_key("retry-after"),
        "{:?}",
        refused.headers
    );
    assert!(
        accepted.len() <= 5,
        "1 MiB holds at most five 200 KiB pushes, {} were accepted",
        accepted.len()
    );
    let later = common::eventually(Duration::from_secs(30), "budget given back", async || {
        let answer = push(&server, "big", &key, &json!({"id": "later", "pad": "y"})).await;
        (answer.status == StatusCode::ACCEPTED).then_some(())
    });
    later.await;
    for id in &accepted {
        wait_for_item(&server, "big", id, |_| true).await;
    }
}

#[tokio::test]
async fn a_store_that_fails_writes_turns_pushes_and_readiness_to_503_until_a_restart() {
    let mut server = server_with(&[("FAILPOINTS", "applier::apply=return")]).await;
    let key = orders(&server, "wedged").await;
    let first = push(&server, "wedged", &key, &json!({"id": "kept"})).await;
    assert_eq!(
        first.status,
        StatusCode::ACCEPTED,
        "journaled: {}",
        first.body
    );
    let ready = common::eventually(Duration::from_secs(10), "/readyz 503", async || {
        let answer = server.call(Method::GET, "/readyz", None, None).await;
        (answer.status == StatusCode::SERVICE_UNAVAILABLE).then_some(answer)
    });
    assert_error(&ready.await, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
    let refused = push(&server, "wedged", &key, &json!({"id": "refused"})).await;
    assert_error(&refused, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
    assert!(refused.headers.contains_key("retry-after"));
    // The applier retries every second; the failure is logged once, not per retry.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        log_lines(&server, STORE_FAILING_LOG),
        1,
        "{}",
        server.logs()
    );

    server.kill().await;
    server.relaunch_without(&["FAILPOINTS"]).await;
    wait_for_item(&server, "wedged", "kept", |_| true).await;
    assert!(get_item(&server, "wedged", "refused").await.is_none());
}

#[tokio::test]
async fn flattened_names_count_against_the_byte_budget() {
    let server = server_with(&[
        ("DATAPOOL_MAX_UNAPPLIED_MIB", "1"),
        ("FAILPOINTS", "applier::apply=1*sleep(5000)"),
    ])
    .await;
    let key = orders(&server, "wide").await;
    // A body of about 12 KiB whose 999 dotted names each repeat a 2,000-byte key: about
    // 2 MB once flattened, more than the whole budget.
    let leaves: serde_json::Map<String, Value> =
        (0..999).map(|i| (format!("f{i}"), json!(i))).collect();
    let wide = json!({"id": "wide", "k".repeat(2_000): Value::Object(leaves)});
    let first = push(&server, "wide", &key, &wide).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    let next = push(&server, "wide", &key, &json!({"id": "small"})).await;
    assert_error(&next, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
}

#[tokio::test]
async fn a_dead_applier_makes_the_server_exit_non_zero_and_a_restart_applies_the_journal() {
    let mut server = server_with(&[("FAILPOINTS", "applier::apply=panic")]).await;
    let key = orders(&server, "crashy").await;
    let first = push(&server, "crashy", &key, &json!({"id": "kept"})).await;
    assert_eq!(
        first.status,
        StatusCode::ACCEPTED,
        "journaled: {}",
        first.body
    );
    exits_non_zero_saying(&mut server, "the applier stopped abnormally").await;
    server.relaunch_without(&["FAILPOINTS"]).await;
    wait_for_item(&server, "crashy", "kept", |_| true).await;
}

#[tokio::test]
async fn a_dead_committer_makes_the_server_exit_non_zero_and_its_push_is_not_accepted() {
    let mut server = server_with(&[("FAILPOINTS", "committer::commit=panic")]).await;
    let key = orders(&server, "crashy").await;
    let refused = push(&server, "crashy", &key, &json!({"id": "lost"})).await;
    assert_ne!(refused.status, StatusCode::ACCEPTED, "{}", refused.body);
    exits_non_zero_saying(&mut server, "the committer stopped abnormally").await;
    server.relaunch_without(&["FAILPOINTS"]).await;
    let accepted = push(&server, "crashy", &key, &json!({"id": "after"})).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
}

/// Waits for the server to exit by itself, with a failure status and `said` in its log.
async fn exits_non_zero_saying(server: &mut TestServer, said: &str) {
    let status = server.exited().await;
    assert!(!status.success(), "exit {status}:\n{}", server.logs());
    assert!(server.logs().contains(said), "{}", server.logs());
}

#[tokio::test]
async fn a_retry_after_a_hang_up_once_the_request_reached_the_journal_is_a_replay() {
    // The first commit is held up, so the client gives up while its request is queued.
    let server = server_with(&[("FAILPOINTS", "committer::commit=1*sleep(3000)")]).await;
    let key = orders(&server, "retried").await;
    let impatient = common::client_with_timeout(&server.cert_file(), Duration::from_millis(1000));
    let hung_up = impatient
        .post(server.url("/api/webhook/retried"))
        .bearer_auth(&key)
        .header("idempotency-key", "order-1")
        .json(&json!({"id": "a", "v": "first"}))
        .send()
        .await;
    assert!(hung_up.is_err(), "the client hung up before the answer");

    let retried = common::eventually(
        Duration::from_secs(10),
        "the first request's outcome",
        async || {
            let answer = send(
                webhook(&server, "retried", &key)
                    .header("idempotency-key", "order-1")
                    .json(&json!({"id": "a", "v": "second"})),
            )
            .await;
            (answer.status != StatusCode::CONFLICT).then_some(answer)
        },
    )
    .await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);
    assert_eq!(
        retried
            .headers
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..]),
        "a replay, not a second write: {:?}",
        retried.headers
    );
    let item = wait_for_item(&server, "retried", "a", |_| true).await;
    assert_eq!(item["fields"]["v"], "first", "{item}");
}
