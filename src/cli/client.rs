//! A small client of the admin API for the CLI's commands.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

use super::GlobalArgs;
use crate::app::ADMIN_TOKEN_FILE;
use crate::config::Config;
use crate::http::tls::self_signed_paths;

/// How long one admin call may take, unless the command knows the server may take
/// longer (running a SQL connector's query): then this much more than that.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An authenticated connection to a server's admin API.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
    /// Print raw JSON for scripts instead of tables.
    pub json: bool,
}

/// A path of the server's API with its query, each segment percent-encoded when the
/// URL is built, so that ids holding `/`, `?`, `#`, `%` or spaces reach the server whole.
#[derive(Debug, Default)]
pub struct ApiPath {
    segments: Vec<String>,
    query: Vec<(String, String)>,
}

impl ApiPath {
    /// The path of these segments, e.g. `["api", "admin", "connectors"]`.
    pub fn new<'a>(segments: impl IntoIterator<Item = &'a str>) -> Self {
        ApiPath {
            segments: segments.into_iter().map(str::to_owned).collect(),
            query: Vec::new(),
        }
    }

    /// This path with one more segment.
    pub fn segment(mut self, segment: &str) -> Self {
        self.segments.push(segment.to_owned());
        self
    }

    /// This path with a query parameter.
    pub fn query(mut self, name: &str, value: impl ToString) -> Self {
        self.query.push((name.to_owned(), value.to_string()));
        self
    }
}

/// An error answer from the server, shown as `CODE: message (request req_…)`.
#[derive(Debug)]
pub struct ApiFailure {
    status: StatusCode,
    code: String,
    message: String,
    request_id: String,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} (request {})",
            self.status.as_u16(),
            self.code,
            self.message,
            self.request_id
        )
    }
}

impl std::error::Error for ApiFailure {}

impl ApiFailure {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error as the server's error body shows it, with the status beside.
    pub fn to_json(&self) -> Value {
        serde_json::json!({"error": {
            "code": self.code,
            "message": self.message,
            "requestId": self.request_id,
            "status": self.status.as_u16(),
        }})
    }
}

/// A command used wrongly: flags that do not fit, a document that cannot be read, no
/// admin token to be found. Exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Builds the client from the global flags and runs `command` with it on a runtime.
pub fn run<F, Fut>(global: &GlobalArgs, command: F) -> anyhow::Result<()>
where
    F: FnOnce(AdminClient) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let client = AdminClient::new(global)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(command(client))
}

impl AdminClient {
    fn new(global: &GlobalArgs) -> anyhow::Result<Self> {
        let data_dir = Config::data_dir(global.config.as_deref(), global.data_dir.clone())?;
        let token = match (&global.token_file, &global.token) {
            (Some(file), _) => read_token(file, "cannot read the --token-file")?,
            (None, Some(token)) => token.trim().to_owned(),
            (None, None) => read_token(
                &data_dir.join(ADMIN_TOKEN_FILE),
                "no admin token: pass --token-file, set DATAPOOL_TOKEN, or point --data-dir at the server's data dir; cannot read",
            )?,
        };
        let mut builder = reqwest::Client::builder().use_rustls_tls();
        if global.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let (own_cert, _) = self_signed_paths(&data_dir);
        let trusted = global.ca_cert.iter().map(|p| (p.as_path(), true));
        for (path, required) in trusted.chain([(own_cert.as_path(), false)]) {
            match std::fs::read(path) {
                Ok(pem) => {
                    let cert = reqwest::Certificate::from_pem(&pem)
                        .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
                    builder = builder.add_root_certificate(cert);
                }
                Err(e) if required => {
                    return Err(e).with_context(|| format!("cannot read {}", path.display()))
                }
                Err(_) => {}
            }
        }
        Ok(AdminClient {
            http: builder.build().context("cannot set up the HTTPS client")?,
            base: global.url.trim_end_matches('/').to_owned(),
            token,
            json: global.json,
        })
    }

    /// Calls the admin API; a success's JSON body (or `Null` for 204), else the
    /// server's error as an [`ApiFailure`].
    pub async fn call(
        &self,
        method: Method,
        path: &ApiPath,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        self.call_within(method, path, body, REQUEST_TIMEOUT).await
    }

    /// [`AdminClient::call`], waiting up to `timeout` for the answer.
    pub async fn call_within(
        &self,
        method: Method,
        path: &ApiPath,
        body: Option<&Value>,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let url = self.url(path)?;
        let mut request = self.request(method, &url).timeout(timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(&url, request).await
    }

    /// POSTs `bytes` as the raw body to `path` (a file upload), waiting up to `timeout`.
    pub async fn post_bytes(
        &self,
        path: &ApiPath,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let url = self.url(path)?;
        let request = self
            .request(Method::POST, &url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .timeout(timeout);
        self.send(&url, request).await
    }

    /// Sends `request` to `url`; a success's JSON body (or `Null` for 204), else the
    /// server's error as an [`ApiFailure`].
    async fn send(&self, url: &Url, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|_| anyhow!("{status} from {url}: {text}"))?
        };
        if status.is_success() {
            return Ok(body);
        }
        Err(failure(status, &body).into())
    }

    /// A request to `url` with the admin token, for answers read another way than as
    /// JSON (a backup file).
    pub fn request(&self, method: Method, url: &Url) -> reqwest::RequestBuilder {
        self.http
            .request(method, url.clone())
            .bearer_auth(&self.token)
    }

    /// The URL of `path` on the server, its segments percent-encoded.
    pub fn url(&self, path: &ApiPath) -> anyhow::Result<Url> {
        let mut url =
            Url::parse(&self.base).map_err(|e| Usage(format!("--url {}: {e}", self.base)))?;
        url.path_segments_mut()
            .map_err(|()| Usage(format!("--url {} cannot be a base URL", self.base)))?
            .pop_if_empty()
            .extend(&path.segments);
        if !path.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&path.query);
        }
        Ok(url)
    }
}

/// The server's error answer `body` with `status`, as an [`ApiFailure`].
pub fn failure(status: StatusCode, body: &Value) -> ApiFailure {
    let field = |name: &str| body["error"][name].as_str().unwrap_or("?").to_owned();
    ApiFailure {
        status,
        code: field("code"),
        message: field("message"),
        request_id: field("requestId"),
    }
}

/// The token in `path`; a [`Usage`] error starting with `problem` when it cannot be read.
fn read_token(path: &Path, problem: &str) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(token) => Ok(token.trim().to_owned()),
        Err(e) => Err(Usage(format!("{problem} {}: {e}", path.display())).into()),
    }
}
