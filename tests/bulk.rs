//! `POST /api/webhook/{stream}/bulk` (SPEC §3.3) through the real binary: NDJSON and
//! wrapped arrays, per-item errors by index, the 64 MiB limit, a body cut off
//! mid-stream, and the server's memory during a 64 MiB import.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{all_items, assert_error, create_connector, send, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;

/// A webhook connector for `stream` with `itemKey: "id"`; its ingest key.
async fn connector(server: &TestServer, stream: &str) -> String {
    let doc = json!({"name": stream, "type": "webhook", "stream": stream, "itemKey": "id"});
    create_connector(server, &doc).await.1
}

fn bulk(server: &TestServer, stream: &str, key: &str) -> reqwest::RequestBuilder {
    server
        .patient_client()
        .post(server.url(&format!("/api/webhook/{stream}/bulk")))
        .bearer_auth(key)
}

fn ndjson(
    server: &TestServer,
    stream: &str,
    key: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    bulk(server, stream, key)
        .header("content-type", "application/x-ndjson")
        .body(body)
}

/// Waits until `stream` holds `count` items; returns them. The 202 of an import that
/// fits in one chunk can come before that chunk is applied, when the stream may not
/// exist yet.
async fn items_settle(server: &TestServer, stream: &str, count: usize) -> Vec<Value> {
    let token = server.token();
    let first_page = format!("/api/streams/{stream}/items?limit=1");
    common::eventually(
        Duration::from_secs(30),
        &format!("{count} items in {stream}"),
        async || {
            let page = server
                .call(Method::GET, &first_page, Some(&token), None)
                .await;
            if page.status == StatusCode::NOT_FOUND {
                return None;
            }
            let items = all_items(server, stream, &token).await;
            (items.len() == count).then_some(items)
        },
    )
    .await
}

#[tokio::test]
async fn ndjson_stores_valid_lines_and_reports_bad_ones_by_index() {
    let server = TestServer::start().await;
    let key = connector(&server, "history").await;
    let body = concat!(
        "{\"id\":\"a\",\"n\":1}\n",
        "\n",
        "{\"id\":\"b\",\"n\":\n",
        "   \n",
        "[1,2]\n",
        "{\"n\":3}\n",
        "{\"id\":\"c\",\"n\":{\"deep\":true}}\r\n",
        "{\"id\":\"d\",\"n\":4}",
    );
    let answer = send(ndjson(&server, "history", &key, body)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    assert_eq!(answer.body["itemsReceived"], 3, "{}", answer.body);
    assert_eq!(answer.body["itemsRejected"], 3, "{}", answer.body);
    let errors = answer.body["errors"].as_array().expect("errors");
    let indexes: Vec<u64> = errors.iter().filter_map(|e| e["index"].as_u64()).collect();
    assert_eq!(indexes, vec![1, 2, 3], "{}", answer.body);
    assert!(
        errors.iter().all(|e| e["code"] == "INVALID_PAYLOAD"),
        "{}",
        answer.body
    );
    assert!(errors[2]["message"]
        .as_str()
        .unwrap_or("")
        .contains("\"id\""));
    let items = items_settle(&server, "history", 3).await;
    let ids: Vec<&str> = items.iter().filter_map(|i| i["id"].as_str()).collect();
    assert_eq!(ids, vec!["a", "c", "d"]);
    assert_eq!(items[1]["fields"]["n.deep"], true);
}

#[tokio::test]
async fn an_item_that_flattens_past_the_journal_limit_is_refused_alone() {
    let server = TestServer::start().await;
    let key = connector(&server, "wide").await;
    // Under 1 MiB of text, but every one of its 100 fields is named after the 700 KB
    // key above it: 70 MB once flattened.
    let long_key = "k".repeat(700 * 1024);
    let children: serde_json::Map<String, Value> =
        (0..100).map(|n| (format!("f{n}"), json!(n))).collect();
    let wide = json!({"id": "wide", long_key: children});
    let body = format!(
        "{}\n{wide}\n{}\n",
        json!({"id": "a", "n": 1}),
        json!({"id": "b", "n": 2})
    );
    let answer = send(ndjson(&server, "wide", &key, body)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    assert_eq!(answer.body["itemsReceived"], 2, "{}", answer.body);
    assert_eq!(answer.body["itemsRejected"], 1, "{}", answer.body);
    assert_eq!(answer.body["errors"][0]["index"], 1, "{}", answer.body);
    assert_eq!(answer.body["errors"][0]["code"], "PAYLOAD_TOO_LARGE");
    let items = items_settle(&server, "wide", 2).await;
    let ids: Vec<&str> = items.iter().filter_map(|i| i["id"].as_str()).collect();
    assert_eq!(ids, vec!["a", "b"]);
}

#[tokio::test]
async fn a_repeated_idempotency_key_replays_the_first_import() {
    let server = TestServer::start().await;
    let key = connector(&server, "replays").await;
    let import = |body: &'static str| {
        ndjson(&server, "replays", &key, body).header("Idempotency-Key", "import-1")
    };
    let first = send(import("{\"id\":\"a\",\"n\":1}\n{\"id\":\"b\",\"n\":1}\n")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    let repeat = send(import("{\"id\":\"a\",\"n\":2}\n")).await;
    assert_eq!(repeat.status, StatusCode::ACCEPTED, "{}", repeat.body);
    assert_eq!(repeat.headers["idempotent-replayed"], "true");
    assert_eq!(repeat.body, first.body);
    let items = items_settle(&server, "replays", 2).await;
    assert_eq!(items[0]["fields"]["n"], 1, "the repeat was not imported");
}

#[tokio::test]
async fn json_bodies_wrap_items_or_signals_and_framing_errors_are_400() {
    let server = TestServer::start().await;
    let key = connector(&server, "imports").await;
    let wrapped =
        json!({"source": "crm", "items": [{"id": "x", "v": 1}, "scalar", {"id": "y", "v": 2}]});
    let answer = send(bulk(&server, "imports", &key).json(&wrapped)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    assert_eq!(answer.body["itemsReceived"], 2);
    assert_eq!(answer.body["errors"][0]["index"], 1);
    items_settle(&server, "imports", 2).await;

    for (body, says) in [
        (r#"{"items": {"id": "z"}}"#, "must be arrays"),
        (r#"{"rows": [{"id": "z"}]}"#, "no \"items\""),
        (
            r#"{"items": [{"id": "z"} {"id": "w"}]}"#,
            "where , or ] was expected",
        ),
    ] {
        let request = bulk(&server, "imports", &key)
            .header("content-type", "application/json")
            .body(body);
        let message = assert_error(
            &send(request).await,
            StatusCode::BAD_REQUEST,
            "INVALID_PAYLOAD",
        );
        assert!(message.contains(says), "{body}: {message}");
    }
    let text = bulk(&server, "imports", &key)
        .header("content-type", "text/csv")
        .body("id\nz\n");
    assert_error(
        &send(text).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    assert_eq!(
        all_items(&server, "imports", &server.token()).await.len(),
        2
    );
}

#[tokio::test]
async fn a_declared_length_over_64_mib_is_refused_before_the_body_is_read() {
    let server = TestServer::start().await;
    let key = connector(&server, "big").await;
    let prefix =
        futures_util::stream::iter([Ok::<_, std::io::Error>(b"{\"id\":\"a\"}\n".to_vec())]);
    let endless = futures_util::StreamExt::chain(prefix, futures_util::stream::pending());
    let request = ndjson(&server, "big", &key, reqwest::Body::wrap_stream(endless))
        .header("content-length", (64 * MIB + 1).to_string())
        .send();
    let response = tokio::time::timeout(Duration::from_secs(15), request)
        .await
        .expect("answered without the body")
        .expect("an answer");
    let answer = common::answer(response).await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
}

/// NDJSON lines `from..to`, each `{"id":"i<n>",…}` padded to about `width` bytes; every
/// `bad_every`-th line (if any) is not JSON.
fn lines(from: usize, to: usize, width: usize, bad_every: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity((to - from) * (width + 1));
    for n in from..to {
        if bad_every.is_some_and(|every| n % every == every - 1) {
            out.extend_from_slice(b"{not json}\n");
            continue;
        }
        let head = format!("{{\"id\":\"i{n}\",\"n\":{n},\"pad\":\"");
        out.extend_from_slice(head.as_bytes());
        out.resize(out.len() + width.saturating_sub(head.len() + 3), b'p');
        out.extend_from_slice(b"\"}\n");
    }
    out
}

#[tokio::test]
async fn a_body_cut_off_keeps_the_chunks_already_durable_and_gets_no_202() {
    let server = TestServer::start().await;
    let key = connector(&server, "cut").await;
    let body = lines(0, 2600, 100, None);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
    // The link drops a moment after the last bytes, once the server has read them.
    let drop_link = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Err(std::io::Error::other("the sender's link dropped"))
    });
    let stream = futures_util::StreamExt::chain(futures_util::stream::iter(chunks), drop_link);
    let outcome = ndjson(&server, "cut", &key, reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    assert!(
        outcome
            .as_ref()
            .map_or(true, |r| r.status() != StatusCode::ACCEPTED),
        "a cut-off import is not acknowledged"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = all_items(&server, "cut", &server.token()).await;
    let count = stored.len();
    // Ten whole chunks of 250 items, and not the 100 items of the unfinished one.
    assert_eq!(count, 2500, "whole chunks kept, the unfinished one not");
    let mut ids: Vec<&str> = stored.iter().filter_map(|i| i["id"].as_str()).collect();
    ids.sort_unstable();
    let mut expected: Vec<String> = (0..count).map(|n| format!("i{n}")).collect();
    expected.sort_unstable();
    assert_eq!(
        ids, expected,
        "what was kept is the start of the import, in order"
    );
    // Resending the whole import completes it without duplicates.
    let answer = send(ndjson(&server, "cut", &key, lines(0, 2600, 100, None))).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    items_settle(&server, "cut", 2600).await;
}

/// A kernel memory figure of a process, in KiB (`VmRSS`, `VmHWM`).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The most a 64 MiB import into a fresh store may raise the server's memory (peak RSS
/// over idle RSS), in KiB. The aim is 32 MiB; what holds it higher is the store's
/// working set, which grows with the data written. Measured with 250-item chunks: a
/// release build 37 – 41 MiB over idle, a debug build 42 – 48. Both are held to 52 MiB,
/// so that the memory cannot grow back unnoticed.
const IMPORT_MEMORY_BOUND_KIB: u64 = 52 * 1024;

/// Imports the NDJSON file at `path` into `stream` through `tests/upload.py`, a client
/// that streams the file in small writes; the answer's status and body.
async fn upload(server: &TestServer, stream: &str, key: &str, path: &Path) -> (StatusCode, Value) {
    let url = server.url(&format!("/api/webhook/{stream}/bulk"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upload.py");
    let args = [
        script.to_owned(),
        url,
        key.to_owned(),
        "application/x-ndjson".to_owned(),
        path.display().to_string(),
    ];
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::python(&args, b"", "tests/upload.py")
    })
    .await
    .expect("the upload ran");
    let output = String::from_utf8(output).expect("utf-8 output");
    let (status, body) = output.split_once('\n').expect("a status line");
    let status = StatusCode::from_u16(status.parse().expect("a status")).expect("a status");
    (status, serde_json::from_str(body).expect("a JSON answer"))
}

/// A 64 MiB import with bad lines is counted right, and the server's memory stays
/// within [`IMPORT_MEMORY_BOUND_KIB`] of a fresh, idle server's. The import is
/// streamed in 8 KiB writes, as a script that uploads a file sends it: chunks filled
/// from whole body frames (hundreds of KiB of lines when the server reads such a body)
/// grew to thousands of items, and the import peaked at 78 – 84 MiB over idle. The
/// figures are printed for the record (`cargo nextest run --test bulk --no-capture`).
#[tokio::test]
async fn a_64_mib_ndjson_import_counts_right_in_bounded_memory() {
    let needs = "python3 with requests is needed to stream the import as a script does";
    let imports = ["-c", "import requests"];
    if !common::tool_ready("python3", &imports, needs, common::PYTHON_REQUIREMENTS) {
        return;
    }
    let server = TestServer::start().await;
    let key = connector(&server, "history").await;
    let idle = memory_kib(server.pid(), "VmRSS");
    let width = 127;
    let total = 64 * MIB / (width + 1) - 16;
    let body = lines(0, total, width, Some(1000));
    assert!(body.len() <= 64 * MIB, "{} bytes", body.len());
    let bad = total / 1000;
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &body).expect("write the import");
    drop(body);
    let (status, answer) = upload(&server, "history", &key, file.path()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["itemsReceived"], (total - bad) as u64);
    assert_eq!(answer["itemsRejected"], bad as u64);
    let errors = answer["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 100, "the first 100 errors are listed");
    assert_eq!(errors[0]["index"], 999);
    assert_eq!(errors[1]["index"], 1999);
    assert_eq!(errors[0]["code"], "INVALID_PAYLOAD");
    let peak = memory_kib(server.pid(), "VmHWM");
    println!(
        "64 MiB import into a fresh store: {} items; RSS idle {} MiB, peak {} MiB",
        total - bad,
        idle / 1024,
        peak / 1024
    );
    let grown = peak.saturating_sub(idle);
    assert!(
        grown <= IMPORT_MEMORY_BOUND_KIB,
        "the 64 MiB import raised the peak by {grown} KiB over idle"
    );
    common::eventually(Duration::from_secs(60), "the import applied", async || {
        let streams = server
            .admin(reqwest::Method::GET, "/api/streams", None)
            .await;
        streams.body["streams"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "history" && s["itemCount"] == (total - bad) as u64)
            .map(drop)
    })
    .await;
    // The imports' journal passed a file's size; once applied and checkpointed, the
    // files before the current one are deleted.
    let journal = server.data_dir().join("journal");
    common::eventually(
        Duration::from_secs(10),
        "applied journal files deleted",
        async || {
            let files: Vec<String> = std::fs::read_dir(&journal)
                .ok()?
                .map(|entry| Some(entry.ok()?.file_name().to_string_lossy().into_owned()))
                .collect::<Option<_>>()?;
            let first_seq: u64 = files.first()?.strip_suffix(".wal")?.parse().ok()?;
            (files.len() == 1 && first_seq > 1).then_some(())
        },
    )
    .await;
}

/// NDJSON lines of `width` bytes (over the largest item, so each is rejected without
/// being stored), `lines` of them.
fn oversized_lines(lines: usize, width: usize) -> Vec<Result<Vec<u8>, std::io::Error>> {
    let mut line = vec![b'x'; width];
    line.push(b'\n');
    (0..lines).map(|_| Ok(line.clone())).collect()
}

#[tokio::test]
async fn a_chunked_body_passing_64_mib_is_refused_with_413() {
    let server = TestServer::start().await;
    let key = connector(&server, "endless").await;
    // No Content-Length: the limit is found while reading, 1 MiB and a bit at a time.
    let chunks = oversized_lines(64, MIB + 1);
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let answer = send(ndjson(&server, "endless", &key, body)).await;
    let message = assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert!(message.contains("64"), "{message}");
}

#[tokio::test]
async fn chunks_of_an_import_made_durable_before_a_kill_are_there_after_the_restart() {
    let mut server = TestServer::start().await;
    let key = connector(&server, "crashed").await;
    // The import's first 3,600 lines, then a body that never ends: the server dies
    // first.
    let sent = lines(0, 3600, 100, None)
        .chunks(64 * 1024)
        .map(|chunk| Ok::<_, std::io::Error>(chunk.to_vec()))
        .collect::<Vec<_>>();
    let endless = futures_util::StreamExt::chain(
        futures_util::stream::iter(sent),
        futures_util::stream::pending(),
    );
    let body = reqwest::Body::wrap_stream(endless);
    let import = tokio::spawn(send_import(ndjson(&server, "crashed", &key, body)));
    // Chunks are applied only once durable: what the stream holds before the kill was
    // acknowledged by the journal.
    let seen = common::eventually(Duration::from_secs(30), "chunks applied", async || {
        let count = item_count(&server, "crashed").await;
        (count >= 2000).then_some(count)
    })
    .await;
    server.crash_and_restart().await;
    import.abort();
    let after = all_items(&server, "crashed", &server.token()).await;
    // Every item applied before the kill is there; how many of the sent lines made a
    // chunk depends on how the body was read, so only the total is bounded.
    assert!(
        after.len() >= seen && after.len() <= 3600,
        "{seen} items seen before the kill, {} after",
        after.len()
    );
}

/// How many items `stream` holds (0 before it exists), from the stream list.
async fn item_count(server: &TestServer, stream: &str) -> usize {
    let streams = server
        .admin(reqwest::Method::GET, "/api/streams", None)
        .await;
    streams.body["streams"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == stream))
        .and_then(|s| s["itemCount"].as_u64())
        .map_or(0, |n| n as usize)
}

/// Sends an import whose answer nobody waits for (its server is killed meanwhile).
async fn send_import(request: reqwest::RequestBuilder) {
    let _ = request.send().await;
}
