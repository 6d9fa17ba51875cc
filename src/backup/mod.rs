//! Backups: one file holding a consistent snapshot of the store together with the data
//! dir's secret files (the key that seals stored secrets, the admin token, the TLS
//! certificate and key), so that a restored server answers to the same credentials.
//! Taken by a running server ([`write`]), checked and unpacked offline
//! ([`restore::restore`]).

pub mod format;
pub mod restore;

use std::io::Write;
use std::path::Path;

use crate::store::{SnapshotSink, Store, StoreError, SCHEMA_VERSION};
use format::{Counts, Header, Writer};

/// The data dir's files a backup carries, by path relative to the data dir, when they
/// exist: the sealing key (without it, stored secrets cannot be opened), the admin
/// token, and the generated TLS certificate and key (clients trust that certificate).
pub const DATA_DIR_FILES: [&str; 4] = [
    "secret.key",
    crate::app::ADMIN_TOKEN_FILE,
    "tls/cert.pem",
    "tls/key.pem",
];

/// Why a backup cannot be written or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file ends before its end frame.
    #[error(
        "the backup is truncated: it ends at byte {offset}, before its end; nothing was restored"
    )]
    Truncated {
        /// Where it ends.
        offset: u64,
    },
    /// A frame or the whole file fails its checks.
    #[error("the backup is corrupt at byte {offset}: {problem}; nothing was restored")]
    Corrupt {
        /// Where the bad frame starts.
        offset: u64,
        /// What is wrong.
        problem: String,
    },
    /// Not a backup this datapool can read or write.
    #[error("{0}")]
    Invalid(String),
    /// The target data dir cannot take the restore.
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A header or counts could not be encoded or decoded.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// Writes a backup of `store` and its data dir's files to `out`: every write
/// acknowledged before the caller waited for the applier to catch up is in it. Returns
/// the counts and the size written. Blocking: the store's writers wait while its trees
/// are copied, so `out` should be a local file, not a client.
pub fn write<W: Write>(store: &Store, out: W) -> Result<(W, Counts, u64), BackupError> {
    let header = Header {
        datapool_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: jiff::Timestamp::now(),
        schema_version: SCHEMA_VERSION,
    };
    let mut writer = Writer::new(out, &header)?;
    for name in DATA_DIR_FILES {
        if let Some(contents) = read_if_present(&store.data_dir().join(name))? {
            writer.file(name, &contents)?;
        }
    }
    store.snapshot(&mut writer)?;
    writer.finish()
}

impl<W: Write> SnapshotSink for Writer<W> {
    type Error = BackupError;

    fn tree(&mut self, name: &[u8]) -> Result<(), BackupError> {
        Writer::tree(self, name)
    }

    fn entry(&mut self, key: &[u8], value: &[u8]) -> Result<(), BackupError> {
        Writer::entry(self, key, value)
    }
}

fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, BackupError> {
    match std::fs::read(path) {
        Ok(contents) => Ok(Some(contents)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())).into()),
    }
}
