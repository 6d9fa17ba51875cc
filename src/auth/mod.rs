//! Credentials: the `<prefix>_<key_id>_<secret>` format shared by admin tokens, ingest
//! keys and read keys, their hashes, the limiter that slows down guessing, request
//! signatures, and per-connector rate limits.

mod keys;
mod limiter;
mod rate;
mod signature;

pub use keys::{Credential, CredentialError, KeyKind, KeyRecord};
pub use limiter::FailedAuthLimiter;
pub use rate::{RateLimiter, DEFAULT_RATE_LIMIT};
pub use signature::{verify as verify_signature, SignatureError, Verifier};
