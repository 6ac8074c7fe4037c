//! Time and rate rules of ingest: clock-drift correction and clamping of event timestamps
//! (the rules Sentry's Relay applies), and the sliding-window rate limiter: per install, per
//! client address for events without an install id, and per product (its events-per-second
//! cap).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::config::LimitsConfig;
use crate::timespan::{DAY_MS, MINUTE_MS, SECOND_MS};

pub const FLAG_DRIFT_CORRECTED: &str = "clock_drift_corrected";
pub const FLAG_FUTURE: &str = "timestamp_in_future";
pub const FLAG_PAST: &str = "timestamp_too_old";

#[derive(Debug, Clone, Copy)]
pub struct ClockRules {
    max_future_ms: i64,
    max_past_ms: i64,
    drift_tolerance_ms: i64,
}

/// The clock of one request: when it arrived and how far the client's clock is off.
#[derive(Debug, Clone, Copy)]
pub struct BatchClock {
    pub received_at: i64,
    drift_ms: i64,
    rules: ClockRules,
}

impl ClockRules {
    pub fn new(limits: &LimitsConfig) -> Self {
        ClockRules {
            max_future_ms: (limits.max_future_secs as i64).saturating_mul(SECOND_MS),
            max_past_ms: (limits.max_past_days as i64).saturating_mul(DAY_MS),
            drift_tolerance_ms: (limits.clock_drift_tolerance_secs as i64)
                .saturating_mul(SECOND_MS),
        }
    }

    /// With the client's `sent_at`, a drift beyond the tolerance is corrected on every event.
    pub fn for_batch(&self, received_at: i64, sent_at: Option<i64>) -> BatchClock {
        let drift_ms = sent_at
            .map(|sent| received_at.saturating_sub(sent))
            .filter(|drift| drift.abs() >= self.drift_tolerance_ms)
            .unwrap_or(0);
        BatchClock {
            received_at,
            drift_ms,
            rules: *self,
        }
    }
}

impl BatchClock {
    /// The event's corrected timestamp; notes each correction in `flags`.
    pub fn correct(&self, timestamp: Option<i64>, flags: &mut Vec<String>) -> i64 {
        let Some(mut ts) = timestamp else {
            return self.received_at;
        };
        if self.drift_ms != 0 {
            ts = ts.saturating_add(self.drift_ms);
            flags.push(FLAG_DRIFT_CORRECTED.into());
        }
        if ts > self.received_at.saturating_add(self.rules.max_future_ms) {
            flags.push(FLAG_FUTURE.into());
            return self.received_at;
        }
        if ts < self.received_at.saturating_sub(self.rules.max_past_ms) {
            flags.push(FLAG_PAST.into());
            return self.received_at;
        }
        ts
    }
}

/// Parses a client time: epoch milliseconds or seconds (numbers below 10^11 are seconds), or an
/// RFC 3339 string.
pub fn parse_time(value: &crate::ingest::decode::FieldValue) -> Option<i64> {
    use crate::ingest::decode::FieldValue;
    match value {
        FieldValue::Num(n) if n.is_finite() && *n >= 0.0 => Some(if *n < 1e11 {
            (n * 1000.0) as i64
        } else {
            *n as i64
        }),
        FieldValue::Str(s) => {
            if let Ok(n) = s.trim().parse::<f64>() {
                return parse_time(&FieldValue::Num(n));
            }
            let t = time::OffsetDateTime::parse(
                s.trim(),
                &time::format_description::well_known::Rfc3339,
            )
            .ok()?;
            Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
        }
        _ => None,
    }
}

const SHARDS: usize = 64;
/// Entries a shard holds before windows that can no longer count are dropped.
const SHARD_PRUNE_AT: usize = 100_000;

/// Whose budget an event uses (within one product).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// Events with an install id: the install's per-minute budget.
    Install(String),
    /// Events without one: their client address's per-minute budget. Only a keyed hash of the
    /// address (see [`RateLimiter::address_key`]), never the address.
    Address(u64),
    /// OTLP metrics exports from one client address (the same keyed hash): the product's
    /// per-minute budget, counted in requests, since an exporter sends one every interval.
    MetricsExports(u64),
    /// Every event and metric data point of the product: its per-second cap.
    Product,
}

/// The length of the window a [`RateKey`] counts in.
impl RateKey {
    fn window_ms(&self) -> i64 {
        match self {
            RateKey::Install(_) | RateKey::Address(_) | RateKey::MetricsExports(_) => MINUTE_MS,
            RateKey::Product => SECOND_MS,
        }
    }
}

/// Sliding-window counters (the weighted two-window approximation), in memory only, sharded so
/// that worker threads rarely contend.
pub struct RateLimiter {
    shards: Vec<Mutex<HashMap<(usize, RateKey), Window>>>,
    /// Keyed with a random key per process: shard choice and address keys.
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    current: u32,
    previous: u32,
}

/// How many of the asked events may pass, and when to retry for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub allowed: u32,
    pub retry_after_secs: u64,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }
}

impl RateLimiter {
    fn shard(&self, product: usize, key: &RateKey) -> &Mutex<HashMap<(usize, RateKey), Window>> {
        let hash = self.hasher.hash_one((product, key));
        &self.shards[(hash as usize) % SHARDS]
    }

    /// The key of a client address: a hash keyed per process, so the limiter holds no address
    /// and its keys mean nothing outside this process. The address is not kept.
    pub fn address_key(&self, address: IpAddr) -> RateKey {
        RateKey::Address(self.address_hash(address))
    }

    /// The key of a client address's OTLP metrics exports (the same keyed hash).
    pub fn exports_key(&self, address: IpAddr) -> RateKey {
        RateKey::MetricsExports(self.address_hash(address))
    }

    fn address_hash(&self, address: IpAddr) -> u64 {
        self.hasher.hash_one(("address", address))
    }

    /// Takes up to `wanted` events from `key`'s budget of `limit` per window (a minute for
    /// installs and addresses, a second for a product).
    pub fn admit(
        &self,
        product: usize,
        key: &RateKey,
        limit: u32,
        wanted: u32,
        now_ms: i64,
    ) -> Admission {
        let window_ms = key.window_ms();
        let window_start = now_ms - now_ms.rem_euclid(window_ms);
        let mut shard = match self.shard(product, key).lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if shard.len() > SHARD_PRUNE_AT {
            shard.retain(|(_, k), w| w.start >= window_start - k.window_ms());
        }
        let window = shard.entry((product, key.clone())).or_insert(Window {
            start: window_start,
            current: 0,
            previous: 0,
        });
        if window.start != window_start {
            let previous = if window.start == window_start - window_ms {
                window.current
            } else {
                0
            };
            *window = Window {
                start: window_start,
                current: 0,
                previous,
            };
        }
        let elapsed = (now_ms - window_start) as f64 / window_ms as f64;
        let used = window.previous as f64 * (1.0 - elapsed) + window.current as f64;
        let room = (limit as f64 - used).floor().max(0.0) as u32;
        let allowed = room.min(wanted);
        window.current = window.current.saturating_add(allowed);
        let retry_after_secs = ((window_ms - (now_ms - window_start)) as u64)
            .div_ceil(1000)
            .max(1);
        Admission {
            allowed,
            retry_after_secs,
        }
    }

    /// Drops an install's state (erasure).
    pub fn forget(&self, product: usize, install: &str) {
        let key = RateKey::Install(install.to_string());
        let mut shard = match self.shard(product, &key).lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        shard.remove(&(product, key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::decode::FieldValue;
    use crate::timespan::HOUR_MS;

    fn rules() -> ClockRules {
        ClockRules::new(&LimitsConfig::default())
    }

    #[test]
    fn drift_is_corrected_beyond_tolerance() {
        let now = 1_700_000_000_000;
        let clock = rules().for_batch(now, Some(now - 2 * HOUR_MS));
        let mut flags = vec![];
        assert_eq!(
            clock.correct(Some(now - 2 * HOUR_MS - 5_000), &mut flags),
            now - 5_000
        );
        assert_eq!(flags, vec![FLAG_DRIFT_CORRECTED]);
        let small = rules().for_batch(now, Some(now - MINUTE_MS));
        let mut flags = vec![];
        assert_eq!(small.correct(Some(now - 70_000), &mut flags), now - 70_000);
        assert!(flags.is_empty());
    }

    #[test]
    fn far_timestamps_are_clamped() {
        let now = 1_700_000_000_000;
        let clock = rules().for_batch(now, None);
        let mut flags = vec![];
        assert_eq!(clock.correct(Some(now + HOUR_MS), &mut flags), now);
        assert_eq!(clock.correct(Some(now - 31 * DAY_MS), &mut flags), now);
        assert_eq!(flags, vec![FLAG_FUTURE, FLAG_PAST]);
        assert_eq!(clock.correct(None, &mut flags), now);
        assert_eq!(clock.correct(Some(now + 30_000), &mut flags), now + 30_000);
    }

    #[test]
    fn time_formats() {
        assert_eq!(
            parse_time(&FieldValue::Num(1_700_000_000.5)),
            Some(1_700_000_000_500)
        );
        assert_eq!(
            parse_time(&FieldValue::Num(1_700_000_000_123.0)),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_time(&FieldValue::Str("2023-11-14T22:13:20Z".into())),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_time(&FieldValue::Str("2023-11-14T23:13:20+01:00".into())),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_time(&FieldValue::Str("yesterday".into())), None);
        assert_eq!(parse_time(&FieldValue::Num(-5.0)), None);
    }

    #[test]
    fn sliding_window() {
        let limiter = RateLimiter::default();
        let install = |id: &str| RateKey::Install(id.to_string());
        let t0 = 1_700_000_040_000; // a window start (a multiple of 60 s)
        assert_eq!(limiter.admit(0, &install("a"), 100, 80, t0).allowed, 80);
        let second = limiter.admit(0, &install("a"), 100, 80, t0 + 1_000);
        assert_eq!(second.allowed, 20);
        assert_eq!(second.retry_after_secs, 59);
        assert_eq!(limiter.admit(0, &install("b"), 100, 10, t0).allowed, 10);
        assert_eq!(limiter.admit(1, &install("a"), 100, 10, t0).allowed, 10);
        // Half-way through the next window half of the previous window still counts.
        assert_eq!(
            limiter
                .admit(0, &install("a"), 100, 100, t0 + 90_000)
                .allowed,
            50
        );
        limiter.forget(0, "a");
        assert_eq!(
            limiter
                .admit(0, &install("a"), 100, 100, t0 + 90_000)
                .allowed,
            100
        );
    }

    #[test]
    fn addresses_and_products_have_their_own_budgets() {
        let limiter = RateLimiter::default();
        let t0 = 1_700_000_040_000;
        let here = limiter.address_key("192.0.2.7".parse().unwrap());
        let there = limiter.address_key("2001:db8::7".parse().unwrap());
        assert_eq!(here, limiter.address_key("192.0.2.7".parse().unwrap()));
        assert_ne!(here, there);
        // Another process (another key) maps the same address elsewhere.
        assert_ne!(
            here,
            RateLimiter::default().address_key("192.0.2.7".parse().unwrap())
        );
        assert_eq!(limiter.admit(0, &here, 5, 8, t0).allowed, 5);
        assert_eq!(limiter.admit(0, &there, 5, 8, t0).allowed, 5);
        // A product's cap counts per second.
        let cap = limiter.admit(0, &RateKey::Product, 10, 15, t0 + 200);
        assert_eq!((cap.allowed, cap.retry_after_secs), (10, 1));
        assert_eq!(
            limiter
                .admit(0, &RateKey::Product, 10, 15, t0 + 900)
                .allowed,
            0
        );
        assert_eq!(
            limiter
                .admit(0, &RateKey::Product, 10, 15, t0 + 2_000)
                .allowed,
            10
        );
        assert_eq!(
            limiter
                .admit(1, &RateKey::Product, 10, 15, t0 + 900)
                .allowed,
            10
        );
    }
}
