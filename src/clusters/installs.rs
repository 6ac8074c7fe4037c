//! Counting affected installs per cluster: [`InstallCounter`] (all time: an exact set of hashed
//! ids up to [`EXACT_INSTALLS`], then a HyperLogLog), [`RecentInstalls`] (distinct installs in a
//! recent window, for the escalation thresholds) and the compact [`Hll`] itself.
//!
//! Why a hand-written HLL: the crates (`hyperloglogplus`, `hyperloglog`) hash with a caller's
//! `BuildHasher` and serialise their own internals; here the registers are persisted with each
//! cluster and must stay readable and mergeable forever, so they are a plain `[u8; 4096]` fed
//! with [`super::fingerprint::stable_hash64`] values. Standard error 1.04/√4096 ≈ 1.6 %.

use crate::hash::{HashedMap, HashedSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Precision: 2^12 registers.
const HLL_P: u32 = 12;
const HLL_M: usize = 1 << HLL_P;

/// A HyperLogLog sketch with 4096 one-byte registers (serialised as 8192 hex chars).
#[derive(Clone, PartialEq, Eq)]
pub struct Hll {
    registers: Box<[u8; HLL_M]>,
}

impl Default for Hll {
    fn default() -> Self {
        Hll {
            registers: Box::new([0; HLL_M]),
        }
    }
}

impl std::fmt::Debug for Hll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hll(~{})", self.estimate())
    }
}

impl Hll {
    /// Adds a well-mixed 64-bit hash.
    pub fn insert(&mut self, hash: u64) {
        let index = (hash >> (64 - HLL_P)) as usize;
        // Rank of the first 1 bit in the remaining 52 bits (1-based; 53 when all zero).
        let rest = hash << HLL_P;
        let rank = (rest.leading_zeros().min(64 - HLL_P) + 1) as u8;
        if self.registers[index] < rank {
            self.registers[index] = rank;
        }
    }

    /// Union with another sketch.
    pub fn merge(&mut self, other: &Hll) {
        for (mine, theirs) in self.registers.iter_mut().zip(other.registers.iter()) {
            *mine = (*mine).max(*theirs);
        }
    }

    /// Estimated number of distinct hashes inserted.
    pub fn estimate(&self) -> u64 {
        let m = HLL_M as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let mut sum = 0.0;
        let mut zeros = 0usize;
        for &r in self.registers.iter() {
            sum += f64::powi(2.0, -i32::from(r));
            if r == 0 {
                zeros += 1;
            }
        }
        let raw = alpha * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            // Small range: linear counting.
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        estimate.round() as u64
    }
}

impl Serialize for Hll {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&crate::hash::hex(&self.registers[..]))
    }
}

impl<'de> Deserialize<'de> for Hll {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = text.as_bytes();
        if bytes.len() != HLL_M * 2 {
            return Err(serde::de::Error::invalid_length(
                bytes.len(),
                &"8192 hex characters",
            ));
        }
        let mut hll = Hll::default();
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let digit = |b: u8| match b {
                b'0'..=b'9' => Some(b - b'0'),
                b'a'..=b'f' => Some(b - b'a' + 10),
                _ => None,
            };
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => hll.registers[i] = hi << 4 | lo,
                _ => {
                    return Err(serde::de::Error::custom(
                        "HLL registers must be lowercase hex",
                    ))
                }
            }
        }
        Ok(hll)
    }
}

/// Installs kept exactly before switching to the HyperLogLog estimate.
pub const EXACT_INSTALLS: usize = 1000;

/// Distinct affected installs, all time: exact (a set of hashed ids) up to [`EXACT_INSTALLS`],
/// then estimated. Memory: ≤ ~18 KB exact, 4 KB as HLL. Persisted as
/// `{"exact": [sorted hashes]}` or `{"hll": "<8192 hex chars>"}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InstallCounter {
    exact: HashedSet,
    hll: Option<Hll>,
}

impl InstallCounter {
    /// Adds a hashed install id (see [`super::fingerprint::stable_hash64`]).
    pub fn insert(&mut self, hash: u64) {
        if let Some(hll) = &mut self.hll {
            hll.insert(hash);
            return;
        }
        if self.exact.insert(hash) && self.exact.len() > EXACT_INSTALLS {
            let mut hll = Hll::default();
            for h in self.exact.drain() {
                hll.insert(h);
            }
            self.exact = HashedSet::default();
            self.hll = Some(hll);
        }
    }

    /// Forgets a hashed install (erasure). Only possible while exact: returns whether it did.
    pub fn remove(&mut self, hash: u64) -> bool {
        self.exact.remove(&hash)
    }

    /// `(count, exact)`: the exact count, or the HyperLogLog estimate with `exact == false`.
    pub fn estimate(&self) -> (u64, bool) {
        match &self.hll {
            Some(hll) => (hll.estimate().max(EXACT_INSTALLS as u64 + 1), false),
            None => (self.exact.len() as u64, true),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct InstallCounterRepr {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    exact: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hll: Option<Hll>,
}

impl Serialize for InstallCounter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut exact: Vec<u64> = self.exact.iter().copied().collect();
        exact.sort_unstable();
        InstallCounterRepr {
            exact,
            hll: self.hll.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for InstallCounter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = InstallCounterRepr::deserialize(deserializer)?;
        let mut counter = InstallCounter {
            exact: HashedSet::default(),
            hll: repr.hll,
        };
        for hash in repr.exact {
            counter.insert(hash);
        }
        Ok(counter)
    }
}

/// Most entries [`RecentInstalls`] keeps (the capacity before the first `set_capacity`).
pub const RECENT_INSTALLS_CAP: usize = 4096;
/// Fewest entries [`RecentInstalls`] keeps.
pub const RECENT_INSTALLS_MIN_CAP: usize = 256;

/// Largest install threshold that [`RecentInstalls`] decides exactly.
pub const MAX_WINDOW_INSTALLS_THRESHOLD: u64 = (RECENT_INSTALLS_CAP / 2) as u64;

fn default_recent_cap() -> u32 {
    RECENT_INSTALLS_CAP as u32
}

/// Distinct installs in a recent window: the last hour (hours since the epoch) each hashed
/// install was seen, up to a capacity. On overflow the entries seen longest ago are dropped
/// down to half the capacity and the newest dropped hour is remembered, so a count in a window
/// that reaches back past it is a lower bound of at least capacity/2 (flagged). `evaluate` sets
/// the capacity to twice the largest install threshold (at least 256), so every threshold is
/// decided exactly and memory stays small: ~4 KB at the defaults (100 installs), at most
/// ~80 KB ([`RECENT_INSTALLS_CAP`] entries, thresholds up to 2,048).
#[derive(Clone, Debug)]
pub struct RecentInstalls {
    last_hour: HashedMap<u32>,
    /// Newest hour among entries dropped for capacity (0 = none).
    evicted_hour: u32,
    cap: u32,
}

impl Default for RecentInstalls {
    fn default() -> Self {
        RecentInstalls {
            last_hour: HashedMap::default(),
            evicted_hour: 0,
            cap: default_recent_cap(),
        }
    }
}

impl RecentInstalls {
    /// Keeps enough entries to decide `max_threshold` exactly (2×, within 256..=4096).
    pub fn set_capacity(&mut self, max_threshold: u64) {
        let wanted = usize::try_from(max_threshold.saturating_mul(2)).unwrap_or(usize::MAX);
        let cap = wanted.clamp(RECENT_INSTALLS_MIN_CAP, RECENT_INSTALLS_CAP);
        self.cap = cap as u32;
        if self.last_hour.len() > cap {
            self.shrink(cap / 2);
        }
    }

    /// Records `hash` seen in `hour` (hours since the epoch).
    pub fn touch(&mut self, hash: u64, hour: u32) {
        let entry = self.last_hour.entry(hash).or_insert(hour);
        if *entry < hour {
            *entry = hour;
        }
        let cap = self.cap as usize;
        if self.last_hour.len() > cap {
            self.shrink(cap / 2);
        }
    }

    fn shrink(&mut self, keep: usize) {
        let mut entries: Vec<(u32, u64)> = self.last_hour.iter().map(|(h, t)| (*t, *h)).collect();
        entries.sort_unstable_by(|a, b| b.cmp(a));
        if let Some((hour, _)) = entries.get(keep) {
            self.evicted_hour = self.evicted_hour.max(*hour);
        }
        entries.truncate(keep);
        self.last_hour = entries.into_iter().map(|(t, h)| (h, t)).collect();
    }

    /// Forgets a hashed install (erasure).
    pub fn remove(&mut self, hash: u64) {
        self.last_hour.remove(&hash);
    }

    /// Drops entries last seen before `oldest_hour`.
    pub fn prune(&mut self, oldest_hour: u32) {
        self.last_hour.retain(|_, hour| *hour >= oldest_hour);
        if self.evicted_hour < oldest_hour {
            self.evicted_hour = 0;
        }
    }

    /// `(count, exact)` of installs last seen at or after `since_hour`. When not exact the
    /// count is a lower bound of at least half the capacity.
    pub fn count_since(&self, since_hour: u32) -> (u64, bool) {
        let count = self
            .last_hour
            .values()
            .filter(|h| **h >= since_hour)
            .count() as u64;
        let exact = self.evicted_hour == 0 || self.evicted_hour < since_hour;
        (count, exact)
    }

    pub fn len(&self) -> usize {
        self.last_hour.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last_hour.is_empty()
    }
}

/// Persisted as `{"entries": [[hash, hour], ...] (sorted), "evicted_hour": n, "cap": n}`.
#[derive(Serialize, Deserialize)]
struct RecentInstallsRepr {
    #[serde(default)]
    entries: Vec<(u64, u32)>,
    #[serde(default)]
    evicted_hour: u32,
    #[serde(default = "default_recent_cap")]
    cap: u32,
}

impl Serialize for RecentInstalls {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(u64, u32)> = self.last_hour.iter().map(|(h, t)| (*h, *t)).collect();
        entries.sort_unstable();
        RecentInstallsRepr {
            entries,
            evicted_hour: self.evicted_hour,
            cap: self.cap,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RecentInstalls {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = RecentInstallsRepr::deserialize(deserializer)?;
        Ok(RecentInstalls {
            last_hour: repr.entries.into_iter().collect(),
            evicted_hour: repr.evicted_hour,
            cap: repr
                .cap
                .clamp(RECENT_INSTALLS_MIN_CAP as u32, RECENT_INSTALLS_CAP as u32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fingerprint::stable_hash64;
    use super::*;

    #[test]
    fn hll_error_bound() {
        // 1.04/sqrt(4096) = 1.6 %; allow 3 sigma at each checkpoint.
        let mut hll = Hll::default();
        let mut inserted = 0u64;
        for checkpoint in [100u64, 1_000, 10_000, 100_000, 300_000] {
            while inserted < checkpoint {
                hll.insert(stable_hash64(&format!("install-{inserted}")));
                inserted += 1;
            }
            let estimate = hll.estimate() as f64;
            let error = (estimate - checkpoint as f64).abs() / checkpoint as f64;
            assert!(
                error < 0.05,
                "{checkpoint}: estimate {estimate}, error {error}"
            );
        }
        // Duplicates do not count.
        let before = hll.estimate();
        for i in 0..1000 {
            hll.insert(stable_hash64(&format!("install-{i}")));
        }
        assert_eq!(hll.estimate(), before);
    }

    #[test]
    fn hll_merge_and_serde() {
        let mut a = Hll::default();
        let mut b = Hll::default();
        for i in 0..20_000 {
            a.insert(stable_hash64(&format!("a{i}")));
            b.insert(stable_hash64(&format!("b{i}")));
        }
        a.merge(&b);
        let e = a.estimate() as f64;
        assert!((e - 40_000.0).abs() / 40_000.0 < 0.05, "{e}");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json.len(), 8192 + 2);
        assert_eq!(serde_json::from_str::<Hll>(&json).unwrap(), a);
        assert!(serde_json::from_str::<Hll>("\"zz\"").is_err());
    }

    #[test]
    fn install_counter_exact_then_estimated() {
        let mut c = InstallCounter::default();
        for round in 0..3 {
            for i in 0..EXACT_INSTALLS {
                c.insert(stable_hash64(&format!("i{i}")));
            }
            assert_eq!(c.estimate(), (EXACT_INSTALLS as u64, true), "round {round}");
        }
        for i in 0..5000 {
            c.insert(stable_hash64(&format!("i{i}")));
        }
        let (n, exact) = c.estimate();
        assert!(!exact);
        assert!((n as f64 - 5000.0).abs() < 250.0, "{n}");
        let back: InstallCounter =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn recent_installs_window_and_capacity() {
        let mut r = RecentInstalls::default();
        for i in 0..10u64 {
            r.touch(stable_hash64(&i.to_string()), 100);
        }
        r.touch(stable_hash64("0"), 105);
        assert_eq!(r.count_since(100), (10, true));
        assert_eq!(r.count_since(101), (1, true));
        // Overflow with newer installs: counts reaching back past the eviction are bounds.
        for i in 0..(RECENT_INSTALLS_CAP as u64 + 10) {
            r.touch(stable_hash64(&format!("n{i}")), 200 + (i / 1000) as u32);
        }
        assert!(r.len() <= RECENT_INSTALLS_CAP);
        let (n, exact) = r.count_since(0);
        assert!(!exact && n >= MAX_WINDOW_INSTALLS_THRESHOLD, "{n}");
        // A window entirely after the evicted hours is exact.
        let (n, exact) = r.count_since(204);
        assert!(exact);
        assert_eq!(n, 106);
        let back: RecentInstalls =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.count_since(0), r.count_since(0));
        // Shrinking the capacity keeps the newest entries and flags older windows.
        r.set_capacity(100);
        assert!(r.len() <= 256);
        assert_eq!(r.count_since(204), (106, true));
        let (n, exact) = r.count_since(203);
        assert!(!exact && n >= 128, "{n}");
        r.prune(10_000);
        assert!(r.is_empty());
        assert_eq!(r.count_since(0), (0, true));
    }
}
