//! `datapool backup` (from a running server, over the admin API) and `datapool restore`
//! (offline, into a data dir).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{failure, AdminClient, ApiPath};
use crate::backup::format::{self, Counts, Header};
use crate::backup::restore;

/// How long `backup` waits for the whole file: the server first waits for accepted
/// writes to be applied, then copies the store, then sends it; an hour covers stores
/// of many GiB on a local network.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// What `backup --help` adds after the flags.
pub const BACKUP_HELP: &str = "\
The server waits until every write it acknowledged before the request is applied, copies
the store as of one moment (pushes are still accepted meanwhile), and sends one file:
the store, the key that seals stored secrets, the admin token and the TLS certificate
and key. Anyone holding the file holds every credential: keep it like the data dir.
The file is written with mode 0600 next to FILE, checked (format version, checksums,
SHA-256) and only then renamed to FILE. It gives up after an hour.";

/// What `restore --help` adds after the flags.
pub const RESTORE_HELP: &str = "\
Offline: run it while no server uses DIR. The whole file is checked first; a truncated
or corrupt backup is refused and DIR is left untouched. DIR must be empty or missing,
unless --force, which replaces datapool's own files there (db, journal, tls,
secret.key, admin-token) and leaves any others. After the restore, the old admin token,
ingest keys and read keys work again. Files are created by the user running restore:
if the server runs as another user, give it DIR (chown -R).";

/// Downloads a backup into `out`, checked before it takes that name.
pub async fn backup(client: AdminClient, out: PathBuf) -> anyhow::Result<()> {
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let result = download(&client, &partial).await.and_then(|()| {
        let summary = check(&partial)?;
        std::fs::rename(&partial, &out)
            .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
        sync_parent(&out)?;
        Ok(summary)
    });
    let (header, counts, bytes) = match result {
        Ok(summary) => summary,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    report(
        client.json,
        json!({"file": out, "bytes": bytes, "createdAt": header.created_at, "counts": counts}),
        &format!(
            "backup written to {}: {bytes} bytes, {} trees, {} entries, {} files (taken {})",
            out.display(),
            counts.trees,
            counts.entries,
            counts.files,
            header.created_at
        ),
    )
}

/// Streams `GET /api/admin/backup` into `path` (mode 0600) and syncs it.
async fn download(client: &AdminClient, path: &Path) -> anyhow::Result<()> {
    let url = client.url(&ApiPath::new(["api", "admin", "backup"]))?;
    let mut response = client
        .request(Method::GET, &url)
        .timeout(BACKUP_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        return Err(failure(status, &body).into());
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("the backup from {url} broke off"))?
    {
        file.write_all(&chunk)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    file.sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))
}

/// Reads the downloaded file back whole: its header, counts and size.
fn check(path: &Path) -> anyhow::Result<(Header, Counts, u64)> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = file.metadata()?.len();
    let (header, counts) = format::verify(BufReader::new(file))?;
    Ok((header, counts, bytes))
}

fn sync_parent(path: &Path) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot sync {}", parent.display()))
}

/// Restores the backup `file` into `data_dir`.
pub fn restore(file: &Path, data_dir: &Path, force: bool, json: bool) -> anyhow::Result<()> {
    let restored = restore::restore(file, data_dir, force)?;
    let (header, counts) = (restored.header, restored.counts);
    report(
        json,
        json!({"dataDir": data_dir, "createdAt": header.created_at, "datapoolVersion": header.datapool_version, "counts": counts}),
        &format!(
            "restored the backup taken {} (datapool {}) into {}: {} trees, {} entries, {} files",
            header.created_at,
            header.datapool_version,
            data_dir.display(),
            counts.trees,
            counts.entries,
            counts.files
        ),
    )
}

fn report(json: bool, doc: Value, text: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("{text}");
    }
    Ok(())
}
