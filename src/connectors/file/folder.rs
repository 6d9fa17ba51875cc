//! The watch folder: every scan lists the files in the folder whose names match the
//! connector's glob (hidden files never do), and takes one whose size and modification
//! time held still since the previous scan, so a file still being written is left
//! alone. An imported file moves to the archive subfolder (default `processed/`) or is
//! deleted; one that fails moves to `failed/`, the reason in the connector log. Both
//! are folders, and only files are scanned, so neither is ever read again; nor is a
//! file processed twice across restarts, since none stays behind once processed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use glob::{MatchOptions, Pattern};

use super::{blocking, import, Fetched, FileError};
use crate::connectors::poller::{Outcome, Polled};
use crate::connectors::{PollContext, PollError};
use crate::model::{Connector, FileSettings, FolderSource, LogLevel};

/// Subfolder of a watched folder that files which failed to import move to.
pub const FAILED_FOLDER: &str = "failed";

/// How names are matched: `*` does not match a leading dot, so hidden files (a
/// transfer's temporary name) are left alone.
const MATCHING: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// A matching file as a scan found it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Entry {
    name: String,
    size: u64,
    modified: SystemTime,
}

/// One folder connector's watcher, with what its last scan saw.
pub struct FolderPoller {
    settings: FileSettings,
    source: FolderSource,
    /// Each matching file of the last scan by name: its size and modification time.
    seen: HashMap<String, (u64, SystemTime)>,
    /// Files imported that could not be moved away, so that they are not imported
    /// again while this poller runs (the log says so).
    stuck: HashSet<Entry>,
}

impl FolderPoller {
    /// A watcher of `source` for a connector with `settings`.
    pub fn new(settings: &FileSettings, source: &FolderSource) -> Self {
        FolderPoller {
            settings: settings.clone(),
            source: source.clone(),
            seen: HashMap::new(),
            stuck: HashSet::new(),
        }
    }

    /// Scans the folder and imports the oldest file that held still; reports whether
    /// more such files wait.
    pub async fn poll(
        &mut self,
        connector: &Connector,
        context: &PollContext,
    ) -> Result<Outcome, PollError> {
        let entries = scan_folder(&self.source).await?;
        let mut stable: Vec<&Entry> = entries
            .iter()
            .filter(|e| self.seen.get(&e.name) == Some(&(e.size, e.modified)))
            .filter(|e| !self.stuck.contains(*e))
            .collect();
        stable.sort_by(|a, b| (a.modified, &a.name).cmp(&(b.modified, &b.name)));
        let more = stable.len() > 1;
        let next = stable.first().map(|e| (*e).clone());
        self.seen = entries
            .iter()
            .map(|e| (e.name.clone(), (e.size, e.modified)))
            .collect();
        self.stuck.retain(|e| entries.contains(e));
        let Some(entry) = next else {
            return Ok(Outcome {
                polled: None,
                more: false,
            });
        };
        self.seen.remove(&entry.name);
        let items = self.process(&entry, connector, context).await?;
        Ok(Outcome {
            polled: Some(Polled {
                items,
                truncated: false,
                warnings: Vec::new(),
            }),
            more,
        })
    }

    /// Imports one file and moves it: to the archive (or deleted) after success, to
    /// `failed/` when the file itself is at fault. A failure to write (shutting down,
    /// the store failing) leaves it for the next scan.
    async fn process(
        &mut self,
        entry: &Entry,
        connector: &Connector,
        context: &PollContext,
    ) -> Result<usize, PollError> {
        let folder = PathBuf::from(&self.source.path);
        let path = folder.join(&entry.name);
        let cap = self.settings.byte_cap();
        let result = match read_file(&path, cap).await {
            Ok(bytes) => {
                let file = Fetched {
                    name: entry.name.clone(),
                    bytes,
                };
                import(context, connector, &self.settings, file).await
            }
            Err(error) => Err(error.into()),
        };
        match result {
            Ok(imported) => {
                let moved = match self.source.archive() {
                    Some(archive) => move_into(&folder, archive, &entry.name)
                        .await
                        .map(|_| format!("moved to {archive}/")),
                    None => remove(&path).await.map(|()| "deleted".to_owned()),
                };
                let message = match moved {
                    Ok(done) => format!("{}; {done}", imported.summary()),
                    Err(error) => {
                        self.stuck.insert(entry.clone());
                        format!(
                            "{}; but it could not be moved away ({error}), so it stays in the folder and is not imported again until datapool restarts",
                            imported.summary()
                        )
                    }
                };
                context
                    .activity
                    .note(&connector.id, LogLevel::Info, "import", message);
                Ok(imported.items)
            }
            Err(PollError::File(error)) => {
                let moved = match move_into(&folder, FAILED_FOLDER, &entry.name).await {
                    Ok(_) => format!("moved to {FAILED_FOLDER}/"),
                    Err(move_error) => {
                        self.stuck.insert(entry.clone());
                        format!("it could not be moved to {FAILED_FOLDER}/ ({move_error}) and is left alone until datapool restarts")
                    }
                };
                Err(FileError::Folder(format!("{}: {error}; {moved}", entry.name)).into())
            }
            Err(other) => Err(other),
        }
    }
}

/// The matching files of the folder, for a test: the oldest, read but left in place.
pub async fn peek(source: &FolderSource, cap: u64) -> Result<Fetched, FileError> {
    let mut entries = scan_folder(source).await?;
    entries.sort_by(|a, b| (a.modified, &a.name).cmp(&(b.modified, &b.name)));
    let Some(oldest) = entries.into_iter().next() else {
        return Err(FileError::Folder(format!(
            "no file matching {:?} in {}",
            source.glob(),
            source.path
        )));
    };
    let bytes = read_file(&Path::new(&source.path).join(&oldest.name), cap).await?;
    Ok(Fetched {
        name: oldest.name,
        bytes,
    })
}

/// Lists the folder's regular files whose names match the glob.
async fn scan_folder(source: &FolderSource) -> Result<Vec<Entry>, FileError> {
    let pattern = Pattern::new(source.glob()).map_err(|e| {
        FileError::Folder(format!(
            "the pattern {:?} is not a glob: {e}",
            source.glob()
        ))
    })?;
    let folder = PathBuf::from(&source.path);
    blocking(move || {
        let unreadable =
            |e: std::io::Error| FileError::Folder(format!("cannot read {}: {e}", folder.display()));
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&folder).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !pattern.matches_with(&name, MATCHING) {
                continue;
            }
            let Ok(metadata) = std::fs::metadata(entry.path()) else {
                continue;
            };
            if metadata.is_file() {
                entries.push(Entry {
                    name,
                    size: metadata.len(),
                    modified: metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        Ok(entries)
    })
    .await
}

/// Reads a file of at most `cap` bytes.
async fn read_file(path: &Path, cap: u64) -> Result<axum::body::Bytes, FileError> {
    let path = path.to_owned();
    blocking(move || {
        let unreadable =
            |e: std::io::Error| FileError::Folder(format!("cannot read {}: {e}", path.display()));
        let size = std::fs::metadata(&path).map_err(unreadable)?.len();
        if size > cap {
            return Err(FileError::TooLarge(cap));
        }
        Ok(std::fs::read(&path).map_err(unreadable)?.into())
    })
    .await
}

/// Moves `name` from `folder` into its subfolder `sub` (made when missing), under a
/// new name when one of that name is already there; returns where it went.
async fn move_into(folder: &Path, sub: &str, name: &str) -> std::io::Result<PathBuf> {
    let (from, into) = (folder.join(name), folder.join(sub));
    let name = name.to_owned();
    run_io(move || {
        std::fs::create_dir_all(&into)?;
        let mut to = into.join(&name);
        if to.exists() {
            to = into.join(unique_name(&name));
        }
        std::fs::rename(&from, &to)?;
        Ok(to)
    })
    .await
}

/// `name` with the current time before its extension (`sales-20261204T183000.123Z.csv`),
/// for a file whose name the archive already holds.
fn unique_name(name: &str) -> String {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%S%.3fZ")
        .to_string();
    let path = Path::new(name);
    match (
        path.file_stem().and_then(|s| s.to_str()),
        path.extension().and_then(|e| e.to_str()),
    ) {
        (Some(stem), Some(extension)) if !stem.is_empty() => format!("{stem}-{stamp}.{extension}"),
        _ => format!("{name}-{stamp}"),
    }
}

async fn remove(path: &Path) -> std::io::Result<()> {
    let path = path.to_owned();
    run_io(move || std::fs::remove_file(&path)).await
}

/// Runs file-system `work` off the async runtime.
async fn run_io<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
}
