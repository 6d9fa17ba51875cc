//! Settings of pull connectors: SQL queries polled on a schedule and files uploaded,
//! fetched from a URL or picked up from a watched folder (SPEC §4.1, §4.2).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::push::header_name;
use super::{check, ensure};
use crate::model::{Secret, ValidationError};

/// Highest row cap a SQL connector may set: more belongs in a bulk import.
const MAX_ROWS_CAP: u64 = 1_000_000;
/// Longest poll interval or timeout accepted: one week.
const MAX_SECONDS: u64 = 7 * 24 * 3600;
/// What a masked password reads as.
const MASK: &str = "***";
/// Seconds between polls of a SQL connector unless set (SPEC §4.1).
pub const DEFAULT_SQL_POLL_SECONDS: u64 = 60;
/// Seconds a SQL query may run unless set (SPEC §4.1).
pub const DEFAULT_SQL_TIMEOUT_SECONDS: u64 = 30;
/// Rows a SQL poll reads unless set (SPEC §4.1).
pub const DEFAULT_SQL_MAX_ROWS: u64 = 10_000;
/// Seconds between fetches of a file URL unless set (SPEC §4.2).
pub const DEFAULT_URL_POLL_SECONDS: u64 = 300;
/// Seconds between scans of a watched folder unless set: a dropped file is picked up
/// within two scans (its size must hold still for one), so about 20 s.
pub const DEFAULT_FOLDER_POLL_SECONDS: u64 = 10;
/// Seconds a file URL fetch may take unless set: a 100 MiB file over a slow site link.
pub const DEFAULT_FILE_TIMEOUT_SECONDS: u64 = 60;
/// Largest file accepted unless set (100 MiB): far above the spreadsheets and exports
/// a DataPool is fed, small beside the memory of the boxes datapool runs on.
pub const DEFAULT_FILE_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Subfolder of a watched folder that imported files move to unless set.
pub const DEFAULT_ARCHIVE_FOLDER: &str = "processed";

/// `settings` of a `sql` connector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqlSettings {
    /// A `postgres://`, `mysql://`, `sqlite:///` URL or a SQL Server ADO.NET string.
    /// Write-only in part: reads show it with the password replaced by `***`.
    pub connection_string: Secret,
    /// The query whose rows become items.
    pub query: String,
    /// Seconds between polls (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_seconds: Option<u64>,
    /// Seconds a query may run (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Most rows read per poll (default 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u64>,
    /// Delete this connector's items that a successful poll no longer returns (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<bool>,
    /// IANA time zone for zone-less timestamps and the `@today`-style parameters
    /// (default the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// The database family a connection string names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlDriver {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `mysql://` or `mariadb://`.
    MySql,
    /// `sqlite:///absolute/path.db`.
    Sqlite,
    /// An ADO.NET string with `server=…`.
    SqlServer,
}

/// `settings` of a `file` connector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSettings {
    /// How the file is parsed.
    pub format: FileFormat,
    /// Where the file comes from.
    pub source: FileSource,
    /// Seconds between fetches of a URL (default 300) or scans of a folder (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_seconds: Option<u64>,
    /// Seconds a URL fetch may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Largest file accepted, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Excel: the sheet to read (default the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    /// CSV and Excel: whether the first row names the columns (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_row: Option<bool>,
    /// CSV: the field delimiter, one character (default detected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// CSV: the quote character (default `"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<String>,
    /// CSV: the text encoding (default UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<TextEncoding>,
    /// JSON: a pointer to the array of objects (default the whole document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_pointer: Option<String>,
    /// XML: slash path from the root to the repeated element, e.g. `/rows/row`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xml_path: Option<String>,
    /// Excel: IANA time zone of the workbook's date-times, which carry none (default
    /// the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Delete this connector's items the newest file no longer holds (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<bool>,
}

/// File formats a file connector reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Comma (or otherwise) separated values.
    Csv,
    /// An Excel workbook, xlsx or xls.
    #[serde(alias = "xlsx", alias = "xls")]
    Excel,
    /// A JSON array of objects.
    Json,
    /// Repeated XML elements.
    Xml,
}

/// Text encodings a CSV file may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TextEncoding {
    /// UTF-8 (the default).
    #[serde(rename = "utf-8")]
    Utf8,
    /// Windows-1252, as Excel on Windows writes CSV.
    #[serde(rename = "windows-1252")]
    Windows1252,
    /// ISO-8859-1 (Latin-1).
    #[serde(rename = "iso-8859-1")]
    Iso8859_1,
    /// UTF-16 with a byte order mark.
    #[serde(rename = "utf-16")]
    Utf16,
}

/// Where a file connector's file comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FileSource {
    /// Sent through the admin API or the UI.
    Upload,
    /// Fetched from a URL on a schedule.
    Url(UrlSource),
    /// Picked up from a watched folder.
    Folder(FolderSource),
}

/// A file fetched over HTTP(S).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UrlSource {
    /// `http://` or `https://` address of the file.
    pub url: String,
    /// Credentials for the fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<UrlAuth>,
    /// Extra request headers (not secret: credentials belong in `auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
}

/// Credentials for fetching a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum UrlAuth {
    /// No credentials.
    None,
    /// HTTP Basic.
    Basic {
        /// The user name.
        username: String,
        /// The password; write-only.
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token; write-only.
        token: Secret,
    },
}

/// A folder watched for new files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FolderSource {
    /// Absolute path of the watched folder.
    pub path: String,
    /// Glob of the file names to pick up (default `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// What happens to a file once imported (default archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_processing: Option<AfterProcessing>,
    /// Subfolder imported files move to (default `processed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_folder: Option<String>,
}

/// What happens to a picked-up file after a successful import.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AfterProcessing {
    /// Move it into the archive subfolder.
    Archive,
    /// Delete it.
    Delete,
}

impl SqlSettings {
    /// The database family the connection string names.
    pub fn driver(&self) -> Result<SqlDriver, ValidationError> {
        let path = "settings.connectionString";
        let text = self.connection_string.expose().trim();
        if let Some(scheme) = url_scheme(text) {
            let driver = match scheme.to_ascii_lowercase().as_str() {
                "postgres" | "postgresql" => SqlDriver::Postgres,
                "mysql" | "mariadb" => SqlDriver::MySql,
                "sqlite" => SqlDriver::Sqlite,
                other => {
                    return Err(ValidationError::field(
                        path,
                        format!("unknown scheme {other:?}: use postgres://, mysql://, sqlite:/// or an ADO.NET string"),
                    ))
                }
            };
            let url = url::Url::parse(text)
                .map_err(|e| ValidationError::field(path, format!("not a valid URL ({e})")))?;
            match driver {
                SqlDriver::Sqlite => ensure(
                    url.path().len() > 1 && url.host_str().unwrap_or("").is_empty(),
                    path,
                    "a SQLite URL names an absolute file: sqlite:///abs/path.db",
                )?,
                _ => ensure(
                    url.host_str().is_some_and(|h| !h.is_empty()),
                    path,
                    "the URL needs a host",
                )?,
            }
            return Ok(driver);
        }
        let has_server = ado_entries(text)
            .iter()
            .any(|entry| entry.key == "server" || entry.key == "data source");
        ensure(
            has_server,
            path,
            "use a postgres://, mysql:// or sqlite:/// URL, or an ADO.NET string with server=…",
        )?;
        Ok(SqlDriver::SqlServer)
    }

    /// Seconds between polls, the default applied.
    pub fn poll_interval(&self) -> u64 {
        self.poll_interval_seconds
            .unwrap_or(DEFAULT_SQL_POLL_SECONDS)
    }

    /// Seconds a connection attempt, and then the query, may take; the default applied.
    pub fn timeout(&self) -> u64 {
        self.timeout_seconds.unwrap_or(DEFAULT_SQL_TIMEOUT_SECONDS)
    }

    /// Longest a run (connecting, then the query) may take before it is abandoned: the
    /// timeout for each step.
    pub fn longest_run(&self) -> Duration {
        Duration::from_secs(self.timeout().saturating_mul(2))
    }

    /// Most rows one poll reads, the default applied.
    pub fn row_cap(&self) -> u64 {
        self.max_rows.unwrap_or(DEFAULT_SQL_MAX_ROWS)
    }

    /// Whether a successful poll deletes this connector's items it no longer returns.
    pub fn mirrors(&self) -> bool {
        self.mirror.unwrap_or(true)
    }

    /// The connection string with its password replaced by `***`, as reads show it.
    pub fn masked_connection_string(&self) -> String {
        mask_connection_string(self.connection_string.expose())
    }

    /// A connection string sent in a change, with each `***` password (as a read shows
    /// it) replaced by the stored one: changing the host keeps the password.
    pub fn unmasked_connection_string(&self, submitted: &str) -> String {
        unmask_connection_string(submitted, self.connection_string.expose())
    }

    pub(super) fn validate(&self) -> Result<(), ValidationError> {
        self.driver()?;
        ensure(
            !self.query.trim().is_empty(),
            "settings.query",
            "must not be empty",
        )?;
        let seconds = [
            (self.poll_interval_seconds, "settings.pollIntervalSeconds"),
            (self.timeout_seconds, "settings.timeoutSeconds"),
        ];
        for (value, path) in seconds {
            if let Some(value) = value {
                check(value, 1, MAX_SECONDS, path)?;
            }
        }
        if let Some(rows) = self.max_rows {
            check(rows, 1, MAX_ROWS_CAP, "settings.maxRows")?;
        }
        if let Some(zone) = &self.time_zone {
            known_zone(zone)?;
        }
        Ok(())
    }
}

/// Refuses a `settings.timeZone` that is not a known IANA name.
fn known_zone(zone: &str) -> Result<(), ValidationError> {
    jiff::tz::TimeZone::get(zone).map(|_| ()).map_err(|_| {
        ValidationError::field(
            "settings.timeZone",
            format!("{zone:?} is not a known IANA time zone"),
        )
    })
}

impl FileSettings {
    /// Seconds between fetches of a URL or scans of a folder, the default applied;
    /// None for an upload source, which is not polled.
    pub fn poll_interval(&self) -> Option<u64> {
        let default = match &self.source {
            FileSource::Upload => return None,
            FileSource::Url(_) => DEFAULT_URL_POLL_SECONDS,
            FileSource::Folder(_) => DEFAULT_FOLDER_POLL_SECONDS,
        };
        Some(self.poll_interval_seconds.unwrap_or(default))
    }

    /// Seconds a URL fetch may take, the default applied.
    pub fn timeout(&self) -> u64 {
        self.timeout_seconds.unwrap_or(DEFAULT_FILE_TIMEOUT_SECONDS)
    }

    /// Largest file accepted, in bytes, the default applied.
    pub fn byte_cap(&self) -> u64 {
        self.max_bytes.unwrap_or(DEFAULT_FILE_MAX_BYTES)
    }

    /// Whether an import deletes this connector's items the file no longer holds.
    pub fn mirrors(&self) -> bool {
        self.mirror.unwrap_or(true)
    }

    /// CSV and Excel: whether the first row names the columns.
    pub fn has_header_row(&self) -> bool {
        self.header_row.unwrap_or(true)
    }

    pub(super) fn validate(&self) -> Result<(), ValidationError> {
        match &self.source {
            FileSource::Upload => ensure(
                self.poll_interval_seconds.is_none(),
                "settings.pollIntervalSeconds",
                "an upload source is not polled",
            )?,
            FileSource::Url(source) => source.validate()?,
            FileSource::Folder(source) => source.validate()?,
        }
        let seconds = [
            (self.poll_interval_seconds, "settings.pollIntervalSeconds"),
            (self.timeout_seconds, "settings.timeoutSeconds"),
        ];
        for (value, path) in seconds {
            if let Some(value) = value {
                check(value, 1, MAX_SECONDS, path)?;
            }
        }
        if let Some(bytes) = self.max_bytes {
            check(bytes, 1, u64::MAX, "settings.maxBytes")?;
        }
        for (value, path) in [
            (&self.delimiter, "settings.delimiter"),
            (&self.quote, "settings.quote"),
        ] {
            if let Some(value) = value {
                ensure(
                    value.chars().count() == 1,
                    path,
                    "must be exactly one character",
                )?;
            }
        }
        if let Some(pointer) = &self.json_pointer {
            ensure(
                pointer.is_empty() || pointer.starts_with('/'),
                "settings.jsonPointer",
                "a JSON pointer is empty or starts with /",
            )?;
        }
        if let Some(path) = &self.xml_path {
            let well_formed = path.starts_with('/') && path[1..].split('/').all(|s| !s.is_empty());
            ensure(
                well_formed,
                "settings.xmlPath",
                "a slash path from the root, e.g. /rows/row",
            )?;
        }
        let format_only = [
            ("settings.sheet", self.sheet.is_some(), FileFormat::Excel),
            (
                "settings.delimiter",
                self.delimiter.is_some(),
                FileFormat::Csv,
            ),
            ("settings.quote", self.quote.is_some(), FileFormat::Csv),
            (
                "settings.encoding",
                self.encoding.is_some(),
                FileFormat::Csv,
            ),
            (
                "settings.jsonPointer",
                self.json_pointer.is_some(),
                FileFormat::Json,
            ),
            ("settings.xmlPath", self.xml_path.is_some(), FileFormat::Xml),
            (
                "settings.timeZone",
                self.time_zone.is_some(),
                FileFormat::Excel,
            ),
        ];
        for (path, set, format) in format_only {
            ensure(
                !set || self.format == format,
                path,
                "does not apply to this format",
            )?;
        }
        if let Some(zone) = &self.time_zone {
            known_zone(zone)?;
        }
        ensure(
            self.format != FileFormat::Xml || self.xml_path.is_some(),
            "settings.xmlPath",
            "an XML connector needs the path of its repeated element",
        )
    }
}

impl UrlSource {
    fn validate(&self) -> Result<(), ValidationError> {
        let url = url::Url::parse(&self.url).map_err(|e| {
            ValidationError::field("settings.source.url", format!("not a valid URL ({e})"))
        })?;
        ensure(
            matches!(url.scheme(), "http" | "https"),
            "settings.source.url",
            "must be an http:// or https:// URL",
        )?;
        for name in self.headers.iter().flat_map(|h| h.keys()) {
            header_name("settings.source.headers", name)?;
        }
        Ok(())
    }
}

impl FolderSource {
    /// The glob of file names to pick up, the default applied.
    pub fn glob(&self) -> &str {
        self.pattern.as_deref().unwrap_or("*")
    }

    /// The subfolder imported files move to, or None when they are deleted.
    pub fn archive(&self) -> Option<&str> {
        match self.after_processing {
            Some(AfterProcessing::Delete) => None,
            _ => Some(
                self.archive_folder
                    .as_deref()
                    .unwrap_or(DEFAULT_ARCHIVE_FOLDER),
            ),
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        ensure(
            Path::new(&self.path).is_absolute(),
            "settings.source.path",
            "must be an absolute path",
        )?;
        if let Some(pattern) = &self.pattern {
            ensure(
                !pattern.is_empty() && !pattern.contains('/'),
                "settings.source.pattern",
                "a file name glob such as *.csv",
            )?;
        }
        if let Some(folder) = &self.archive_folder {
            let plain =
                !folder.is_empty() && !folder.contains('/') && folder != "." && folder != "..";
            ensure(
                plain,
                "settings.source.archiveFolder",
                "a subfolder name such as processed",
            )?;
        }
        Ok(())
    }
}

/// The scheme of a URL-form connection string (`postgres` in `postgres://…`); None for
/// an ADO.NET string, even one whose password happens to contain `://`.
fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let plain = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    plain.then_some(scheme)
}

/// One `key=value` entry of an ADO.NET connection string: the key lowercased and
/// trimmed, and where the value lies in the text, quotes included.
struct AdoEntry {
    key: String,
    value: Range<usize>,
}

/// The entries of an ADO.NET connection string, read by its quoting rules: a value in
/// `"…"` or `'…'` (the quote doubled inside) or in ODBC braces `{…}` (`}}` inside) may
/// hold `;`. An unclosed quote runs to the end of the text.
fn ado_entries(text: &str) -> Vec<AdoEntry> {
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let segment_end = text[pos..].find(';').map_or(text.len(), |i| pos + i);
        let Some(eq) = text[pos..segment_end].find('=').map(|i| pos + i) else {
            pos = segment_end + 1;
            continue;
        };
        let key = text[pos..eq].trim().to_ascii_lowercase();
        let start = eq + 1 + (text[eq + 1..].len() - text[eq + 1..].trim_start().len());
        let value_end = match text[start..].chars().next() {
            Some(open @ ('"' | '\'' | '{')) => quoted_end(text, start, open),
            _ => start + text[start..segment_end].trim_end().len(),
        };
        entries.push(AdoEntry {
            key,
            value: start..value_end,
        });
        pos = text[value_end..]
            .find(';')
            .map_or(text.len(), |i| value_end + i + 1);
    }
    entries
}

/// Where the quoted value opening with `open` at `start` ends (just past its closing
/// quote; the end of the text when it has none).
fn quoted_end(text: &str, start: usize, open: char) -> usize {
    let close = if open == '{' { '}' } else { open };
    let mut chars = text[start + 1..].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != close {
            continue;
        }
        if chars.peek().is_some_and(|&(_, next)| next == close) {
            chars.next();
            continue;
        }
        return start + 1 + i + c.len_utf8();
    }
    text.len()
}

/// Whether an ADO.NET key names the password.
fn is_password_key(key: &str) -> bool {
    matches!(key, "password" | "pwd")
}

/// `text` with the value of every ADO.NET password entry replaced by what `replace`
/// gives for it.
fn replace_ado_passwords(text: &str, replace: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for entry in ado_entries(text) {
        if is_password_key(&entry.key) {
            out.push_str(&text[copied..entry.value.start]);
            out.push_str(&replace(&text[entry.value.clone()]));
            copied = entry.value.end;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The value of the first ADO.NET password entry, quotes included.
fn ado_password(text: &str) -> Option<&str> {
    ado_entries(text)
        .into_iter()
        .find(|entry| is_password_key(&entry.key))
        .map(|entry| &text[entry.value])
}

/// Replaces every password in a connection string (URL userinfo, a `password` query
/// parameter, or an ADO.NET `password`/`pwd` entry, quoted or not) with `***`; a URL
/// that cannot be parsed is masked whole.
fn mask_connection_string(text: &str) -> String {
    if url_scheme(text).is_none() {
        return replace_ado_passwords(text, |_| MASK.to_owned());
    }
    let Ok(mut url) = url::Url::parse(text) else {
        return MASK.to_owned();
    };
    if url.password().is_some() && url.set_password(Some(MASK)).is_err() {
        return MASK.to_owned();
    }
    replace_password_param(&mut url, |_| MASK.to_owned());
    url.to_string()
}

/// `submitted` with each password that reads `***` replaced by the one `stored` has, so
/// a read's connection string sent back with another host or database keeps the
/// password it cannot show. A string without `***` passwords is returned as it is.
fn unmask_connection_string(submitted: &str, stored: &str) -> String {
    if url_scheme(submitted).is_none() {
        let Some(password) = ado_password(stored) else {
            return submitted.to_owned();
        };
        return replace_ado_passwords(submitted, |value| {
            if value == MASK {
                password.to_owned()
            } else {
                value.to_owned()
            }
        });
    }
    let (Ok(mut url), Ok(old)) = (url::Url::parse(submitted), url::Url::parse(stored)) else {
        return submitted.to_owned();
    };
    if url.password() == Some(MASK) && url.set_password(old.password()).is_err() {
        return submitted.to_owned();
    }
    let old_param = old
        .query_pairs()
        .find(|(k, _)| k.eq_ignore_ascii_case("password"))
        .map(|(_, v)| v.into_owned());
    if let Some(old_param) = old_param {
        replace_password_param(&mut url, |value| {
            if value == MASK {
                old_param.clone()
            } else {
                value.to_owned()
            }
        });
    }
    url.to_string()
}

/// Replaces the value of every `password` query parameter of `url` by `replace`.
fn replace_password_param(url: &mut url::Url, replace: impl Fn(&str) -> String) {
    let has_password_param = url
        .query_pairs()
        .any(|(k, _)| k.eq_ignore_ascii_case("password"));
    if !has_password_param {
        return;
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k.eq_ignore_ascii_case("password") {
                replace(&v)
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_in_every_connection_string_form() {
        let cases = [
            (
                "postgres://app:s3cret@db:5432/sales",
                "postgres://app:***@db:5432/sales",
            ),
            ("mysql://root@db/test", "mysql://root@db/test"),
            (
                "postgres://db/sales?user=a&password=s3cret",
                "postgres://db/sales?user=a&password=***",
            ),
            (
                "server=tcp:db,1433;user id=sa;Password=s3cret;database=x",
                "server=tcp:db,1433;user id=sa;Password=***;database=x",
            ),
            ("sqlite:///var/lib/x.db", "sqlite:///var/lib/x.db"),
            (
                "server=tcp:db,1433;Password={a;b}}c};user id=sa",
                "server=tcp:db,1433;Password=***;user id=sa",
            ),
            (
                "server=db;pwd = \"x;\"\"y=z\" ;database=d",
                "server=db;pwd = *** ;database=d",
            ),
            ("server=db;Password='a;''b'", "server=db;Password=***"),
            (
                "server=db;password={open;to the end",
                "server=db;password=***",
            ),
            (
                "server=db;password=a://b;user id=sa",
                "server=db;password=***;user id=sa",
            ),
        ];
        for (input, masked) in cases {
            assert_eq!(mask_connection_string(input), masked, "{input}");
        }
    }

    #[test]
    fn a_masked_password_stands_for_the_stored_one() {
        let cases = [
            (
                "server=tcp:old,1433;user id=sa;Password={a;b}}c}",
                "server=tcp:new,1433;user id=sa;Password=***",
                "server=tcp:new,1433;user id=sa;Password={a;b}}c}",
            ),
            (
                "server=old;pwd='x;''y'",
                "server=new;PWD=***;database=d",
                "server=new;PWD='x;''y';database=d",
            ),
            (
                "server=old;password=plain",
                "server=new;password=changed",
                "server=new;password=changed",
            ),
            (
                "postgres://app:s%3Bcret@old:5432/sales",
                "postgres://app:***@new:5432/sales",
                "postgres://app:s%3Bcret@new:5432/sales",
            ),
            (
                "postgres://old/sales?user=a&password=s3cret",
                "postgres://new/sales?user=a&password=***",
                "postgres://new/sales?user=a&password=s3cret",
            ),
            (
                "postgres://app:s3cret@old/sales",
                "postgres://app:other@new/sales",
                "postgres://app:other@new/sales",
            ),
            (
                "mysql://root@old/test",
                "mysql://root:***@new/test",
                "mysql://root@new/test",
            ),
        ];
        for (stored, submitted, kept) in cases {
            assert_eq!(
                unmask_connection_string(submitted, stored),
                kept,
                "{stored} + {submitted}"
            );
            assert_eq!(
                unmask_connection_string(&mask_connection_string(stored), stored),
                stored,
                "a read sent back unchanged keeps {stored}"
            );
        }
    }

    fn sql(connection_string: &str) -> SqlSettings {
        SqlSettings {
            connection_string: Secret::new(connection_string),
            query: "select 1".into(),
            poll_interval_seconds: None,
            timeout_seconds: None,
            max_rows: None,
            mirror: None,
            time_zone: None,
        }
    }

    #[test]
    fn recognises_each_driver() {
        let cases = [
            ("postgres://u:p@h:5432/db", SqlDriver::Postgres),
            ("postgresql://h/db", SqlDriver::Postgres),
            ("mysql://root@127.0.0.1:3306/test", SqlDriver::MySql),
            ("sqlite:///tmp/a.db", SqlDriver::Sqlite),
            (
                "server=tcp:h,1433;user id=sa;password=x;database=d",
                SqlDriver::SqlServer,
            ),
        ];
        for (text, driver) in cases {
            assert_eq!(sql(text).driver(), Ok(driver), "{text}");
        }
        for bad in [
            "oracle://h/db",
            "sqlite://relative.db",
            "postgres:///nohost",
            "just text",
        ] {
            assert!(sql(bad).driver().is_err(), "{bad}");
        }
    }
}
