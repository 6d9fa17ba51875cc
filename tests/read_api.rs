//! Reading the DataPool (SPEC §5): streams, items and their paging, deleting items,
//! read keys (§1.2, §2) through the API and the CLI, and the Server-Sent Events of
//! item changes.

mod common;

use std::process::Output;
use std::time::Duration;

use common::sse::{Event, SseReader};
use common::{
    assert_error, create_connector, get_item, is_key, is_utc_timestamp, item_path, push_ok,
    segment, wait_for_item, TestServer, EVENTUALLY,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A webhook connector on `stream` whose items are named by their `id` field.
async fn connector(server: &TestServer, name: &str, stream: &str) -> (String, String) {
    let doc = json!({"name": name, "type": "webhook", "stream": stream, "itemKey": "id"});
    create_connector(server, &doc).await
}

/// `GET path` with the admin token, expecting 200.
async fn read(server: &TestServer, path: &str) -> Value {
    let answer = server.admin(Method::GET, path, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    answer.body
}

/// One page of `stream`: its item ids and its `nextCursor`.
async fn page(server: &TestServer, stream: &str, query: &str) -> (Vec<String>, Value) {
    let body = read(server, &format!("/api/streams/{stream}/items{query}")).await;
    let ids = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect();
    (ids, body["nextCursor"].clone())
}

fn cursor(next: &Value) -> String {
    segment(next.as_str().expect("nextCursor is a string"))
}

#[tokio::test]
async fn streams_are_listed_with_their_item_counts() {
    let server = TestServer::start().await;
    let (_, sales) = connector(&server, "Sales", "sales").await;
    let (_, stock) = connector(&server, "Stock", "stock").await;
    push_ok(
        &server,
        "sales",
        &sales,
        &json!([{"id": "a"}, {"id": "b"}, {"id": "c"}]),
    )
    .await;
    push_ok(&server, "stock", &stock, &json!({"id": "x"})).await;
    wait_for_item(&server, "sales", "c", |_| true).await;
    wait_for_item(&server, "stock", "x", |_| true).await;

    let body = read(&server, "/api/streams").await;
    let streams = body["streams"].as_array().expect("streams");
    let find = |name: &str| {
        streams
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} is listed: {body}"))
    };
    assert_eq!(find("sales")["itemCount"], 3, "{body}");
    assert_eq!(find("stock")["itemCount"], 1, "{body}");
    for name in ["sales", "stock"] {
        let updated = find(name)["updatedAt"].as_str().expect("updatedAt");
        assert!(is_utc_timestamp(updated), "{updated}");
    }
}

#[tokio::test]
async fn items_are_paged_in_id_order_through_cursors() {
    let server = TestServer::start().await;
    let (_, key) = connector(&server, "Letters", "letters").await;
    let shuffled = json!([{"id": "c", "n": 3}, {"id": "a", "n": 1}, {"id": "e", "n": 5},
                          {"id": "b", "n": 2}, {"id": "d", "n": 4}]);
    push_ok(&server, "letters", &key, &shuffled).await;
    wait_for_item(&server, "letters", "d", |_| true).await;

    let (all, next) = page(&server, "letters", "").await;
    assert_eq!(all, ["a", "b", "c", "d", "e"]);
    assert_eq!(next, Value::Null, "one page holds them all");

    let (first, next) = page(&server, "letters", "?limit=2").await;
    assert_eq!(first, ["a", "b"]);
    let (second, next) = page(
        &server,
        "letters",
        &format!("?limit=2&cursor={}", cursor(&next)),
    )
    .await;
    assert_eq!(second, ["c", "d"]);
    let (last, next) = page(
        &server,
        "letters",
        &format!("?limit=2&cursor={}", cursor(&next)),
    )
    .await;
    assert_eq!(last, ["e"]);
    assert_eq!(next, Value::Null, "the last page ends the cursors");

    let listed = read(&server, "/api/streams/letters/items?limit=1").await;
    let one = get_item(&server, "letters", "a").await.expect("a");
    assert_eq!(
        listed["items"][0], one,
        "a listed item is the item as read alone"
    );

    let invalid = server
        .admin(Method::GET, "/api/streams/letters/items?limit=abc", None)
        .await;
    assert_error(&invalid, StatusCode::BAD_REQUEST, "INVALID_PAYLOAD");
}

#[tokio::test]
async fn the_limit_defaults_to_100_and_is_clamped_to_1000() {
    let server = TestServer::start().await;
    let (_, key) = connector(&server, "Many", "many").await;
    let items: Vec<Value> = (0..1005)
        .map(|i| json!({"id": format!("i{i:04}")}))
        .collect();
    push_ok(&server, "many", &key, &json!(items)).await;
    wait_for_item(&server, "many", "i1004", |_| true).await;
    let expected = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|i| format!("i{i:04}")).collect()
    };

    let (default, next) = page(&server, "many", "").await;
    assert_eq!(default, expected(0..100), "100 by default");
    assert!(next.is_string(), "more to come: {next}");

    let (clamped, next) = page(&server, "many", "?limit=5000").await;
    assert_eq!(clamped.len(), 1000, "5000 is clamped to 1000");
    assert_eq!(clamped, expected(0..1000));
    let (rest, next) = page(
        &server,
        "many",
        &format!("?limit=5000&cursor={}", cursor(&next)),
    )
    .await;
    assert_eq!(rest, expected(1000..1005));
    assert_eq!(next, Value::Null);
}

#[tokio::test]
async fn an_item_has_its_fields_version_time_and_connector_and_unknowns_are_404() {
    let server = TestServer::start().await;
    let (connector_id, key) = connector(&server, "Sales", "sales").await;
    push_ok(
        &server,
        "sales",
        &key,
        &json!({"id": "Zürich Nord", "sales": 1, "meta": {"rank": 2}}),
    )
    .await;

    let item = wait_for_item(&server, "sales", "Zürich Nord", |_| true).await;
    assert_eq!(item["id"], "Zürich Nord");
    assert_eq!(
        item["fields"],
        json!({"id": "Zürich Nord", "sales": 1, "meta.rank": 2})
    );
    assert!(item["version"].as_u64().is_some_and(|v| v >= 1), "{item}");
    assert!(
        item["updatedAt"].as_str().is_some_and(is_utc_timestamp),
        "{item}"
    );
    assert_eq!(item["connectorId"], connector_id.as_str());

    for path in [
        item_path("sales", "nobody"),
        item_path("nowhere", "Zürich Nord"),
        "/api/streams/nowhere/items".to_owned(),
    ] {
        let answer = server.admin(Method::GET, &path, None).await;
        assert_error(&answer, StatusCode::NOT_FOUND, "NOT_FOUND");
    }
}

#[tokio::test]
async fn the_admin_token_deletes_an_item() {
    let server = TestServer::start().await;
    let (_, key) = connector(&server, "Sales", "sales").await;
    push_ok(&server, "sales", &key, &json!([{"id": "a"}, {"id": "b"}])).await;
    wait_for_item(&server, "sales", "b", |_| true).await;

    let deleted = server
        .admin(Method::DELETE, &item_path("sales", "a"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_eq!(get_item(&server, "sales", "a").await, None, "then 404");
    let (ids, _) = page(&server, "sales", "").await;
    assert_eq!(ids, ["b"]);
    let streams = read(&server, "/api/streams").await;
    let sales = streams["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .find(|s| s["name"] == "sales")
        .cloned()
        .expect("sales is listed");
    assert_eq!(sales["itemCount"], 1, "{streams}");

    let again = server
        .admin(Method::DELETE, &item_path("sales", "a"), None)
        .await;
    assert_error(&again, StatusCode::NOT_FOUND, "NOT_FOUND");
}

/// Creates a read key: its id and the key.
async fn read_key(server: &TestServer, doc: &Value) -> (String, String) {
    let created = server
        .admin(Method::POST, "/api/admin/read-keys", Some(doc))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["readKey"]["id"]
        .as_str()
        .expect("readKey.id")
        .to_owned();
    let key = created.body["key"].as_str().expect("key").to_owned();
    assert!(is_key(&key, "rk"), "{key}");
    let secret = key.split('_').nth(2).expect("secret");
    assert!(
        !created.body["readKey"].to_string().contains(secret),
        "the key is shown once, beside the record: {}",
        created.body
    );
    (id, key)
}

/// Two streams with an item each, `sales/s1` and `stock/t1`: their ingest keys.
async fn two_streams(server: &TestServer) -> (String, String) {
    let (_, sales) = connector(server, "Sales", "sales").await;
    let (_, stock) = connector(server, "Stock", "stock").await;
    push_ok(server, "sales", &sales, &json!({"id": "s1", "n": 1})).await;
    push_ok(server, "stock", &stock, &json!({"id": "t1", "n": 1})).await;
    wait_for_item(server, "sales", "s1", |_| true).await;
    wait_for_item(server, "stock", "t1", |_| true).await;
    (sales, stock)
}

#[tokio::test]
async fn a_read_key_reads_its_streams_and_nothing_else() {
    let server = TestServer::start().await;
    two_streams(&server).await;

    let created = server
        .admin(
            Method::POST,
            "/api/admin/read-keys",
            Some(&json!({"name": "Lobby", "streams": ["sales"]})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["readKey"]["name"], "Lobby");
    let (id, key) = read_key(&server, &json!({"name": "Lobby 2", "streams": ["sales"]})).await;

    let listed = read(&server, "/api/admin/read-keys").await;
    let entries = listed["readKeys"].as_array().expect("readKeys");
    assert!(
        entries
            .iter()
            .any(|k| k["id"] == id.as_str() && k["name"] == "Lobby 2"),
        "{listed}"
    );
    assert!(
        !listed
            .to_string()
            .contains(key.split('_').nth(2).expect("secret")),
        "the list never shows a key: {listed}"
    );

    let with_key = |method: Method, path: String| {
        let (server, key) = (&server, &key);
        async move { server.call(method, &path, Some(key), None).await }
    };
    for path in [
        "/api/streams/sales/items".to_owned(),
        item_path("sales", "s1"),
    ] {
        let answer = with_key(Method::GET, path.clone()).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    }
    let item = with_key(Method::GET, item_path("sales", "s1")).await;
    assert_eq!(item.body["fields"], json!({"id": "s1", "n": 1}));

    let streams = with_key(Method::GET, "/api/streams".to_owned()).await;
    assert_eq!(streams.status, StatusCode::OK, "{}", streams.body);
    let names: Vec<&str> = streams.body["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["sales"], "only the streams it may read are listed");

    for (method, path) in [
        (Method::GET, "/api/streams/stock/items".to_owned()),
        (Method::GET, item_path("stock", "t1")),
        (Method::GET, "/api/admin/connectors".to_owned()),
        (Method::GET, "/api/admin/read-keys".to_owned()),
        (Method::DELETE, item_path("sales", "s1")),
    ] {
        let answer = with_key(method.clone(), path.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            answer.body
        );
        assert_error(&answer, StatusCode::FORBIDDEN, "FORBIDDEN");
    }
    assert!(
        get_item(&server, "sales", "s1").await.is_some(),
        "a read key deletes nothing"
    );

    let (_, everything) = read_key(&server, &json!({"name": "Wall"})).await;
    for stream in ["sales", "stock"] {
        let path = format!("/api/streams/{stream}/items");
        let answer = server
            .call(Method::GET, &path, Some(&everything), None)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "a key without a stream list reads every stream"
        );
    }

    let deleted = server
        .admin(Method::DELETE, &format!("/api/admin/read-keys/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let revoked = with_key(Method::GET, "/api/streams/sales/items".to_owned()).await;
    assert_error(&revoked, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let listed = read(&server, "/api/admin/read-keys").await;
    assert!(
        !listed["readKeys"]
            .as_array()
            .expect("readKeys")
            .iter()
            .any(|k| k["id"] == id.as_str()),
        "{listed}"
    );

    // Nameless, and the array form serde alone would read as the document's members.
    for bad in [json!({"streams": ["sales"]}), json!(["Lobby 3", ["sales"]])] {
        let refused = server
            .admin(Method::POST, "/api/admin/read-keys", Some(&bad))
            .await;
        assert_error(&refused, StatusCode::BAD_REQUEST, "INVALID_PAYLOAD");
    }
}

#[tokio::test]
async fn other_credentials_on_the_read_api() {
    let server = TestServer::start().await;
    let (_, ingest_key) = connector(&server, "Sales", "sales").await;
    push_ok(&server, "sales", &ingest_key, &json!({"id": "s1"})).await;
    wait_for_item(&server, "sales", "s1", |_| true).await;

    let ingest = server
        .call(
            Method::GET,
            "/api/streams/sales/items",
            Some(&ingest_key),
            None,
        )
        .await;
    assert_error(&ingest, StatusCode::FORBIDDEN, "FORBIDDEN");
    let none = server
        .call(Method::GET, "/api/streams/sales/items", None, None)
        .await;
    assert_error(&none, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(none.headers["www-authenticate"], "Bearer");
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `rk_…` key a CLI output prints.
fn printed_key(output: &Output) -> String {
    assert!(output.status.success(), "{}", stderr(output));
    stdout(output)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|word| word.starts_with("rk_"))
        .unwrap_or_else(|| panic!("no key printed: {}", stdout(output)))
        .to_owned()
}

async fn status_with(server: &TestServer, key: &str, stream: &str) -> StatusCode {
    let path = format!("/api/streams/{stream}/items");
    server
        .call(Method::GET, &path, Some(key), None)
        .await
        .status
}

#[tokio::test]
async fn read_key_commands_drive_the_admin_api() {
    let server = TestServer::start().await;
    two_streams(&server).await;

    let lobby = printed_key(&server.cli(
        &["read-key", "create", "--name", "Lobby", "--stream", "sales"],
        None,
    ));
    assert!(is_key(&lobby, "rk"), "{lobby}");
    assert_eq!(status_with(&server, &lobby, "sales").await, StatusCode::OK);
    assert_eq!(
        status_with(&server, &lobby, "stock").await,
        StatusCode::FORBIDDEN
    );
    let wall = printed_key(&server.cli(
        &[
            "read-key", "create", "--name", "Wall", "--stream", "sales", "--stream", "stock",
        ],
        None,
    ));
    assert_eq!(status_with(&server, &wall, "stock").await, StatusCode::OK);

    let listed = read(&server, "/api/admin/read-keys").await;
    let id = listed["readKeys"]
        .as_array()
        .expect("readKeys")
        .iter()
        .find(|k| k["name"] == "Lobby")
        .and_then(|k| k["id"].as_str())
        .unwrap_or_else(|| panic!("Lobby is listed: {listed}"))
        .to_owned();
    let list = server.cli(&["read-key", "list"], None);
    assert!(list.status.success(), "{}", stderr(&list));
    let table = stdout(&list);
    assert!(
        table.contains("Lobby") && table.contains("Wall") && table.contains(&id),
        "{table}"
    );
    for key in [&lobby, &wall] {
        let secret = key.split('_').nth(2).expect("secret");
        assert!(!table.contains(secret), "the list shows no key: {table}");
    }

    let deleted = server.cli(&["read-key", "delete", &id], None);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert_eq!(
        status_with(&server, &lobby, "sales").await,
        StatusCode::UNAUTHORIZED
    );
    let again = server.cli(&["read-key", "delete", &id], None);
    assert_eq!(
        again.status.code(),
        Some(3),
        "not found: {}",
        stdout(&again)
    );
    assert!(stderr(&again).contains("404"), "{}", stderr(&again));
}

/// Opens the change events of `stream`; `query` is appended to the path.
async fn open_events(
    server: &TestServer,
    stream: &str,
    query: &str,
    token: Option<&str>,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = server
        .client()
        .get(server.url(&format!("/api/streams/{stream}/events{query}")))
        .header("accept", "text/event-stream");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.expect("events request sent")
}

/// Asserts the response is an open event stream and starts reading it.
fn event_stream(response: reqwest::Response) -> SseReader {
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    SseReader::new(response)
}

/// The next `item.*` event; other named events (keep-alives) are skipped, a `reset`
/// is a failure here.
async fn next_change(reader: &mut SseReader) -> Event {
    loop {
        let event = reader
            .next_within(EVENTUALLY)
            .await
            .expect("an item event within the deadline");
        assert_ne!(event.event, "reset", "unexpected reset: {event:?}");
        if event.event.starts_with("item.") {
            return event;
        }
    }
}

/// Asserts no item event arrives within a short while.
async fn assert_quiet(reader: &mut SseReader) {
    while let Some(event) = reader.next_within(Duration::from_millis(300)).await {
        assert!(
            !event.event.starts_with("item."),
            "unexpected event {event:?}"
        );
    }
}

/// Five pushes to `sales` (keyed by `id`): two creations, an update, a creation and
/// an update; returns the events they should give, as (event, itemId, full fields).
async fn five_changes(server: &TestServer, key: &str) -> Vec<(&'static str, &'static str, Value)> {
    let pushes = [
        json!({"id": "a", "n": 1}),
        json!({"id": "b", "n": 1}),
        json!({"id": "a", "m": 2}),
        json!({"id": "c", "n": 1}),
        json!({"id": "b", "n": 5}),
    ];
    for body in &pushes {
        push_ok(server, "sales", key, body).await;
    }
    vec![
        ("item.created", "a", json!({"id": "a", "n": 1})),
        ("item.created", "b", json!({"id": "b", "n": 1})),
        ("item.updated", "a", json!({"id": "a", "n": 1, "m": 2})),
        ("item.created", "c", json!({"id": "c", "n": 1})),
        ("item.updated", "b", json!({"id": "b", "n": 5})),
    ]
}

#[tokio::test]
async fn changes_stream_as_server_sent_events_in_order() {
    let server = TestServer::start().await;
    let (_, key) = connector(&server, "Sales", "sales").await;
    let token = server.token();
    let mut reader = event_stream(open_events(&server, "sales", "", Some(&token), None).await);

    let expected = five_changes(&server, &key).await;
    let mut previous = 0;
    let mut versions = std::collections::HashMap::new();
    for (kind, item_id, fields) in expected {
        let event = next_change(&mut reader).await;
        assert_eq!(event.event, kind, "{event:?}");
        assert!(event.seq() > previous, "ids grow: {event:?}");
        previous = event.seq();
        let data = event.json();
        assert_eq!(data["stream"], "sales", "{data}");
        assert_eq!(data["itemId"], item_id, "{data}");
        assert_eq!(data["fields"], fields, "the full fields after the change");
        let version = data["version"].as_u64().expect("version");
        if let Some(before) = versions.insert(item_id, version) {
            assert!(version > before, "{item_id}: {before} then {version}");
        }
    }

    let deleted = server
        .admin(Method::DELETE, &item_path("sales", "c"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let event = next_change(&mut reader).await;
    assert_eq!(event.event, "item.deleted", "{event:?}");
    assert!(event.seq() > previous);
    let data = event.json();
    assert_eq!(
        (&data["stream"], &data["itemId"]),
        (&json!("sales"), &json!("c"))
    );
    assert!(data.get("fields").is_none(), "no fields: {data}");
}

#[tokio::test]
async fn last_event_id_resumes_without_gaps_or_repeats() {
    let server = TestServer::start().await;
    let (_, key) = connector(&server, "Sales", "sales").await;
    let token = server.token();

    let mut first = event_stream(open_events(&server, "sales", "", Some(&token), None).await);
    five_changes(&server, &key).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(next_change(&mut first).await);
    }
    drop(first);

    push_ok(&server, "sales", &key, &json!({"id": "d", "n": 6})).await;
    push_ok(&server, "sales", &key, &json!({"id": "a", "n": 7})).await;
    wait_for_item(&server, "sales", "a", |i| i["fields"]["n"] == 7).await;

    let resume_from = seen[1].id.clone().expect("the second event's id");
    let mut resumed =
        event_stream(open_events(&server, "sales", "", Some(&token), Some(&resume_from)).await);
    for original in &seen[2..] {
        let event = next_change(&mut resumed).await;
        assert_eq!(&event, original, "events 3, 4 and 5 again, as they were");
    }
    let mut previous = seen[4].seq();
    for (item_id, n) in [("d", 6), ("a", 7)] {
        let event = next_change(&mut resumed).await;
        assert!(event.seq() > previous, "{event:?}");
        previous = event.seq();
        let data = event.json();
        assert_eq!(
            data["itemId"], item_id,
            "the changes made while away: {data}"
        );
        assert_eq!(data["fields"]["n"], n, "{data}");
    }

    push_ok(&server, "sales", &key, &json!({"id": "e", "n": 8})).await;
    let live = next_change(&mut resumed).await;
    assert!(live.seq() > previous, "{live:?}");
    assert_eq!(live.event, "item.created");
    assert_eq!(live.json()["itemId"], "e");
    assert_quiet(&mut resumed).await;
}

#[tokio::test]
async fn a_read_key_may_come_in_the_query_as_browsers_cannot_set_headers() {
    let server = TestServer::start().await;
    let (sales_key, _) = two_streams(&server).await;
    let (_, lobby) = read_key(&server, &json!({"name": "Lobby", "streams": ["sales"]})).await;
    let (_, stockroom) = read_key(&server, &json!({"name": "Stock", "streams": ["stock"]})).await;

    let query = format!("?key={lobby}");
    let mut reader = event_stream(open_events(&server, "sales", &query, None, None).await);
    push_ok(&server, "sales", &sales_key, &json!({"id": "q1", "n": 1})).await;
    let event = next_change(&mut reader).await;
    assert_eq!(event.event, "item.created");
    assert_eq!(event.json()["itemId"], "q1");

    let forbidden = open_events(&server, "sales", &format!("?key={stockroom}"), None, None).await;
    assert_error(
        &common::answer(forbidden).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    let wrong = format!("?key=rk_000000000000_{}", "A".repeat(40));
    let unknown = open_events(&server, "sales", &wrong, None, None).await;
    assert_error(
        &common::answer(unknown).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );

    let secret = lobby.split('_').nth(2).expect("secret");
    assert!(
        !server.logs().contains(secret),
        "a key in the URL is never logged"
    );
}

/// The next event, which must be `event: reset`.
async fn expect_reset(reader: &mut SseReader) {
    let event = reader
        .next_within(EVENTUALLY)
        .await
        .expect("an event within the deadline");
    assert_eq!(event.event, "reset", "{event:?}");
    assert_eq!(event.id, None, "a reset carries no id: {event:?}");
}

#[tokio::test]
async fn an_unknown_last_event_id_opens_with_a_reset_then_live_changes() {
    let server = TestServer::start().await;
    let (_, key) = connector(&server, "Sales", "sales").await;
    let token = server.token();
    let mut reader = event_stream(open_events(&server, "sales", "", Some(&token), None).await);
    five_changes(&server, &key).await;
    let mut last = None;
    for _ in 0..5 {
        last = next_change(&mut reader).await.id;
    }
    let last = last.expect("an event id");

    for unknown in ["999999999", "not-a-number", "-1"] {
        let mut future =
            event_stream(open_events(&server, "sales", "", Some(&token), Some(unknown)).await);
        expect_reset(&mut future).await;
        push_ok(&server, "sales", &key, &json!({"id": unknown, "n": 1})).await;
        let live = next_change(&mut future).await;
        assert_eq!(
            live.json()["itemId"],
            unknown,
            "after the reset, live changes only: {live:?}"
        );
    }

    let wiped = TestServer::start().await;
    let (_, wiped_key) = connector(&wiped, "Sales", "sales").await;
    push_ok(&wiped, "sales", &wiped_key, &json!({"id": "a"})).await;
    wait_for_item(&wiped, "sales", "a", |_| true).await;
    let wiped_token = wiped.token();
    let response = open_events(&wiped, "sales", "", Some(&wiped_token), Some(&last)).await;
    let mut reader = event_stream(response);
    expect_reset(&mut reader).await;
    assert_quiet(&mut reader).await;
}

/// Pushes `count` items `{prefix}{n}` (n from `from`) to `stream`, one request each.
async fn push_each(
    server: &TestServer,
    stream: &str,
    key: &str,
    prefix: &str,
    from: usize,
    count: usize,
) {
    for n in from..from + count {
        push_ok(
            server,
            stream,
            key,
            &json!({"id": format!("{prefix}{n}"), "n": n}),
        )
        .await;
    }
}

/// Pushes `batches` arrays of 10 items `{prefix}{batch}-{n}` to `stream`.
async fn push_batches(server: &TestServer, stream: &str, key: &str, prefix: &str, batches: usize) {
    for batch in 0..batches {
        let items: Vec<Value> = (0..10)
            .map(|n| json!({"id": format!("{prefix}{batch}-{n}"), "n": n}))
            .collect();
        push_ok(server, stream, key, &Value::Array(items)).await;
    }
}

/// The next `count` item events.
async fn changes(reader: &mut SseReader, count: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        events.push(next_change(reader).await);
    }
    events
}

/// The `itemId`s of `events`.
fn item_ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.json()["itemId"].as_str().expect("itemId").to_owned())
        .collect()
}

#[tokio::test]
async fn a_client_gets_exactly_its_streams_changes_while_another_stream_is_busy() {
    let server = TestServer::start().await;
    let (_, sales) = connector(&server, "Sales", "sales").await;
    let (_, stock) = connector(&server, "Stock", "stock").await;
    let token = server.token();
    let mut sales_reader =
        event_stream(open_events(&server, "sales", "", Some(&token), None).await);
    let mut stock_reader =
        event_stream(open_events(&server, "stock", "", Some(&token), None).await);

    tokio::join!(
        push_each(&server, "sales", &sales, "a", 0, 10),
        push_batches(&server, "stock", &stock, "b", 20),
    );
    let seen = changes(&mut sales_reader, 10).await;
    let expected: Vec<String> = (0..10).map(|n| format!("a{n}")).collect();
    assert_eq!(item_ids(&seen), expected, "sales' changes, in order");
    assert!(seen.iter().all(|e| e.json()["stream"] == "sales"));
    assert!(seen.windows(2).all(|w| w[0].seq() < w[1].seq()), "ids grow");
    assert_quiet(&mut sales_reader).await;
    let mut stock_seen = changes(&mut stock_reader, 200).await;
    assert!(stock_seen.iter().all(|e| e.json()["stream"] == "stock"));

    // The client goes away; both streams change meanwhile; it comes back from its
    // fourth event.
    drop(sales_reader);
    tokio::join!(
        push_each(&server, "sales", &sales, "a", 10, 5),
        push_batches(&server, "stock", &stock, "c", 10),
    );
    let resume_from = seen[3].id.clone().expect("an id");
    let mut resumed =
        event_stream(open_events(&server, "sales", "", Some(&token), Some(&resume_from)).await);
    let again = changes(&mut resumed, 11).await;
    assert_eq!(
        &again[..6],
        &seen[4..],
        "the events after the fourth, as they were"
    );
    let expected: Vec<String> = (10..15).map(|n| format!("a{n}")).collect();
    assert_eq!(
        item_ids(&again[6..]),
        expected,
        "then those made while away"
    );
    assert!(
        again.windows(2).all(|w| w[0].seq() < w[1].seq()),
        "ids grow"
    );
    assert_quiet(&mut resumed).await;
    stock_seen.extend(changes(&mut stock_reader, 100).await);

    // One global sequence: every change has its own id and none is missing.
    let mut ids: Vec<u64> = seen[..4]
        .iter()
        .chain(&again)
        .chain(&stock_seen)
        .map(Event::seq)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=315).collect::<Vec<u64>>());
}
