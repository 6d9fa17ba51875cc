//! Slow and idle clients through the real binary: body deadlines (408), idle
//! connections closed for HTTP/1.1 and HTTP/2, the connection cap, the in-flight cap
//! and each connector's share of it (503), and the drain on SIGTERM.

mod common;

use std::time::Duration;

use common::limits::{held_push, RawConnection, RawResponse, OWED};
use common::{
    assert_error, create_connector, eventually, push, send, webhook, Options, TestServer,
    EVENTUALLY,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A server with a plain-HTTP listener for raw connections, and `args`.
async fn start(args: &[&str]) -> TestServer {
    let mut all = vec!["--http-listen".to_owned(), "127.0.0.1:0".to_owned()];
    all.extend(args.iter().map(|a| a.to_string()));
    TestServer::start_with(Options {
        args: all,
        ..Options::default()
    })
    .await
}

/// A webhook connector writing to `stream`, items keyed by `id`; its ingest key.
async fn connector(server: &TestServer, stream: &str) -> String {
    let doc = json!({"name": stream, "type": "webhook", "stream": stream, "itemKey": "id"});
    create_connector(server, &doc).await.1
}

/// Pushes one item to `stream` until the answer has `status`; the answer.
async fn push_until(
    server: &TestServer,
    stream: &str,
    key: &str,
    status: StatusCode,
) -> common::Answer {
    answer_until(status, stream, async || {
        push(server, stream, key, &json!({"id": "x"})).await
    })
    .await
}

/// Probes `stream` with `key` until the answer is `status` (503 while the slots it
/// needs are taken); the answer. A probe is refused (415) right after the in-flight
/// checks, so it holds a slot for no time and cannot push a held request out.
async fn probe_until(
    server: &TestServer,
    stream: &str,
    key: &str,
    status: StatusCode,
) -> common::Answer {
    answer_until(status, stream, async || {
        send(
            webhook(server, stream, key)
                .header("content-type", "text/plain")
                .body("x"),
        )
        .await
    })
    .await
}

/// Calls `request` until its answer has `status`.
async fn answer_until(
    status: StatusCode,
    stream: &str,
    mut request: impl AsyncFnMut() -> common::Answer,
) -> common::Answer {
    eventually(EVENTUALLY, &format!("{status} from {stream}"), async || {
        let answer = request().await;
        (answer.status == status).then_some(answer)
    })
    .await
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408_and_stores_nothing() {
    let server = start(&["--request-body-timeout-seconds", "1"]).await;
    let key = connector(&server, "slow").await;
    let mut connection = held_push(&server, "slow", &key).await;
    let response = connection.response().await;
    assert_timed_out(&response);
    assert!(
        response.body["error"]["requestId"]
            .as_str()
            .is_some_and(|id| id.starts_with("req_")),
        "{response:?}"
    );
    assert_eq!(common::get_item(&server, "slow", "x").await, None);
    // The deadline is the request's, not the connector's: the next push goes through.
    push_until(&server, "slow", &key, StatusCode::ACCEPTED).await;
}

#[tokio::test]
async fn an_admin_body_that_does_not_arrive_in_time_gets_408() {
    let server = start(&["--request-body-timeout-seconds", "1"]).await;
    let mut connection = RawConnection::open(&server).await;
    connection
        .start_post(
            "/api/admin/connectors",
            &server.token(),
            "application/json",
            1000,
            "{\"name\":",
        )
        .await;
    assert_timed_out(&connection.response().await);
}

#[tokio::test]
async fn a_bulk_import_may_take_longer_than_the_body_timeout_but_may_not_stall() {
    let server = start(&["--request-body-timeout-seconds", "2"]).await;
    let key = connector(&server, "imports").await;
    let lines: Vec<String> = (0..5).map(|i| format!("{{\"id\":\"i{i}\"}}\n")).collect();
    let length = lines.iter().map(String::len).sum();
    let path = "/api/webhook/imports/bulk";
    let mut steady = RawConnection::open(&server).await;
    steady
        .start_post(path, &key, "application/x-ndjson", length, &lines[0])
        .await;
    // Five pieces 700 ms apart: longer than the timeout in all, never paused that long.
    for line in &lines[1..] {
        tokio::time::sleep(Duration::from_millis(700)).await;
        steady.send(line.as_bytes()).await;
    }
    let response = steady.response().await;
    assert_eq!(response.status, 202, "{response:?}");
    assert_eq!(response.body["itemsReceived"], 5, "{response:?}");

    let mut stalled = RawConnection::open(&server).await;
    stalled
        .start_post(
            path,
            &key,
            "application/x-ndjson",
            1000,
            "{\"id\":\"s1\"}\n",
        )
        .await;
    assert_timed_out(&stalled.response().await);
}

#[tokio::test]
async fn an_idle_http1_connection_is_closed_after_the_idle_timeout() {
    let server = start(&["--idle-timeout-seconds", "1"]).await;
    let mut connection = RawConnection::open(&server).await;
    connection.get("/healthz").await;
    assert_eq!(connection.response().await.status, 200);
    // Kept alive for a next request…
    connection.get("/healthz").await;
    assert_eq!(connection.response().await.status, 200);
    // …and closed once none comes.
    assert!(connection.closed_within(OWED).await);
}

#[tokio::test]
async fn an_http2_connection_stays_open_while_used_and_closes_once_idle() {
    let server = start(&["--idle-timeout-seconds", "2"]).await;
    let addr = server.http.expect("http listener");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
    let connection = tokio::spawn(connection);
    // Six requests 500 ms apart: three seconds in all, never two idle.
    for _ in 0..6 {
        let request = axum::http::Request::get(format!("http://{addr}/healthz"))
            .body(())
            .expect("request");
        let (response, _) = client.send_request(request, true).expect("open stream");
        let response = response.await.expect("response on the same connection");
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // `client` stays alive: the connection ends because the server closed it.
    let ended = tokio::time::timeout(OWED, connection).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "the server did not close the idle HTTP/2 connection: {ended:?}"
    );
    drop(client);
}

#[tokio::test]
async fn a_connection_whose_peer_stops_reading_is_closed_after_the_idle_timeout() {
    let server = start(&["--idle-timeout-seconds", "1"]).await;
    let key = connector(&server, "big").await;
    // A page of items far larger than what the sockets' buffers hold.
    let field = "x".repeat(100 * 1024);
    for batch in 0..40 {
        let items: Vec<Value> = (0..5)
            .map(|n| json!({"id": format!("{batch:02}-{n}"), "text": field}))
            .collect();
        assert_eq!(push(&server, "big", &key, &json!(items)).await.status, 202);
    }
    eventually(EVENTUALLY, "all 200 items stored", async || {
        let answer = server
            .admin(reqwest::Method::GET, "/api/streams", None)
            .await;
        (answer.body["streams"][0]["itemCount"] == 200).then_some(())
    })
    .await;
    let page_bytes = 200 * field.len();

    let mut reader = RawConnection::open_reading_little(&server).await;
    reader
        .get_as("/api/streams/big/items?limit=200", &server.token())
        .await;
    // The peer reads nothing for longer than the idle timeout…
    tokio::time::sleep(Duration::from_secs(4)).await;
    // …so the server gave up on the response instead of holding the connection.
    let read = reader.read_to_close().await;
    assert!(
        read < page_bytes,
        "the whole page ({read} bytes) was still sent to a peer that had stopped reading"
    );
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let server = start(&["--max-connections", "2"]).await;
    let mut first = RawConnection::open(&server).await;
    first.get("/healthz").await;
    assert_eq!(first.response().await.status, 200);
    let mut second = RawConnection::open(&server).await;
    second.get("/healthz").await;
    assert_eq!(second.response().await.status, 200);

    let mut third = RawConnection::open(&server).await;
    third.get("/healthz").await;
    let early = third.response_within(Duration::from_secs(1)).await;
    assert!(early.is_none(), "served past the cap: {early:?}");
    drop(first);
    assert_eq!(third.response().await.status, 200);
}

#[tokio::test]
async fn a_connector_at_its_share_of_the_in_flight_slots_gets_503_while_others_get_202() {
    // Four slots: each connector may hold two.
    let server = start(&["--max-ingest-in-flight", "4"]).await;
    let greedy = connector(&server, "greedy").await;
    let other = connector(&server, "other").await;
    let held = [
        held_push(&server, "greedy", &greedy).await,
        held_push(&server, "greedy", &greedy).await,
    ];
    probe_until(&server, "greedy", &greedy, StatusCode::SERVICE_UNAVAILABLE).await;
    let refused = push(&server, "greedy", &greedy, &json!({"id": "g1"})).await;
    assert_error(&refused, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
    let answer = push(&server, "other", &other, &json!({"id": "o1"})).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    drop(held);
    push_until(&server, "greedy", &greedy, StatusCode::ACCEPTED).await;
}

#[tokio::test]
async fn past_the_in_flight_cap_every_connector_gets_503() {
    let server = start(&["--max-ingest-in-flight", "4"]).await;
    let first = connector(&server, "first").await;
    let second = connector(&server, "second").await;
    let third = connector(&server, "third").await;
    let mut held = Vec::new();
    for (stream, key) in [("first", &first), ("second", &second)] {
        for _ in 0..2 {
            held.push(held_push(&server, stream, key).await);
        }
    }
    probe_until(&server, "third", &third, StatusCode::SERVICE_UNAVAILABLE).await;
    let refused = push(&server, "third", &third, &json!({"id": "t1"})).await;
    let message = assert_error(&refused, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
    assert!(message.contains("in flight"), "{message}");
    assert!(
        refused.headers.contains_key("retry-after"),
        "{:?}",
        refused.headers
    );
    drop(held);
    push_until(&server, "third", &third, StatusCode::ACCEPTED).await;
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_and_takes_no_new_ones() {
    // Two slots, one per connector: a 503 to a second push of the same connector proves
    // the first is in flight.
    let mut server = start(&["--max-ingest-in-flight", "2"]).await;
    let key = connector(&server, "drain").await;
    let body = r#"{"id":"in-flight"}"#;
    let mut in_flight = RawConnection::open(&server).await;
    in_flight
        .start_post(
            "/api/webhook/drain",
            &key,
            "application/json",
            body.len(),
            &body[..4],
        )
        .await;
    probe_until(&server, "drain", &key, StatusCode::SERVICE_UNAVAILABLE).await;
    let other = connector(&server, "other").await;

    server.signal("TERM");
    eventually(EVENTUALLY, "new pushes refused", async || {
        let refused = server
            .client()
            .post(server.url("/api/webhook/other"))
            .bearer_auth(&other)
            .json(&json!({"id": "late"}))
            .send()
            .await
            .map_or(true, |r| r.status() == StatusCode::SERVICE_UNAVAILABLE);
        refused.then_some(())
    })
    .await;

    in_flight.send(&body.as_bytes()[4..]).await;
    let response = in_flight.response().await;
    assert_eq!(response.status, 202, "{response:?}");
    let status = server.stop("TERM").await;
    assert!(status.success(), "exit {status}:\n{}", server.logs());

    let restarted = TestServer::start_with(Options {
        data_dir: Some(server.data_dir().to_owned()),
        ..Options::default()
    })
    .await;
    let item = common::wait_for_item(&restarted, "drain", "in-flight", |_| true).await;
    assert_eq!(item["fields"]["id"], Value::from("in-flight"));
}

#[test]
fn the_limit_settings_show_in_check_config_and_refuse_zero() {
    let check = |args: &[&str], env: &[(&str, &str)]| {
        common::run(
            &[&["check-config", "--config", "/dev/null"], args].concat(),
            env,
        )
    };
    let defaults = check(&["--json"], &[]);
    assert!(defaults.status.success(), "{defaults:?}");
    let defaults: Value = serde_json::from_slice(&defaults.stdout).expect("JSON");
    assert_eq!(defaults["max_connections"], 4096);
    assert_eq!(defaults["idle_timeout_seconds"], 60);
    assert_eq!(defaults["request_body_timeout_seconds"], 30);
    assert_eq!(defaults["max_ingest_in_flight"], 1024);

    let set = check(
        &["--json", "--max-ingest-in-flight", "64"],
        &[("DATAPOOL_IDLE_TIMEOUT_SECONDS", "5")],
    );
    let set: Value = serde_json::from_slice(&set.stdout).expect("JSON");
    assert_eq!(set["max_ingest_in_flight"], 64);
    assert_eq!(set["idle_timeout_seconds"], 5);

    for flag in [
        "--max-connections",
        "--idle-timeout-seconds",
        "--request-body-timeout-seconds",
        "--max-ingest-in-flight",
    ] {
        let refused = check(&[flag, "0"], &[]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        let setting = flag.trim_start_matches("--").replace('-', "_");
        assert!(!refused.status.success(), "{flag} 0 accepted");
        assert!(stderr.contains(&setting), "{flag}: {stderr}");
    }
}

/// A 408 with the error body's `REQUEST_TIMEOUT` code: the body did not arrive in time.
fn assert_timed_out(response: &RawResponse) {
    assert_eq!(response.status, 408, "{response:?}");
    assert_eq!(
        response.body["error"]["code"], "REQUEST_TIMEOUT",
        "{response:?}"
    );
}
