//! The server under a `Type=notify` service manager: the test plays systemd, binding the
//! datagram socket named by `NOTIFY_SOCKET` and setting `WATCHDOG_USEC`, and checks what
//! the real binary tells it: READY only once `/healthz` answers and the journal is
//! replayed, WATCHDOG pings after it, STOPPING on SIGTERM; `/readyz` is 503 until the
//! replay is done.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::crash::{Workload, STREAM};
use common::{assert_error, binary, client_trusting, eventually, get_item, Options, TestServer};
use reqwest::{Method, StatusCode};
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a notification may take to come: start-up of a debug build on a busy
/// machine, a replay, a watchdog period. A bound for a hang, not a timing claim.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(30);
/// The watchdog timeout the test sets: the server pings every half of it.
const WATCHDOG_USEC: &str = "400000";

/// `datapool serve` started the way systemd starts it, with the test as systemd.
struct Supervised {
    child: Child,
    /// Each notification's lines, read as they come, as systemd does.
    notices: mpsc::UnboundedReceiver<Vec<String>>,
    reader: JoinHandle<()>,
    /// Every notification line taken from `notices` so far, in order.
    seen: Vec<String>,
    data_dir: PathBuf,
    log: PathBuf,
    _temp: tempfile::TempDir,
}

impl Supervised {
    /// Starts the server on `data_dir` with `env` beside the notify socket and watchdog.
    fn start(data_dir: &Path, env: &[(&str, &str)]) -> Supervised {
        let temp = tempfile::tempdir().expect("temp dir");
        let socket_path = temp.path().join("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
        let (tx, notices) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut buffer = [0u8; 4096];
            while let Ok(len) = socket.recv(&mut buffer).await {
                let lines = String::from_utf8_lossy(&buffer[..len])
                    .lines()
                    .map(str::to_owned)
                    .collect();
                if tx.send(lines).is_err() {
                    return;
                }
            }
        });
        let log = temp.path().join("datapool.log");
        let output = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary())
            .env_clear()
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", WATCHDOG_USEC)
            .envs(env.iter().copied())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .stdout(output.try_clone().expect("log file"))
            .stderr(output)
            .spawn()
            .expect("start datapool");
        Supervised {
            child,
            notices,
            reader,
            seen: Vec::new(),
            data_dir: data_dir.to_owned(),
            log,
            _temp: temp,
        }
    }

    /// Reads notifications until one holds `line`; returns that one.
    async fn wait_for(&mut self, line: &str) -> Vec<String> {
        let deadline = Instant::now() + NOTICE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Some(notice)) = tokio::time::timeout(left, self.notices.recv()).await else {
                panic!("no {line} after {:?}:\n{}", self.seen, self.logs());
            };
            self.seen.extend(notice.iter().cloned());
            if notice.iter().any(|l| l == line) {
                return notice;
            }
        }
    }

    /// The HTTPS address a READY notice's status line names.
    fn https_in(ready: &[String]) -> SocketAddr {
        ready
            .iter()
            .find_map(|l| l.strip_prefix("STATUS=serving https://"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no HTTPS address in {ready:?}"))
    }

    /// An HTTPS client trusting the server's generated certificate.
    fn client(&self) -> reqwest::Client {
        client_trusting(&self.data_dir.join("tls/cert.pem"))
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM: the server says STOPPING, then exits 0. Every notification line
    /// received over the run, in order.
    async fn terminate(mut self) -> Vec<String> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        self.wait_for("STOPPING=1").await;
        let deadline = Instant::now() + NOTICE_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "exit {status}:\n{}", self.logs());
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.reader.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn ready_comes_once_healthz_answers_then_the_watchdog_is_fed() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut server = Supervised::start(data.path(), &[]);
    let ready = server.wait_for("READY=1").await;
    let https = Supervised::https_in(&ready);
    let health = server
        .client()
        .get(format!("https://{https}/healthz"))
        .send()
        .await
        .expect("/healthz answers once READY was sent");
    assert_eq!(health.status(), StatusCode::OK);
    // Pings keep coming after READY: two in a row, not one left over from start-up.
    server.wait_for("WATCHDOG=1").await;
    server.wait_for("WATCHDOG=1").await;
    server.terminate().await;
}

/// A server that acknowledged a write (202) and ended before applying it: the
/// applier's first pass waits a second, then the process ends, leaving the write
/// (item `keep-1` of [`STREAM`]) in the journal only.
async fn write_left_in_journal() -> TestServer {
    let mut crashed = TestServer::start_failing("applier::before_apply=return(1000)").await;
    let mut workload = Workload::new(&crashed).await;
    assert!(workload.send(&crashed, 1).await, "{}", crashed.logs());
    crashed.exited().await;
    crashed
}

/// Fail points that make the replay wait three seconds before applying; the listeners
/// answer meanwhile.
const SLOW_REPLAY: (&str, &str) = ("FAILPOINTS", "applier::before_apply=sleep(3000)");

#[tokio::test]
async fn ready_waits_until_the_journal_is_replayed() {
    let crashed = write_left_in_journal().await;
    let token = crashed.token();
    let mut server = Supervised::start(crashed.data_dir(), &[SLOW_REPLAY]);
    let ready = server.wait_for("READY=1").await;
    let https = Supervised::https_in(&ready);
    let item = server
        .client()
        .get(format!("https://{https}/api/streams/{STREAM}/items/keep-1"))
        .bearer_auth(token)
        .send()
        .await
        .expect("read the item");
    assert_eq!(
        item.status(),
        StatusCode::OK,
        "READY before the acknowledged write was readable:\n{}",
        server.logs()
    );
    server.terminate().await;
}

#[tokio::test]
async fn readyz_is_503_until_the_journal_is_replayed() {
    let crashed = write_left_in_journal().await;
    let server = TestServer::start_with(Options {
        data_dir: Some(crashed.data_dir().to_owned()),
        env: vec![(SLOW_REPLAY.0.into(), SLOW_REPLAY.1.into())],
        listening_only: true,
        ..Options::default()
    })
    .await;
    let replaying = server.call(Method::GET, "/readyz", None, None).await;
    let message = assert_error(&replaying, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
    assert!(
        message.contains("replaying the journal") && message.contains("(1 to go)"),
        "{message}"
    );
    assert!(replaying.headers.contains_key("retry-after"));
    let healthz = server.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(healthz.status, StatusCode::OK, "alive while replaying");

    eventually(NOTICE_TIMEOUT, "/readyz 200 after the replay", async || {
        let answer = server.call(Method::GET, "/readyz", None, None).await;
        (answer.status == StatusCode::OK).then_some(())
    })
    .await;
    let item = get_item(&server, STREAM, "keep-1").await;
    assert!(
        item.is_some(),
        "ready, so the acknowledged write is readable"
    );
}

#[tokio::test]
async fn a_watchdog_meant_for_another_process_is_not_fed() {
    let data = tempfile::tempdir().expect("temp dir");
    // systemd names the process it watches; here, not the server.
    let mut server = Supervised::start(data.path(), &[("WATCHDOG_PID", "1")]);
    server.wait_for("READY=1").await;
    // It runs for several of the periods it would ping at if the watchdog were its.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = server.terminate().await;
    assert!(!seen.iter().any(|l| l == "WATCHDOG=1"), "{seen:?}");
}
