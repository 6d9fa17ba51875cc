//! Crash tests: servers whose fail points (`FAILPOINTS`, compiled into test builds)
//! abort the process at a chosen point, and a workload whose every acknowledged write
//! can be checked, exactly once, after a restart.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::sse::SseReader;
use super::{
    all_items, binary, create_connector, output_within, wait_for_item, Options, TestServer,
    START_TIMEOUT,
};

/// Fail points that start a journal file for every commit, so that releasing journal
/// files (at a checkpoint, at start) has files to delete.
pub const FILE_PER_COMMIT: &str = "wal::rotate_after_bytes=return(1)";
/// The stream the workload writes.
pub const STREAM: &str = "crash";
/// Request number of the write made after the restart: once it is visible, everything
/// journaled before it is applied.
const AFTER_RESTART: u64 = 1_000_000;
/// How long to wait for a change event that must come; the change log already holds it.
const EVENT_WAIT: Duration = Duration::from_secs(10);
/// How long to wait for a change event that must not come.
const NO_MORE_EVENTS: Duration = Duration::from_secs(1);

impl TestServer {
    /// A server on a fresh data dir with the fail points `failpoints` (`name=actions`,
    /// `;`-separated).
    pub async fn start_failing(failpoints: &str) -> TestServer {
        TestServer::start_with(Options {
            env: vec![("FAILPOINTS".into(), failpoints.into())],
            ..Options::default()
        })
        .await
    }
}

/// Runs `datapool serve` on `data_dir` with the fail points `failpoints` (none when
/// empty), expecting it to stop by itself: its exit status and everything it printed.
/// A server still running after [`START_TIMEOUT`] is killed and the test fails.
pub fn serve_expecting_exit(data_dir: &Path, failpoints: &str) -> (ExitStatus, String) {
    let mut command = Command::new(binary());
    command
        .env_clear()
        .env("FAILPOINTS", failpoints)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir);
    let output = output_within(command, "", START_TIMEOUT);
    let said = [output.stdout, output.stderr].concat();
    (output.status, String::from_utf8_lossy(&said).into_owned())
}

/// Writes through an `api` connector, one request at a time, each request `n` making
/// item `keep-n` and making and deleting item `temp-n`: applied twice, a request
/// shows as a second pair of `temp-n` events.
pub struct Workload {
    key: String,
    /// Requests answered 202, by number.
    pub acknowledged: Vec<u64>,
}

impl Workload {
    /// Creates the connector.
    pub async fn new(server: &TestServer) -> Workload {
        let doc = json!({"name": "Crash", "type": "api", "stream": STREAM});
        let (_, key) = create_connector(server, &doc).await;
        Workload {
            key,
            acknowledged: Vec::new(),
        }
    }

    /// Sends request `n`; whether it was answered 202.
    pub async fn send(&mut self, server: &TestServer, n: u64) -> bool {
        let body = json!({
            "stream": STREAM,
            "items": [{"id": format!("keep-{n}"), "fields": {"n": n}},
                      {"id": format!("temp-{n}"), "fields": {"n": n}}],
            "delete": [format!("temp-{n}")],
        });
        let sent = server
            .client()
            .post(server.url("/api/ingest"))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await;
        let accepted = sent.is_ok_and(|r| r.status() == StatusCode::ACCEPTED);
        if accepted {
            self.acknowledged.push(n);
        }
        accepted
    }

    /// Sends requests 1, 2, … until one is not acknowledged (the server crashed) or
    /// `max` were sent, pausing `pause` between them; how many were acknowledged.
    pub async fn send_until_crash(
        &mut self,
        server: &TestServer,
        max: u64,
        pause: Duration,
    ) -> usize {
        for n in 1..=max {
            if !self.send(server, n).await {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        self.acknowledged.len()
    }

    /// After a restart: every acknowledged request is applied exactly once. Items
    /// `keep-n` exist at version 1 for each acknowledged `n` (and perhaps for requests
    /// that were journaled but not yet answered), no `temp-n` is left, the stream's
    /// count matches, and the change log holds each applied request's three changes
    /// once.
    pub async fn check_exactly_once(&mut self, server: &TestServer) {
        assert!(
            self.send(server, AFTER_RESTART).await,
            "a write after the restart"
        );
        let last = format!("keep-{AFTER_RESTART}");
        wait_for_item(server, STREAM, &last, |_| true).await;
        let items = all_items(server, STREAM, &server.token()).await;
        let mut applied = Vec::new();
        for item in &items {
            let id = item["id"].as_str().expect("item id");
            assert_eq!(item["version"], 1, "{item}");
            let n = id
                .strip_prefix("keep-")
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("an item left over: {item}"));
            applied.push(n);
        }
        for n in &self.acknowledged {
            assert!(
                applied.contains(n),
                "acknowledged request {n} was lost: {applied:?}"
            );
        }
        let streams = server.admin(Method::GET, "/api/streams", None).await;
        let count = streams.body["streams"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == STREAM))
            .map(|s| s["itemCount"].clone());
        assert_eq!(count, Some(json!(items.len())), "{}", streams.body);
        self.check_changes(server, &applied).await;
    }

    /// The change log from its start holds, for each applied request, the creation of
    /// `keep-n` and the creation and deletion of `temp-n`, and nothing more.
    async fn check_changes(&self, server: &TestServer, applied: &[u64]) {
        let response = server
            .client()
            .get(server.url(&format!("/api/streams/{STREAM}/events")))
            .bearer_auth(server.token())
            .header("last-event-id", "0")
            .send()
            .await
            .expect("open the event stream");
        assert_eq!(response.status(), StatusCode::OK);
        let mut events = SseReader::new(response);
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for _ in 0..applied.len() * 3 {
            let event = events
                .next_within(EVENT_WAIT)
                .await
                .expect("a change event");
            let id = event.json()["itemId"].as_str().expect("itemId").to_owned();
            seen.entry(id).or_default().push(event.event);
        }
        for n in applied {
            assert_eq!(
                seen.get(&format!("keep-{n}")).map(Vec::len),
                Some(1),
                "{seen:?}"
            );
            let temp = seen.get(&format!("temp-{n}")).cloned().unwrap_or_default();
            assert_eq!(temp, ["item.created", "item.deleted"], "request {n}");
        }
        let extra = events.next_within(NO_MORE_EVENTS).await;
        assert!(extra.is_none(), "a change applied twice: {extra:?}");
    }
}

/// Reads item `keep-n`'s `updatedAt`.
pub async fn updated_at(server: &TestServer, n: u64) -> Value {
    wait_for_item(server, STREAM, &format!("keep-{n}"), |_| true).await["updatedAt"].clone()
}
