//! A webhook receiver the outbound tests start: a real HTTP server on a free local
//! port that records every request it gets and answers from a script (statuses,
//! `Retry-After`, or never), and a check of Standard Webhooks signatures with the
//! standard's own Python library.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This status, empty body.
    Status(u16),
    /// This status with `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    /// Never answers.
    Hang,
}

/// A request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: String,
    /// When it arrived.
    pub at: Instant,
    /// What the receiver answered.
    pub reply: Reply,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("text header").to_owned())
    }
}

#[derive(Default)]
struct Script {
    next: VecDeque<Reply>,
    otherwise: Option<Reply>,
    received: Vec<Received>,
}

/// A running receiver; it stops with the test's runtime.
#[derive(Clone)]
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    /// A receiver on 127.0.0.1 answering 200 unless told otherwise.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a receiver");
        let addr = listener.local_addr().expect("receiver address");
        let script = Arc::new(Mutex::new(Script::default()));
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(script.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, script }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with `replies`, in order, then as before.
    pub fn then(&self, replies: &[Reply]) {
        self.script
            .lock()
            .expect("script")
            .next
            .extend(replies.iter().cloned());
    }

    /// Answers every request (after any queued replies) with `reply`.
    pub fn always(&self, reply: Reply) {
        self.script.lock().expect("script").otherwise = Some(reply);
    }

    /// What it got so far.
    pub fn received(&self) -> Vec<Received> {
        self.script.lock().expect("script").received.clone()
    }

    /// Waits until it got at least `count` requests; all of them.
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver got {} of {count} requests within {within:?}: {received:#?}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let reply = {
        let mut script = script.lock().expect("script");
        let reply = script
            .next
            .pop_front()
            .or_else(|| script.otherwise.clone())
            .unwrap_or(Reply::Status(200));
        script.received.push(Received {
            headers,
            body,
            at: Instant::now(),
            reply: reply.clone(),
        });
        reply
    };
    let status = |code: u16| StatusCode::from_u16(code).expect("a status code");
    match reply {
        Reply::Status(code) => status(code).into_response(),
        Reply::RetryAfter(code, seconds) => {
            (status(code), [("retry-after", seconds.to_string())]).into_response()
        }
        Reply::Hang => std::future::pending().await,
    }
}

/// Whether the `standardwebhooks` Python library accepts `received` as signed with
/// `secret`; `None` when python3 or the library is missing outside CI (the caller
/// skips that check, and the reason is printed). Under `CI=true` a missing library
/// fails the test.
pub fn verified_by_standard_library(secret: &str, received: &Received) -> Option<bool> {
    const SCRIPT: &str = "
import json, sys
from standardwebhooks.webhooks import Webhook
r = json.load(sys.stdin)
try:
    Webhook(r['secret']).verify(r['body'], r['headers'])
    print('valid')
except Exception as e:
    print('invalid', e)
";
    let ready = Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        let reason = "python3 with standardwebhooks is needed to verify signatures independently \
             (python3 -m pip install -r tests/requirements.txt)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
        eprintln!("skipping the independent signature check: {reason}");
        return None;
    }
    let headers: serde_json::Map<String, Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .map(|name| (name.to_string(), json!(received.header(name))))
            .collect();
    let request = json!({"secret": secret, "body": received.body, "headers": headers});
    let output = super::python(
        &["-c", SCRIPT],
        request.to_string().as_bytes(),
        "the verifier",
    );
    let said = String::from_utf8_lossy(&output);
    Some(said.trim() == "valid")
}
