//! Read keys and their credentials, created and revoked together.

use sled::transaction::Transactional;

use super::{abort, decode, encode, transact, Store, StoreError};
use crate::auth::KeyRecord;
use crate::model::ReadKey;

impl Store {
    /// Stores a read key and its credential's hash in one transaction, durably.
    /// Blocking.
    pub fn create_read_key(&self, read_key: &ReadKey, key: &KeyRecord) -> Result<(), StoreError> {
        let inner = &self.inner;
        let (value, key_value) = (encode(read_key)?, encode(key)?);
        self.durably(|| {
            transact(
                (&inner.read_keys, &inner.keys).transaction(|(read_keys, keys)| {
                    read_keys.insert(read_key.id.as_bytes(), value.as_slice())?;
                    keys.insert(key.key_id.as_bytes(), key_value.as_slice())?;
                    Ok(())
                }),
            )
        })
    }

    /// All read keys, in id order.
    pub fn read_keys(&self) -> Result<Vec<ReadKey>, StoreError> {
        self.inner
            .read_keys
            .iter()
            .map(|entry| decode(&entry?.1))
            .collect()
    }

    /// One read key by id.
    pub fn read_key(&self, id: &str) -> Result<Option<ReadKey>, StoreError> {
        self.inner
            .read_keys
            .get(id)?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Revokes a read key: its credential stops working in the same transaction, which
    /// is durable on return. Blocking.
    pub fn delete_read_key(&self, id: &str) -> Result<(), StoreError> {
        let inner = &self.inner;
        self.durably(|| {
            transact(
                (&inner.read_keys, &inner.keys).transaction(|(read_keys, keys)| {
                    let Some(value) = read_keys.remove(id.as_bytes())? else {
                        return abort(StoreError::NotFound);
                    };
                    let read_key: ReadKey = decode(&value)
                        .map_err(sled::transaction::ConflictableTransactionError::Abort)?;
                    keys.remove(read_key.key_id.as_bytes())?;
                    Ok(())
                }),
            )
        })
    }
}
