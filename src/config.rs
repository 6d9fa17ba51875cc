//! The server's settings, layered lowest first: built-in defaults, the TOML file,
//! `DATAPOOL_*` environment variables, command-line flags. Validated once, at start-up.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::http::ProxyNet;
use crate::model::Secret;

/// Read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/datapool/datapool.toml";
/// Where the store lives unless configured.
pub const DEFAULT_DATA_DIR: &str = "./datapool-data";
/// The HTTPS listener unless configured: every interface, port 8443.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8443));
/// Seconds a shutdown waits for requests in flight before it closes them.
const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS: u64 = 10;
/// Longest drain an operator may configure; systemd's default stop timeout is 90 s.
const MAX_SHUTDOWN_TIMEOUT_SECONDS: u64 = 80;
/// Open connections served at once unless configured: far above what the senders and
/// dashboards of one site open, far below the default 65,536 file descriptors of the
/// systemd unit.
const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Most connections an operator may allow: each holds a file descriptor and buffers.
const MAX_MAX_CONNECTIONS: usize = 60_000;
/// Seconds a connection may stay open with no request unless configured: long enough
/// for a sender's next push to reuse it, short enough that idle peers do not pile up.
const DEFAULT_IDLE_TIMEOUT_SECONDS: u64 = 60;
/// Seconds a request body may take to arrive unless configured: a 1 MiB body needs
/// 35 KiB/s to make it, slower than any sender on a working network.
const DEFAULT_REQUEST_BODY_TIMEOUT_SECONDS: u64 = 30;
/// Longest idle or body timeout an operator may configure: past an hour a stuck peer
/// is indistinguishable from a leak.
const MAX_TIMEOUT_SECONDS: u64 = 3600;
/// Ingest requests served at once unless configured (SPEC §3.1).
const DEFAULT_MAX_INGEST_IN_FLIGHT: usize = 1024;
/// Most ingest requests in flight an operator may allow: each may hold a 1 MiB body.
const MAX_MAX_INGEST_IN_FLIGHT: usize = 65_536;
/// MiB of accepted writes that may wait to be applied unless configured: a few seconds
/// of a fast sender's pushes, small beside the memory of the boxes datapool runs on.
const DEFAULT_MAX_UNAPPLIED_MIB: usize = 64;
/// Largest budget an operator may configure: beyond it a stalled store would let a
/// server take gigabytes before refusing pushes.
const MAX_MAX_UNAPPLIED_MIB: usize = 4096;
/// Shortest `/metrics` token accepted: 16 random characters are beyond guessing within
/// the failed-authentication limit.
const MIN_METRICS_TOKEN_LEN: usize = 16;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read the config file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    #[error("invalid config file {}: {message}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line and the key.
        message: String,
    },
    /// A setting, or a combination of settings, is invalid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Output style of the process log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// One layer of settings: the TOML file, or the environment and flags together.
/// Every field is optional; the layer above wins where it sets a value.
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ServerOptions {
    /// Directory of the store, TLS material, admin token and key file; set with the
    /// global `--data-dir` on the command line.
    #[arg(skip)]
    pub data_dir: Option<PathBuf>,
    /// HTTPS listen address [default: 0.0.0.0:8443]
    #[arg(long, env = "DATAPOOL_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Also serve plain HTTP here, for use behind a reverse proxy (e.g. 127.0.0.1:8080)
    #[arg(long, env = "DATAPOOL_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// PEM certificate chain to serve instead of the generated self-signed one
    #[arg(
        long,
        env = "DATAPOOL_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(
        long,
        env = "DATAPOOL_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Log style [default: text]; the level comes from RUST_LOG (default info)
    #[arg(long, env = "DATAPOOL_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Seconds a shutdown waits for requests in flight [default: 10]
    #[arg(
        long,
        env = "DATAPOOL_SHUTDOWN_TIMEOUT_SECONDS",
        value_name = "SECONDS"
    )]
    pub shutdown_timeout_seconds: Option<u64>,
    /// Reverse proxies whose X-Forwarded-For names the client, as CIDRs or addresses, comma-separated [default: none]
    #[arg(
        long,
        env = "DATAPOOL_TRUSTED_PROXIES",
        value_name = "CIDRS",
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<ProxyNet>>,
    /// Connections served at once; past it new ones wait in the kernel's queue [default: 4096]
    #[arg(long, env = "DATAPOOL_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds a connection may stay open with no request, or wait for its peer to read, before it is closed [default: 60]
    #[arg(long, env = "DATAPOOL_IDLE_TIMEOUT_SECONDS", value_name = "SECONDS")]
    pub idle_timeout_seconds: Option<u64>,
    /// Seconds a request body may take to arrive (a bulk import: may pause) before 408 [default: 30]
    #[arg(
        long,
        env = "DATAPOOL_REQUEST_BODY_TIMEOUT_SECONDS",
        value_name = "SECONDS"
    )]
    pub request_body_timeout_seconds: Option<u64>,
    /// Ingest requests in flight at once; past it 503 [default: 1024]
    #[arg(long, env = "DATAPOOL_MAX_INGEST_IN_FLIGHT", value_name = "N")]
    pub max_ingest_in_flight: Option<usize>,
    /// MiB of accepted writes (bodies and flattened names) that may wait to be applied
    /// before pushes get 503 [default: 64]
    #[arg(long, env = "DATAPOOL_MAX_UNAPPLIED_MIB", value_name = "MIB")]
    pub max_unapplied_mib: Option<usize>,
    /// File holding a bearer token that /metrics then requires (Authorization: Bearer …) [default: /metrics is open]
    #[arg(long, env = "DATAPOOL_METRICS_TOKEN_FILE", value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Refuse subscription URLs on loopback and private addresses too (link-local ones
    /// are always refused) [default: false]
    #[arg(long, env = "DATAPOOL_OUTBOUND_DENY_PRIVATE", value_name = "BOOL")]
    pub outbound_deny_private: Option<bool>,
}

impl ServerOptions {
    /// This layer over `lower`: each field set here wins.
    fn over(self, lower: ServerOptions) -> ServerOptions {
        ServerOptions {
            data_dir: self.data_dir.or(lower.data_dir),
            listen: self.listen.or(lower.listen),
            http_listen: self.http_listen.or(lower.http_listen),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            log_format: self.log_format.or(lower.log_format),
            shutdown_timeout_seconds: self
                .shutdown_timeout_seconds
                .or(lower.shutdown_timeout_seconds),
            trusted_proxies: self.trusted_proxies.or(lower.trusted_proxies),
            max_connections: self.max_connections.or(lower.max_connections),
            idle_timeout_seconds: self.idle_timeout_seconds.or(lower.idle_timeout_seconds),
            request_body_timeout_seconds: self
                .request_body_timeout_seconds
                .or(lower.request_body_timeout_seconds),
            max_ingest_in_flight: self.max_ingest_in_flight.or(lower.max_ingest_in_flight),
            max_unapplied_mib: self.max_unapplied_mib.or(lower.max_unapplied_mib),
            metrics_token_file: self.metrics_token_file.or(lower.metrics_token_file),
            outbound_deny_private: self.outbound_deny_private.or(lower.outbound_deny_private),
        }
    }
}

/// The effective, validated settings the server runs with.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Directory of the store (`db/`), `tls/`, `admin-token` and `secret.key`.
    pub data_dir: PathBuf,
    /// The HTTPS listener.
    pub listen: SocketAddr,
    /// The optional plain-HTTP listener, meant for a reverse proxy on the same host.
    pub http_listen: Option<SocketAddr>,
    /// The operator's certificate chain; unset means the generated self-signed one.
    pub tls_cert: Option<PathBuf>,
    /// The operator's private key, set together with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Style of the process log.
    pub log_format: LogFormat,
    /// Seconds a shutdown waits for requests in flight.
    pub shutdown_timeout_seconds: u64,
    /// Reverse proxies whose `X-Forwarded-For` names the client for failed-credential
    /// limiting and logs; empty means the header is ignored.
    pub trusted_proxies: Vec<ProxyNet>,
    /// Connections served at once across the listeners; the accept loops pause at it.
    pub max_connections: usize,
    /// Seconds a connection (HTTP/1.1 or HTTP/2) may stay open with no request, and a
    /// write to it may wait for the peer to read.
    pub idle_timeout_seconds: u64,
    /// Seconds a request body may take to arrive in full; for a bulk import, the longest
    /// pause between two of its pieces.
    pub request_body_timeout_seconds: u64,
    /// Ingest requests served at once; each connector may hold half of them.
    pub max_ingest_in_flight: usize,
    /// MiB of accepted writes (bodies and flattened names) that may wait to be applied:
    /// the memory accepted writes hold. Past it pushes get 503 and bulk imports wait.
    pub max_unapplied_mib: usize,
    /// The file of the bearer token `/metrics` requires; unset, `/metrics` is open like
    /// `/healthz` and `/readyz`.
    pub metrics_token_file: Option<PathBuf>,
    /// The token read from `metrics_token_file` at start-up; never printed.
    #[serde(skip)]
    pub metrics_token: Option<Secret>,
    /// Whether subscriptions may not deliver to loopback and private addresses (RFC
    /// 1918, unique local IPv6); link-local ones are refused regardless.
    pub outbound_deny_private: bool,
}

impl Config {
    /// Reads the config file (`file`, else [`DEFAULT_CONFIG_FILE`] when it exists),
    /// lays `overrides` (environment and flags) over it, fills defaults and validates.
    pub fn load(file: Option<&Path>, overrides: ServerOptions) -> Result<Config, ConfigError> {
        let options = overrides.over(read_file(file)?);
        Config::from_options(options)
    }

    /// The data dir the file and `flag` (or environment) name, for commands that only
    /// need to find it.
    pub fn data_dir(file: Option<&Path>, flag: Option<PathBuf>) -> Result<PathBuf, ConfigError> {
        let from_file = read_file(file)?.data_dir;
        Ok(flag
            .or(from_file)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)))
    }

    fn from_options(o: ServerOptions) -> Result<Config, ConfigError> {
        let config = Config {
            data_dir: o
                .data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen: o.listen.unwrap_or(DEFAULT_LISTEN),
            http_listen: o.http_listen,
            tls_cert: o.tls_cert,
            tls_key: o.tls_key,
            log_format: o.log_format.unwrap_or_default(),
            shutdown_timeout_seconds: o
                .shutdown_timeout_seconds
                .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT_SECONDS),
            trusted_proxies: o.trusted_proxies.unwrap_or_default(),
            max_connections: o.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            idle_timeout_seconds: o
                .idle_timeout_seconds
                .unwrap_or(DEFAULT_IDLE_TIMEOUT_SECONDS),
            request_body_timeout_seconds: o
                .request_body_timeout_seconds
                .unwrap_or(DEFAULT_REQUEST_BODY_TIMEOUT_SECONDS),
            max_ingest_in_flight: o
                .max_ingest_in_flight
                .unwrap_or(DEFAULT_MAX_INGEST_IN_FLIGHT),
            max_unapplied_mib: o.max_unapplied_mib.unwrap_or(DEFAULT_MAX_UNAPPLIED_MIB),
            metrics_token: o
                .metrics_token_file
                .as_deref()
                .map(read_metrics_token)
                .transpose()?,
            metrics_token_file: o.metrics_token_file,
            outbound_deny_private: o.outbound_deny_private.unwrap_or(false),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir must not be empty".into());
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return invalid("tls_cert and tls_key are set together or not at all".into())
            }
            (Some(cert), Some(key)) => {
                for file in [cert, key] {
                    if !file.is_file() {
                        return invalid(format!("TLS file {} does not exist", file.display()));
                    }
                }
            }
            (None, None) => {}
        }
        if self.http_listen == Some(self.listen) && self.listen.port() != 0 {
            return invalid(format!("listen and http_listen are both {}", self.listen));
        }
        check_range(
            "shutdown_timeout_seconds",
            self.shutdown_timeout_seconds,
            MAX_SHUTDOWN_TIMEOUT_SECONDS,
        )?;
        check_range("max_connections", self.max_connections, MAX_MAX_CONNECTIONS)?;
        check_range(
            "idle_timeout_seconds",
            self.idle_timeout_seconds,
            MAX_TIMEOUT_SECONDS,
        )?;
        check_range(
            "request_body_timeout_seconds",
            self.request_body_timeout_seconds,
            MAX_TIMEOUT_SECONDS,
        )?;
        check_range(
            "max_ingest_in_flight",
            self.max_ingest_in_flight,
            MAX_MAX_INGEST_IN_FLIGHT,
        )?;
        check_range(
            "max_unapplied_mib",
            self.max_unapplied_mib,
            MAX_MAX_UNAPPLIED_MIB,
        )
    }

    /// The settings as TOML, as `check-config` prints them. No setting is a secret;
    /// secrets live in the data dir or in files the config names, never in the config.
    pub fn to_toml(&self) -> String {
        // Paths, addresses, an enum, a number and strings always serialize.
        toml::to_string(self).unwrap_or_default()
    }
}

/// A setting that must be between 1 and `max`.
fn check_range<N>(name: &str, value: N, max: N) -> Result<(), ConfigError>
where
    N: PartialOrd + From<u8> + std::fmt::Display,
{
    if value < N::from(1) || value > max {
        return Err(ConfigError::Invalid(format!(
            "{name} must be between 1 and {max}"
        )));
    }
    Ok(())
}

/// The `/metrics` token in `path`: its first line, without surrounding whitespace, at
/// least [`MIN_METRICS_TOKEN_LEN`] printable ASCII characters (it travels in a header).
fn read_metrics_token(path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.len() < MIN_METRICS_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::Invalid(format!(
            "the metrics token in {} must be at least {MIN_METRICS_TOKEN_LEN} printable ASCII characters without spaces",
            path.display()
        )));
    }
    Ok(Secret::new(token))
}

fn read_file(file: Option<&Path>) -> Result<ServerOptions, ConfigError> {
    let default = Path::new(DEFAULT_CONFIG_FILE);
    let path = match file {
        Some(path) => path,
        None if default.exists() => default,
        None => return Ok(ServerOptions::default()),
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write");
        file
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = write("listen = \"127.0.0.1:9000\"\nhttp_listen = \"127.0.0.1:9001\"\ndata_dir = \"/srv/dp\"\n");
        let flags = ServerOptions {
            listen: Some("127.0.0.1:9100".parse().expect("addr")),
            ..Default::default()
        };
        let config = Config::load(Some(file.path()), flags).expect("valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(
            config.http_listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9001")
        );
        assert_eq!(config.data_dir, PathBuf::from("/srv/dp"));
        assert_eq!(
            config.shutdown_timeout_seconds,
            DEFAULT_SHUTDOWN_TIMEOUT_SECONDS
        );
    }

    #[test]
    fn bad_files_and_combinations_fail_with_the_reason() {
        let unknown = write("lisen = \"127.0.0.1:9000\"\n");
        let err =
            Config::load(Some(unknown.path()), ServerOptions::default()).expect_err("unknown key");
        assert!(err.to_string().contains("lisen"), "{err}");
        let bad_addr = write("listen = \"nowhere\"\n");
        assert!(Config::load(Some(bad_addr.path()), ServerOptions::default()).is_err());
        let half_tls = write("tls_cert = \"/etc/hosts\"\n");
        let err =
            Config::load(Some(half_tls.path()), ServerOptions::default()).expect_err("half TLS");
        assert!(err.to_string().contains("together"), "{err}");
        let missing = Config::load(
            Some(Path::new("/nonexistent/datapool.toml")),
            ServerOptions::default(),
        );
        assert!(matches!(missing, Err(ConfigError::Read { .. })));
    }

    #[test]
    fn the_metrics_token_is_read_from_its_file_and_never_printed() {
        let token = write("  0123456789abcdef-scrape \n");
        let config = write(&format!("metrics_token_file = {:?}\n", token.path()));
        let loaded = Config::load(Some(config.path()), ServerOptions::default()).expect("valid");
        let read = loaded.metrics_token.as_ref().map(Secret::expose);
        assert_eq!(read, Some("0123456789abcdef-scrape"));
        assert!(!loaded.to_toml().contains("0123456789abcdef"));
        assert!(!format!("{loaded:?}").contains("0123456789abcdef"));
        let short = write("short\n");
        let flags = ServerOptions {
            metrics_token_file: Some(short.path().to_owned()),
            ..Default::default()
        };
        let err = Config::load(None, flags).expect_err("too short");
        assert!(err.to_string().contains("at least 16"), "{err}");
    }
}
