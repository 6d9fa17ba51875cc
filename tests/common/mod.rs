//! Starts the real `datapool` binary for integration tests: free ports, a temporary
//! data dir, readiness, the admin token, and an HTTPS client that trusts the server's
//! generated certificate. The process is killed and the dir removed on drop.

#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod browser;
pub mod crash;
pub mod credentials;
pub mod durability;
pub mod limits;
pub mod receiver;
pub mod sse;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

/// How long a server may take to start listening and become ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of the binary under test, built by cargo for integration tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_datapool")
}

/// How long one run of the binary as a command (not a server) may take before the test
/// fails: every such command answers within seconds, so a hang fails fast instead of
/// holding the test until the runner's own limit.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the binary to completion with `args` and a clean environment plus `env`.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary());
    command.env_clear().envs(env.iter().copied()).args(args);
    output_within(command, "", COMMAND_TIMEOUT)
}

/// Runs `command` with `stdin` as its standard input and collects its output; kills it
/// and fails the test, with what it printed so far, when it takes longer than `limit`.
pub fn output_within(mut command: Command, stdin: &str, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run datapool");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    let stdout = read_all(child.stdout.take().expect("stdout"));
    let stderr = read_all(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for datapool") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (joined(stdout), joined(stderr));
            panic!(
                "{command:?} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: joined(stdout),
        stderr: joined(stderr),
    }
}

/// Reads `pipe` to its end on a thread of its own, so a full pipe cannot stall the child.
fn read_all(mut pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(bytes);
    });
    rx
}

/// What a reader collected, once its pipe closed; a pipe still held open a second after
/// the child ended (by a process it started) gives what is there: nothing.
fn joined(reader: mpsc::Receiver<Vec<u8>>) -> Vec<u8> {
    reader
        .recv_timeout(Duration::from_secs(1))
        .unwrap_or_default()
}

/// How to start a server.
#[derive(Default)]
pub struct Options {
    /// Extra arguments after `serve`.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Use this data dir instead of a fresh temporary one.
    pub data_dir: Option<PathBuf>,
    /// Start returns once the listeners are up, without waiting for `/readyz`, so a
    /// test can watch the start-up itself.
    pub listening_only: bool,
}

/// A running `datapool serve`.
pub struct TestServer {
    child: Option<Child>,
    options: Options,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    logs: Arc<Mutex<String>>,
    /// The HTTPS address it listens on.
    pub https: SocketAddr,
    /// The plain-HTTP address, when `--http-listen` was given.
    pub http: Option<SocketAddr>,
}

/// An answer from the server, its body parsed as JSON (`Null` when empty).
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestServer {
    /// A server with default options.
    pub async fn start() -> TestServer {
        TestServer::start_with(Options::default()).await
    }

    /// A server started with `options`, ready to answer.
    pub async fn start_with(mut options: Options) -> TestServer {
        let (temp, data_dir) = match options.data_dir.take() {
            Some(dir) => (None, dir),
            None => {
                let temp = tempfile::tempdir().expect("temp dir");
                let dir = temp.path().to_owned();
                (Some(temp), dir)
            }
        };
        options.data_dir = Some(data_dir.clone());
        let mut server = TestServer {
            child: None,
            options,
            data_dir,
            _temp: temp,
            logs: Arc::new(Mutex::new(String::new())),
            https: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: None,
        };
        server.launch().await;
        server
    }

    async fn launch(&mut self) {
        let wants_http = self.options.args.iter().any(|a| a == "--http-listen");
        let mut command = Command::new(binary());
        command
            .env_clear()
            .env("RUST_LOG", "info")
            .args([
                "serve",
                "--log-format",
                "json",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&self.data_dir)
            .args(&self.options.args)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start datapool");
        let (tx, rx) = mpsc::channel();
        collect(
            child.stdout.take().expect("stdout"),
            self.logs.clone(),
            Some(tx),
        );
        collect(
            child.stderr.take().expect("stderr"),
            self.logs.clone(),
            None,
        );
        self.child = Some(child);
        let expected = if wants_http { 2 } else { 1 };
        for _ in 0..expected {
            let (scheme, addr) = rx
                .recv_timeout(START_TIMEOUT)
                .unwrap_or_else(|_| panic!("datapool did not start listening:\n{}", self.logs()));
            match scheme.as_str() {
                "https" => self.https = addr,
                _ => self.http = Some(addr),
            }
        }
        if !self.options.listening_only {
            self.wait_ready().await;
        }
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let client = self.client();
        loop {
            if let Ok(r) = client.get(self.url("/readyz")).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "datapool not ready:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.https)
    }

    /// The admin token the server wrote on first start.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-token"))
            .expect("admin-token file")
            .trim()
            .to_owned()
    }

    /// The certificate the server presents: the operator's `--tls-cert`, else the one
    /// generated into the data dir.
    pub fn cert_file(&self) -> PathBuf {
        let args = &self.options.args;
        match args.iter().position(|a| a == "--tls-cert") {
            Some(i) => PathBuf::from(&args[i + 1]),
            None => self.data_dir.join("tls/cert.pem"),
        }
    }

    /// An HTTPS client trusting only the server's certificate.
    pub fn client(&self) -> reqwest::Client {
        client_trusting(&self.cert_file())
    }

    /// Like [`TestServer::client`], for requests that may take minutes (large imports
    /// on a debug build).
    pub fn patient_client(&self) -> reqwest::Client {
        client_with_timeout(&self.cert_file(), Duration::from_secs(600))
    }

    /// Calls the server with `token` as bearer (none when `None`).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut request = self.client().request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        answer(request.send().await.expect("request sent")).await
    }

    /// Calls the admin API with the admin token.
    pub async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        self.call(method, path, Some(&self.token()), body).await
    }

    /// `POST /api/admin/connectors/{id}/{action}` (`enable`, `disable`, `rotate-key`).
    pub async fn connector_action(&self, id: &str, action: &str) -> Answer {
        self.admin(
            Method::POST,
            &format!("/api/admin/connectors/{id}/{action}"),
            None,
        )
        .await
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Everything the server printed so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").clone()
    }

    /// Sends `signal` (e.g. "TERM") without waiting; the process may already be
    /// exiting from an earlier one, so a failed delivery is not an error.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([format!("-{signal}"), child.id().to_string()])
                .status();
        }
    }

    /// Sends `signal` (e.g. "TERM", "KILL") and waits for the process to exit, keeping
    /// the runtime free meanwhile so open client connections can answer the server's
    /// shutdown (HTTP/2 GOAWAY).
    pub async fn stop(&mut self, signal: &str) -> ExitStatus {
        self.signal(signal);
        self.exited().await
    }

    /// Waits for the process to exit (after a signal, or by itself when a fail point
    /// aborted it or it failed); its exit status.
    pub async fn exited(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "datapool did not exit:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server with SIGTERM and starts it again on the same data dir.
    pub async fn restart(&mut self) {
        self.stop_cleanly().await;
        self.launch().await;
    }

    /// Stops the server with SIGTERM and starts it again on the same data dir with `env`
    /// as its extra environment instead of what it had.
    pub async fn restart_with(&mut self, env: &[(&str, &str)]) {
        self.stop_cleanly().await;
        self.options.env = env
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        self.launch().await;
    }

    /// Stops the server with SIGTERM, asserting that it exits 0.
    async fn stop_cleanly(&mut self) {
        let status = self.stop("TERM").await;
        assert!(status.success(), "exit {status}:\n{}", self.logs());
    }

    /// Runs the CLI against this server, with `stdin` as its standard input.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(binary());
        command
            .env_clear()
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--url", &format!("https://{}", self.https)])
            .arg("--ca-cert")
            .arg(self.cert_file())
            .args(args);
        output_within(command, stdin.unwrap_or(""), COMMAND_TIMEOUT)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTPS client that trusts exactly the certificate in `pem_file`.
pub fn client_trusting(pem_file: &Path) -> reqwest::Client {
    client_with_timeout(pem_file, Duration::from_secs(30))
}

/// An HTTPS client that trusts exactly the certificate in `pem_file` and gives up
/// after `timeout`.
pub fn client_with_timeout(pem_file: &Path, timeout: Duration) -> reqwest::Client {
    let pem = std::fs::read(pem_file).expect("certificate file");
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM certificate"))
        .timeout(timeout)
        .build()
        .expect("client")
}

/// Reads a response into an [`Answer`].
pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON body ({status}): {text}"))
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// Appends a child's output to `logs`; on stdout, reports each `listening` line's
/// scheme and address.
fn collect(
    stream: impl std::io::Read + Send + 'static,
    logs: Arc<Mutex<String>>,
    listening: Option<mpsc::Sender<(String, SocketAddr)>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let (Some(tx), Ok(event)) = (&listening, serde_json::from_str::<Value>(&line)) {
                if event["message"] == "listening" {
                    let addr = event["addr"].as_str().and_then(|a| a.parse().ok());
                    let scheme = event["scheme"].as_str().unwrap_or("").to_owned();
                    if let Some(addr) = addr {
                        let _ = tx.send((scheme, addr));
                    }
                }
            }
            let mut logs = logs.lock().expect("logs");
            logs.push_str(&line);
            logs.push('\n');
        }
    });
}

// Helpers for the ingest, read API and activity tests.

/// How long the tests wait for something the server does in the background (a push
/// showing in the read API, a state change, a log entry). The contract promises much
/// less (100 ms for pushes); the margin is for loaded CI machines, not a timing claim.
pub const EVENTUALLY: Duration = Duration::from_secs(5);

/// Polls `probe` every 25 ms until it gives a value; panics with `what` after `within`.
pub async fn eventually<T>(
    within: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Creates a connector from its §1.1 document: its id and its ingest key (empty for
/// types without one).
pub async fn create_connector(server: &TestServer, doc: &Value) -> (String, String) {
    let created = server
        .admin(Method::POST, "/api/admin/connectors", Some(doc))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["connector"]["id"]
        .as_str()
        .expect("connector id")
        .to_owned();
    let key = created.body["ingestKey"].as_str().unwrap_or("").to_owned();
    (id, key)
}

/// A POST to `/api/webhook/{stream}` with `key` as bearer (none when empty), to add
/// headers and a body to.
pub fn webhook(server: &TestServer, stream: &str, key: &str) -> reqwest::RequestBuilder {
    let request = server
        .client()
        .post(server.url(&format!("/api/webhook/{stream}")));
    if key.is_empty() {
        request
    } else {
        request.bearer_auth(key)
    }
}

/// Sends a built request and reads the answer.
pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    answer(request.send().await.expect("request sent")).await
}

/// Issues a read key for `doc` (`{"name", "streams"?}`) through the admin API: its id
/// and the key.
pub async fn issue_read_key(server: &TestServer, doc: &Value) -> (String, String) {
    let issued = server
        .admin(Method::POST, "/api/admin/read-keys", Some(doc))
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    let id = issued.body["readKey"]["id"].as_str().expect("read key id");
    let key = issued.body["key"].as_str().expect("read key");
    (id.to_owned(), key.to_owned())
}
/// Pushes `body` as JSON to `/api/webhook/{stream}` with `key`.
pub async fn push(server: &TestServer, stream: &str, key: &str, body: &Value) -> Answer {
    send(webhook(server, stream, key).json(body)).await
}

/// Pushes `body` and asserts it was accepted (202); returns the answer's body.
pub async fn push_ok(server: &TestServer, stream: &str, key: &str, body: &Value) -> Value {
    let answer = push(server, stream, key, body).await;
    assert_eq!(
        answer.status,
        StatusCode::ACCEPTED,
        "{body}: {}",
        answer.body
    );
    answer.body
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/api/streams/{stream}/items/{id}`, the id encoded.
pub fn item_path(stream: &str, id: &str) -> String {
    format!("/api/streams/{stream}/items/{}", segment(id))
}

/// Reads one item with the admin token: `Some(item)` on 200, `None` on 404.
pub async fn get_item(server: &TestServer, stream: &str, id: &str) -> Option<Value> {
    let answer = server
        .admin(Method::GET, &item_path(stream, id), None)
        .await;
    match answer.status {
        StatusCode::OK => Some(answer.body),
        StatusCode::NOT_FOUND => None,
        status => panic!("GET item {stream}/{id}: {status} {}", answer.body),
    }
}

/// Waits until item `id` of `stream` exists and `ready` holds for it; returns it.
pub async fn wait_for_item(
    server: &TestServer,
    stream: &str,
    id: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    eventually(EVENTUALLY, &format!("item {stream}/{id}"), async || {
        get_item(server, stream, id)
            .await
            .filter(|item| ready(item))
    })
    .await
}

/// Every item of `stream`, read with `token` page by page through `nextCursor`.
pub async fn all_items(server: &TestServer, stream: &str, token: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut path = format!("/api/streams/{stream}/items?limit=1000");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={}", segment(cursor)));
        }
        let page = server.call(Method::GET, &path, Some(token), None).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        items.extend(
            page.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .cloned(),
        );
        match &page.body["nextCursor"] {
            Value::Null => return items,
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("nextCursor is neither null nor a string: {other}"),
        }
    }
    panic!("the cursors of {stream} never end");
}

/// Asserts that `answer` is the error `status`/`code` with the common error body
/// (message, and the request id of the `X-Request-Id` header); returns the message.
pub fn assert_error(answer: &Answer, status: StatusCode, code: &str) -> String {
    assert_eq!(answer.status, status, "{}", answer.body);
    let error = &answer.body["error"];
    assert_eq!(error["code"], code, "{}", answer.body);
    let message = error["message"].as_str().expect("error message").to_owned();
    assert!(!message.is_empty(), "{}", answer.body);
    let request_id = error["requestId"].as_str().expect("requestId");
    assert!(request_id.starts_with("req_"), "{}", answer.body);
    if let Some(header) = answer.headers.get("x-request-id") {
        assert_eq!(header.to_str().expect("ascii"), request_id);
    }
    message
}

/// Whether `text` is an RFC 3339 timestamp in UTC (`…Z` or `…+00:00`).
pub fn is_utc_timestamp(text: &str) -> bool {
    (text.ends_with('Z') || text.ends_with("+00:00")) && text.parse::<jiff::Timestamp>().is_ok()
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Whether `key` has the credential shape `<prefix>_<12 hex>_<40 base62>`.
pub fn is_key(key: &str, prefix: &str) -> bool {
    let parts: Vec<&str> = key.split('_').collect();
    parts.len() == 3
        && parts[0] == prefix
        && parts[1].len() == 12
        && parts[1]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && parts[2].len() == 40
        && parts[2].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Every entry of the connector's log, newest first, through all pages.
pub async fn log_entries(server: &TestServer, id: &str) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut path = format!("/api/admin/connectors/{id}/logs");
    for _ in 0..1000 {
        let answer = server.admin(Method::GET, &path, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        entries.extend(
            answer.body["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .cloned(),
        );
        match answer.body.get("nextCursor") {
            Some(Value::String(next)) => {
                path = format!("/api/admin/connectors/{id}/logs?cursor={}", segment(next));
            }
            Some(Value::Null) => return entries,
            other => panic!("nextCursor must be null or a string: {other:?}"),
        }
    }
    panic!("the log's cursors never end");
}

/// How to install what `tests/requirements.txt` lists, for [`tool_ready`]'s message.
pub const PYTHON_REQUIREMENTS: &str = "python3 -m pip install -r tests/requirements.txt";

/// Whether `program ARGS` runs and succeeds here: a tool a test needs (python3 with
/// modules from `tests/requirements.txt`, schemathesis, dpkg-deb). When it does not,
/// the test is skipped with `reason` and how to `install` it printed, or fails under
/// `CI=true`, where a skip would hide lost coverage.
pub fn tool_ready(program: &str, args: &[&str], reason: &str, install: &str) -> bool {
    let ready = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|output| output.status.success());
    if !ready {
        let reason = format!("{reason} ({install})");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
        eprintln!("skipping: {reason}");
    }
    ready
}

/// Runs `python3 ARGS` with `input` on its standard input; its standard output, or a
/// panic naming `what` with what it printed on standard error.
pub fn python(args: &[&str], input: &[u8], what: &str) -> Vec<u8> {
    let mut child = Command::new("python3")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write to python3");
    let output = child.wait_with_output().expect("python3 output");
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Waits until the connector's log has an entry of `event` whose message contains
/// `text`; returns that entry.
pub async fn log_entry(server: &TestServer, id: &str, event: &str, text: &str) -> Value {
    eventually(
        Duration::from_secs(30),
        &format!("a {event} entry with {text:?} in {id}'s log"),
        async || {
            log_entries(server, id).await.into_iter().find(|e| {
                e["event"] == event && e["message"].as_str().is_some_and(|m| m.contains(text))
            })
        },
    )
    .await
}

/// The state (`active`, `idle`, `error`, `disabled`) connector `id` shows.
pub async fn connector_state(server: &TestServer, id: &str) -> String {
    let answer = server
        .admin(Method::GET, &format!("/api/admin/connectors/{id}"), None)
        .await;
    answer.body["connector"]["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}
