//! Credentials at their edges, through the real binary: a revoked key stops working
//! for the very next request, where a key may travel (`?key=`), whose address the
//! failed-credential limiter counts behind a proxy, and the challenges and retry hints
//! of refusals.

mod common;

use common::credentials::HalfSentRequest;
use common::{
    all_items, assert_error, create_connector, eventually, issue_read_key, push, push_ok, send,
    webhook, Answer, Options, TestServer, EVENTUALLY,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A webhook connector document for `stream`, with `extra` fields merged in.
fn connector(stream: &str, extra: Value) -> Value {
    let mut doc = json!({"name": stream, "type": "webhook", "stream": stream});
    if let (Some(doc), Value::Object(extra)) = (doc.as_object_mut(), extra) {
        doc.extend(extra);
    }
    doc
}

/// The ids of every item of `stream`, read with the admin token.
async fn item_ids(server: &TestServer, stream: &str) -> Vec<String> {
    all_items(server, stream, &server.token())
        .await
        .iter()
        .map(|item| item["id"].as_str().expect("item id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_deleted_connectors_key_is_refused_by_the_next_push_and_stores_nothing() {
    let server = TestServer::start().await;
    let (id, key) =
        create_connector(&server, &connector("sales", json!({"itemKey": "region"}))).await;
    push_ok(&server, "sales", &key, &json!({"region": "North"})).await;
    let deleted = server
        .admin(Method::DELETE, &format!("/api/admin/connectors/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);

    let after = push(&server, "sales", &key, &json!({"region": "South"})).await;
    assert_error(&after, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(item_ids(&server, "sales").await, ["North"]);
}

#[tokio::test]
async fn a_rotated_key_is_refused_at_once_and_the_new_one_works() {
    let server = TestServer::start().await;
    let (id, old) = create_connector(&server, &connector("sales", json!({}))).await;
    push_ok(&server, "sales", &old, &json!({"n": 1})).await;
    let rotated = server.connector_action(&id, "rotate-key").await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new = rotated.body["ingestKey"].as_str().expect("new key");

    let refused = push(&server, "sales", &old, &json!({"n": 2})).await;
    assert_error(&refused, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    push_ok(&server, "sales", new, &json!({"n": 3})).await;
}

#[tokio::test]
async fn a_disabled_connector_refuses_the_next_push_and_an_enabled_one_takes_it() {
    let server = TestServer::start().await;
    let (id, key) = create_connector(&server, &connector("sales", json!({}))).await;
    push_ok(&server, "sales", &key, &json!({"n": 1})).await;
    assert_eq!(
        server.connector_action(&id, "disable").await.status,
        StatusCode::OK
    );
    let refused = push(&server, "sales", &key, &json!({"n": 2})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "CONNECTOR_DISABLED");
    assert_eq!(
        server.connector_action(&id, "enable").await.status,
        StatusCode::OK
    );
    push_ok(&server, "sales", &key, &json!({"n": 3})).await;
}

#[tokio::test]
async fn turning_basic_auth_off_refuses_the_next_basic_push() {
    let server = TestServer::start().await;
    let doc = connector("sales", json!({"auth": {"basic": true}}));
    let (id, key) = create_connector(&server, &doc).await;
    let basic = || {
        webhook(&server, "sales", "")
            .basic_auth("any", Some(&key))
            .json(&json!({"n": 1}))
    };
    assert_eq!(send(basic()).await.status, StatusCode::ACCEPTED);
    let patch = json!({"auth": {"basic": false}});
    let patched = server
        .admin(
            Method::PATCH,
            &format!("/api/admin/connectors/{id}"),
            Some(&patch),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_error(
        &send(basic()).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
}

#[tokio::test]
async fn a_deleted_read_key_is_refused_by_the_next_read() {
    let server = TestServer::start().await;
    let (id, key) = issue_read_key(&server, &json!({"name": "lobby"})).await;
    let key = key.as_str();
    let read = server
        .call(Method::GET, "/api/streams", Some(key), None)
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    let revoked = server
        .admin(Method::DELETE, &format!("/api/admin/read-keys/{id}"), None)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    let refused = server
        .call(Method::GET, "/api/streams", Some(key), None)
        .await;
    assert_error(&refused, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

/// The `WWW-Authenticate` challenges of `answer`, in order.
fn challenges(answer: &Answer) -> Vec<&str> {
    answer
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|value| value.to_str().expect("ASCII challenge"))
        .collect()
}

#[tokio::test]
async fn a_push_without_a_key_to_a_stream_that_accepts_basic_is_challenged_for_basic_too() {
    let server = TestServer::start().await;
    let doc = connector("sales", json!({"auth": {"basic": true}}));
    let (_, key) = create_connector(&server, &doc).await;
    create_connector(&server, &connector("footfall", json!({}))).await;

    let anonymous = push(&server, "sales", "", &json!({"n": 1})).await;
    assert_error(&anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(
        challenges(&anonymous),
        ["Bearer", "Basic realm=\"datapool\""]
    );
    let answered = webhook(&server, "sales", "").basic_auth("any", Some(&key));
    assert_eq!(
        send(answered.json(&json!({"n": 1}))).await.status,
        StatusCode::ACCEPTED
    );

    let bearer_only = push(&server, "footfall", "", &json!({"n": 1})).await;
    assert_error(&bearer_only, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(challenges(&bearer_only), ["Bearer"]);
}

#[tokio::test]
async fn a_failed_basic_attempt_is_challenged_for_basic_again() {
    let server = TestServer::start().await;
    let wrong = server
        .client()
        .post(server.url("/api/ingest"))
        .basic_auth("any", Some("ik_000000000000_wrong"))
        .json(&json!({"stream": "sales", "items": []}));
    let answer = send(wrong).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(challenges(&answer), ["Bearer", "Basic realm=\"datapool\""]);
}

#[tokio::test]
async fn a_request_that_arrives_while_shutting_down_gets_503_with_retry_after() {
    let args = vec!["--http-listen".to_owned(), "127.0.0.1:0".to_owned()];
    let mut server = TestServer::start_with(Options {
        args,
        ..Default::default()
    })
    .await;
    let plain = server.http.expect("plain listener");
    let request = HalfSentRequest::open(plain, "GET /readyz HTTP/1.1\r\nHost: datapool\r\n").await;
    server.signal("TERM");
    eventually(EVENTUALLY, "the shutdown to start", async || {
        server.logs().contains("shutting down").then_some(())
    })
    .await;

    let (status, headers) = request.finish().await;
    assert_eq!(status, 503, "{headers:?}");
    assert!(
        headers.contains(&"retry-after: 5".to_owned()),
        "{headers:?}"
    );
    assert!(server.stop("TERM").await.success());
}

/// Issues a read key for all streams; returns it.
async fn read_key(server: &TestServer) -> String {
    issue_read_key(server, &json!({"name": "lobby"})).await.1
}

/// Calls `path` with `?key=` (appended to its query) and no `Authorization` header.
async fn with_query_key(server: &TestServer, method: Method, path: &str, key: &str) -> Answer {
    let separator = if path.contains('?') { '&' } else { '?' };
    let url = server.url(&format!("{path}{separator}key={key}"));
    send(server.client().request(method, url)).await
}

/// Asserts the 401 that refuses a key in the query string.
fn assert_refused_in_query(answer: &Answer, request: &str) {
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "{request}: {}",
        answer.body
    );
    let message = assert_error(answer, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert!(message.contains("?key="), "{request}: {message}");
    assert!(
        message.contains("Authorization: Bearer"),
        "{request}: {message}"
    );
}

#[tokio::test]
async fn a_key_in_the_query_is_refused_except_a_read_key_on_events() {
    let server = TestServer::start_with(Options {
        env: vec![("RUST_LOG".to_owned(), "debug".to_owned())],
        ..Default::default()
    })
    .await;
    let (_, ingest) =
        create_connector(&server, &connector("sales", json!({"itemKey": "region"}))).await;
    push_ok(&server, "sales", &ingest, &json!({"region": "North"})).await;
    let admin = server.token();
    let reader = read_key(&server).await;

    for (method, path, key) in [
        (Method::GET, "/api/streams", &admin),
        (Method::GET, "/api/streams/sales/items?limit=10", &admin),
        (Method::GET, "/api/streams/sales/items/North", &reader),
        (Method::GET, "/api/streams", &reader),
        (Method::DELETE, "/api/streams/sales/items/North", &admin),
        (Method::GET, "/api/streams/sales/events", &admin),
        (Method::GET, "/api/streams/sales/events", &ingest),
        (Method::GET, "/api/admin/connectors", &admin),
    ] {
        let answer = with_query_key(&server, method.clone(), path, key).await;
        assert_refused_in_query(&answer, &format!("{method} {path}"));
    }
    assert_eq!(
        item_ids(&server, "sales").await,
        ["North"],
        "the item is still there"
    );

    let url = server.url(&format!("/api/streams/sales/events?key={reader}"));
    let events = server.client().get(url).send().await.expect("request sent");
    assert_eq!(events.status(), StatusCode::OK);
    let content_type = events.headers()["content-type"].to_str().expect("ASCII");
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    drop(events);

    let logs = server.logs();
    for secret in [&admin, &reader, &ingest] {
        let secret_part = secret.rsplit('_').next().expect("secret");
        assert!(!logs.contains(secret_part), "a key's secret is in the log");
    }
}

/// Failed authentications an address may make in a minute before it gets 429 (SPEC §2).
const FAILURES_ALLOWED: usize = 20;

/// `GET /api/streams` with `token` as bearer, as forwarded for `forwarded_for` when
/// given.
async fn list_streams(server: &TestServer, token: &str, forwarded_for: Option<&str>) -> Answer {
    let mut request = server
        .client()
        .get(server.url("/api/streams"))
        .bearer_auth(token);
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    send(request).await
}

/// A token of the right shape that no server issued.
fn wrong_token() -> String {
    format!("at_000000000000_{}", "A".repeat(40))
}

#[tokio::test]
async fn behind_a_trusted_proxy_failed_credentials_lock_out_the_forwarded_client_only() {
    let server = TestServer::start_with(Options {
        env: vec![(
            "DATAPOOL_TRUSTED_PROXIES".to_owned(),
            "127.0.0.0/8".to_owned(),
        )],
        ..Default::default()
    })
    .await;
    let attacker = Some("198.51.100.1, 203.0.113.7");
    for _ in 0..FAILURES_ALLOWED {
        let refused = list_streams(&server, &wrong_token(), attacker).await;
        assert_error(&refused, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    let locked = list_streams(&server, &server.token(), attacker).await;
    assert_error(&locked, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");

    let admin = list_streams(&server, &server.token(), Some("203.0.113.8")).await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.body);
    let proxy_itself = list_streams(&server, &server.token(), None).await;
    assert_eq!(proxy_itself.status, StatusCode::OK, "{}", proxy_itself.body);
    assert!(
        server.logs().contains("203.0.113.7"),
        "the log names the forwarded client"
    );
}

#[tokio::test]
async fn without_trusted_proxies_x_forwarded_for_cannot_dodge_the_limiter() {
    let server = TestServer::start().await;
    for n in 0..FAILURES_ALLOWED {
        let spoofed = format!("203.0.113.{n}");
        let refused = list_streams(&server, &wrong_token(), Some(&spoofed)).await;
        assert_error(&refused, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    let locked = list_streams(&server, &server.token(), Some("203.0.113.200")).await;
    assert_error(&locked, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
}

#[test]
fn trusted_proxies_come_from_the_file_or_the_environment_and_bad_ones_stop_start_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("datapool.toml");
    std::fs::write(&file, "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]\n").expect("write");
    let file = file.to_str().expect("UTF-8 path");
    let check =
        |env: &[(&str, &str)]| common::run(&["check-config", "--json", "--config", file], env);

    let from_file = check(&[]);
    assert!(from_file.status.success(), "{from_file:?}");
    let settings: Value = serde_json::from_slice(&from_file.stdout).expect("JSON settings");
    assert_eq!(
        settings["trusted_proxies"],
        json!(["10.0.0.0/8", "192.0.2.1/32"])
    );

    let from_env = check(&[("DATAPOOL_TRUSTED_PROXIES", "172.16.0.0/12,fd00::/8")]);
    let settings: Value = serde_json::from_slice(&from_env.stdout).expect("JSON settings");
    assert_eq!(
        settings["trusted_proxies"],
        json!(["172.16.0.0/12", "fd00::/8"])
    );

    let bad_env = check(&[("DATAPOOL_TRUSTED_PROXIES", "10.0.0.0/8,10.0.0.0/33")]);
    let bad_file = dir.path().join("bad.toml");
    std::fs::write(&bad_file, "trusted_proxies = [\"proxy.local\"]\n").expect("write");
    let bad_file = bad_file.to_str().expect("UTF-8 path");
    let bad_toml = common::run(&["check-config", "--config", bad_file], &[]);
    for (output, value) in [(bad_env, "10.0.0.0/33"), (bad_toml, "proxy.local")] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains("invalid trusted proxy"), "{stderr}");
        assert!(stderr.contains(value), "{stderr}");
    }
}
