//! Open-loop load at a fixed rate: POSTs single items to a webhook at `--rate` requests
//! per second for `--seconds`, and reports latency measured from each request's
//! scheduled send time, so a server stall shows up in the figures instead of slowing
//! the load down (what a closed-loop tool like wrk hides).
//!
//! Prints p50/p99/max and a `RATE …` line for `bench/run`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::Mutex;
use tokio::task::JoinSet;

#[path = "support.rs"]
mod support;
use support::{https_client, ms, percentile};

/// Longest a single request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Command-line settings.
#[derive(Debug, Parser)]
#[command(about = "Fixed-rate single-item POSTs; latency from the scheduled send time")]
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
    /// Requests per second.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    rate: u32,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = https_client(
        args.ca_cert.as_deref(),
        args.insecure,
        REQUEST_TIMEOUT,
        Some(REQUEST_TIMEOUT),
    )?;
    let url = format!(
        "{}/api/webhook/{}",
        args.url.trim_end_matches('/'),
        args.stream
    );
    let total = u64::from(args.rate) * args.seconds;
    let period = Duration::from_secs(1) / args.rate;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let errors = Arc::new(Mutex::new(0u64));
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for n in 0..total {
        let scheduled = start + period * u32::try_from(n).unwrap_or(u32::MAX);
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, url, key) = (client.clone(), url.clone(), args.ingest_key.clone());
        let (latencies, errors) = (latencies.clone(), errors.clone());
        tasks.spawn(async move {
            let body = format!("{{\"id\":\"r{}\",\"n\":{n}}}", n % 1000);
            let sent = client
                .post(&url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    latencies.lock().await.push(scheduled.elapsed())
                }
                _ => *errors.lock().await += 1,
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let mut latencies = latencies.lock().await.clone();
    latencies.sort();
    let errors = *errors.lock().await;
    let achieved = latencies.len() as f64 / elapsed.as_secs_f64();
    let (p50, p99, max) = (
        percentile(&latencies, 50.0).unwrap_or_default(),
        percentile(&latencies, 99.0).unwrap_or_default(),
        latencies.last().copied().unwrap_or_default(),
    );
    println!(
        "fixed rate {} req/s for {} s: {} answered 2xx ({achieved:.0}/s), {errors} errors; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        args.rate,
        args.seconds,
        latencies.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    println!(
        "RATE rate={} ok={} errors={errors} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        args.rate,
        latencies.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    Ok(())
}
