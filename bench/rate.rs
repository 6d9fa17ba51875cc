//! Open-loop load at a fixed rate, the way wrk2 makes it: `--connections` senders, each
//! with one HTTP/1.1 keep-alive connection of its own, together POST single items to a
//! webhook at `--rate` requests per second for `--seconds`. Request `k` of the run is
//! due at `k / rate` seconds and goes out on sender `k mod connections`; every latency
//! is measured from that due time, so a server stall shows up in the figures (a sender
//! that falls behind sends late, and the wait counts) instead of slowing the load down,
//! which is what a closed-loop tool like wrk hides.
//!
//! Prints p50/p99/max, the errors by kind, and a `RATE …` line for `bench/run`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use tokio::task::JoinSet;

#[path = "support.rs"]
mod support;
use support::{https_client, ms, percentile};

/// Longest a single request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Command-line settings.
#[derive(Debug, Parser)]
#[command(about = "Fixed-rate single-item POSTs; latency from each request's due time")]
struct Args {
    /// The server's base URL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    url: String,
    /// The stream the ingest key writes to.
    #[arg(long, default_value = "bench")]
    stream: String,
    /// The webhook connector's ingest key.
    #[arg(long, env = "BENCH_INGEST_KEY", hide_env_values = true)]
    ingest_key: String,
    /// Requests per second, over all connections.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    rate: u32,
    /// Connections (senders), each sending its share of the requests in turn.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
    /// PEM certificate to trust for the server.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Skip verifying the server's certificate.
    #[arg(long)]
    insecure: bool,
}

/// What one sender saw: the latency of each 2xx answer, and the other outcomes by kind.
#[derive(Default)]
struct Outcomes {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
}

/// One sender: requests `first`, `first + step`, … of the run, each at its due time (or
/// at once when it is already late), over one connection.
async fn send_share(
    client: reqwest::Client,
    url: String,
    key: String,
    due: impl Fn(u64) -> Instant,
    first: u64,
    step: u64,
    total: u64,
) -> Outcomes {
    let mut outcomes = Outcomes::default();
    for n in (first..total).step_by(step as usize) {
        let scheduled = due(n);
        tokio::time::sleep_until(scheduled.into()).await;
        let sent = client
            .post(&url)
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(format!("{{\"id\":\"r{}\",\"n\":{n}}}", n % 1000))
            .send()
            .await;
        let error = match sent {
            Ok(response) if response.status().is_success() => {
                // Read the answer to the end, as a sender does before its next request.
                match response.bytes().await {
                    Ok(_) => {
                        outcomes.latencies.push(scheduled.elapsed());
                        continue;
                    }
                    Err(error) => format!("reading the answer: {error}"),
                }
            }
            Ok(response) => format!("HTTP {}", response.status().as_u16()),
            Err(error) if error.is_timeout() => "timeout".to_owned(),
            Err(error) if error.is_connect() => "cannot connect".to_owned(),
            Err(error) => format!("request failed: {error}"),
        };
        *outcomes.errors.entry(error).or_default() += 1;
    }
    outcomes
}

/// Opens every client's connection (TLS handshake included) with a `GET /healthz`
/// before the clock starts, so no measured request pays for one.
async fn open_connections(clients: &[reqwest::Client], base: &str) -> anyhow::Result<()> {
    let url = format!("{}/healthz", base.trim_end_matches('/'));
    let mut opening = JoinSet::new();
    for client in clients {
        let request = client.get(&url).send();
        opening.spawn(async move { request.await?.error_for_status().map(drop) });
    }
    while let Some(opened) = opening.join_next().await {
        opened?.context("cannot open a connection to the server")?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = format!(
        "{}/api/webhook/{}",
        args.url.trim_end_matches('/'),
        args.stream
    );
    let total = u64::from(args.rate) * args.seconds;
    let period = Duration::from_secs(1) / args.rate;
    let connections = u64::from(args.connections).min(total);
    // Every sender gets a client of its own, so each holds exactly one connection.
    let clients = (0..connections)
        .map(|_| {
            let builder = reqwest::Client::builder()
                .connect_timeout(REQUEST_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .http1_only();
            https_client(args.ca_cert.as_deref(), args.insecure, builder)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    open_connections(&clients, &args.url).await?;
    let start = Instant::now();
    let mut senders = JoinSet::new();
    for (first, client) in (0..connections).zip(clients) {
        let due = move |n: u64| start + period * u32::try_from(n).unwrap_or(u32::MAX);
        senders.spawn(send_share(
            client,
            url.clone(),
            args.ingest_key.clone(),
            due,
            first,
            connections,
            total,
        ));
    }
    let mut all = Outcomes::default();
    while let Some(outcomes) = senders.join_next().await {
        let outcomes = outcomes?;
        all.latencies.extend(outcomes.latencies);
        for (kind, count) in outcomes.errors {
            *all.errors.entry(kind).or_default() += count;
        }
    }
    let elapsed = start.elapsed();
    let mut latencies = all.latencies;
    latencies.sort();
    let errors: u64 = all.errors.values().sum();
    let achieved = latencies.len() as f64 / elapsed.as_secs_f64();
    let (p50, p99, max) = (
        percentile(&latencies, 50.0).unwrap_or_default(),
        percentile(&latencies, 99.0).unwrap_or_default(),
        latencies.last().copied().unwrap_or_default(),
    );
    println!(
        "fixed rate {} req/s over {connections} connections for {} s: {} answered 2xx ({achieved:.0}/s), {errors} errors; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        args.rate,
        args.seconds,
        latencies.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    for (kind, count) in &all.errors {
        println!("  error: {kind} ×{count}");
    }
    println!(
        "RATE rate={} connections={connections} ok={} errors={errors} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        args.rate,
        latencies.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    Ok(())
}
