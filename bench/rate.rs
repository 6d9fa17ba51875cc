//! Open-loop load at a fixed rate, the way wrk2 makes it: `--connections` senders, each
//! with one HTTP/1.1 keep-alive connection of its own, together POST single items to a
//! webhook at `--rate` requests per second for `--seconds`. Request `k` of the run is
//! due at `k / rate` seconds and goes out on sender `k mod connections`; every latency
//! is measured from that due time, so a server stall shows up in the figures (a sender
//! that falls behind sends late, and the wait counts) instead of slowing the load down,
//! which is what a closed-loop tool like wrk hides.
//!
//! The client is as lean as wrk, as it shares the machine's cores with the server: one
//! thread, tokio-rustls, and each request's bytes written by hand, its answer read by
//! its `Content-Length`. A general HTTP client cost about two and a half times as much
//! CPU per request here, which the server then lacked.
//!
//! Prints p50/p99/max, the errors by kind, and a `RATE …` line for `bench/run`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

#[path = "support.rs"]
mod support;
use support::{ms, percentile};

/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer head accepted; a longer one is not an answer of this server.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Command-line settings.
#[derive(Debug, Parser)]
#[command(about = "Fixed-rate single-item POSTs; latency from each request's due time")]
struct Args {
    /// The server's base URL (https).
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    url: url::Url,
    /// The stream to post to.
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
    /// PEM certificate to trust (the server's self-signed one).
    #[arg(long)]
    ca_cert: PathBuf,
}

/// Where and how to connect: address, TLS settings, and the request's fixed head.
struct Target {
    address: String,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    /// Request line and headers up to, not including, `Content-Length`.
    head: String,
}

impl Target {
    fn new(args: &Args) -> anyhow::Result<Target> {
        if args.url.scheme() != "https" {
            bail!("--url must be an https URL");
        }
        let host = args.url.host_str().context("--url has no host")?.to_owned();
        let port = args.url.port_or_known_default().unwrap_or(443);
        let server_name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
            .with_context(|| format!("{host} is not a TLS server name"))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&args.ca_cert)
            .with_context(|| format!("cannot read {}", args.ca_cert.display()))?
        {
            roots.add(cert.context("a certificate of --ca-cert is unreadable")?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let path = format!(
            "{}/api/webhook/{}",
            args.url.path().trim_end_matches('/'),
            args.stream
        );
        Ok(Target {
            address: format!("{host}:{port}"),
            server_name,
            tls: TlsConnector::from(Arc::new(config)),
            head: format!(
                "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nX-Item-Key: id\r\n",
                args.ingest_key
            ),
        })
    }

    /// A new connection, TLS handshake done.
    async fn connect(&self) -> anyhow::Result<Connection> {
        let tcp = TcpStream::connect(&self.address)
            .await
            .with_context(|| format!("cannot connect to {}", self.address))?;
        tcp.set_nodelay(true)?;
        let stream = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .context("TLS handshake failed")?;
        Ok(Connection {
            stream,
            read: Vec::with_capacity(4096),
        })
    }

    /// The bytes of request `n`: item `r<n mod 1000>`.
    fn request(&self, n: u64) -> Vec<u8> {
        let body = format!("{{\"id\":\"r{}\",\"n\":{n}}}", n % 1000);
        format!("{}Content-Length: {}\r\n\r\n{body}", self.head, body.len()).into_bytes()
    }
}

/// One keep-alive connection and what was read from it past the last answer.
struct Connection {
    stream: TlsStream<TcpStream>,
    read: Vec<u8>,
}

impl Connection {
    /// Sends `request` and reads its whole answer; returns the status.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        self.stream.write_all(request).await?;
        self.stream.flush().await?;
        loop {
            if let Some((status, length)) = answer_length(&self.read)? {
                if self.read.len() >= length {
                    self.read.drain(..length);
                    return Ok(status);
                }
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                bail!("the server closed the connection");
            }
        }
    }
}

/// The status and whole length (head and body) of the answer at the start of `read`,
/// once its head is complete.
fn answer_length(read: &[u8]) -> anyhow::Result<Option<(u16, usize)>> {
    let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") else {
        if read.len() > MAX_HEAD_BYTES {
            bail!("an answer head over {MAX_HEAD_BYTES} bytes");
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&read[..end]).context("an answer head that is not text")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .context("an answer without a status line")?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("a chunked answer, which this probe does not read");
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .context("a bad Content-Length")?,
            );
        }
    }
    Ok(Some((status, end + 4 + length.unwrap_or(0))))
}

/// What one sender saw: the latency of each 2xx answer, and the other outcomes by kind.
#[derive(Default)]
struct Outcomes {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
}

/// The requests one sender makes: `first`, `first + step`, … below `total`, request `n`
/// due at `start + n × period`.
struct Share {
    start: Instant,
    period: Duration,
    first: u64,
    step: u64,
    total: u64,
}

/// One sender: its share of the requests, each at its due time (or at once when it is
/// already late), over one connection, opened again after a failure.
async fn send_share(target: Arc<Target>, connection: Connection, share: Share) -> Outcomes {
    let mut outcomes = Outcomes::default();
    let mut connection = Some(connection);
    for n in (share.first..share.total).step_by(share.step as usize) {
        let due = share.start + share.period * u32::try_from(n).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due.into()).await;
        let request = target.request(n);
        let exchanged = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let open = match connection.as_mut() {
                Some(open) => open,
                None => connection.insert(target.connect().await?),
            };
            open.exchange(&request).await
        })
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("timeout")));
        let error = match exchanged {
            Ok(status) if (200..300).contains(&status) => {
                outcomes.latencies.push(due.elapsed());
                continue;
            }
            Ok(status) => format!("HTTP {status}"),
            Err(error) => {
                connection = None;
                format!("{error:#}")
            }
        };
        *outcomes.errors.entry(error).or_default() += 1;
    }
    outcomes
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = Arc::new(Target::new(&args)?);
    let total = u64::from(args.rate) * args.seconds;
    let period = Duration::from_secs(1) / args.rate;
    let connections = u64::from(args.connections).min(total);
    // Every connection is open (handshake done) before the clock starts, so no
    // measured request pays for one.
    let mut opened = Vec::new();
    for _ in 0..connections {
        opened.push(target.connect().await?);
    }
    let start = Instant::now();
    let mut senders = JoinSet::new();
    for (first, connection) in (0..connections).zip(opened) {
        let share = Share {
            start,
            period,
            first,
            step: connections,
            total,
        };
        senders.spawn(send_share(target.clone(), connection, share));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_complete_once_its_head_and_body_are_read() {
        let answer = b"HTTP/1.1 202 Accepted\r\ncontent-length: 4\r\n\r\n{}{}";
        assert_eq!(answer_length(&answer[..20]).expect("partial"), None);
        assert_eq!(
            answer_length(answer).expect("whole"),
            Some((202, answer.len()))
        );
        assert!(answer_length(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
    }
}
