//! Idle displays: `--clients` Server-Sent Events clients, each on an HTTPS/1.1
//! connection of its own (as a browser's EventSource), spread over `--streams` streams
//! named `<prefix>-<n>`, kept open until SIGTERM or Ctrl-C. `bench/sse-fanout` runs
//! it beside a single-item ingest load on another stream, to measure what the clients
//! of quiet streams cost the ingest.
//!
//! Prints `FANOUT open=<clients>` once every stream is open, and on the way out one
//! line with what the clients received:
//!
//! ```text
//! FANOUT open=200 events=0 resets=0 failed=0
//! ```
//!
//! ```sh
//! BENCH_ADMIN_TOKEN=$(cat data/admin-token) cargo run --release --example fanout -- \
//!   --url https://127.0.0.1:8443 --ca-cert data/tls/cert.pem --clients 200
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use futures_util::StreamExt;
use tokio::task::JoinSet;

/// How long opening one events stream may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Command line of the fan-out probe.
#[derive(Debug, Parser)]
#[command(about = "Holds idle SSE clients open on quiet streams")]
struct Args {
    /// The server's base URL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    url: String,
    /// The admin token (or a read key of the streams).
    #[arg(long, env = "BENCH_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    /// How many clients.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    clients: u32,
    /// How many streams the clients are spread over (client `i` follows stream `i mod
    /// streams`).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    streams: u32,
    /// The streams' name prefix.
    #[arg(long, default_value = "quiet")]
    prefix: String,
    /// A PEM certificate to trust (e.g. the data dir's `tls/cert.pem`).
    #[arg(long)]
    ca_cert: PathBuf,
}

/// What the clients received, summed.
#[derive(Default)]
struct Counts {
    events: AtomicU64,
    resets: AtomicU64,
    failed: AtomicU64,
}

impl Counts {
    /// Counts the `event:` lines of complete lines in `buffer`, keeping the rest.
    fn take_lines(&self, buffer: &mut Vec<u8>) {
        let Some(end) = buffer.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        for line in buffer[..end].split(|&b| b == b'\n') {
            if line.starts_with(b"event: item.") {
                self.events.fetch_add(1, Ordering::Relaxed);
            } else if line.starts_with(b"event: reset") {
                self.resets.fetch_add(1, Ordering::Relaxed);
            }
        }
        buffer.drain(..=end);
    }
}

/// Reads one open events stream to its end, counting what it carries.
async fn follow(response: reqwest::Response, counts: Arc<Counts>) {
    let mut body = response.bytes_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => {
                buffer.extend_from_slice(&bytes);
                counts.take_lines(&mut buffer);
            }
            Err(_) => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pem = std::fs::read(&args.ca_cert)
        .with_context(|| format!("cannot read {}", args.ca_cert.display()))?;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .http1_only()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
        .build()
        .context("cannot set up the HTTPS client")?;
    let base = args.url.trim_end_matches('/');
    let counts = Arc::new(Counts::default());
    let mut clients = JoinSet::new();
    for n in 0..args.clients {
        let url = format!(
            "{base}/api/streams/{}-{}/events",
            args.prefix,
            n % args.streams
        );
        let request = client
            .get(&url)
            .bearer_auth(&args.token)
            .header("accept", "text/event-stream");
        let response = tokio::time::timeout(OPEN_TIMEOUT, request.send())
            .await
            .with_context(|| format!("{url} did not open in time"))??
            .error_for_status()?;
        clients.spawn(follow(response, counts.clone()));
    }
    println!("FANOUT open={}", clients.len());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    println!(
        "FANOUT open={} events={} resets={} failed={}",
        clients.len(),
        counts.events.load(Ordering::Relaxed),
        counts.resets.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed)
    );
    Ok(())
}
