//! The push connectors ingestion authenticates against, cached so a request costs a
//! hash lookup, not a store read and a decryption. Every connector write goes through
//! [`PushConnectors`], which clears the cache once the store has changed: a revoked
//! key (connector deleted, key rotated, connector disabled or its auth changed) stops
//! working for the very next request. The cache is rebuilt from the store on demand,
//! so nothing here is state a second node could not rebuild.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockWriteGuard};

use crate::auth::{Credential, KeyKind, KeyRecord};
use crate::model::Connector;
use crate::store::{Store, StoreError};

/// A push connector and the key that reaches it.
#[derive(Debug)]
pub struct PushTarget {
    /// The ingest key's stored record.
    pub key: KeyRecord,
    /// The connector it belongs to.
    pub connector: Connector,
}

/// What the store said, kept until the next connector write.
#[derive(Default)]
struct Cache {
    /// Ingest key id → its push connector.
    by_key_id: HashMap<String, Arc<PushTarget>>,
    /// Streams with a push connector that accepts HTTP Basic, once read.
    basic_streams: Option<Arc<HashSet<String>>>,
}

/// The only way to change connectors in the store while the server runs: each write
/// clears the cache of ingest key id → push connector that it fills on first use.
pub struct PushConnectors {
    store: Store,
    cache: RwLock<Cache>,
    /// Bumped by every invalidation: a fill that read the store before a write must not
    /// put what it read back into the cache after it.
    generation: AtomicU64,
}

impl PushConnectors {
    /// An empty cache over `store`.
    pub fn new(store: Store) -> Self {
        PushConnectors {
            store,
            cache: RwLock::new(Cache::default()),
            generation: AtomicU64::new(0),
        }
    }

    /// Stores a new connector and its ingest key (see [`Store::create_connector`]).
    pub async fn create(
        &self,
        connector: &Connector,
        key: Option<&KeyRecord>,
    ) -> Result<(), StoreError> {
        let (connector, key) = (connector.clone(), key.cloned());
        self.written(
            self.store
                .blocking(move |store| store.create_connector(&connector, key.as_ref()))
                .await,
        )
    }

    /// Replaces a connector, and its ingest key when `new_key` is given (see
    /// [`Store::update_connector`]).
    pub async fn update(
        &self,
        connector: &Connector,
        new_key: Option<&KeyRecord>,
    ) -> Result<(), StoreError> {
        let (connector, key) = (connector.clone(), new_key.cloned());
        self.written(
            self.store
                .blocking(move |store| store.update_connector(&connector, key.as_ref()))
                .await,
        )
    }

    /// Deletes a connector with its ingest key (see [`Store::delete_connector`]).
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.written(
            self.store
                .blocking(move |store| store.delete_connector(&id))
                .await,
        )
    }

    /// The connector `token` is a valid ingest key of, or `None` for anything else
    /// (malformed, unknown, wrong secret, another kind of key).
    pub fn authenticate(&self, token: &str) -> Result<Option<Arc<PushTarget>>, StoreError> {
        let Ok(credential) = Credential::parse(token) else {
            return Ok(None);
        };
        if credential.kind() != KeyKind::Ingest {
            return Ok(None);
        }
        let target = match self.cached(credential.key_id()) {
            Some(target) => target,
            None => match self.load(credential.key_id())? {
                Some(target) => target,
                None => return Ok(None),
            },
        };
        Ok(target.key.matches(&credential).then_some(target))
    }

    /// Whether a push connector of `stream` accepts HTTP Basic, so that a request
    /// without a valid key is told it may answer the Basic challenge.
    pub fn accepts_basic(&self, stream: &str) -> Result<bool, StoreError> {
        let cached = self.read().basic_streams.clone();
        let streams = match cached {
            Some(streams) => streams,
            None => self.load_basic_streams()?,
        };
        Ok(streams.contains(stream))
    }

    /// Passes on the result of a store write after forgetting everything cached: also
    /// when the write failed, which costs no more than a refill.
    fn written(&self, result: Result<(), StoreError>) -> Result<(), StoreError> {
        let mut cache = self.write();
        self.generation.fetch_add(1, Ordering::SeqCst);
        *cache = Cache::default();
        result
    }

    fn cached(&self, key_id: &str) -> Option<Arc<PushTarget>> {
        self.read().by_key_id.get(key_id).cloned()
    }

    fn load(&self, key_id: &str) -> Result<Option<Arc<PushTarget>>, StoreError> {
        let generation = self.generation.load(Ordering::SeqCst);
        let Some(key) = self
            .store
            .key(key_id)?
            .filter(|k| k.kind == KeyKind::Ingest)
        else {
            return Ok(None);
        };
        let Some(connector) = self.store.connector(&key.owner)? else {
            return Ok(None);
        };
        let target = Arc::new(PushTarget { key, connector });
        if let Some(mut cache) = self.write_if_current(generation) {
            cache.by_key_id.insert(key_id.to_owned(), target.clone());
        }
        Ok(Some(target))
    }

    fn load_basic_streams(&self) -> Result<Arc<HashSet<String>>, StoreError> {
        let generation = self.generation.load(Ordering::SeqCst);
        let streams: HashSet<String> = self
            .store
            .connectors()?
            .into_iter()
            .filter(|c| c.spec.kind.is_push() && c.spec.auth.as_ref().is_some_and(|a| a.basic))
            .map(|c| c.spec.stream.as_str().to_owned())
            .collect();
        let streams = Arc::new(streams);
        if let Some(mut cache) = self.write_if_current(generation) {
            cache.basic_streams = Some(streams.clone());
        }
        Ok(streams)
    }

    /// The cache for writing what was read from the store at `generation`, unless a
    /// connector write came in between.
    fn write_if_current(&self, generation: u64) -> Option<RwLockWriteGuard<'_, Cache>> {
        let cache = self.write();
        (self.generation.load(Ordering::SeqCst) == generation).then_some(cache)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }
}
