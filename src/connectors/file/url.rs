//! Fetching a file connector's URL on its schedule: Basic or Bearer credentials and
//! custom headers, a conditional GET with the last imported file's `ETag` and
//! `Last-Modified`, a timeout, a redirect limit and the size cap, over rustls. A 304,
//! or a body identical to the last one imported, changes nothing.

use reqwest::header::{HeaderValue, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use super::{import, Fetched, FileError};
use crate::connectors::poller::{Outcome, Polled};
use crate::connectors::{PollContext, PollError};
use crate::model::{Connector, FileSettings, FileSource, UrlAuth, UrlSource};

/// Redirects followed before a fetch fails: enough for a moved file or an
/// HTTP → HTTPS hop, few enough that a redirect loop ends quickly.
const MAX_REDIRECTS: usize = 5;
/// Name of a file whose URL path has no last segment.
const DEFAULT_NAME: &str = "download";

/// One URL connector's fetcher, with what it knows of the last file it imported.
pub struct UrlPoller {
    client: reqwest::Client,
    settings: FileSettings,
    source: UrlSource,
    /// Validators of the last imported file, sent back for a conditional GET.
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
    /// SHA-256 of the last imported body: a server without validators that sends the
    /// same file again changes nothing either.
    digest: Option<[u8; 32]>,
    /// Records the last imported file held.
    items: usize,
}

/// What one fetch brought.
enum Fetch {
    /// 304: the file is as it was.
    NotModified,
    /// A body, with its validators.
    File {
        file: Fetched,
        etag: Option<HeaderValue>,
        last_modified: Option<HeaderValue>,
    },
}

impl UrlPoller {
    /// A fetcher for a URL-source connector's `settings`.
    pub fn new(settings: &FileSettings) -> Result<Self, FileError> {
        let FileSource::Url(source) = &settings.source else {
            return Err(FileError::Fetch(
                "the connector's source is not a URL".into(),
            ));
        };
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(std::time::Duration::from_secs(settings.timeout()))
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .build()
            .map_err(|e| FileError::Fetch(format!("cannot set up the HTTP client: {e}")))?;
        Ok(UrlPoller {
            client,
            settings: settings.clone(),
            source: source.clone(),
            etag: None,
            last_modified: None,
            digest: None,
            items: 0,
        })
    }

    /// Fetches the file, conditionally, and imports it when it changed.
    pub async fn poll(
        &mut self,
        connector: &Connector,
        context: &PollContext,
    ) -> Result<Outcome, PollError> {
        let (file, etag, last_modified) = match self.fetch(true).await? {
            Fetch::NotModified => return Ok(self.unchanged()),
            Fetch::File {
                file,
                etag,
                last_modified,
            } => (file, etag, last_modified),
        };
        let digest: [u8; 32] = Sha256::digest(&file.bytes).into();
        if self.digest != Some(digest) {
            let imported = import(context, connector, &self.settings, file).await?;
            self.items = imported.items;
            self.digest = Some(digest);
        }
        self.etag = etag;
        self.last_modified = last_modified;
        Ok(self.unchanged())
    }

    /// Fetches the file as it is now, unconditionally (for a test).
    pub async fn fetch_now(&self) -> Result<Fetched, FileError> {
        match self.fetch(false).await? {
            Fetch::File { file, .. } => Ok(file),
            Fetch::NotModified => Err(FileError::Fetch(format!(
                "{} answered 304 Not Modified to an unconditional request",
                self.shown_url()
            ))),
        }
    }

    /// The outcome of a poll whose file is the one imported last.
    fn unchanged(&self) -> Outcome {
        Outcome::polled(Polled {
            items: self.items,
            truncated: false,
            warnings: Vec::new(),
        })
    }

    /// GETs the URL, with the last validators when `conditional`, reading at most the
    /// size cap.
    async fn fetch(&self, conditional: bool) -> Result<Fetch, FileError> {
        let mut request = self.client.get(&self.source.url);
        request = match &self.source.auth {
            Some(UrlAuth::Basic { username, password }) => {
                request.basic_auth(username, Some(password.expose()))
            }
            Some(UrlAuth::Bearer { token }) => request.bearer_auth(token.expose()),
            Some(UrlAuth::None) | None => request,
        };
        for (name, value) in self.source.headers.iter().flatten() {
            request = request.header(name, value);
        }
        if conditional {
            if let Some(etag) = &self.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(last_modified) = &self.last_modified {
                request = request.header(IF_MODIFIED_SINCE, last_modified);
            }
        }
        let mut response = request.send().await.map_err(|e| self.failed(e))?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED && conditional {
            return Ok(Fetch::NotModified);
        }
        if !status.is_success() {
            return Err(FileError::Fetch(format!(
                "{} answered HTTP {status}",
                self.shown_url()
            )));
        }
        let cap = self.settings.byte_cap();
        if response.content_length().is_some_and(|n| n > cap) {
            return Err(FileError::TooLarge(cap));
        }
        let name = file_name(response.url());
        let etag = response.headers().get(ETAG).cloned();
        let last_modified = response.headers().get(LAST_MODIFIED).cloned();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.failed(e))? {
            if (body.len() + chunk.len()) as u64 > cap {
                return Err(FileError::TooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetch::File {
            file: Fetched {
                name,
                bytes: body.into(),
            },
            etag,
            last_modified,
        })
    }

    /// A failed request as an error naming the URL without its credentials or query,
    /// with every cause (timeout, refused, TLS).
    fn failed(&self, error: reqwest::Error) -> FileError {
        let error = error.without_url();
        let mut message = format!("{}: {error}", self.shown_url());
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        FileError::Fetch(message)
    }

    /// The URL as logs show it: scheme, host, port and path; no user, password or query.
    fn shown_url(&self) -> String {
        match reqwest::Url::parse(&self.source.url) {
            Ok(url) => format!(
                "{}://{}{}{}",
                url.scheme(),
                url.host_str().unwrap_or(""),
                url.port().map(|p| format!(":{p}")).unwrap_or_default(),
                url.path()
            ),
            Err(_) => "the URL".to_owned(),
        }
    }
}

/// The last segment of a URL's path, as the fetched file's name.
fn file_name(url: &reqwest::Url) -> String {
    url.path_segments()
        .and_then(|mut segments| segments.next_back())
        .filter(|name| !name.is_empty())
        .unwrap_or(DEFAULT_NAME)
        .to_owned()
}
