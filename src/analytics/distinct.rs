//! Distinct ids per key (installs per group, sessions per bucket): a bit per (key, id) when
//! that fits in [`MAX_BITS`], else a hash set of the pairs. Keys and ids are small dense
//! integers (slots, buckets, global ordinals), so the bits are the usual case and an insert is
//! one bit test.

use rustc_hash::FxHashSet;

use crate::search::NO_VALUE;

/// The most bits (keys × ids) kept as a bitmap: 64 MiB.
const MAX_BITS: usize = 1 << 29;

pub struct Distinct {
    ids: usize,
    counts: Vec<u32>,
    seen: Seen,
}

enum Seen {
    Bits(Vec<u64>),
    Pairs(FxHashSet<u64>),
}

impl Distinct {
    /// For keys `0..keys` and ids `0..ids`.
    pub fn new(keys: usize, ids: usize) -> Distinct {
        let bits = keys.saturating_mul(ids);
        let seen = if bits <= MAX_BITS {
            Seen::Bits(vec![0; bits.div_ceil(64)])
        } else {
            Seen::Pairs(FxHashSet::default())
        };
        Distinct {
            ids,
            counts: vec![0; keys],
            seen,
        }
    }

    /// Notes `id` under `key`; [`NO_VALUE`] and ids out of range are not counted.
    #[inline]
    pub fn insert(&mut self, key: usize, id: u32) {
        if id == NO_VALUE || id as usize >= self.ids || key >= self.counts.len() {
            return;
        }
        let new = match &mut self.seen {
            Seen::Bits(bits) => {
                let bit = key * self.ids + id as usize;
                let word = &mut bits[bit / 64];
                let mask = 1u64 << (bit % 64);
                let new = *word & mask == 0;
                *word |= mask;
                new
            }
            Seen::Pairs(pairs) => pairs.insert(((key as u64) << 32) | id as u64),
        };
        if new {
            self.counts[key] += 1;
        }
    }

    /// Distinct ids noted under `key`.
    pub fn count(&self, key: usize) -> u64 {
        self.counts.get(key).copied().unwrap_or(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_and_pairs_count_the_same() {
        for (keys, ids) in [(3, 100), (1 << 16, 1 << 14)] {
            let mut distinct = Distinct::new(keys, ids);
            assert_eq!(
                matches!(distinct.seen, Seen::Bits(_)),
                keys * ids <= MAX_BITS
            );
            for (key, id) in [(0, 5), (0, 5), (0, 7), (2, 5), (2, NO_VALUE), (1, 99)] {
                distinct.insert(key, id);
            }
            distinct.insert(keys, 1);
            distinct.insert(0, ids as u32);
            assert_eq!(
                (0..3).map(|k| distinct.count(k)).collect::<Vec<_>>(),
                [2, 1, 1]
            );
        }
    }
}
