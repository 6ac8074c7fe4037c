//! The hot-path policy cache used by `GET /api/v1/config` and by ingest enforcement.
//!
//! Layout (all inside one immutable-by-`replace` snapshot, so a policy write swaps everything
//! at once and no stale entry can survive it):
//!
//! - per product: the enabled candidate policies, compiled and sorted in application order,
//!   the sorted schedule boundaries (`starts_at`/`expires_at`), and an interning table from
//!   "set of applied candidates" (a bitset) to the rendered config (merged settings, ETag,
//!   JSON body) — the merged result depends only on that set, so every context and install
//!   with the same applied policies shares one `Arc`;
//! - per context without install (product, platform, app_version, channel, release_channel,
//!   country, region), in hashed shards: the bitset of applied policies without partial
//!   rollout, the bitset of partial-rollout candidates that also target it, and the window
//!   `[valid_from, valid_until)` between two schedule boundaries in which that answer holds;
//! - per install (only for products with partial rollouts), in hashed shards: the bitset of
//!   the product's partial-rollout candidates that include it (one SHA-256 per such policy,
//!   computed the first time the install is seen after a `replace`).
//!
//! A lookup hashes the context once and finds its entry under a shard read lock; when
//! partial-rollout policies target the context, it also looks up the install's bits and the
//! interned config for `base | (rollout & install)`. A stale entry (time outside its window)
//! is recomputed; shards and interning tables are bounded and simply cleared when full.

use crate::hash::HashedMap;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard};

use super::enforce::{decide, Decision, DecisionCounts};
use super::merge::{application_order, canonical_json, etag_of, merge_applied};
use super::model::{ClientContext, ContextRef, MergedConfig, Policy, Settings, TargetingValues};
use super::targeting::CompiledPolicy;
use crate::model::Event;

const SHARDS: usize = 16;
/// Default bound on cached client contexts per product.
pub const DEFAULT_MAX_CONTEXTS: usize = 50_000;
/// Default bound on installs with cached rollout bits per product.
pub const DEFAULT_MAX_INSTALLS: usize = 200_000;
/// Default bound on distinct applied-policy sets (rendered configs) per product.
pub const DEFAULT_MAX_CONFIGS: usize = 16_384;

/// A merged config and, rendered on first use (ingest never needs it), its JSON body and ETag.
#[derive(Debug)]
pub struct ClientConfig {
    pub config: Arc<MergedConfig>,
    rendered: OnceLock<(String, String)>,
}

impl ClientConfig {
    fn new(config: MergedConfig) -> ClientConfig {
        ClientConfig {
            config: Arc::new(config),
            rendered: OnceLock::new(),
        }
    }

    fn rendered(&self) -> &(String, String) {
        self.rendered.get_or_init(|| {
            let body = canonical_json(&self.config);
            (etag_of(body.as_bytes()), body)
        })
    }

    /// Strong, quoted ETag of [`ClientConfig::body`] (equal to `merge::etag(&config)`).
    pub fn etag(&self) -> &str {
        &self.rendered().0
    }

    /// Canonical JSON of the merged config: the response body of `GET /api/v1/config`.
    pub fn body(&self) -> &str {
        &self.rendered().1
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// One cached client context (install excluded).
struct ContextEntry {
    values: TargetingValues<String>,
    valid_from: i64,
    valid_until: i64,
    /// Bits of the applied candidates that need no install (no partial rollout).
    base_bits: Box<[u64]>,
    /// Bits of the candidates with a partial rollout that target this context.
    rollout_bits: Box<[u64]>,
    has_rollout: bool,
    /// The config for `base_bits` alone (installs outside every partial rollout).
    base: Arc<ClientConfig>,
}

impl ContextEntry {
    /// Same context; the product is implied by the product's own shard map.
    fn is_for(&self, ctx: &ContextRef<'_>) -> bool {
        self.values
            .iter()
            .zip(&ctx.values)
            .all(|(mine, theirs)| mine.as_deref() == *theirs)
    }

    fn is_valid_at(&self, now_ms: i64) -> bool {
        self.valid_from <= now_ms && now_ms < self.valid_until
    }
}

#[derive(Default)]
struct Shard<T> {
    map: HashedMap<Vec<T>>,
    len: usize,
}

impl<T> Shard<T> {
    /// Inserts `item` under `hash`, replacing the items `same` selects; clears the shard
    /// first when it holds `capacity` items.
    fn insert(&mut self, hash: u64, item: T, capacity: usize, same: impl Fn(&T) -> bool) {
        if self.len >= capacity {
            self.map.clear();
            self.len = 0;
        }
        let bucket = self.map.entry(hash).or_default();
        let before = bucket.len();
        bucket.retain(|e| !same(e));
        bucket.push(item);
        self.len = self.len + bucket.len() - before;
    }
}

fn sharded<T>() -> Vec<RwLock<Shard<T>>> {
    (0..SHARDS)
        .map(|_| {
            RwLock::new(Shard {
                map: HashedMap::default(),
                len: 0,
            })
        })
        .collect()
}

/// An install's rollout bits: which partial-rollout candidates of the product include it.
struct InstallEntry {
    install_id: Box<str>,
    bits: Box<[u64]>,
}

fn set_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1u64 << (i % 64);
}

fn has_bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1u64 << (i % 64)) != 0
}

struct ProductState {
    product: String,
    defaults: Settings,
    /// Enabled policies of the product, in application order.
    candidates: Vec<CompiledPolicy>,
    /// Indices of the candidates with a partial rollout.
    partial: Vec<usize>,
    /// Sorted, de-duplicated `starts_at`/`expires_at` of the candidates.
    boundaries: Vec<i64>,
    /// Length of the candidate bitsets.
    words: usize,
    /// Applied-candidate bitset → rendered config.
    configs: RwLock<HashMap<Box<[u64]>, Arc<ClientConfig>>>,
    contexts: Vec<RwLock<Shard<ContextEntry>>>,
    context_capacity: usize,
    config_capacity: usize,
    /// Only used when `partial` is not empty.
    installs: Vec<RwLock<Shard<InstallEntry>>>,
    install_capacity: usize,
    /// The config when no policy applies.
    defaults_only: Arc<ClientConfig>,
}

impl ProductState {
    fn new(
        product: String,
        defaults: Settings,
        mut policies: Vec<Policy>,
        capacity: Capacity,
    ) -> Self {
        policies.retain(|p| p.enabled);
        policies.sort_by(application_order);
        let mut boundaries: Vec<i64> = policies
            .iter()
            .flat_map(|p| [p.starts_at, p.expires_at])
            .flatten()
            .collect();
        boundaries.sort_unstable();
        boundaries.dedup();
        let candidates: Vec<CompiledPolicy> =
            policies.into_iter().map(CompiledPolicy::new).collect();
        let partial = (0..candidates.len())
            .filter(|i| candidates[*i].is_partial_rollout())
            .collect();
        let words = candidates.len().div_ceil(64).max(1);
        let defaults_only = Arc::new(ClientConfig::new(merge_applied(&product, &defaults, [])));
        ProductState {
            product,
            defaults,
            words,
            candidates,
            partial,
            boundaries,
            configs: RwLock::new(HashMap::new()),
            config_capacity: capacity.configs.max(1),
            contexts: sharded(),
            context_capacity: (capacity.contexts / SHARDS).max(1),
            installs: sharded(),
            install_capacity: (capacity.installs / SHARDS).max(1),
            defaults_only,
        }
    }

    /// The interned config for a set of applied candidates.
    fn config_for(&self, bits: &[u64]) -> Arc<ClientConfig> {
        if let Some(found) = read(&self.configs).get(bits) {
            return found.clone();
        }
        let applied = self
            .candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| has_bit(bits, *i))
            .map(|(_, c)| &c.policy);
        let config = Arc::new(ClientConfig::new(merge_applied(
            &self.product,
            &self.defaults,
            applied,
        )));
        let mut configs = self.configs.write().unwrap_or_else(PoisonError::into_inner);
        if configs.len() >= self.config_capacity {
            configs.clear();
        }
        configs.entry(bits.into()).or_insert(config).clone()
    }

    /// The window `[from, until)` between schedule boundaries that contains `now_ms`.
    fn window(&self, now_ms: i64) -> (i64, i64) {
        let next = self.boundaries.partition_point(|b| *b <= now_ms);
        let from = match next.checked_sub(1) {
            Some(previous) => self.boundaries[previous],
            None => i64::MIN,
        };
        let until = self.boundaries.get(next).copied().unwrap_or(i64::MAX);
        (from, until)
    }

    fn compute_entry(&self, ctx: &ContextRef<'_>, now_ms: i64) -> ContextEntry {
        let version = ctx.app_version();
        let mut base_bits = vec![0u64; self.words].into_boxed_slice();
        let mut rollout_bits = vec![0u64; self.words].into_boxed_slice();
        let mut has_rollout = false;
        for (i, candidate) in self.candidates.iter().enumerate() {
            if !candidate.is_active(now_ms) || !candidate.targets(ctx, version.as_ref()) {
                continue;
            }
            if candidate.is_partial_rollout() {
                set_bit(&mut rollout_bits, i);
                has_rollout = true;
            } else {
                set_bit(&mut base_bits, i);
            }
        }
        let (valid_from, valid_until) = self.window(now_ms);
        ContextEntry {
            values: ctx.values.map(|v| v.map(str::to_string)),
            valid_from,
            valid_until,
            base: self.config_for(&base_bits),
            base_bits,
            rollout_bits,
            has_rollout,
        }
    }

    /// Runs `f` with the install's rollout bits (computed once per install and snapshot:
    /// one SHA-256 per partial-rollout candidate of the product).
    fn with_install_bits<R>(
        &self,
        hasher: &RandomState,
        install_id: &str,
        f: impl FnOnce(&[u64]) -> R,
    ) -> R {
        let hash = hasher.hash_one(install_id);
        let shard = &self.installs[(hash as usize) % SHARDS];
        if let Some(bucket) = read(shard).map.get(&hash) {
            if let Some(entry) = bucket.iter().find(|e| &*e.install_id == install_id) {
                return f(&entry.bits);
            }
        }
        let mut bits = vec![0u64; self.words].into_boxed_slice();
        for &i in &self.partial {
            if self.candidates[i].rollout_includes(Some(install_id)) {
                set_bit(&mut bits, i);
            }
        }
        let result = f(&bits);
        let entry = InstallEntry {
            install_id: install_id.into(),
            bits,
        };
        shard
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hash, entry, self.install_capacity, |e| {
                &*e.install_id == install_id
            });
        result
    }

    /// The config for an install under a context entry.
    fn resolve(
        &self,
        hasher: &RandomState,
        entry: &ContextEntry,
        install_id: Option<&str>,
    ) -> Arc<ClientConfig> {
        let (true, Some(install_id)) = (entry.has_rollout, install_id) else {
            return entry.base.clone();
        };
        self.with_install_bits(hasher, install_id, |install_bits| {
            let included = entry
                .rollout_bits
                .iter()
                .zip(install_bits)
                .any(|(r, i)| r & i != 0);
            if !included {
                return entry.base.clone();
            }
            let combine = |w: usize| entry.base_bits[w] | (entry.rollout_bits[w] & install_bits[w]);
            if self.words == 1 {
                self.config_for(&[combine(0)])
            } else {
                let bits: Vec<u64> = (0..self.words).map(combine).collect();
                self.config_for(&bits)
            }
        })
    }

    fn client_config(
        &self,
        hasher: &RandomState,
        ctx: &ContextRef<'_>,
        now_ms: i64,
    ) -> Arc<ClientConfig> {
        if self.candidates.is_empty() {
            return self.defaults_only.clone();
        }
        let hash = hasher.hash_one(ctx.values);
        let shard = &self.contexts[(hash as usize) % SHARDS];
        {
            let guard = read(shard);
            let found = guard
                .map
                .get(&hash)
                .and_then(|bucket| bucket.iter().find(|e| e.is_for(ctx)))
                .filter(|e| e.is_valid_at(now_ms));
            if let Some(entry) = found {
                return self.resolve(hasher, entry, ctx.install_id);
            }
        }
        let entry = self.compute_entry(ctx, now_ms);
        let config = self.resolve(hasher, &entry, ctx.install_id);
        shard
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hash, entry, self.context_capacity, |e| e.is_for(ctx));
        config
    }
}

/// Occupancy of a [`PolicyCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub products: usize,
    /// Enabled policies, over all products.
    pub candidates: usize,
    pub contexts: usize,
    pub installs: usize,
    /// Distinct rendered configs (applied-policy sets).
    pub configs: usize,
}

/// Cache bounds, per product.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    /// Client contexts (without install) kept.
    pub contexts: usize,
    /// Installs whose rollout bits are kept (only for products with partial rollouts).
    pub installs: usize,
    /// Distinct merged configs (applied-policy sets) kept.
    pub configs: usize,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            contexts: DEFAULT_MAX_CONTEXTS,
            installs: DEFAULT_MAX_INSTALLS,
            configs: DEFAULT_MAX_CONFIGS,
        }
    }
}

struct Snapshot {
    policies: Vec<Policy>,
    /// Few products: a linear scan beats hashing the name.
    products: Vec<ProductState>,
    /// Per-product defaults, kept to rebuild on `replace`.
    defaults: HashMap<String, Settings>,
    hasher: RandomState,
}

impl Snapshot {
    fn build(
        defaults: HashMap<String, Settings>,
        policies: Vec<Policy>,
        capacity: Capacity,
    ) -> Snapshot {
        let mut by_product: HashMap<String, Vec<Policy>> = defaults
            .keys()
            .map(|product| (product.clone(), Vec::new()))
            .collect();
        for policy in &policies {
            by_product
                .entry(policy.product.clone())
                .or_default()
                .push(policy.clone());
        }
        let products = by_product
            .into_iter()
            .map(|(product, list)| {
                let product_defaults = defaults.get(&product).cloned().unwrap_or_default();
                ProductState::new(product, product_defaults, list, capacity)
            })
            .collect();
        Snapshot {
            policies,
            products,
            defaults,
            hasher: RandomState::new(),
        }
    }
}

/// Thread-safe cache of merged policies for every product (see the module docs).
pub struct PolicyCache {
    snapshot: RwLock<Arc<Snapshot>>,
    capacity: Capacity,
}

impl PolicyCache {
    /// `defaults`: product id → that product's default settings layer (from the config).
    pub fn new(defaults: HashMap<String, Settings>) -> Self {
        Self::with_capacity(defaults, Capacity::default())
    }

    /// As [`PolicyCache::new`], with explicit cache bounds.
    pub fn with_capacity(defaults: HashMap<String, Settings>, capacity: Capacity) -> Self {
        PolicyCache {
            snapshot: RwLock::new(Arc::new(Snapshot::build(defaults, Vec::new(), capacity))),
            capacity,
        }
    }

    /// Replaces all policies (every product) and drops every cached answer. Call it with the
    /// full stored list at startup and after each policy create/update/delete.
    pub fn replace(&self, policies: Vec<Policy>) {
        let defaults = read(&self.snapshot).defaults.clone();
        self.install(defaults, policies);
    }

    /// Replaces the product defaults (config reload), keeping the policies.
    pub fn replace_defaults(&self, defaults: HashMap<String, Settings>) {
        let policies = read(&self.snapshot).policies.clone();
        self.install(defaults, policies);
    }

    fn install(&self, defaults: HashMap<String, Settings>, policies: Vec<Policy>) {
        let snapshot = Arc::new(Snapshot::build(defaults, policies, self.capacity));
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = snapshot;
    }

    /// Current cache occupancy, summed over products (for metrics and benchmarks).
    pub fn stats(&self) -> CacheStats {
        let snapshot = read(&self.snapshot);
        let mut stats = CacheStats {
            products: snapshot.products.len(),
            ..CacheStats::default()
        };
        for product in &snapshot.products {
            stats.candidates += product.candidates.len();
            stats.contexts += product.contexts.iter().map(|s| read(s).len).sum::<usize>();
            stats.installs += product.installs.iter().map(|s| read(s).len).sum::<usize>();
            stats.configs += read(&product.configs).len();
        }
        stats
    }

    /// The policies last given to `replace`.
    pub fn policies(&self) -> Vec<Policy> {
        read(&self.snapshot).policies.clone()
    }

    /// Equal to `merge(defaults[product], policies, ctx, now_ms)`.
    pub fn merged(&self, ctx: &ClientContext, now_ms: i64) -> Arc<MergedConfig> {
        self.client_config_ref(&ctx.as_ref(), now_ms).config.clone()
    }

    /// The merged config with its ETag and JSON body, for the config endpoint.
    pub fn client_config(&self, ctx: &ClientContext, now_ms: i64) -> Arc<ClientConfig> {
        self.client_config_ref(&ctx.as_ref(), now_ms)
    }

    /// As [`PolicyCache::client_config`], from a borrowed context.
    pub fn client_config_ref(&self, ctx: &ContextRef<'_>, now_ms: i64) -> Arc<ClientConfig> {
        let snapshot = read(&self.snapshot);
        match snapshot.products.iter().find(|p| p.product == ctx.product) {
            Some(product) => product.client_config(&snapshot.hasher, ctx, now_ms),
            // Not a configured product and no policies for it: built-in defaults.
            None => Arc::new(ClientConfig::new(merge_applied(
                ctx.product,
                &Settings::default(),
                [],
            ))),
        }
    }

    /// The enforcement decision for one event, from its own context (product, install and the
    /// targeting fields, see [`ContextRef::from_event`]).
    pub fn decide_event(&self, event: &Event, now_ms: i64) -> Decision {
        let config = self.client_config_ref(&ContextRef::from_event(event), now_ms);
        decide(&config.config.settings, event)
    }

    /// Enforces policy on a batch in place: drops what the policy disables or samples out,
    /// sets `sample_rate` on kept events to the effective rate, and adds to `counts`.
    /// Consecutive events of the same client share one lookup.
    pub fn enforce_batch(&self, events: &mut Vec<Event>, now_ms: i64, counts: &mut DecisionCounts) {
        let mut decisions = Vec::with_capacity(events.len());
        let mut current: Option<(ContextRef<'_>, Arc<ClientConfig>)> = None;
        for event in events.iter() {
            let ctx = ContextRef::from_event(event);
            let config = match current.take() {
                Some((last_ctx, config)) if last_ctx == ctx => config,
                _ => self.client_config_ref(&ctx, now_ms),
            };
            let decision = decide(&config.config.settings, event);
            counts.record(&decision);
            decisions.push(decision);
            current = Some((ctx, config));
        }
        drop(current);
        let mut decisions = decisions.into_iter();
        events.retain_mut(|event| match decisions.next() {
            Some(Decision::Keep { sample_rate }) => {
                event.sample_rate = sample_rate;
                true
            }
            _ => false,
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fields::EventField;
    use crate::model::Level;
    use crate::policies::merge::merge;
    use crate::policies::model::Targeting;

    /// A small deterministic generator (xorshift) for reproducible random data.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[(self.next() % items.len() as u64) as usize]
        }
        pub(crate) fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    pub(crate) const PLATFORMS: [&str; 4] = ["ios", "android", "web", "python"];
    pub(crate) const CHANNELS: [&str; 3] = ["keyboard", "dictation", "cli"];
    pub(crate) const RELEASES: [&str; 3] = ["stable", "beta", "dev"];
    pub(crate) const VERSIONS: [&str; 7] = [
        "1.3.0",
        "1.4.0",
        "1.5.0-beta.1",
        "1.9.2",
        "2.0.0",
        "2.1",
        "banana",
    ];
    pub(crate) const COUNTRIES: [&str; 4] = ["US", "DE", "FR", "JP"];
    pub(crate) const REGIONS: [&str; 4] = ["US-WA", "US-CA", "DE-BE", "FR-IDF"];
    pub(crate) const RANGES: [&str; 4] = [">=1.4.0, <2", ">=2", "^1.5", "<1.4"];

    /// 50 policies over one product, overlapping in every dimension, some scheduled, some
    /// with partial rollouts, some disabled.
    pub(crate) fn random_policies(rng: &mut Rng, count: usize) -> Vec<Policy> {
        (0..count)
            .map(|i| {
                let mut t = Targeting::default();
                if rng.chance(30) {
                    t.platforms = vec![rng.pick(&PLATFORMS).to_string()];
                }
                if rng.chance(20) {
                    t.channels = vec![rng.pick(&CHANNELS).to_string()];
                }
                if rng.chance(20) {
                    t.release_channels = vec![rng.pick(&RELEASES).to_string()];
                }
                if rng.chance(25) {
                    t.app_versions = Some(rng.pick(&RANGES).to_string());
                }
                if rng.chance(15) {
                    t.countries = vec![
                        rng.pick(&COUNTRIES).to_string(),
                        rng.pick(&COUNTRIES).to_string(),
                    ];
                    t.countries.dedup();
                }
                if rng.chance(10) {
                    t.regions = vec![rng.pick(&REGIONS).to_string()];
                }
                if rng.chance(25) {
                    t.rollout_percent = Some((rng.next() % 100) as f64);
                }
                let settings = Settings {
                    sample_rate: rng.chance(50).then(|| (rng.next() % 100) as f64 / 100.0),
                    batch_size: rng.chance(30).then(|| (rng.next() % 100 + 1) as u32),
                    min_level: rng.chance(20).then(|| *rng.pick(&Level::ALL)),
                    events_deny: rng
                        .chance(20)
                        .then(|| vec![format!("event_{}", rng.next() % 5)]),
                    collection_enabled: rng.chance(5).then_some(false),
                    ..Settings::default()
                };
                Policy {
                    id: format!("policy-{:02}", (i * 7) % count),
                    name: format!("policy {i}"),
                    product: "app".into(),
                    enabled: !rng.chance(10),
                    priority: (rng.next() % 5) as i32,
                    starts_at: rng.chance(20).then(|| (rng.next() % 1_000) as i64),
                    expires_at: rng.chance(20).then(|| 1_000 + (rng.next() % 1_000) as i64),
                    targeting: t,
                    settings,
                    created_at: 0,
                    updated_at: 0,
                }
            })
            .collect()
    }

    pub(crate) fn random_context(rng: &mut Rng) -> ClientContext {
        let maybe =
            |rng: &mut Rng, items: &[&str]| rng.chance(85).then(|| rng.pick(items).to_string());
        let mut ctx = ClientContext {
            install_id: rng
                .chance(90)
                .then(|| format!("install-{}", rng.next() % 5_000)),
            ..ClientContext::new("app")
        };
        for (field, items) in [
            (EventField::Platform, &PLATFORMS[..]),
            (EventField::AppVersion, &VERSIONS[..]),
            (EventField::Channel, &CHANNELS[..]),
            (EventField::ReleaseChannel, &RELEASES[..]),
            (EventField::CountryCode, &COUNTRIES[..]),
            (EventField::RegionCode, &REGIONS[..]),
        ] {
            ctx.set(field, maybe(rng, items).as_deref());
        }
        ctx
    }

    #[test]
    fn cache_equals_merge_for_random_contexts() {
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        let policies = random_policies(&mut rng, 50);
        let defaults = Settings {
            batch_size: Some(25),
            ..Settings::default()
        };
        // Small bounds, so that shards fill up and get cleared during the test.
        let capacity = Capacity {
            contexts: 256,
            installs: 512,
            configs: 64,
        };
        let cache =
            PolicyCache::with_capacity([("app".to_string(), defaults.clone())].into(), capacity);
        cache.replace(policies.clone());
        for round in 0..1_000 {
            let ctx = random_context(&mut rng);
            // Times around and across schedule boundaries, sometimes going backwards.
            let now = (rng.next() % 2_500) as i64 - 100;
            let expected = merge(&defaults, &policies, &ctx, now);
            let got = cache.merged(&ctx, now);
            assert_eq!(*got, expected, "round {round}: {ctx:?} at {now}");
            // Asked again (now cached): same answer.
            assert_eq!(*cache.merged(&ctx, now), expected, "round {round} cached");
        }
    }

    #[test]
    fn schedule_boundaries_invalidate_cached_entries() {
        let policy = Policy {
            id: "p".into(),
            name: "p".into(),
            product: "app".into(),
            enabled: true,
            priority: 0,
            starts_at: Some(1_000),
            expires_at: Some(2_000),
            targeting: Targeting::default(),
            settings: Settings {
                sample_rate: Some(0.5),
                ..Settings::default()
            },
            created_at: 0,
            updated_at: 0,
        };
        let cache = PolicyCache::new([("app".to_string(), Settings::default())].into());
        cache.replace(vec![policy]);
        let ctx = ClientContext::new("app");
        for (now, applied) in [
            (999, false),
            (1_000, true),
            (1_999, true),
            (2_000, false),
            (1_500, true),
            (0, false),
        ] {
            let merged = cache.merged(&ctx, now);
            assert_eq!(!merged.applied_policies.is_empty(), applied, "now = {now}");
        }
    }

    #[test]
    fn replace_and_etag_and_interning() {
        let cache = PolicyCache::new([("app".to_string(), Settings::default())].into());
        let ctx = ClientContext::new("app").with(EventField::Platform, "ios");
        let before = cache.client_config(&ctx, 0);
        assert!(before.config.applied_policies.is_empty());
        let mut p = Policy {
            id: "p".into(),
            name: "p".into(),
            product: "app".into(),
            enabled: true,
            priority: 0,
            starts_at: None,
            expires_at: None,
            targeting: Targeting::default(),
            settings: Settings {
                batch_size: Some(7),
                ..Settings::default()
            },
            created_at: 0,
            updated_at: 0,
        };
        cache.replace(vec![p.clone()]);
        assert_eq!(cache.policies(), vec![p.clone()]);
        let after = cache.client_config(&ctx, 0);
        assert_eq!(after.config.settings.batch_size, 7);
        assert_ne!(after.etag(), before.etag());
        assert_eq!(after.etag(), crate::policies::merge::etag(&after.config));
        assert_eq!(after.body(), serde_json::to_string(&*after.config).unwrap());
        // Two contexts with the same applied set share one rendered config.
        let other = ctx.clone().with(EventField::Platform, "android");
        assert!(Arc::ptr_eq(&after, &cache.client_config(&other, 0)));
        p.enabled = false;
        cache.replace(vec![p]);
        assert_eq!(cache.client_config(&ctx, 0).etag(), before.etag());
        // Unknown products get the built-in defaults.
        let unknown = ClientContext::new("nope");
        assert_eq!(cache.merged(&unknown, 0).settings.batch_size, 50);
    }

    #[test]
    fn enforce_batch_counts_and_rewrites() {
        use crate::policies::enforce::tests::event;
        let cache = PolicyCache::new(
            [(
                "app".to_string(),
                Settings {
                    events_deny: Some(vec!["spam".into()]),
                    ..Settings::default()
                },
            )]
            .into(),
        );
        let mut ios_only = Policy {
            id: "half".into(),
            name: "half".into(),
            product: "app".into(),
            enabled: true,
            priority: 1,
            starts_at: None,
            expires_at: None,
            targeting: Targeting {
                platforms: vec!["ios".into()],
                ..Targeting::default()
            },
            settings: Settings {
                sample_rate: Some(0.0),
                ..Settings::default()
            },
            created_at: 0,
            updated_at: 0,
        };
        ios_only.settings.min_level = Some(Level::Info);
        cache.replace(vec![ios_only]);
        let mut events = Vec::new();
        for i in 0..10 {
            let mut e = event(if i == 0 { "spam" } else { "ok" });
            e.platform = Some(if i < 4 { "ios" } else { "web" }.into());
            e.sample_rate = 0.5;
            events.push(e);
        }
        let mut counts = DecisionCounts::default();
        cache.enforce_batch(&mut events, 0, &mut counts);
        assert_eq!(counts.events, 10);
        assert_eq!(counts.dropped_by_policy, 1);
        assert_eq!(counts.sampled_out, 3);
        assert_eq!(counts.kept, 6);
        assert_eq!(events.len(), 6);
        assert!(events
            .iter()
            .all(|e| e.sample_rate == 0.5 && e.platform.as_deref() == Some("web")));
        assert_eq!(
            cache.decide_event(&event("spam"), 0),
            Decision::Drop(crate::policies::enforce::DropReason::EventDenied)
        );
    }

    #[test]
    fn concurrent_readers_and_replace() {
        let mut rng = Rng(42);
        let policies = random_policies(&mut rng, 50);
        let cache = Arc::new(PolicyCache::new(
            [("app".to_string(), Settings::default())].into(),
        ));
        cache.replace(policies.clone());
        let contexts: Vec<ClientContext> = (0..200).map(|_| random_context(&mut rng)).collect();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let cache = cache.clone();
                let contexts = contexts.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        for ctx in &contexts {
                            let _ = cache.merged(ctx, 500);
                        }
                    }
                })
            })
            .collect();
        for _ in 0..20 {
            cache.replace(policies.clone());
        }
        for h in handles {
            h.join().unwrap();
        }
        for ctx in &contexts {
            assert_eq!(
                *cache.merged(ctx, 500),
                merge(&Settings::default(), &policies, ctx, 500)
            );
        }
    }
}
