//! Ingest→visible latency: how long after a webhook POST is sent its change arrives on
//! the Server-Sent Events stream of the read API.
//!
//! It opens `GET /api/streams/{stream}/events` with the admin token, then posts
//! `{"id":"v<i>","n":<i>}` (with `X-Item-Key: id`) to `/api/webhook/{stream}` with the
//! ingest key `--count` times, one every `--interval-ms`, each on its own task so a
//! slow answer does not hold back the next send. For each item it measures from just
//! before its POST is sent to the arrival of the first event whose `itemId` is `v<i>`,
//! and prints p50, p99 and max in milliseconds, then one machine-readable line:
//!
//! ```text
//! VISIBLE sent=500 seen=500 post_errors=0 p50_ms=1.234 p99_ms=3.456 max_ms=5.678
//! ```
//!
//! Before measuring, it posts one `warmup` item and waits for its event, so a backlog
//! left by an earlier load is applied first. Every item carries the run's start time
//! (`run`), so a second run against the same stream changes its items again: an item
//! posted unchanged makes no event. Credentials come from the environment
//! (`BENCH_ADMIN_TOKEN`, `BENCH_INGEST_KEY`) or flags.
//!
//! ```sh
//! BENCH_ADMIN_TOKEN=$(cat data/admin-token) BENCH_INGEST_KEY=ik_… \
//!   cargo run --release --example visible -- --url https://127.0.0.1:8443 \
//!   --stream bench --ca-cert data/tls/cert.pem
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::Parser;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

#[path = "support.rs"]
mod support;
use support::{ms, percentile};

/// How much of an error body to show.
const SHOWN_BODY_CHARS: usize = 300;

/// Command line of the latency probe.
#[derive(Debug, Parser)]
#[command(about = "Measures ingest→visible latency through the SSE read API")]
struct Args {
    /// The server's base URL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    url: String,
    /// The stream to post to and watch; the ingest key's connector must write to it.
    #[arg(long, default_value = "bench")]
    stream: String,
    /// The admin token (or a read key) for the events stream.
    #[arg(long, env = "BENCH_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    /// The webhook connector's ingest key.
    #[arg(long, env = "BENCH_INGEST_KEY", hide_env_values = true)]
    ingest_key: String,
    /// How many items to post and time.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    count: u32,
    /// Milliseconds between two sends.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    interval_ms: u64,
    /// How long to wait for the events stream to open, for the warm-up item, and for
    /// the last events after the last send, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    wait_seconds: u64,
    /// A PEM certificate to trust (e.g. the data dir's `tls/cert.pem`).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Accept any server certificate.
    #[arg(long)]
    insecure: bool,
}

/// One event seen on the stream: its item id and when the chunk holding it arrived.
type Seen = (String, Instant);

/// An HTTPS client trusting `ca_cert` (or anything, with `insecure`), with an overall
/// request timeout when given (none for an events stream, which stays open).
fn https_client(
    ca_cert: Option<&Path>,
    insecure: bool,
    connect_timeout: Duration,
    timeout: Option<Duration>,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(connect_timeout);
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    if insecure {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().context("cannot set up the HTTPS client")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let base = args.url.trim_end_matches('/').to_owned();
    let wait = Duration::from_secs(args.wait_seconds);
    let events_url = format!("{base}/api/streams/{}/events", args.stream);
    let webhook_url = format!("{base}/api/webhook/{}", args.stream);

    // Two clients, so the events stream has a connection of its own.
    let connect = Duration::from_secs(args.wait_seconds);
    let sse_client = https_client(args.ca_cert.as_deref(), args.insecure, connect, None)?;
    let post_client = https_client(args.ca_cert.as_deref(), args.insecure, connect, Some(wait))?;

    let response = tokio::time::timeout(
        wait,
        sse_client
            .get(&events_url)
            .bearer_auth(&args.token)
            .header("Accept", "text/event-stream")
            .send(),
    )
    .await
    .with_context(|| format!("GET {events_url}: no answer within {wait:?}"))?
    .with_context(|| format!("GET {events_url} failed"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        bail!(
            "GET {events_url} answered {status}: {}",
            shorten(&body, SHOWN_BODY_CHARS)
        );
    }
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<Seen>();
    let reader = tokio::spawn(read_events(response, seen_tx));

    // Warm-up: one item, and its event, before the clock starts.
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let warmup = post(
        &post_client,
        &webhook_url,
        &args.ingest_key,
        run,
        "warmup",
        0,
    )
    .await;
    if let Err(error) = warmup {
        bail!("warm-up POST {webhook_url}: {error}");
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            Ok(Some((id, _))) if id == "warmup" => break,
            Ok(Some(_)) => continue,
            Ok(None) => bail!("the events stream ended before the warm-up item was seen"),
            Err(_) => bail!("the warm-up item was not seen on the events stream within {wait:?}"),
        }
    }

    // The measured sends.
    let count = args.count as usize;
    let mut sent_at: Vec<Instant> = Vec::with_capacity(count);
    let mut posts = JoinSet::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(args.interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..count {
        ticker.tick().await;
        let (client, url, key) = (
            post_client.clone(),
            webhook_url.clone(),
            args.ingest_key.clone(),
        );
        sent_at.push(Instant::now());
        posts.spawn(async move { post(&client, &url, &key, run, &format!("v{i}"), i).await });
    }
    let mut post_errors = 0usize;
    let mut first_error = None;
    while let Some(joined) = posts.join_next().await {
        let outcome = joined
            .map_err(|e| format!("task failed: {e}"))
            .and_then(|r| r);
        if let Err(error) = outcome {
            post_errors += 1;
            first_error.get_or_insert(error);
        }
    }

    // Collect the events, until each item posted with success is seen or time is up.
    let expected = count - post_errors;
    let mut latency_by_item: HashMap<usize, Duration> = HashMap::with_capacity(count);
    let deadline = tokio::time::Instant::now() + wait;
    while latency_by_item.len() < expected {
        let (id, at) = match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            Ok(Some(seen)) => seen,
            Ok(None) | Err(_) => break,
        };
        let Some(i) = id.strip_prefix('v').and_then(|n| n.parse::<usize>().ok()) else {
            continue;
        };
        if let Some(sent) = sent_at.get(i) {
            latency_by_item
                .entry(i)
                .or_insert_with(|| at.saturating_duration_since(*sent));
        }
    }
    reader.abort();

    let mut latencies: Vec<Duration> = latency_by_item.into_values().collect();
    latencies.sort_unstable();
    let seen = latencies.len();
    println!(
        "ingest→visible over SSE, stream {:?}: {count} sent every {} ms, {} answered 2xx, {seen} seen",
        args.stream, args.interval_ms, expected
    );
    if let Some(error) = &first_error {
        println!("  {post_errors} POSTs failed; the first: {error}");
    }
    if seen < expected {
        println!(
            "  {} items answered 2xx but were not seen within {wait:?}",
            expected - seen
        );
    }
    let (Some(p50), Some(p99), Some(max)) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied(),
    ) else {
        println!("VISIBLE sent={count} seen=0 post_errors={post_errors}");
        bail!("no item was seen on the events stream");
    };
    println!(
        "  p50 {:.3} ms   p99 {:.3} ms   max {:.3} ms",
        ms(p50),
        ms(p99),
        ms(max)
    );
    println!(
        "VISIBLE sent={count} seen={seen} post_errors={post_errors} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        ms(p50),
        ms(p99),
        ms(max)
    );
    Ok(())
}

/// Posts one item `{"id": id, "n": n, "run": run}` with `X-Item-Key: id`; an error
/// names the status and the start of the body of a non-2xx answer.
async fn post(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    run: u128,
    id: &str,
    n: usize,
) -> Result<(), String> {
    let response = client
        .post(url)
        .bearer_auth(key)
        .header("X-Item-Key", "id")
        .json(&serde_json::json!({ "id": id, "n": n, "run": run.to_string() }))
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(format!("{status}: {}", shorten(&body, SHOWN_BODY_CHARS)))
}

/// Reads the events stream and sends the `itemId` of each event, with the time the
/// chunk holding it arrived, until the stream ends or the receiver is gone.
async fn read_events(mut response: reqwest::Response, seen: mpsc::UnboundedSender<Seen>) {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let arrived = Instant::now();
        parser.feed(&chunk, &mut events);
        for data in events.drain(..) {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&data) else {
                continue;
            };
            if let Some(id) = value.get("itemId").and_then(|v| v.as_str()) {
                if seen.send((id.to_owned(), arrived)).is_err() {
                    return;
                }
            }
        }
    }
}

/// A Server-Sent Events parser (WHATWG rules for lines and `data:` fields) that yields
/// the data of each complete event; other fields (`id`, `event`, `retry`) and comments
/// are skipped.
#[derive(Debug, Default)]
struct SseParser {
    /// Bytes of an unfinished line.
    line: Vec<u8>,
    /// The data lines of the event being read, joined with `\n`.
    data: String,
    /// Whether the event being read has a `data` field.
    has_data: bool,
    /// The last byte was `\r`: a `\n` right after it ends no further line.
    after_cr: bool,
}

impl SseParser {
    /// Consumes a chunk and appends the data of each event it completes to `out`.
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<String>) {
        for &byte in chunk {
            let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&String::from_utf8_lossy(&line), out);
                }
                _ => self.line.push(byte),
            }
        }
    }

    /// Handles one complete line.
    fn line_done(&mut self, line: &str, out: &mut Vec<String>) {
        if line.is_empty() {
            if std::mem::take(&mut self.has_data) {
                out.push(std::mem::take(&mut self.data));
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        if field == "data" {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
        }
    }
}

/// At most `max` characters of `text`, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let mut short: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_joins_data_lines_and_handles_split_crlf() {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        parser.feed(
            b": keep-alive\r\nid: 1\r\nevent: item.created\r\ndata: {\"a\"",
            &mut out,
        );
        parser.feed(b":1}\r", &mut out);
        parser.feed(b"\ndata:x\r\n\r\nid: 2\n\n", &mut out);
        assert_eq!(out, vec!["{\"a\":1}\nx".to_owned()]);
    }
}
