//! Distinct ids per key (installs per group, sessions per bucket): a bit per (key, id) when
//! that fits in [`MAX_BITS`], else a hash set of the pairs. Keys and ids are small dense
//! integers (slots, buckets, global ordinals), so the bits are the usual case and an insert is
//! one bit set; counts are taken when asked.

use rustc_hash::FxHashSet;

/// The most bits (keys × ids) kept as a bitmap: 64 MiB.
const MAX_BITS: usize = 1 << 29;

#[derive(Clone)]
pub struct Distinct {
    ids: usize,
    /// Words per key: each key's bits start on a word.
    stride: usize,
    /// Keys made room for.
    keys: usize,
    /// Per key its distinct ids, kept with pairs only (bits are counted when asked).
    counts: Vec<u32>,
    seen: Seen,
}

#[derive(Clone)]
enum Seen {
    Bits(Vec<u64>),
    Pairs(FxHashSet<u64>),
}

impl Distinct {
    /// For keys `0..keys` and ids `0..ids`.
    pub fn new(keys: usize, ids: usize) -> Distinct {
        let mut distinct = Distinct {
            ids,
            stride: ids.div_ceil(64),
            keys: 0,
            counts: Vec::new(),
            seen: Seen::Bits(Vec::new()),
        };
        distinct.grow(keys);
        distinct
    }

    /// Makes room for keys up to `keys` (bits while they fit in [`MAX_BITS`], then pairs).
    pub fn grow(&mut self, keys: usize) {
        if keys <= self.keys {
            return;
        }
        let words = keys.saturating_mul(self.stride);
        let fits = words.saturating_mul(64) <= MAX_BITS;
        match &mut self.seen {
            Seen::Bits(bits) if fits => bits.resize(words, 0),
            Seen::Bits(_) => {
                self.counts = (0..self.keys).map(|key| self.count(key) as u32).collect();
                self.seen = Seen::Pairs(self.pairs());
            }
            Seen::Pairs(_) => {}
        }
        if let Seen::Pairs(_) = self.seen {
            self.counts.resize(keys, 0);
        }
        self.keys = keys;
    }

    /// Every (key, id) noted, as `key << 32 | id`.
    fn pairs(&self) -> FxHashSet<u64> {
        match &self.seen {
            Seen::Pairs(pairs) => pairs.clone(),
            Seen::Bits(_) => {
                let mut pairs = FxHashSet::default();
                for key in 0..self.keys {
                    self.each_id(key, |id| {
                        pairs.insert(((key as u64) << 32) | id as u64);
                    });
                }
                pairs
            }
        }
    }

    /// Calls `f` with each id noted under `key` (bits only).
    fn each_id(&self, key: usize, mut f: impl FnMut(u32)) {
        if let Seen::Bits(bits) = &self.seen {
            let row = &bits[key * self.stride..(key + 1) * self.stride];
            for (n, word) in row.iter().enumerate() {
                let mut word = *word;
                while word != 0 {
                    f((n * 64) as u32 + word.trailing_zeros());
                    word &= word - 1;
                }
            }
        }
    }

    /// Notes `id` under `key`; `NO_VALUE` and ids out of range are not counted.
    #[inline]
    pub fn insert(&mut self, key: usize, id: u32) {
        self.insert_each(std::iter::once((key, id)));
    }

    /// Notes each (key, id) as [`Distinct::insert`] does, deciding between bits and pairs once.
    #[inline]
    pub fn insert_each(&mut self, pairs: impl Iterator<Item = (usize, u32)>) {
        let (ids, keys, stride) = (self.ids, self.keys, self.stride);
        // NO_VALUE is out of range too.
        let pairs = pairs.filter(|(key, id)| (*id as usize) < ids && *key < keys);
        match &mut self.seen {
            Seen::Bits(bits) => {
                for (key, id) in pairs {
                    bits[key * stride + id as usize / 64] |= 1u64 << (id % 64);
                }
            }
            Seen::Pairs(seen) => {
                for (key, id) in pairs {
                    if seen.insert(((key as u64) << 32) | id as u64) {
                        self.counts[key] += 1;
                    }
                }
            }
        }
    }

    /// Notes everything `other` (over the same ids) noted, its key `k` as `key_of(k)`.
    pub fn absorb(&mut self, other: &Distinct, key_of: impl Fn(usize) -> usize) {
        let keys = (0..other.keys).map(&key_of).max().map_or(0, |k| k + 1);
        self.grow(keys);
        match (&mut self.seen, &other.seen) {
            (Seen::Bits(mine), Seen::Bits(theirs)) => {
                for key in 0..other.keys {
                    let into = key_of(key);
                    let from = &theirs[key * other.stride..(key + 1) * other.stride];
                    let to = &mut mine[into * self.stride..(into + 1) * self.stride];
                    for (to, from) in to.iter_mut().zip(from) {
                        *to |= from;
                    }
                }
            }
            (_, Seen::Pairs(theirs)) => {
                self.insert_each(
                    theirs
                        .iter()
                        .map(|pair| (key_of((pair >> 32) as usize), *pair as u32)),
                );
            }
            (Seen::Pairs(_), Seen::Bits(_)) => {
                for key in 0..other.keys {
                    let into = key_of(key);
                    other.each_id(key, |id| self.insert(into, id));
                }
            }
        }
    }

    /// Distinct ids noted under `key`.
    pub fn count(&self, key: usize) -> u64 {
        match &self.seen {
            _ if key >= self.keys => 0,
            Seen::Bits(bits) => bits[key * self.stride..(key + 1) * self.stride]
                .iter()
                .map(|word| u64::from(word.count_ones()))
                .sum(),
            Seen::Pairs(_) => u64::from(self.counts[key]),
        }
    }

    /// Distinct ids noted under any of `keys`.
    pub fn count_union(&self, keys: impl IntoIterator<Item = usize>) -> u64 {
        let keys = keys.into_iter().filter(|k| *k < self.keys);
        match &self.seen {
            Seen::Bits(bits) => {
                let mut union = vec![0u64; self.stride];
                for key in keys {
                    let row = &bits[key * self.stride..(key + 1) * self.stride];
                    for (to, from) in union.iter_mut().zip(row) {
                        *to |= from;
                    }
                }
                union.iter().map(|w| w.count_ones() as u64).sum()
            }
            Seen::Pairs(pairs) => {
                let keys: FxHashSet<u64> = keys.map(|k| k as u64).collect();
                let ids: FxHashSet<u32> = pairs
                    .iter()
                    .filter(|pair| keys.contains(&(**pair >> 32)))
                    .map(|pair| *pair as u32)
                    .collect();
                ids.len() as u64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::NO_VALUE;

    #[test]
    fn bits_and_pairs_count_the_same() {
        for (keys, ids) in [(3, 100), (1 << 16, 1 << 14)] {
            let mut distinct = Distinct::new(keys, ids);
            assert_eq!(
                matches!(distinct.seen, Seen::Bits(_)),
                keys * ids.div_ceil(64) * 64 <= MAX_BITS
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
            assert_eq!(distinct.count_union([0, 2]), 2);
            assert_eq!(distinct.count_union([0, 1, 2]), 3);
        }
    }

    /// Merging by key map counts the union, from and into bits or pairs, and growing past the
    /// bits' bound keeps what was noted.
    #[test]
    fn absorbing_and_growing_keep_every_pair() {
        let ids = 1 << 14;
        let mut bits = Distinct::new(2, ids);
        bits.insert(0, 1);
        bits.insert(1, 2);
        bits.insert(1, 3);
        let mut pairs = Distinct::new(1 << 16, ids);
        pairs.insert(0, 1);
        pairs.insert(0, 4);
        for ((mut into, from), expected) in [
            ((bits.clone(), pairs.clone()), (1, 4, 4)),
            ((pairs.clone(), bits.clone()), (4, 1, 4)),
            ((bits.clone(), bits.clone()), (3, 3, 3)),
        ] {
            // Key k of `from` lands on key 1 - k (keys 0 and 1; the pairs' others are empty).
            into.absorb(&from, |k| if k < 2 { 1 - k } else { k });
            let union = into.count_union([0, 1]);
            assert_eq!((into.count(0), into.count(1), union), expected);
        }
        let mut grown = Distinct::new(1, ids);
        grown.insert(0, 7);
        grown.grow(1 << 16);
        assert!(matches!(grown.seen, Seen::Pairs(_)));
        grown.insert(0, 7);
        grown.insert(5, 7);
        assert_eq!((grown.count(0), grown.count(5)), (1, 1));
    }
}
