//! A consistent copy of every tree, for backups, and loading one into a fresh store.
//!
//! sled iterates a tree live, not as of a moment, so a copy taken while the applier,
//! admin changes and sweeps write would mix states (an item counted in its stream's
//! statistics but not yet stored, a connector without its key). Every writer that keeps
//! trees in step takes the snapshot gate to read; a snapshot takes it to write, so the
//! writers wait while it copies. Pushes are still journaled and acknowledged meanwhile.

use std::sync::{PoisonError, RwLockReadGuard};

use super::{Store, StoreError};

/// Where a snapshot goes: each tree's name, then its entries in key order.
pub trait SnapshotSink {
    /// Why the sink failed.
    type Error: From<StoreError>;
    /// A new tree starts; its entries follow.
    fn tree(&mut self, name: &[u8]) -> Result<(), Self::Error>;
    /// One entry of the current tree.
    fn entry(&mut self, key: &[u8], value: &[u8]) -> Result<(), Self::Error>;
}

impl Store {
    /// Held by writers that change several trees together (the applier, admin changes,
    /// sweeps) while they write, so that a snapshot sees none of them half done.
    pub(super) fn writing(&self) -> RwLockReadGuard<'_, ()> {
        self.inner
            .gate
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Copies every tree into `sink` as of one moment: the writers that keep trees in
    /// step wait until it is done. Blocking, and as long as copying the store takes:
    /// call it off the async runtime, with a sink that does not wait on a client.
    pub fn snapshot<S: SnapshotSink>(&self, sink: &mut S) -> Result<(), S::Error> {
        let _paused = self
            .inner
            .gate
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for name in self.inner.db.tree_names() {
            sink.tree(&name)?;
            let tree = self.inner.db.open_tree(&name).map_err(StoreError::from)?;
            for entry in tree.iter() {
                let (key, value) = entry.map_err(StoreError::from)?;
                sink.entry(&key, &value)?;
            }
        }
        Ok(())
    }

    /// Loads entries of the tree `name` from a snapshot into this store, which is being
    /// restored and serves nobody yet, as one batch. Blocking; [`Store::checkpoint`]
    /// makes it durable.
    pub fn restore_entries(
        &self,
        name: &[u8],
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, value) in entries {
            batch.insert(key, value);
        }
        self.inner.db.open_tree(name)?.apply_batch(batch)?;
        Ok(())
    }

    /// The data dir this store lives in.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.data_dir
    }
}
