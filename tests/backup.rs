//! Backups: taken from a running server while pushes go on, restored offline into a
//! new data dir, and a server started there holds every item acknowledged before the
//! backup and answers to the old credentials. A truncated or corrupt file is refused
//! without touching the target.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::{create_connector, issue_read_key, run, send, webhook, Options, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Concurrent pushers of distinct items while the backup runs.
const PUSHERS: usize = 4;
/// Items acknowledged before the backup starts, at least.
const ACKED_BEFORE: usize = 40;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A push acknowledged with 202: the item's id and fields, and when the 202 arrived.
struct Acked {
    id: String,
    fields: Value,
    at: Instant,
}

/// The client arguments that reach `server` with its admin token and certificate.
fn client_args(server: &TestServer) -> Vec<String> {
    vec![
        "--url".into(),
        format!("https://{}", server.https),
        "--ca-cert".into(),
        server.cert_file().display().to_string(),
        "--data-dir".into(),
        server.data_dir().display().to_string(),
    ]
}

/// Runs `datapool backup --out <out>` against `server` on a blocking thread, so the
/// test's pushers keep running meanwhile.
async fn take_backup(server: &TestServer, out: &Path) -> Output {
    let mut args = client_args(server);
    args.extend(["backup".into(), "--out".into(), out.display().to_string()]);
    tokio::task::spawn_blocking(move || {
        run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    })
    .await
    .expect("backup command")
}

fn restore(file: &Path, dir: &Path, extra: &[&str]) -> Output {
    let (file, dir) = (file.to_str().expect("utf-8"), dir.to_str().expect("utf-8"));
    run(
        &[&["restore", file, "--data-dir", dir], extra].concat(),
        &[],
    )
}

/// Every item of `stream` on `server`, read with `key`, by id.
async fn all_items(server: &TestServer, key: &str, stream: &str) -> HashMap<String, Value> {
    let mut items = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/streams/{stream}/items?limit=1000");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = server.call(Method::GET, &path, Some(key), None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for item in page.body["items"].as_array().expect("items") {
            let id = item["id"].as_str().expect("id").to_owned();
            items.insert(id, item["fields"].clone());
        }
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_pushing_restores_every_acknowledged_item_and_credential() {
    // Every store transaction of the applier takes half a second longer: when the
    // backup starts, writes acknowledged well before are still waiting to be applied.
    let server = Arc::new(
        TestServer::start_with(Options {
            env: vec![("FAILPOINTS".into(), "applier::apply=sleep(500)".into())],
            ..Default::default()
        })
        .await,
    );
    // The pushers send as fast as commits allow: the rate limit is raised past them.
    let doc = json!({"name": "Sales", "type": "webhook", "stream": "sales", "itemKey": "id",
                     "rateLimit": {"perSecond": 1_000_000, "burst": 1_000_000}});
    let (connector_id, ingest_key) = create_connector(&server, &doc).await;
    let (_, read_key) = issue_read_key(&server, &json!({"name": "wall"})).await;

    // Pushers of distinct items, and one that keeps updating the same item: its value
    // after the restore must be at least the last one acknowledged before the backup.
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut pushers = Vec::new();
    for pusher in 0..=PUSHERS {
        let (server, key, acked, stop) = (
            server.clone(),
            ingest_key.clone(),
            acked.clone(),
            stop.clone(),
        );
        pushers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = if pusher == PUSHERS {
                    "counter".to_owned()
                } else {
                    format!("p{pusher}-{n}")
                };
                let fields = json!({"id": id, "n": n, "nested": {"pusher": pusher}});
                let answer = send(webhook(&server, "sales", &key).json(&fields)).await;
                assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
                let flat = json!({"id": id, "n": n, "nested.pusher": pusher});
                let at = Instant::now();
                acked.lock().expect("acked").push(Acked {
                    id,
                    fields: flat,
                    at,
                });
                n += 1;
            }
        }));
    }
    common::eventually(
        std::time::Duration::from_secs(60),
        "pushes acknowledged",
        async || (acked.lock().expect("acked").len() >= ACKED_BEFORE).then_some(()),
    )
    .await;

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("datapool.backup");
    let started = Instant::now();
    let backup = take_backup(&server, &file).await;
    let finished = Instant::now();
    assert!(backup.status.success(), "{}", stderr(&backup));
    stop.store(true, Ordering::Relaxed);
    for pusher in pushers {
        pusher.await.expect("pusher");
    }
    let acked = std::mem::take(&mut *acked.lock().expect("acked"));
    let before: Vec<&Acked> = acked.iter().filter(|a| a.at < started).collect();
    let during = acked
        .iter()
        .filter(|a| a.at >= started && a.at <= finished)
        .count();
    assert!(before.len() >= ACKED_BEFORE);
    assert!(during > 0, "pushes were acknowledged while the backup ran");
    let mode = std::fs::metadata(&file).expect("backup file").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600,
        "the backup holds every credential"
    );

    let restored_dir = dir.path().join("restored");
    let restored = restore(&file, &restored_dir, &[]);
    assert!(restored.status.success(), "{}", stderr(&restored));
    let copy = TestServer::start_with(Options {
        data_dir: Some(restored_dir.clone()),
        ..Default::default()
    })
    .await;

    let items = all_items(&copy, &read_key, "sales").await;
    let mut last_counter = None;
    for pushed in &before {
        if pushed.id == "counter" {
            last_counter = Some(pushed.fields["n"].clone());
            continue;
        }
        assert_eq!(
            items.get(&pushed.id),
            Some(&pushed.fields),
            "{} was acknowledged before the backup",
            pushed.id
        );
    }
    let last_counter = last_counter
        .and_then(|n| n.as_u64())
        .expect("the counter was pushed before the backup");
    let restored_counter = items["counter"]["n"].as_u64().expect("counter");
    assert!(
        restored_counter >= last_counter,
        "the counter's writes were applied in order: {restored_counter} < {last_counter}"
    );

    assert_eq!(copy.token(), server.token(), "the admin token file travels");
    let connectors = copy
        .call(
            Method::GET,
            "/api/admin/connectors",
            Some(&server.token()),
            None,
        )
        .await;
    assert_eq!(
        connectors.status,
        StatusCode::OK,
        "the old admin token works"
    );
    assert_eq!(
        connectors.body["connectors"][0]["id"],
        connector_id.as_str()
    );
    let pushed = send(webhook(&copy, "sales", &ingest_key).json(&json!({"id": "after"}))).await;
    assert_eq!(
        pushed.status,
        StatusCode::ACCEPTED,
        "the old ingest key works"
    );
    assert_eq!(
        std::fs::read(copy.cert_file()).expect("cert"),
        std::fs::read(server.cert_file()).expect("cert"),
        "clients keep trusting the same certificate"
    );
}

/// A server holding one item, and a backup of it in `dir`.
async fn server_and_backup(dir: &Path) -> (TestServer, PathBuf) {
    let server = TestServer::start().await;
    let doc = json!({"name": "Sales", "type": "webhook", "stream": "sales", "itemKey": "id"});
    let (_, key) = create_connector(&server, &doc).await;
    let pushed = send(webhook(&server, "sales", &key).json(&json!({"id": "one"}))).await;
    assert_eq!(pushed.status, StatusCode::ACCEPTED);
    let file = dir.join("datapool.backup");
    let backup = take_backup(&server, &file).await;
    assert!(backup.status.success(), "{}", stderr(&backup));
    (server, file)
}

/// The names and contents of every file under `dir`.
fn snapshot_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(next) = todo.pop() {
        for entry in std::fs::read_dir(&next).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let contents = std::fs::read(&path).expect("read");
                files.push((path, contents));
            }
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn a_truncated_or_corrupt_backup_is_refused_and_the_data_dir_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut server, file) = server_and_backup(dir.path()).await;
    let bytes = std::fs::read(&file).expect("backup");

    let truncated = dir.path().join("truncated.backup");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x01;
    let corrupt = dir.path().join("corrupt.backup");
    std::fs::write(&corrupt, &flipped).expect("write");

    for (bad, says) in [(&truncated, "truncated"), (&corrupt, "corrupt")] {
        let target = dir.path().join("never");
        let refused = restore(bad, &target, &[]);
        assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
        assert!(stderr(&refused).contains(says), "{}", stderr(&refused));
        assert!(!target.exists(), "a refused restore creates nothing");
    }

    let in_use = restore(&file, server.data_dir(), &["--force"]);
    assert_eq!(in_use.status.code(), Some(4), "{}", stderr(&in_use));
    assert!(stderr(&in_use).contains("in use"), "{}", stderr(&in_use));

    assert!(server.stop("TERM").await.success());
    let data_dir = server.data_dir().to_owned();
    let before = snapshot_of(&data_dir);
    let not_empty = restore(&file, &data_dir, &[]);
    assert_eq!(not_empty.status.code(), Some(4), "{}", stderr(&not_empty));
    assert!(
        stderr(&not_empty).contains("--force"),
        "{}",
        stderr(&not_empty)
    );
    let forced_bad = restore(&truncated, &data_dir, &["--force"]);
    assert_eq!(forced_bad.status.code(), Some(1), "{}", stderr(&forced_bad));
    assert_eq!(snapshot_of(&data_dir), before, "the data dir is untouched");

    let elsewhere = tempfile::tempdir().expect("temp dir");
    std::fs::write(elsewhere.path().join("notes.txt"), "mine").expect("write");
    let foreign = restore(&file, elsewhere.path(), &["--force"]);
    assert_eq!(foreign.status.code(), Some(4), "{}", stderr(&foreign));
    assert!(elsewhere.path().join("notes.txt").exists());
}

#[tokio::test]
async fn a_forced_restore_replaces_a_stopped_servers_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut server, file) = server_and_backup(dir.path()).await;
    let token = server.token();
    let (_, read_key) = issue_read_key(&server, &json!({"name": "wall"})).await;
    for (key, status) in [
        (Some(read_key.as_str()), StatusCode::FORBIDDEN),
        (None, StatusCode::UNAUTHORIZED),
    ] {
        let refused = server
            .call(Method::GET, "/api/admin/backup", key, None)
            .await;
        assert_eq!(
            refused.status, status,
            "only the admin token may take a backup"
        );
    }
    let deleted = server
        .admin(Method::DELETE, "/api/streams/sales/items/one", None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(server.stop("TERM").await.success());

    let forced = restore(&file, server.data_dir(), &["--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let copy = TestServer::start_with(Options {
        data_dir: Some(server.data_dir().to_owned()),
        ..Default::default()
    })
    .await;
    let item = copy
        .call(
            Method::GET,
            "/api/streams/sales/items/one",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        item.status,
        StatusCode::OK,
        "the item deleted after the backup is back"
    );
}
