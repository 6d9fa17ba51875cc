//! The push connectors ingestion authenticates against, cached so a request costs a
//! hash lookup, not a store read and a decryption. Every admin change to a connector
//! clears the cache; it is rebuilt from the store on demand, so nothing here is state a
//! second node could not rebuild.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

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

/// Ingest key id → push connector, filled from the store on first use.
pub struct PushConnectors {
    store: Store,
    by_key_id: RwLock<HashMap<String, Arc<PushTarget>>>,
    /// Bumped by every invalidation: a fill that read the store before an admin change
    /// must not put what it read back into the cache after it.
    generation: AtomicU64,
}

impl PushConnectors {
    /// An empty cache over `store`.
    pub fn new(store: Store) -> Self {
        PushConnectors {
            store,
            by_key_id: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
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

    /// Forgets everything; called after any admin change to a connector or key.
    pub fn invalidate(&self) {
        let mut cache = self.by_key_id.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        cache.clear();
    }

    fn cached(&self, key_id: &str) -> Option<Arc<PushTarget>> {
        self.by_key_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key_id)
            .cloned()
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
        let mut cache = self.by_key_id.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::SeqCst) == generation {
            cache.insert(key_id.to_owned(), target.clone());
        }
        Ok(Some(target))
    }
}
