//! Random identifiers: connector ids, key ids and secrets, request ids.

use ring::rand::{SecureRandom, SystemRandom};

/// `N` bytes from the OS CSPRNG.
///
/// # Panics
/// When the kernel's random source fails, which Linux does not do once booted; there is
/// no safe way to carry on without randomness (the same stance as `getrandom`-based
/// generators), and the panic is caught per request by the HTTP layer.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the OS random number generator is unavailable");
    bytes
}

/// `2 * N` lowercase hex characters of randomness.
pub fn random_hex<const N: usize>() -> String {
    hex::encode(random_bytes::<N>())
}
