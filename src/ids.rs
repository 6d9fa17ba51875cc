//! Identifiers: random connector ids, key ids and secrets; sequential request ids.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

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

/// A label unique to one request: a random prefix drawn once per process and a
/// counter, as at least 16 hex characters. Cheaper than drawing randomness per request
/// (no system call); unique within a process, and across restarts but for a 1 in 2^32
/// chance of two processes drawing the same prefix.
pub fn sequential_hex() -> String {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| u32::from_be_bytes(random_bytes::<4>()));
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut hex = String::with_capacity(24);
    push_hex(&mut hex, u64::from(prefix), 8);
    push_hex(&mut hex, count, 8);
    hex
}

/// Appends `value` in hex, zero-padded to at least `min_digits`: what `{:0Nx}` writes,
/// without the formatting machinery (a request id is made per request).
fn push_hex(out: &mut String, value: u64, min_digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = min_digits.max(16 - value.leading_zeros() as usize / 4);
    for shift in (0..digits).rev() {
        out.push(char::from(HEX[((value >> (shift * 4)) & 0xf) as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::push_hex;

    #[test]
    fn hex_digits_are_what_format_writes() {
        for value in [
            0,
            1,
            0xabc,
            u64::from(u32::MAX),
            1 << 32,
            0xf_ffff_ffff,
            u64::MAX,
        ] {
            let mut out = String::new();
            push_hex(&mut out, value, 8);
            assert_eq!(out, format!("{value:08x}"));
        }
    }
}
