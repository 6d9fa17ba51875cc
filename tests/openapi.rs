//! `GET /api/openapi.json` through the real binary: an OpenAPI 3.1 description that
//! needs no credential, lists exactly the routes the server counts (its ROUTES table
//! but the web UI's own, so a route added without documentation fails here), each of
//! them routed; and schemathesis (pinned in tests/requirements.txt) fuzzing the server
//! against it — the admin token on every route but the push routes, an ingest key on
//! those — finds no 5xx and no answer outside the description.
//!
//! Without schemathesis the fuzzing tests are skipped with a printed reason, except
//! under `CI=true`, where they fail.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::{create_connector, output_within, push_ok, TestServer};
use datapool::metrics::{ROUTES, WEB_UI_ROUTES};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// How long the schemathesis run may take before the test fails: it is bounded to a
/// few examples per operation, and the test runner ends a test after 5 minutes.
const FUZZ_TIMEOUT: Duration = Duration::from_secs(240);

/// Test cases schemathesis generates per operation and phase: enough to try odd
/// values of every parameter and body member, few enough for a short run.
const MAX_EXAMPLES: &str = "25";

/// Operations not fuzzed, by operation id, because no generated input means anything
/// to them: the event stream never ends (each case would wait for its timeout), and the
/// backup download takes no input and writes a copy of the store per case. (Uploads are
/// fuzzed as raw bodies; their multipart form is the same file in another wrapping.)
const NOT_FUZZED: &str = "^(streamEvents|downloadBackup)$";

/// The description, fetched without a credential.
async fn description(server: &TestServer) -> Value {
    let answer = server
        .call(Method::GET, "/api/openapi.json", None, None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.headers["content-type"], "application/json");
    answer.body
}

#[tokio::test]
async fn describes_every_route_in_openapi_3_1_without_a_credential() {
    let server = TestServer::start().await;
    let document = description(&server).await;
    let version = document["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3.1."), "{version}");
    let paths = document["paths"].as_object().expect("paths");
    let described: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let routed: BTreeSet<&str> = ROUTES
        .into_iter()
        .filter(|route| !WEB_UI_ROUTES.contains(route))
        .collect();
    assert_eq!(
        described, routed,
        "the description and the server's routes differ"
    );
    let schemes = document["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    for scheme in [
        "adminToken",
        "readKey",
        "ingestKey",
        "ingestKeyBasic",
        "readKeyQuery",
    ] {
        assert!(schemes.contains_key(scheme), "no {scheme} scheme");
    }
    let error = &document["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], json!(["error"]), "{error}");

    // Every described operation is one the server routes: none gets the unknown route's
    // 404 or a 405. (The ids are unknown, so most answer a plain 404 NOT_FOUND.)
    let client = server.client();
    for (path, item) in paths {
        let concrete = path
            .replace("{stream}", "sales")
            .replace("{key}", "ik_000000000000_x")
            .replace("{id}", "x1")
            .replace("{delivery}", "d1");
        for method in item.as_object().expect("operations").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let sent = client
                .request(method.clone(), server.url(&concrete))
                .bearer_auth(server.token())
                .send()
                .await
                .expect("request sent");
            assert_ne!(
                sent.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            // Only a 404's body is read: the event stream's never ends.
            if sent.status() == StatusCode::NOT_FOUND {
                let body = sent.text().await.expect("a body");
                assert!(
                    !body.contains("\"no such route\""),
                    "{method} {path} is described but not routed"
                );
            }
        }
    }
}

/// Whether schemathesis runs here (else skipped, or failed under `CI=true`).
fn schemathesis_ready() -> bool {
    common::tool_ready(
        "schemathesis",
        &["--version"],
        "schemathesis is needed to fuzz the API against its description",
        common::PYTHON_REQUIREMENTS,
    )
}

/// A `[[operations]]` entry of a schemathesis configuration: the operations whose ids
/// `operations` (alternatives of a regular expression) names get `parameters`.
fn on(operations: &str, parameters: &str) -> String {
    format!("[[operations]]\ninclude-operation-id-regex = \"^({operations})$\"\nparameters = {{ {parameters} }}\n\n")
}

/// Runs schemathesis against `server` with `token` as bearer on every request, the
/// configuration `config` and the operations `select` picks; fails the test on any
/// finding, printing what schemathesis and the server said.
fn fuzz(server: &TestServer, token: &str, config: &str, select: &[&str]) {
    let dir = server.data_dir();
    let schema = dir.join("openapi.json");
    let config_file = dir.join("schemathesis.toml");
    std::fs::write(&config_file, config).expect("write the schemathesis config");
    let mut command = Command::new("schemathesis");
    command
        .arg("--config-file")
        .arg(&config_file)
        .arg("run")
        .arg(&schema)
        .args(["--url", &server.url("")])
        .arg("--tls-verify")
        .arg(server.cert_file())
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "1",
            // One worker: with several, hypothesis describing its strategies in threads
            // now and then trips CPython 3.11's parser ("AST constructor recursion depth
            // mismatch"), failing the run for no fault of the server.
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--generation-database",
            "none",
            // The credential is sent with every request (-H); cases without one would
            // lock the test client's address out after 20 failed authentications a
            // minute, and every later case would get 429.
            "--generation-with-security-parameters",
            "false",
            "--no-color",
        ])
        .args(select)
        .current_dir(dir);
    let output = output_within(command, "", FUZZ_TIMEOUT);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{printed}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.logs()
    );
    println!("{printed}");
}

/// A server with the description saved in its data dir for schemathesis, or `None`
/// (the test skipped) where schemathesis is missing.
async fn fuzz_target() -> Option<TestServer> {
    if !schemathesis_ready() {
        return None;
    }
    let server = TestServer::start().await;
    let schema = server.data_dir().join("openapi.json");
    std::fs::write(&schema, description(&server).await.to_string()).expect("write the description");
    Some(server)
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_description() {
    let Some(server) = fuzz_target().await else {
        return;
    };
    // One connector, subscription and item the operations on one of them are called on,
    // so their cases reach the handlers' logic instead of all ending in 404 (the
    // deleting operations keep generated ids, so these stay).
    let doc = json!({"name": "Sales", "type": "webhook", "stream": "sales", "itemKey": "region"});
    let (connector, key) = create_connector(&server, &doc).await;
    push_ok(
        &server,
        "sales",
        &key,
        &json!({"region": "north", "amount": 1}),
    )
    .await;
    let subscription = json!({"name": "Reports", "url": "http://127.0.0.1:9/hook", "events": ["item.updated"], "secret": "generate"});
    let created = server
        .admin(
            Method::POST,
            "/api/admin/subscriptions",
            Some(&subscription),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let subscription = created.body["subscription"]["id"].as_str().expect("an id");
    let upload = json!({"name": "Stock", "type": "file", "stream": "stock",
        "settings": {"format": "csv", "source": {"kind": "upload"}}});
    let (upload, _) = create_connector(&server, &upload).await;
    let config = [
        on(
            "uploadConnectorFile|testConnector",
            &format!("\"path.id\" = \"{upload}\""),
        ),
        on(
            "getConnector|updateConnector|enableConnector|disableConnector|rotateConnectorKey|getConnectorLogs",
            &format!("\"path.id\" = \"{connector}\""),
        ),
        on(
            "getSubscription|updateSubscription|activateSubscription|deactivateSubscription|rotateSubscriptionSecret|listSubscriptionDeliveries|resendSubscriptionDelivery",
            &format!("\"path.id\" = \"{subscription}\""),
        ),
        on("listItems", "\"path.stream\" = \"sales\""),
        on("getItem", "\"path.stream\" = \"sales\", \"path.id\" = \"north\""),
    ]
    .concat();
    // The push routes take an ingest key, not the admin token: the next test fuzzes them.
    let select = [
        "--exclude-tag",
        "ingest",
        "--exclude-operation-id-regex",
        NOT_FUZZED,
    ];
    fuzz(&server, &server.token(), &config, &select);
}

#[tokio::test]
async fn schemathesis_finds_nothing_wrong_with_the_push_routes_and_an_ingest_key() {
    let Some(server) = fuzz_target().await else {
        return;
    };
    // A connector that takes its key every way SPEC §3.4 allows.
    let doc = json!({"name": "Sales", "type": "webhook", "stream": "sales",
        "auth": {"basic": true, "keyInUrl": true}});
    let (_, key) = create_connector(&server, &doc).await;
    let config = [
        on(
            "pushWebhook|pushBatch|pushBulk",
            "\"path.stream\" = \"sales\"",
        ),
        on(
            "pushWebhookKeyInUrl|pushBatchKeyInUrl|pushBulkKeyInUrl",
            &format!("\"path.stream\" = \"sales\", \"path.key\" = \"{key}\""),
        ),
    ]
    .concat();
    fuzz(&server, &key, &config, &["--include-tag", "ingest"]);
}
