//! Key generation, parsing and verification.
//!
//! Every credential reads `<prefix>_<key_id>_<secret>`: `key_id` is 12 lowercase hex
//! characters, a public selector that is safe to log and is how a key is looked up;
//! `secret` is 40 base62 characters from the OS CSPRNG. Only SHA-256 of the secret is
//! ever stored, and it is compared in constant time.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ids;

/// Length of the public key id, in hex characters.
const KEY_ID_LEN: usize = 12;
/// Length of the secret part, in base62 characters (about 238 bits of entropy).
const SECRET_LEN: usize = 40;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What a credential may do; its prefix says which it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// `at_…`: full control of the server through the admin API.
    Admin,
    /// `ik_…`: pushes data into one connector's stream.
    Ingest,
    /// `rk_…`: reads the DataPool.
    Read,
}

impl KeyKind {
    /// The prefix that opens a credential of this kind.
    pub fn prefix(self) -> &'static str {
        match self {
            KeyKind::Admin => "at",
            KeyKind::Ingest => "ik",
            KeyKind::Read => "rk",
        }
    }

    /// The kind `token` claims by its prefix, whether or not the rest is well formed:
    /// enough to refuse a key where its kind may not travel without checking it.
    pub fn claimed_by(token: &str) -> Option<Self> {
        token
            .split_once('_')
            .and_then(|(prefix, _)| Self::from_prefix(prefix))
    }

    fn from_prefix(prefix: &str) -> Option<Self> {
        [KeyKind::Admin, KeyKind::Ingest, KeyKind::Read]
            .into_iter()
            .find(|kind| kind.prefix() == prefix)
    }
}

/// Why a string is not a well-formed credential.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    /// The string does not have the `<prefix>_<key_id>_<secret>` shape.
    #[error("the credential is not of the form <prefix>_<12 hex key id>_<40 character secret>")]
    Malformed,
}

/// A full credential as presented by a client or shown once at creation.
/// Its `Debug` output never contains the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    kind: KeyKind,
    key_id: String,
    secret: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}_***", self.kind.prefix(), self.key_id)
    }
}

impl Credential {
    /// A new credential of `kind` with a fresh key id and secret from the OS CSPRNG.
    pub fn generate(kind: KeyKind) -> Self {
        Credential {
            kind,
            key_id: ids::random_hex::<{ KEY_ID_LEN / 2 }>(),
            secret: random_base62(SECRET_LEN),
        }
    }

    /// Parses a presented token, checking only its shape (not whether it is valid).
    pub fn parse(token: &str) -> Result<Self, CredentialError> {
        let mut parts = token.splitn(3, '_');
        let (Some(prefix), Some(key_id), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CredentialError::Malformed);
        };
        let kind = KeyKind::from_prefix(prefix).ok_or(CredentialError::Malformed)?;
        let id_ok = key_id.len() == KEY_ID_LEN
            && key_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let secret_ok =
            secret.len() == SECRET_LEN && secret.bytes().all(|b| b.is_ascii_alphanumeric());
        if !(id_ok && secret_ok) {
            return Err(CredentialError::Malformed);
        }
        Ok(Credential {
            kind,
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// What this credential claims to be, from its prefix.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The public selector: safe to log, used to look the key up.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The whole token, for showing once to whoever created it. Never log it.
    pub fn expose(&self) -> String {
        format!("{}_{}_{}", self.kind.prefix(), self.key_id, self.secret)
    }

    /// The record to store for this credential: its hash, never the secret.
    pub fn record(&self, owner: &str, created_at: jiff::Timestamp) -> KeyRecord {
        KeyRecord {
            kind: self.kind,
            key_id: self.key_id.clone(),
            owner: owner.to_owned(),
            secret_sha256: hex::encode(Sha256::digest(self.secret.as_bytes())),
            created_at,
        }
    }
}

/// What the store keeps of a credential, looked up by its key id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    /// The kind the key was issued as.
    pub kind: KeyKind,
    /// The public selector, also the record's key in the store.
    pub key_id: String,
    /// What the key belongs to: a connector id for ingest keys, `admin` for the
    /// admin token, a read key's own id for read keys.
    pub owner: String,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    /// When the key was issued.
    pub created_at: jiff::Timestamp,
}

impl KeyRecord {
    /// Whether `credential` is the key this record was made from, compared in
    /// constant time so response timing reveals nothing about the stored hash.
    pub fn matches(&self, credential: &Credential) -> bool {
        let mut presented = [0u8; 64];
        let digest = Sha256::digest(credential.secret.as_bytes());
        if hex::encode_to_slice(digest, &mut presented).is_err() {
            return false;
        }
        let same = presented.ct_eq(self.secret_sha256.as_bytes());
        bool::from(same) && credential.kind == self.kind && credential.key_id == self.key_id
    }
}

/// `len` characters drawn uniformly from the base62 alphabet (bytes ≥ 248 are
/// rejected so every character is equally likely).
fn random_base62(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in ids::random_bytes::<64>().iter().filter(|b| **b < 248) {
            if out.len() == len {
                break;
            }
            out.push(char::from(BASE62[usize::from(*b % 62)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape_and_parse_back() {
        for kind in [KeyKind::Admin, KeyKind::Ingest, KeyKind::Read] {
            let key = Credential::generate(kind);
            let token = key.expose();
            let parts: Vec<&str> = token.split('_').collect();
            assert_eq!(parts.len(), 3, "{token}");
            assert_eq!(parts[0], kind.prefix());
            assert_eq!(parts[1].len(), 12);
            assert_eq!(parts[2].len(), 40);
            assert_eq!(Credential::parse(&token), Ok(key));
        }
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let good = Credential::generate(KeyKind::Ingest).expose();
        for bad in [
            "",
            "ik",
            "ik_abc",
            "xx_0123456789ab_0123456789012345678901234567890123456789",
            "ik_0123456789AB_0123456789012345678901234567890123456789",
            "ik_0123456789ab_012345678901234567890123456789012345678",
            "ik_0123456789ab_012345678901234567890123456789012345678!",
            &good[..good.len() - 1],
        ] {
            assert_eq!(
                Credential::parse(bad),
                Err(CredentialError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_record_matches_only_its_own_secret() {
        let key = Credential::generate(KeyKind::Ingest);
        let record = key.record("c_1", jiff::Timestamp::now());
        assert!(record.matches(&key));
        assert!(!record.secret_sha256.contains(&key.secret));
        let mut other = Credential::generate(KeyKind::Ingest);
        other.key_id = key.key_id.clone();
        assert!(!record.matches(&other));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let key = Credential::generate(KeyKind::Admin);
        assert!(!format!("{key:?}").contains(&key.secret));
    }
}
