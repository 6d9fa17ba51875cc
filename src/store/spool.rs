//! Spool files under `<data-dir>/spool/`: a request body kept on disk while it may not
//! be used yet (a signed bulk import is verified whole before any of it is stored), so
//! memory stays bounded whatever the body's size. A file is removed when its [`Spool`]
//! is dropped, and the directory is emptied when the store opens, which clears what a
//! crash left behind.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::{io_at, Store, StoreError};
use crate::ids;

/// The spool directory's name in the data dir.
const SPOOL_DIR: &str = "spool";

/// One spool file; removed when dropped.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "a spool file could not be removed");
        }
    }
}

impl Store {
    /// A new, empty spool file, open for reading and writing, and its guard.
    pub fn spool(&self) -> Result<(Spool, File), StoreError> {
        let dir = self.inner.data_dir.join(SPOOL_DIR);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_at(&dir))?;
        let path = dir.join(format!("{}.body", ids::sequential_hex()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_at(&path))?;
        Ok((Spool { path }, file))
    }
}

/// Removes what earlier runs left in the spool directory.
pub(super) fn clear(data_dir: &Path) -> Result<(), StoreError> {
    let dir = data_dir.join(SPOOL_DIR);
    match std::fs::remove_dir_all(&dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(io_at(&dir)(error)),
        _ => Ok(()),
    }
}
