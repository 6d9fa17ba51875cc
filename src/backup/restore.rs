//! Restoring a backup into a data dir, offline. The whole file is checked first, so a
//! truncated or corrupt one is refused before the data dir is touched; it is then
//! unpacked into a staging dir inside the data dir, and only once that is complete
//! and synced do its parts take the place of the data dir's own.

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::BufReader;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::format::{self, Counts, Frame, Header, Reader};
use super::{BackupError, DATA_DIR_FILES};
use crate::private_file;
use crate::store::{Store, SCHEMA_VERSION};

/// The staging dir inside the target data dir; a leftover of an interrupted restore is
/// removed by the next one.
const STAGING_DIR: &str = ".restore";
/// The data dir's lock file, held while a server (or a restore) uses it.
const LOCK_FILE: &str = "lock";
/// What datapool keeps in a data dir: a forced restore replaces these and leaves
/// anything else alone.
const OWNED: [&str; 7] = [
    "db",
    "journal",
    "spool",
    "tls",
    "secret.key",
    crate::app::ADMIN_TOKEN_FILE,
    STAGING_DIR,
];
/// Entries loaded into the store in one batch: large enough that a batch's fixed cost
/// is small, small enough that a batch of large items stays a few MiB.
const RESTORE_BATCH: usize = 1_000;

/// A tree's entries waiting to be loaded: key, value.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// What a restore put in place.
#[derive(Debug)]
pub struct Restored {
    /// The backup's header.
    pub header: Header,
    /// What it held.
    pub counts: Counts,
}

/// Restores the backup `file` into the data dir `dir`, which must be empty (or not
/// exist) unless `force`, and must not be in use by a server. Blocking.
pub fn restore(file: &Path, dir: &Path, force: bool) -> Result<Restored, BackupError> {
    let (header, counts) = format::verify(BufReader::new(open(file)?))?;
    if header.schema_version > SCHEMA_VERSION {
        return Err(BackupError::Invalid(format!(
            "the backup has schema version {}, newer than the {SCHEMA_VERSION} this datapool understands: restore it with datapool {} or newer",
            header.schema_version, header.datapool_version
        )));
    }
    let _lock = claim(dir, force)?;
    let staging = dir.join(STAGING_DIR);
    remove_if_present(&staging)?;
    let done = unpack(file, &staging).and_then(|()| put_in_place(dir, &staging, force));
    if done.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    done?;
    Ok(Restored { header, counts })
}

fn open(file: &Path) -> Result<File, BackupError> {
    File::open(file).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot read {}: {e}", file.display())).into()
    })
}

/// Checks that `dir` may take the restore and locks it against a server starting
/// meanwhile; creates it (mode 0700) when missing.
fn claim(dir: &Path, force: bool) -> Result<File, BackupError> {
    let present: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(in_dir(dir, e)),
    };
    let contents: Vec<&String> = present
        .iter()
        .filter(|name| *name != LOCK_FILE && *name != STAGING_DIR)
        .collect();
    if !contents.is_empty() {
        if !force {
            return Err(BackupError::Refused(format!(
                "{} is not empty; pass --force to replace the datapool data dir there",
                dir.display()
            )));
        }
        if !contents.iter().any(|name| OWNED.contains(&name.as_str())) {
            return Err(BackupError::Refused(format!(
                "{} does not look like a datapool data dir (no db, journal, secret.key or admin-token); not replacing it, even with --force",
                dir.display()
            )));
        }
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| in_dir(dir, e))?;
    let path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| in_dir(dir, e))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(BackupError::Refused(format!(
            "{} is in use by a running datapool; stop it first",
            dir.display()
        ))),
        Err(TryLockError::Error(e)) => Err(in_dir(dir, e)),
    }
}

/// Unpacks the backup into `staging`: the files first (the sealing key must be there
/// before the store opens), then every tree; synced at the end.
fn unpack(file: &Path, staging: &Path) -> Result<(), BackupError> {
    DirBuilder::new()
        .mode(0o700)
        .create(staging)
        .map_err(|e| in_dir(staging, e))?;
    let (mut reader, _) = Reader::new(BufReader::new(open(file)?))?;
    let mut store: Option<Store> = None;
    let mut tree: Option<(Vec<u8>, Entries)> = None;
    while let Some(frame) = reader.next_frame()? {
        match frame {
            Frame::Header(_) => {
                return Err(BackupError::Invalid("a second header".into()));
            }
            Frame::File(name, contents) => {
                if store.is_some() || !DATA_DIR_FILES.contains(&name.as_str()) {
                    return Err(BackupError::Invalid(format!(
                        "the backup holds an unexpected file {name:?}"
                    )));
                }
                write_file(staging, &name, &contents)?;
            }
            Frame::Tree(name) => {
                let store = match &store {
                    Some(store) => store,
                    None => store.insert(Store::open(staging)?),
                };
                if let Some((previous, entries)) = tree.take() {
                    store.restore_entries(&previous, entries)?;
                }
                tree = Some((name, Vec::new()));
            }
            Frame::Entry(key, value) => {
                let (Some(store), Some((name, entries))) = (&store, &mut tree) else {
                    return Err(BackupError::Invalid("an entry outside any tree".into()));
                };
                entries.push((key, value));
                if entries.len() == RESTORE_BATCH {
                    store.restore_entries(name, std::mem::take(entries))?;
                }
            }
        }
    }
    let store = store.ok_or_else(|| BackupError::Invalid("the backup holds no store".into()))?;
    if let Some((name, entries)) = tree {
        store.restore_entries(&name, entries)?;
    }
    store.checkpoint()?;
    Ok(())
}

/// Writes one of the data dir's files (mode 0600) under `staging`.
fn write_file(staging: &Path, name: &str, contents: &[u8]) -> Result<(), BackupError> {
    let path = staging.join(name);
    if let Some(parent) = path.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| in_dir(parent, e))?;
    }
    private_file::write(&path, contents).map_err(|e| in_dir(&path, e))
}

/// Moves what `staging` holds into `dir`, first removing datapool's own entries there
/// when `force`.
fn put_in_place(dir: &Path, staging: &Path, force: bool) -> Result<(), BackupError> {
    if force {
        for name in OWNED.iter().filter(|name| **name != STAGING_DIR) {
            remove_if_present(&dir.join(name))?;
        }
    }
    for entry in std::fs::read_dir(staging).map_err(|e| in_dir(staging, e))? {
        let name = entry?.file_name();
        if name == LOCK_FILE {
            continue;
        }
        let target: PathBuf = dir.join(&name);
        std::fs::rename(staging.join(&name), &target).map_err(|e| in_dir(&target, e))?;
    }
    std::fs::remove_dir_all(staging).map_err(|e| in_dir(staging, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| in_dir(dir, e))
}

fn remove_if_present(path: &Path) -> Result<(), BackupError> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    removed.map_err(|e| in_dir(path, e))
}

/// An I/O error naming the path it happened on.
fn in_dir(path: &Path, error: std::io::Error) -> BackupError {
    std::io::Error::new(error.kind(), format!("{}: {error}", path.display())).into()
}
