//! Credentials: the `<prefix>_<key_id>_<secret>` format shared by admin tokens, ingest
//! keys and read keys, their hashes, and the limiter that slows down guessing.

mod keys;
mod limiter;

pub use keys::{Credential, CredentialError, KeyKind, KeyRecord};
pub use limiter::FailedAuthLimiter;
