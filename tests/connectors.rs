//! The connector admin API (SPEC §1.1, §1.2, §2) through the real binary.

mod common;

use common::{create_connector, is_key, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const COLLECTION: &str = "/api/admin/connectors";

/// The §1.1 document for every type, with a secret in each place one can be.
fn documents() -> Vec<Value> {
    vec![
        json!({"name": "Sales", "type": "webhook", "stream": "sales", "itemKey": "region",
               "fieldMapping": {"amt": "sales"}, "upsertMode": "merge", "enabled": true,
               "signing": {"scheme": "inspire", "secret": "signing-secret-0001"},
               "auth": {"basic": false, "keyInUrl": false, "secretHeader": null},
               "successStatus": 202, "dedup": {"header": "webhook-id"}, "sourceHeader": "X-Source",
               "rateLimit": {"perSecond": 100, "burst": 200}, "idempotencyWindowSeconds": 86400}),
        json!({"name": "Agents", "type": "api", "stream": "agents",
               "auth": {"basic": true, "keyInUrl": true, "secretHeader": {"name": "X-Api-Secret", "value": "header-secret-0002"}}}),
        json!({"name": "Orders", "type": "sql", "stream": "orders",
               "settings": {"connectionString": "postgres://app:db-password-0003@127.0.0.1:5432/test",
                            "query": "select * from orders", "pollIntervalSeconds": 60, "timeoutSeconds": 30,
                            "maxRows": 10000, "mirror": true}}),
        json!({"name": "Prices", "type": "file", "stream": "prices",
               "settings": {"format": "csv", "source": {"kind": "url", "url": "https://files.example/p.csv",
                            "auth": {"type": "bearer", "token": "url-token-0004"}}, "pollIntervalSeconds": 300}}),
    ]
}

const SECRETS: [&str; 4] = [
    "signing-secret-0001",
    "header-secret-0002",
    "db-password-0003",
    "url-token-0004",
];

#[tokio::test]
async fn every_type_is_created_with_its_full_document_and_secrets_never_come_back() {
    let mut server = TestServer::start().await;
    let mut ids = Vec::new();
    for doc in documents() {
        let answer = server.admin(Method::POST, COLLECTION, Some(&doc)).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        let connector = &answer.body["connector"];
        assert!(connector["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("c_")));
        assert_eq!(connector["state"], "idle");
        match answer.body["ingestKey"].as_str() {
            Some(key) => {
                assert!(doc["type"] == "webhook" || doc["type"] == "api");
                assert!(is_key(key, "ik"), "{key}");
                assert_eq!(key.split('_').nth(1), connector["keyId"].as_str());
            }
            None => assert!(
                doc["type"] == "sql" || doc["type"] == "file",
                "{}",
                answer.body
            ),
        }
        ids.push(connector["id"].as_str().expect("id").to_owned());
    }

    let list = server.admin(Method::GET, COLLECTION, None).await;
    assert_eq!(list.body["connectors"].as_array().map(Vec::len), Some(4));
    let text = list.body.to_string();
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} is shown: {text}");
    }
    let one = |i: usize| format!("{COLLECTION}/{}", ids[i]);
    let sales = server.admin(Method::GET, &one(0), None).await.body;
    assert_eq!(
        sales["connector"]["signing"],
        json!({"scheme": "inspire", "secretSet": true})
    );
    assert_eq!(
        sales["connector"]["rateLimit"],
        json!({"perSecond": 100.0, "burst": 200})
    );
    assert_eq!(sales["connector"]["fieldMapping"], json!({"amt": "sales"}));
    let agents = server.admin(Method::GET, &one(1), None).await.body;
    assert_eq!(
        agents["connector"]["auth"]["secretHeader"],
        json!({"name": "X-Api-Secret", "valueSet": true})
    );
    let orders = server.admin(Method::GET, &one(2), None).await.body;
    assert_eq!(
        orders["connector"]["settings"]["connectionString"],
        "postgres://app:***@127.0.0.1:5432/test"
    );
    let prices = server.admin(Method::GET, &one(3), None).await.body;
    assert_eq!(
        prices["connector"]["settings"]["source"]["auth"],
        json!({"type": "bearer", "tokenSet": true})
    );

    server.restart().await;
    let after = server.admin(Method::GET, COLLECTION, None).await;
    assert_eq!(
        after.body["connectors"].as_array().map(Vec::len),
        Some(4),
        "stored across restarts"
    );
    for file in walk(server.data_dir()) {
        let bytes = std::fs::read(&file).expect("read");
        for secret in SECRETS {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{secret} is stored in clear in {}", file.display());
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("read dir")
        .map_while(Result::ok)
    {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn invalid_documents_get_400_with_the_reason_and_store_nothing() {
    let server = TestServer::start().await;
    let cases = [
        (
            json!({"name": "A", "type": "webhook", "stream": "Sales Data"}),
            "invalid stream name",
        ),
        (
            json!({"name": "A", "type": "webhook", "stream": "s", "colour": "red"}),
            "colour",
        ),
        (json!({"name": "A", "type": "ftp", "stream": "s"}), "type"),
        (
            json!({"name": "A", "type": "sql", "stream": "s"}),
            "settings",
        ),
        (
            json!({"name": "A", "type": "webhook", "stream": "s", "signing": {"scheme": "hmac", "secret": "k"}}),
            "signing.header",
        ),
        (
            json!({"name": "A", "type": "sql", "stream": "s", "settings": {"connectionString": "oracle://h/d", "query": "q"}}),
            "connectionString",
        ),
        (json!([1, 2]), "object"),
    ];
    for (doc, mention) in cases {
        let answer = server.admin(Method::POST, COLLECTION, Some(&doc)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{doc}");
        assert_eq!(answer.body["error"]["code"], "INVALID_PAYLOAD");
        let message = answer.body["error"]["message"].as_str().expect("message");
        assert!(message.contains(mention), "{doc}: {message}");
    }
    let list = server.admin(Method::GET, COLLECTION, None).await;
    assert_eq!(list.body, json!({"connectors": []}));
}

#[tokio::test]
async fn names_are_unique_without_regard_to_case() {
    let server = TestServer::start().await;
    create_connector(
        &server,
        &json!({"name": "Sales", "type": "webhook", "stream": "sales"}),
    )
    .await;
    let clash = json!({"name": "sales", "type": "api", "stream": "other"});
    let answer = server.admin(Method::POST, COLLECTION, Some(&clash)).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert_eq!(answer.body["error"]["code"], "CONFLICT");
    let (other, _) = create_connector(
        &server,
        &json!({"name": "Other", "type": "api", "stream": "other"}),
    )
    .await;
    let rename = server
        .admin(
            Method::PATCH,
            &format!("{COLLECTION}/{other}"),
            Some(&json!({"name": "SALES"})),
        )
        .await;
    assert_eq!(rename.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn patch_is_a_json_merge_patch_that_keeps_untouched_secrets() {
    let server = TestServer::start().await;
    let (id, _) = create_connector(&server, &documents()[0]).await;
    let path = format!("{COLLECTION}/{id}");

    let patch = json!({"name": "Revenue", "rateLimit": {"burst": 50}, "dedup": null});
    let answer = server.admin(Method::PATCH, &path, Some(&patch)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let connector = &answer.body["connector"];
    assert_eq!(connector["name"], "Revenue");
    assert_eq!(
        connector["rateLimit"],
        json!({"perSecond": 100.0, "burst": 50})
    );
    assert!(connector.get("dedup").is_none());
    assert_eq!(
        connector["signing"]["secretSet"], true,
        "the secret survives a patch that omits it"
    );

    let read = server.admin(Method::GET, &path, None).await.body["connector"].clone();
    let round_trip = server.admin(Method::PATCH, &path, Some(&read)).await;
    assert_eq!(
        round_trip.status,
        StatusCode::OK,
        "a read can be sent back: {}",
        round_trip.body
    );
    assert_eq!(round_trip.body["connector"]["signing"]["secretSet"], true);

    let off = server
        .admin(Method::PATCH, &path, Some(&json!({"signing": null})))
        .await;
    assert!(
        off.body["connector"].get("signing").is_none(),
        "null turns signing off"
    );

    for (bad, code) in [
        (json!({"type": "sql"}), StatusCode::BAD_REQUEST),
        (json!({"stream": "Not Valid"}), StatusCode::BAD_REQUEST),
        (json!({"successStatus": 500}), StatusCode::BAD_REQUEST),
    ] {
        let answer = server.admin(Method::PATCH, &path, Some(&bad)).await;
        assert_eq!(answer.status, code, "{bad}: {}", answer.body);
    }
    let after = server.admin(Method::GET, &path, None).await.body["connector"].clone();
    assert_eq!(after["stream"], "sales", "a refused patch changes nothing");
    assert_eq!(after["type"], "webhook");
}

#[tokio::test]
async fn enable_and_disable_set_the_state() {
    let server = TestServer::start().await;
    let (id, _) = create_connector(
        &server,
        &json!({"name": "A", "type": "webhook", "stream": "a"}),
    )
    .await;
    let disabled = server.connector_action(&id, "disable").await;
    assert_eq!(disabled.status, StatusCode::OK);
    assert_eq!(disabled.body["connector"]["state"], "disabled");
    assert_eq!(disabled.body["connector"]["enabled"], false);
    let enabled = server.connector_action(&id, "enable").await;
    assert_eq!(enabled.body["connector"]["state"], "idle");
    assert_eq!(enabled.body["connector"]["enabled"], true);
}

#[tokio::test]
async fn rotating_the_key_invalidates_the_old_one_at_once() {
    let server = TestServer::start().await;
    let (id, old) = create_connector(
        &server,
        &json!({"name": "A", "type": "webhook", "stream": "a"}),
    )
    .await;
    assert!(
        is_key(&old, "ik"),
        "a webhook connector gets an ingest key: {old}"
    );
    let probe = |key: String| {
        let server = &server;
        async move {
            server
                .call(Method::GET, COLLECTION, Some(&key), None)
                .await
                .status
        }
    };
    assert_eq!(
        probe(old.clone()).await,
        StatusCode::FORBIDDEN,
        "a valid ingest key is not an admin credential"
    );

    let rotated = server
        .admin(Method::POST, &format!("{COLLECTION}/{id}/rotate-key"), None)
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new = rotated.body["ingestKey"]
        .as_str()
        .expect("new key")
        .to_owned();
    assert!(is_key(&new, "ik") && new != old);
    assert_eq!(
        new.split('_').nth(1),
        rotated.body["connector"]["keyId"].as_str()
    );
    assert_eq!(
        probe(old).await,
        StatusCode::UNAUTHORIZED,
        "the old key no longer exists"
    );
    assert_eq!(
        probe(new.clone()).await,
        StatusCode::FORBIDDEN,
        "the new one does"
    );

    let (sql, _) = create_connector(&server, &documents()[2]).await;
    let refused = server
        .admin(
            Method::POST,
            &format!("{COLLECTION}/{sql}/rotate-key"),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);

    let deleted = server
        .admin(Method::DELETE, &format!("{COLLECTION}/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        probe(new).await,
        StatusCode::UNAUTHORIZED,
        "deleting revokes the key"
    );
}

#[tokio::test]
async fn unknown_ids_are_404_everywhere() {
    let server = TestServer::start().await;
    let calls = [
        (Method::GET, ""),
        (Method::PATCH, ""),
        (Method::DELETE, ""),
        (Method::POST, "/enable"),
        (Method::POST, "/disable"),
        (Method::POST, "/rotate-key"),
    ];
    for (method, action) in calls {
        let body = (method == Method::PATCH).then(|| json!({"name": "x"}));
        let answer = server
            .admin(
                method.clone(),
                &format!("{COLLECTION}/c_missing{action}"),
                body.as_ref(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {action}");
        assert_eq!(answer.body["error"]["code"], "NOT_FOUND");
    }
    let (id, _) = create_connector(
        &server,
        &json!({"name": "A", "type": "webhook", "stream": "a"}),
    )
    .await;
    server
        .admin(Method::DELETE, &format!("{COLLECTION}/{id}"), None)
        .await;
    let gone = server
        .admin(Method::GET, &format!("{COLLECTION}/{id}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}
