//! The command line: connector and stream commands against a running server, exit
//! statuses and errors, and check-config's view of the layered configuration.

mod common;

use std::process::Output;

use common::{create_connector, run, send, webhook, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json_of(output: &Output) -> Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", stdout(output)))
}

#[tokio::test]
async fn connector_commands_drive_the_admin_api() {
    let server = TestServer::start().await;

    let created = server.cli(
        &[
            "connector",
            "create",
            "--name",
            "Sales",
            "--type",
            "webhook",
            "--stream",
            "sales",
            "--item-key",
            "region",
        ],
        None,
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let text = stdout(&created);
    assert!(text.contains("ingest key (shown only now"), "{text}");
    let key = text
        .split_whitespace()
        .find(|w| w.starts_with("ik_"))
        .expect("key printed")
        .to_owned();

    let listed = server.cli(&["connector", "list"], None);
    let table = stdout(&listed);
    let mut lines = table.lines();
    let header = lines.next().expect("header");
    assert!(
        header.starts_with("ID") && header.contains("STREAM") && header.contains("KEY ID"),
        "{table}"
    );
    let row = lines.next().expect("one row");
    assert!(
        row.contains("Sales") && row.contains("webhook") && row.contains("idle"),
        "{row}"
    );
    assert!(
        row.contains(key.split('_').nth(1).expect("key id")),
        "{row}"
    );

    let listed = json_of(&server.cli(&["connector", "list", "--json"], None));
    let id = listed["connectors"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(listed["connectors"][0]["itemKey"], "region");

    let shown = json_of(&server.cli(&["--json", "connector", "show", &id], None));
    assert_eq!(shown["connector"]["name"], "Sales");

    let patch = r#"{"name": "Revenue", "signing": {"scheme": "inspire", "secret": "from-stdin"}}"#;
    let updated = json_of(&server.cli(
        &["connector", "update", &id, "--file", "-", "--json"],
        Some(patch),
    ));
    assert_eq!(updated["connector"]["name"], "Revenue");
    assert_eq!(updated["connector"]["signing"]["secretSet"], true);

    let disabled = json_of(&server.cli(&["connector", "disable", &id, "--json"], None));
    assert_eq!(disabled["connector"]["state"], "disabled");
    let enabled = json_of(&server.cli(&["connector", "enable", &id, "--json"], None));
    assert_eq!(enabled["connector"]["state"], "idle");

    let rotated = json_of(&server.cli(&["connector", "rotate-key", &id, "--json"], None));
    let new_key = rotated["ingestKey"].as_str().expect("new key");
    assert!(new_key.starts_with("ik_") && new_key != key);

    let deleted = server.cli(&["connector", "delete", &id], None);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let missing = server.cli(&["connector", "show", &id], None);
    assert_eq!(missing.status.code(), Some(3), "not found");
    assert!(
        stderr(&missing).contains("404 NOT_FOUND"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test]
async fn a_connector_document_can_come_from_a_file() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let doc = dir.path().join("orders.json");
    std::fs::write(
        &doc,
        r#"{"name": "Orders", "type": "sql", "stream": "orders",
            "settings": {"connectionString": "mysql://root:pw-in-file@127.0.0.1:3306/test", "query": "select 1"}}"#,
    )
    .expect("write");
    let created = json_of(&server.cli(
        &[
            "connector",
            "create",
            "--file",
            doc.to_str().expect("utf-8"),
            "--json",
        ],
        None,
    ));
    assert_eq!(
        created["connector"]["settings"]["connectionString"],
        "mysql://root:***@127.0.0.1:3306/test"
    );
    assert!(created.get("ingestKey").is_none());

    let refused = server.cli(
        &[
            "connector",
            "create",
            "--name",
            "X",
            "--type",
            "webhook",
            "--stream",
            "Bad Stream",
        ],
        None,
    );
    assert_eq!(refused.status.code(), Some(4), "refused");
    assert!(
        stderr(&refused).contains("INVALID_PAYLOAD"),
        "{}",
        stderr(&refused)
    );
}

#[tokio::test]
async fn client_commands_explain_a_missing_token_and_a_wrong_one() {
    let server = TestServer::start().await;
    let empty = tempfile::tempdir().expect("temp dir");
    let output = run(
        &[
            "connector",
            "list",
            "--data-dir",
            empty.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "a usage error");
    assert!(
        stderr(&output).contains("no admin token"),
        "{}",
        stderr(&output)
    );

    let wrong = server.cli(
        &[
            "connector",
            "list",
            "--token",
            "at_000000000000_0000000000000000000000000000000000000000",
        ],
        None,
    );
    assert_eq!(wrong.status.code(), Some(4), "refused");
    assert!(
        stderr(&wrong).contains("401 UNAUTHORIZED"),
        "{}",
        stderr(&wrong)
    );
}

fn check_config(args: &[&str], env: &[(&str, &str)]) -> Output {
    run(&[&["check-config"], args].concat(), env)
}

#[test]
fn check_config_shows_defaults_then_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("datapool.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:9001\"\nshutdown_timeout_seconds = 20\ndata_dir = \"/srv/from-file\"\n").expect("write");
    let file = file.to_str().expect("utf-8");

    let defaults = json_of(&check_config(&["--json", "--config", "/dev/null"], &[]));
    assert_eq!(defaults["listen"], "0.0.0.0:8443");
    assert_eq!(defaults["data_dir"], "./datapool-data");
    assert_eq!(defaults["shutdown_timeout_seconds"], 10);

    let from_file = json_of(&check_config(&["--json", "--config", file], &[]));
    assert_eq!(from_file["listen"], "127.0.0.1:9001");
    assert_eq!(from_file["shutdown_timeout_seconds"], 20);
    assert_eq!(from_file["data_dir"], "/srv/from-file");

    let env = [
        ("DATAPOOL_LISTEN", "127.0.0.1:9002"),
        ("DATAPOOL_DATA_DIR", "/srv/from-env"),
        ("DATAPOOL_URL", "ignored"),
    ];
    let from_env = json_of(&check_config(&["--json", "--config", file], &env));
    assert_eq!(from_env["listen"], "127.0.0.1:9002");
    assert_eq!(from_env["data_dir"], "/srv/from-env");
    assert_eq!(
        from_env["shutdown_timeout_seconds"], 20,
        "the file still fills what env leaves unset"
    );

    let from_flags = json_of(&check_config(
        &["--json", "--config", file, "--listen", "127.0.0.1:9003"],
        &env,
    ));
    assert_eq!(from_flags["listen"], "127.0.0.1:9003");

    let text = check_config(&["--config", file], &[]);
    assert!(
        stdout(&text).contains("listen = \"127.0.0.1:9001\""),
        "{}",
        stdout(&text)
    );
}

#[test]
fn check_config_refuses_what_would_fail_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "lisen = \"127.0.0.1:9001\"\n").expect("write");
    let cases = [
        (vec!["--config", file.to_str().expect("utf-8")], "lisen"),
        (
            vec!["--config", "/nonexistent/datapool.toml"],
            "cannot read the config file",
        ),
        (
            vec![
                "--config",
                "/dev/null",
                "--tls-cert",
                "/nonexistent/c.pem",
                "--tls-key",
                "/nonexistent/k.pem",
            ],
            "does not exist",
        ),
        (
            vec!["--config", "/dev/null", "--shutdown-timeout-seconds", "0"],
            "shutdown_timeout_seconds",
        ),
    ];
    for (args, mention) in cases {
        let output = check_config(&args, &[]);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr(&output).contains(mention),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[tokio::test]
async fn reset_admin_token_replaces_a_stopped_servers_token() {
    let mut server = TestServer::start().await;
    let old = server.token();
    let data_dir = server.data_dir().to_str().expect("utf-8").to_owned();
    let reset = |dir: &str| run(&["reset-admin-token", "--data-dir", dir], &[]);

    let refused = reset(&data_dir);
    assert!(
        !refused.status.success(),
        "a running server's data dir is locked"
    );
    assert!(
        stderr(&refused).contains("in use by another datapool process"),
        "{}",
        stderr(&refused)
    );

    assert!(server.stop("TERM").await.success());
    let done = reset(&data_dir);
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(stdout(&done).contains("admin-token"));
    let new = std::fs::read_to_string(server.data_dir().join("admin-token"))
        .expect("token")
        .trim()
        .to_owned();
    assert_ne!(new, old);

    let server = TestServer::start_with(common::Options {
        data_dir: Some(data_dir.into()),
        ..Default::default()
    })
    .await;
    let path = "/api/admin/connectors";
    assert_eq!(
        server
            .call(reqwest::Method::GET, path, Some(&old), None)
            .await
            .status,
        reqwest::StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server
            .call(reqwest::Method::GET, path, Some(&new), None)
            .await
            .status,
        reqwest::StatusCode::OK
    );
}

/// The harness ends a command that hangs and fails the test with what it printed, so a
/// CLI that never returns fails in a minute instead of holding the run.
#[test]
#[should_panic(expected = "did not finish within")]
fn a_command_that_hangs_fails_its_test() {
    let mut command = std::process::Command::new("sh");
    command.args(["-c", "echo started; sleep 30"]);
    common::output_within(command, "", std::time::Duration::from_millis(300));
}

/// Item ids with every character a URL treats specially, and more.
const AWKWARD_IDS: [&str; 3] = ["a/b?c#d%e f", "ünï+cødé", "plain"];

/// A server with a webhook connector on `sales` holding one item per [`AWKWARD_IDS`],
/// `{"id": id, "n": index}`.
async fn server_with_awkward_items() -> TestServer {
    let server = TestServer::start().await;
    let doc = json!({"name": "Sales", "type": "webhook", "stream": "sales", "itemKey": "id"});
    let (_, key) = create_connector(&server, &doc).await;
    let items: Vec<Value> = AWKWARD_IDS
        .iter()
        .enumerate()
        .map(|(n, id)| json!({"id": id, "n": n}))
        .collect();
    let pushed = send(webhook(&server, "sales", &key).json(&items)).await;
    assert_eq!(pushed.status, StatusCode::ACCEPTED, "{}", pushed.body);
    common::eventually(common::EVENTUALLY, "the items to be applied", async || {
        let listed = server.cli(&["stream", "list", "--json"], None);
        let streams = json_of(&listed);
        (streams["streams"][0]["itemCount"] == 3).then_some(())
    })
    .await;
    server
}

#[tokio::test]
async fn stream_commands_read_and_delete_items_whatever_their_ids() {
    let server = server_with_awkward_items().await;

    let table = stdout(&server.cli(&["stream", "list"], None));
    let row = table.lines().nth(1).expect("a row");
    assert!(row.starts_with("sales") && row.contains(" 3 "), "{table}");

    let all = json_of(&server.cli(
        &[
            "stream", "items", "sales", "--all", "--limit", "1", "--json",
        ],
        None,
    ));
    let mut ids: Vec<&str> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|item| item["id"].as_str())
        .collect();
    ids.sort_unstable();
    let mut expected = AWKWARD_IDS.to_vec();
    expected.sort_unstable();
    assert_eq!(ids, expected, "--all follows the cursors page by page");
    assert_eq!(all["nextCursor"], Value::Null);

    let page = json_of(&server.cli(
        &["stream", "items", "sales", "--limit", "2", "--json"],
        None,
    ));
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    let cursor = page["nextCursor"].as_str().expect("a next page");
    let rest = json_of(&server.cli(
        &["stream", "items", "sales", "--cursor", cursor, "--json"],
        None,
    ));
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(1));

    for (n, id) in AWKWARD_IDS.iter().enumerate() {
        let item = json_of(&server.cli(&["stream", "get", "sales", id], None));
        assert_eq!(item["id"], *id);
        assert_eq!(item["fields"], json!({"id": id, "n": n}), "{id}");
    }

    let deleted = server.cli(&["stream", "delete", "sales", AWKWARD_IDS[0]], None);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let gone = server.cli(&["--json", "stream", "get", "sales", AWKWARD_IDS[0]], None);
    assert_eq!(gone.status.code(), Some(3), "{}", stderr(&gone));
    let error: Value = serde_json::from_slice(&gone.stderr).expect("a JSON error on stderr");
    assert_eq!(error["error"]["code"], "NOT_FOUND");
    assert_eq!(error["error"]["status"], 404);
    assert!(gone.stdout.is_empty(), "{}", stdout(&gone));
    let left = json_of(&server.cli(&["stream", "items", "sales", "--json"], None));
    assert_eq!(left["items"].as_array().map(Vec::len), Some(2));
}

/// The JSON error a command printed on stderr.
fn json_error(output: &Output) -> Value {
    serde_json::from_slice(&output.stderr)
        .unwrap_or_else(|_| panic!("stderr is not JSON: {}", stderr(output)))
}

#[tokio::test]
async fn exit_statuses_tell_usage_not_found_refused_and_failure_apart() {
    let server = TestServer::start().await;

    let usage = server.cli(&["connector", "list", "--no-such-flag"], None);
    assert_eq!(usage.status.code(), Some(2), "{}", stderr(&usage));
    let usage = server.cli(&["--json", "connector", "list", "--no-such-flag"], None);
    assert_eq!(usage.status.code(), Some(2));
    assert_eq!(json_error(&usage)["error"]["code"], "USAGE");
    let not_json = server.cli(
        &["--json", "connector", "update", "c_x", "--file", "-"],
        Some("{not json"),
    );
    assert_eq!(not_json.status.code(), Some(2), "{}", stderr(&not_json));
    assert_eq!(json_error(&not_json)["error"]["code"], "USAGE");

    let missing = server.cli(&["--json", "connector", "show", "c_missing"], None);
    assert_eq!(missing.status.code(), Some(3));
    assert_eq!(json_error(&missing)["error"]["code"], "NOT_FOUND");

    let bad_token = "at_000000000000_0000000000000000000000000000000000000000";
    let unauthorized = server.cli(&["--json", "stream", "list", "--token", bad_token], None);
    assert_eq!(unauthorized.status.code(), Some(4));
    let error = json_error(&unauthorized);
    assert_eq!(error["error"]["code"], "UNAUTHORIZED");
    assert!(error["error"]["requestId"].as_str().is_some(), "{error}");
    let invalid = server.cli(
        &[
            "--json",
            "connector",
            "create",
            "--name",
            "X",
            "--type",
            "nope",
            "--stream",
            "s",
        ],
        None,
    );
    assert_eq!(invalid.status.code(), Some(4));
    assert_eq!(json_error(&invalid)["error"]["code"], "INVALID_PAYLOAD");

    let unreachable = run(
        &[
            "--json",
            "--url",
            "https://127.0.0.1:1",
            "--token",
            bad_token,
            "stream",
            "list",
        ],
        &[],
    );
    assert_eq!(
        unreachable.status.code(),
        Some(1),
        "{}",
        stderr(&unreachable)
    );
    let error = json_error(&unreachable);
    assert_eq!(error["error"]["code"], "UNREACHABLE");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot reach")),
        "{error}"
    );

    let help = run(&["--help"], &[]);
    assert!(help.status.success());
    let text = stdout(&help);
    for line in [
        "Exit status:",
        "2  usage",
        "3  not found",
        "4  refused",
        "1  failure",
    ] {
        assert!(text.contains(line), "--help lacks {line:?}:\n{text}");
    }
}

#[tokio::test]
async fn a_token_file_keeps_the_token_off_the_command_line() {
    let server = TestServer::start().await;
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let token_file = elsewhere.path().join("token");
    std::fs::write(&token_file, format!("{}\n", server.token())).expect("write");
    let url = format!("https://{}", server.https);
    let cert = server.cert_file();
    let client_args = |token_file: &str| {
        vec![
            "--url".to_owned(),
            url.clone(),
            "--ca-cert".to_owned(),
            cert.to_str().expect("utf-8").to_owned(),
            "--data-dir".to_owned(),
            elsewhere.path().to_str().expect("utf-8").to_owned(),
            "--token-file".to_owned(),
            token_file.to_owned(),
            "connector".to_owned(),
            "list".to_owned(),
        ]
    };
    let args = client_args(token_file.to_str().expect("utf-8"));
    let listed = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(listed.status.success(), "{}", stderr(&listed));

    let args = client_args("/nonexistent/token");
    let missing = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("--token-file"),
        "{}",
        stderr(&missing)
    );
}
