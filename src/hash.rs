//! Hashing helpers shared by the hot paths: maps and sets whose keys already are well-mixed
//! 64-bit hashes (install hashes, context hashes) skip rehashing with a pass-through hasher.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

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
