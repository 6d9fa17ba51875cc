//! Persistence: the one module that imports sled. Everything else sees typed records.
//!
//! On disk, under the data dir: `db/` (sled), `journal/` (the write-ahead journal of
//! accepted requests, see [`Wal`]), `lock` (held while a server runs, so a
//! second process fails fast instead of waiting), and `secret.key` (0600), the key that
//! seals records holding secrets. Trees:
//! - `meta`: the schema version and the admin key id;
//! - `connectors`: connector id → sealed [`Connector`];
//! - `connector_names`: lowercased name → connector id (names are unique);
//! - `read_keys`: read key id → [`ReadKey`](crate::model::ReadKey);
//! - `keys`: key id → [`KeyRecord`] (hashes only), for every kind of credential;
//! - `idempotency`: connector id \0 key → the first answer, until it expires;
//! - `items`: stream \0 item id → [`Item`](crate::model::Item);
//! - `streams`: stream → item count and last change;
//! - `connector_logs`: connector id \0 time → [`LogEntry`](crate::model::LogEntry), 30 days;
//! - `activity`: connector id → [`ActivitySummary`](crate::model::ActivitySummary);
//! - `connector_items`: connector id → items it last wrote;
//! - `stream_changes`: stream \0 last change sequence → consecutive
//!   [`Change`](crate::model::Change)s of that stream, kept 7 days. Data dirs from before
//!   it kept one `changes` tree of every stream by sequence; opening one drops that tree
//!   and marks its changes as gone (readers resuming from them get `event: reset`);
//! - `subscriptions`, `deliveries`, `outbox`, `delivery_log`: subscriptions and the
//!   durable outbox of their deliveries (see [`Outbox`]);
//! - `history`: the points of the fields' history of streams with snapshots on,
//!   by stream, item, field and time (see `history.rs`).

mod activity;
mod codec;
mod history;
mod journal;
mod outbox;
mod pool;
mod read_keys;
mod snapshot;
mod spool;
mod sweep;
mod wal;

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::auth::KeyRecord;
use crate::model::Connector;
use codec::{decode, encode, Sealer};

pub use history::{HistoryPage, HistorySweep, Point};
pub use journal::{Accepted, IdempotencyRecord};
pub use outbox::{Outbox, Recorded};
pub use pool::StreamStats;
pub use snapshot::SnapshotSink;
pub use spool::Spool;
pub use sweep::SweepStep;
pub use wal::{Replay, Wal, MAX_RECORD_BYTES, MAX_WRITE_BYTES};

/// The layout this binary writes. A data dir with a newer one is refused: it was
/// written by a newer datapool, and guessing at it could lose data.
pub const SCHEMA_VERSION: u32 = 1;
/// Memory sled may use for its page cache, by its own estimate: it holds several times
/// this in practice, so the budget is small. Reads through the API do not miss a larger
/// one: random reads by id over a 500,000-item store served 40,500 – 42,500
/// req/s with 2, 4 and 64 MiB, and 64 MiB cost a 64 MiB import 48 MiB more peak memory;
/// 2 MiB took 2 MiB off its peak (`bench/bulk-import`, bench/README.md).
const CACHE_CAPACITY_BYTES: u64 = 2 * 1024 * 1024;
/// sled's log segment size for a new data dir. sled writes its write buffers a segment
/// at a time and holds several at once, so this is memory (1 MiB instead of 2 MiB took
/// about 4 MiB off a bulk import's peak); it writes any page over a quarter of a
/// segment as a separate blob file (synced by the checkpoint too), so 1 MiB still keeps
/// pages of items up to tens of KiB in the log. sled refuses to open a data dir with
/// another size than it was created with: an existing one keeps its own.
const SEGMENT_SIZE_BYTES: usize = 1024 * 1024;
const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";
const ADMIN_KEY_ID_KEY: &[u8] = b"admin_key_id";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the data dir.
    #[error("the data dir {} is in use by another datapool process (lock file {})", .dir.display(), .dir.join("lock").display())]
    Locked {
        /// The data dir.
        dir: PathBuf,
    },
    /// The data dir was written by a newer datapool.
    #[error("the data dir has schema version {found}, newer than the {supported} this datapool understands: run the newer datapool, or restore a backup made for this one")]
    NewerSchema {
        /// The version on disk.
        found: u32,
        /// [`SCHEMA_VERSION`].
        supported: u32,
    },
    /// A connector or subscription (the first field) with that name (compared without
    /// case) already exists.
    #[error("a {0} named {1:?} already exists")]
    NameTaken(&'static str, String),
    /// No record with that id.
    #[error("not found")]
    NotFound,
    /// The record changed since it was read; the caller should read it again.
    #[error("the record was changed by another request; read it again and retry")]
    Changed,
    /// A blocking store task panicked or was cancelled before it finished.
    #[error("a store task did not finish: {0}")]
    Interrupted(String),
    /// A stored value cannot be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A journal file holds a bad record with data after it, or its records do not
    /// follow on from each other and the applied mark: the start stops rather than
    /// skip acknowledged writes.
    #[error("the journal file {} is corrupt at byte {offset}: {problem}. Records from there on cannot be replayed: see \"Journal corruption\" under Operations in the README", .path.display())]
    CorruptJournal {
        /// The journal file.
        path: PathBuf,
        /// Where in it the problem starts.
        offset: u64,
        /// What is wrong there.
        problem: String,
    },
    /// A write too large for one journal record.
    #[error("a journal record of {bytes} bytes is over the {max}-byte limit")]
    RecordTooLarge {
        /// The record's size.
        bytes: usize,
        /// [`MAX_RECORD_BYTES`].
        max: usize,
    },
    /// A file of the data dir cannot be used.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// sled failed.
    #[error("database error: {0}")]
    Db(#[from] sled::Error),
}

/// Turns an I/O error on `path` into a [`StoreError`] naming it.
fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { path, source }
}

/// Bytes the files under `dir` take on disk; a file removed while counting (a journal
/// file a checkpoint released) counts nothing. Blocking.
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_bytes(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// The typed store; cheap to clone, shared by every task.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    meta: sled::Tree,
    connectors: sled::Tree,
    connector_names: sled::Tree,
    keys: sled::Tree,
    read_keys: sled::Tree,
    idempotency: sled::Tree,
    items: sled::Tree,
    streams: sled::Tree,
    stream_changes: sled::Tree,
    connector_logs: sled::Tree,
    activity: sled::Tree,
    connector_items: sled::Tree,
    subscriptions: sled::Tree,
    deliveries: sled::Tree,
    outbox: sled::Tree,
    delivery_log: sled::Tree,
    history: sled::Tree,
    /// Active subscriptions and the pending count, in memory.
    outbox_state: Outbox,
    /// The data dir: sled lives in `db/`, the journal in `journal/`.
    data_dir: PathBuf,
    sealer: Sealer,
    /// Read by writers that change several trees together, written by a snapshot
    /// (see [`Store::snapshot`]).
    gate: RwLock<()>,
    /// Held for the store's lifetime: the OS releases the lock when the process ends.
    _lock: File,
}

impl Store {
    /// Opens (or creates) the store in `data_dir`. Blocking: call it off the async runtime.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(io_at(data_dir))?;
        let lock_path = data_dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    dir: data_dir.to_owned(),
                })
            }
            Err(TryLockError::Error(e)) => return Err(io_at(&lock_path)(e)),
        }
        let sealer = Sealer::load_or_create(&data_dir.join("secret.key"))?;
        let db_dir = data_dir.join("db");
        let db = sled::Config::new()
            .cache_capacity(CACHE_CAPACITY_BYTES)
            .segment_size(segment_size(&db_dir)?)
            .path(db_dir)
            // Durability comes from the journal; sled is flushed by the checkpoint, not
            // by a timer of its own as well.
            .flush_every_ms(None)
            .open()?;
        let meta = db.open_tree("meta")?;
        check_schema(&meta)?;
        pool::retire_global_change_log(&db, &meta)?;
        spool::clear(data_dir)?;
        let subscriptions = db.open_tree("subscriptions")?;
        let outbox = db.open_tree("outbox")?;
        let outbox_state = outbox::open(&meta, &subscriptions, &outbox, &sealer)?;
        Ok(Store {
            inner: Arc::new(Inner {
                connectors: db.open_tree("connectors")?,
                connector_names: db.open_tree("connector_names")?,
                keys: db.open_tree("keys")?,
                read_keys: db.open_tree("read_keys")?,
                idempotency: db.open_tree("idempotency")?,
                items: db.open_tree("items")?,
                streams: db.open_tree("streams")?,
                stream_changes: db.open_tree("stream_changes")?,
                connector_logs: db.open_tree("connector_logs")?,
                activity: db.open_tree("activity")?,
                connector_items: db.open_tree("connector_items")?,
                subscriptions,
                deliveries: db.open_tree("deliveries")?,
                outbox,
                delivery_log: db.open_tree("delivery_log")?,
                history: db.open_tree("history")?,
                outbox_state,
                meta,
                db,
                data_dir: data_dir.to_owned(),
                sealer,
                gate: RwLock::new(()),
                _lock: lock,
            }),
        })
    }

    /// Writes everything to disk, as a checkpoint does; the last thing a shutdown does.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.blocking(|store| store.checkpoint().map(drop)).await
    }

    /// Bytes the pool (`db`) and the journal (`journal`) take on disk, by those names:
    /// allocated blocks, so a preallocated journal file counts in full. Blocking.
    pub fn disk_bytes(&self) -> [(&'static str, u64); 2] {
        ["db", "journal"].map(|part| (part, disk_bytes(&self.inner.data_dir.join(part))))
    }

    /// Runs `work` (blocking store calls, such as an admin change with its durable
    /// flush) on a blocking thread, so the async runtime's workers keep serving.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| StoreError::Interrupted(e.to_string()))?
    }

    /// Runs an admin change, then flushes sled and `fdatasync`s its files before
    /// returning: an admin answer (a new connector, a revoked key) must survive a crash
    /// or a power cut, and sled alone keeps changes in memory until the next
    /// checkpoint, which only ingest triggers. Every admin-mutating method goes through
    /// here. Blocking.
    fn durably<T>(&self, change: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let _writing = self.writing();
        let done = change()?;
        self.inner.db.flush()?;
        journal::sync_files(&self.inner.data_dir.join("db"))?;
        Ok(done)
    }

    /// All connectors, in id order.
    pub fn connectors(&self) -> Result<Vec<Connector>, StoreError> {
        self.inner
            .connectors
            .iter()
            .map(|entry| {
                let (id, value) = entry?;
                self.inner.sealer.open(&id, &value)
            })
            .collect()
    }

    /// One connector by id.
    pub fn connector(&self, id: &str) -> Result<Option<Connector>, StoreError> {
        self.inner
            .connectors
            .get(id)?
            .map(|value| self.inner.sealer.open(id.as_bytes(), &value))
            .transpose()
    }

    /// Stores a new connector and, for push types, its ingest key, atomically and
    /// durably. Blocking.
    pub fn create_connector(
        &self,
        connector: &Connector,
        key: Option<&KeyRecord>,
    ) -> Result<(), StoreError> {
        self.save_connector(connector, None, key)
    }

    /// Replaces a connector read at `connector.revision - 1`, and its ingest key when
    /// `new_key` is given (the old key stops working in the same transaction), durably.
    /// Blocking.
    pub fn update_connector(
        &self,
        connector: &Connector,
        new_key: Option<&KeyRecord>,
    ) -> Result<(), StoreError> {
        let expected = connector
            .revision
            .checked_sub(1)
            .ok_or(StoreError::Changed)?;
        self.save_connector(connector, Some(expected), new_key)
    }

    fn save_connector(
        &self,
        connector: &Connector,
        expected_revision: Option<u64>,
        new_key: Option<&KeyRecord>,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let id = connector.id.as_bytes();
        let value = inner.sealer.seal(id, connector)?;
        let name = name_key(&connector.spec.name);
        let key_value = new_key
            .map(|key| encode(key).map(|v| (key.key_id.clone(), v)))
            .transpose()?;
        self.durably(|| {
            transact(
                (&inner.connectors, &inner.connector_names, &inner.keys).transaction(
                    |(connectors, names, keys)| {
                        let current: Option<Connector> = connectors
                            .get(id)?
                            .map(|v| inner.sealer.open(id, &v))
                            .transpose()
                            .map_err(ConflictableTransactionError::Abort)?;
                        match (&current, expected_revision) {
                            (Some(_), None) => return abort(StoreError::Changed),
                            (None, Some(_)) => return abort(StoreError::NotFound),
                            (Some(c), Some(rev)) if c.revision != rev => {
                                return abort(StoreError::Changed)
                            }
                            _ => {}
                        }
                        if names.get(&name)?.is_some_and(|owner| owner != id) {
                            return abort(StoreError::NameTaken(
                                "connector",
                                connector.spec.name.clone(),
                            ));
                        }
                        if let Some(current) = &current {
                            names.remove(name_key(&current.spec.name))?;
                            if let (Some(old), Some(_)) = (&current.key_id, &key_value) {
                                keys.remove(old.as_bytes())?;
                            }
                        }
                        if let Some((key_id, value)) = &key_value {
                            keys.insert(key_id.as_bytes(), value.as_slice())?;
                        }
                        names.insert(name.as_slice(), id)?;
                        connectors.insert(id, value.as_slice())?;
                        Ok(())
                    },
                ),
            )
        })
    }

    /// Deletes a connector with its name and ingest key, durably. Blocking.
    pub fn delete_connector(&self, id: &str) -> Result<(), StoreError> {
        let inner = &self.inner;
        self.durably(|| {
            transact(
                (&inner.connectors, &inner.connector_names, &inner.keys).transaction(
                    |(connectors, names, keys)| {
                        let Some(value) = connectors.remove(id.as_bytes())? else {
                            return abort(StoreError::NotFound);
                        };
                        let current: Connector = inner
                            .sealer
                            .open(id.as_bytes(), &value)
                            .map_err(ConflictableTransactionError::Abort)?;
                        names.remove(name_key(&current.spec.name))?;
                        if let Some(key_id) = &current.key_id {
                            keys.remove(key_id.as_bytes())?;
                        }
                        Ok(())
                    },
                ),
            )
        })
    }

    /// The credential record with this key id, of any kind.
    pub fn key(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.keys.get(key_id)?.map(|v| decode(&v)).transpose()
    }

    /// The admin token's key id, once one has been issued.
    pub fn admin_key_id(&self) -> Result<Option<String>, StoreError> {
        self.inner
            .meta
            .get(ADMIN_KEY_ID_KEY)?
            .map(|v| String::from_utf8(v.to_vec()).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Makes `record` the admin token, revoking the previous one in the same
    /// transaction, durably. Blocking.
    pub fn set_admin_key(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let inner = &self.inner;
        let value = encode(record)?;
        self.durably(|| {
            transact((&inner.meta, &inner.keys).transaction(|(meta, keys)| {
                if let Some(old) = meta.get(ADMIN_KEY_ID_KEY)? {
                    keys.remove(old)?;
                }
                keys.insert(record.key_id.as_bytes(), value.as_slice())?;
                meta.insert(ADMIN_KEY_ID_KEY, record.key_id.as_bytes())?;
                Ok(())
            }))
        })
    }
}

/// Refuses a newer schema; stamps a fresh store with ours.
fn check_schema(meta: &sled::Tree) -> Result<(), StoreError> {
    match meta.get(SCHEMA_VERSION_KEY)? {
        None => {
            meta.insert(SCHEMA_VERSION_KEY, &SCHEMA_VERSION.to_be_bytes())?;
            Ok(())
        }
        Some(bytes) => {
            let found = <[u8; 4]>::try_from(bytes.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("the schema version is not 4 bytes".into()))?;
            if found > SCHEMA_VERSION {
                return Err(StoreError::NewerSchema {
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Ok(())
        }
    }
}

/// The segment size of the sled database in `db_dir`, as sled recorded it in its `conf`
/// file (text lines, then a checksum); [`SEGMENT_SIZE_BYTES`] for a new one.
fn segment_size(db_dir: &Path) -> Result<usize, StoreError> {
    let path = db_dir.join("conf");
    let conf = match std::fs::read(&path) {
        Ok(conf) => conf,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SEGMENT_SIZE_BYTES),
        Err(e) => return Err(io_at(&path)(e)),
    };
    String::from_utf8_lossy(&conf)
        .lines()
        .find_map(|line| line.strip_prefix("segment_size: ")?.trim().parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("{} names no segment size", path.display())))
}

/// Connector names are unique without regard to case.
fn name_key(name: &str) -> Vec<u8> {
    name.trim().to_lowercase().into_bytes()
}

fn abort<T>(error: StoreError) -> Result<T, ConflictableTransactionError<StoreError>> {
    Err(ConflictableTransactionError::Abort(error))
}

fn transact<T>(result: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    result.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Db(e),
    })
}

#[cfg(test)]
mod tests;
