//! Durability through crashes, through the real binary killed with SIGKILL: admin
//! changes answered before a crash are there after the restart.

mod common;

use common::{assert_error, create_connector, push, TestServer};
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
    let created = server
        .admin(
            Method::POST,
            "/api/admin/read-keys",
            Some(&json!({"name": "Lobby"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let key = created.body["key"].as_str().expect("key").to_owned();
    let id = created.body["readKey"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
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
