//! How values are laid out in the store: a format byte, then JSON; records holding
//! secrets are additionally sealed with ChaCha20-Poly1305 under the data dir's key file,
//! bound to their record key so a sealed value cannot be moved to another record.

use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;
use crate::{ids, private_file};

/// The one value format so far: JSON after this byte.
const JSON_V1: u8 = 1;
/// Sealed values: this byte, the nonce, then the ciphertext of a `JSON_V1` value.
const SEALED_V1: u8 = 1;
const KEY_LEN: usize = 32;

/// Serializes a value for the store.
pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![JSON_V1];
    serde_json::to_writer(&mut out, value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(out)
}

/// Serializes `values` into groups of whole values, each group at most `max_bytes` long
/// unless a single value is larger, and each readable by [`decode`] as a `Vec` of them.
/// Returns every group with the index of its first value.
pub(super) fn encode_groups<T: Serialize>(
    values: &[T],
    max_bytes: usize,
) -> Result<Vec<(usize, Vec<u8>)>, StoreError> {
    let mut groups = Vec::new();
    let mut group = Vec::new();
    let mut first = 0;
    let mut one = Vec::new();
    for (index, value) in values.iter().enumerate() {
        one.clear();
        serde_json::to_writer(&mut one, value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if !group.is_empty() && group.len() + one.len() + 2 > max_bytes {
            group.push(b']');
            groups.push((first, std::mem::take(&mut group)));
        }
        if group.is_empty() {
            first = index;
            group.extend_from_slice(&[JSON_V1, b'[']);
        } else {
            group.push(b',');
        }
        group.extend_from_slice(&one);
    }
    if !group.is_empty() {
        group.push(b']');
        groups.push((first, group));
    }
    Ok(groups)
}

/// Reads a value written by [`encode`].
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&JSON_V1, json)) => {
            serde_json::from_slice(json).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        Some((format, _)) => Err(StoreError::Corrupt(format!(
            "unknown value format {format}"
        ))),
        None => Err(StoreError::Corrupt("empty value".into())),
    }
}

/// Encrypts and decrypts records that hold secrets.
pub(super) struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    /// Loads the key file, creating it (mode 0600) on first start.
    pub(super) fn load_or_create(path: &Path) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_owned(),
            source,
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes = ids::random_bytes::<KEY_LEN>().to_vec();
                private_file::write(path, &bytes).map_err(io)?;
                bytes
            }
            Err(e) => return Err(io(e)),
        };
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| {
            StoreError::Corrupt(format!("{} is not a {KEY_LEN}-byte key", path.display()))
        })?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
        })
    }

    /// Encodes `value` and seals it, bound to `record`.
    pub(super) fn seal<T: Serialize>(
        &self,
        record: &[u8],
        value: &T,
    ) -> Result<Vec<u8>, StoreError> {
        let mut data = encode(value)?;
        let nonce = ids::random_bytes::<NONCE_LEN>();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(record),
                &mut data,
            )
            .map_err(|_| StoreError::Corrupt("sealing failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + data.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// Opens a value sealed by [`Sealer::seal`] for `record`.
    pub(super) fn open<T: DeserializeOwned>(
        &self,
        record: &[u8],
        sealed: &[u8],
    ) -> Result<T, StoreError> {
        let corrupt = || {
            StoreError::Corrupt(
                "a sealed record does not open with this data dir's key file".into(),
            )
        };
        let Some((&SEALED_V1, rest)) = sealed.split_first() else {
            return Err(corrupt());
        };
        if rest.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt())?;
        let mut data = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(record), &mut data)
            .map_err(|_| corrupt())?;
        decode(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_hold_whole_values_in_order_and_stay_under_the_limit_but_for_big_values() {
        let values: Vec<String> = ["a", "bb", "ccc", &"x".repeat(40), "d", "e"]
            .iter()
            .map(|v| v.to_string())
            .collect();
        let groups = encode_groups(&values, 16).expect("encode");
        let firsts: Vec<usize> = groups.iter().map(|(first, _)| *first).collect();
        assert_eq!(firsts, [0, 2, 3, 4]);
        let mut read = Vec::new();
        for (_, bytes) in &groups {
            assert!(
                bytes.len() <= 16 || bytes.len() > 40,
                "{} bytes",
                bytes.len()
            );
            read.extend(decode::<Vec<String>>(bytes).expect("decode"));
        }
        assert_eq!(read, values);
        assert!(encode_groups::<String>(&[], 16).expect("empty").is_empty());
    }

    #[test]
    fn sealed_values_open_only_for_their_record_and_hide_their_content() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sealer = Sealer::load_or_create(&dir.path().join("key")).expect("key");
        let sealed = sealer.seal(b"c_1", &"s3cret-value").expect("seal");
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        let opened: String = sealer.open(b"c_1", &sealed).expect("open");
        assert_eq!(opened, "s3cret-value");
        assert!(sealer.open::<String>(b"c_2", &sealed).is_err());
        let again = Sealer::load_or_create(&dir.path().join("key")).expect("same key");
        assert_eq!(
            again.open::<String>(b"c_1", &sealed).expect("reopen"),
            "s3cret-value"
        );
    }
}
