//! Hashing helpers: maps and sets whose keys already are well-mixed 64-bit hashes (install
//! hashes, context hashes) skip rehashing with a pass-through hasher; admin tokens are kept as
//! `sha256:HEX` digests.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use sha2::{Digest, Sha256};

/// Uses a `u64` key as its own hash; other input is folded in cheaply.
#[derive(Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by pre-hashed `u64`s.
pub type HashedMap<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;
/// A set of pre-hashed `u64`s.
pub type HashedSet = HashSet<u64, BuildHasherDefault<PassThrough>>;

/// `sha256:HEX` of a token, the form stored in the config.
pub fn hash_token(token: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(token.trim().as_bytes())))
}

pub fn parse_token_hash(text: &str) -> Option<[u8; 32]> {
    let hex_digits = text.trim().strip_prefix("sha256:")?;
    if hex_digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex_digits.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Lowercase hex of `bytes` (no allocation per byte: it runs on the ingest path).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}
