//! The benchmark's ceiling: a bare HTTPS server built from the same pieces as datapool
//! (hyper 1 with hyper-util's HTTP/1.1 + HTTP/2 connection builder, tokio-rustls with the
//! ring provider, ALPN `h2` and `http/1.1`) that reads each request's body and answers
//! `202` with a small JSON body, whatever the method, path or headers.
//!
//! It stores nothing and checks nothing, so `bench/run` reads datapool's figures as a
//! fraction of this one's on the same machine, client and TLS stack.
//!
//! ```sh
//! cargo run --release --example bare -- --listen 127.0.0.1:0 --cert-out /tmp/bare.pem
//! ```
//!
//! It prints `listening on ADDR` once bound and stops on SIGTERM or SIGINT.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The body of every answer: the shape and about the size of datapool's webhook answer.
const ANSWER: &str = r#"{"status":"accepted","requestId":"req_bare000000000000","stream":"bench","itemsReceived":1}"#;

/// How long a client may take over the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Command line of the bare server.
#[derive(Debug, Parser)]
#[command(about = "A bare HTTPS server that answers 202 to everything (the benchmark's ceiling)")]
struct Args {
    /// Address to listen on; port 0 picks a free one (the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write the throwaway self-signed certificate (PEM) here, for clients to pin.
    #[arg(long)]
    cert_out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (config, cert_pem) = tls_config()?;
    if let Some(path) = &args.cert_out {
        std::fs::write(path, cert_pem)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let acceptor = TlsAcceptor::from(config);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("no local address")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}").context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    drop(stdout);

    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(acceptor.clone(), stream));
                }
                Err(error) => {
                    eprintln!("accept failed: {error}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    // Open connections end with the runtime: nothing here is worth draining.
    Ok(())
}

/// A rustls configuration (ring provider, TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`)
/// with a fresh self-signed certificate for `localhost` and `127.0.0.1`, and that
/// certificate as PEM.
fn tls_config() -> anyhow::Result<(Arc<ServerConfig>, String)> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .context("cannot generate a self-signed certificate")?;
    let cert_pem = certified.cert.pem();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("no usable TLS versions")?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .context("rustls refuses the generated certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), cert_pem))
}

/// Runs one connection: TLS handshake, then HTTP/1.1 or HTTP/2 until the client leaves.
async fn serve_connection(acceptor: TlsAcceptor, stream: TcpStream) {
    // Small answers go out at once rather than waiting on Nagle's algorithm.
    if let Err(error) = stream.set_nodelay(true) {
        eprintln!("cannot set TCP_NODELAY: {error}");
    }
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        // A failed or slow handshake is the client's business; nothing to report.
        Ok(Err(_)) | Err(_) => return,
    };
    // Connection errors (a client closing mid-request) end the connection quietly.
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service_fn(answer))
        .await;
}

/// Reads the request's body to its end, then answers 202 with [`ANSWER`] (400 when the
/// body cannot be read).
async fn answer(request: Request<Incoming>) -> Result<Response<String>, Infallible> {
    let status = match drain(request.into_body()).await {
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::BAD_REQUEST,
    };
    let mut response = Response::new(ANSWER.to_owned());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Reads a body to its end without keeping it, and returns how many bytes it had.
async fn drain(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut bytes = 0u64;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Some(data) = frame?.data_ref() {
            bytes = bytes.saturating_add(data.len() as u64);
        }
    }
    Ok(bytes)
}
