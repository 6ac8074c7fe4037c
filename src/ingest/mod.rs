//! Ingest: request bytes → validated, scrubbed, placed, deduplicated and rate-limited events
//! ready for the store writer. `Ingest` holds everything compiled once at startup.

pub mod decode;
pub mod geo;
pub mod limits;
pub mod pii;
pub mod pipeline;
pub mod schema;

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::{Config, ConfigError};
use crate::error::{ApiError, RejectCode, Rejection};
use crate::model::{now_ms, Event};
use crate::net::Cidr;
use crate::policies::{Decision, DecisionCounts, PolicyCache};
use crate::store::Store;
use crate::AppState;
use geo::{GeoDb, Location};
use limits::{parse_time, ClockRules, RateLimiter};
use pii::PiiDetector;
use pipeline::{EventContext, ProductRules};

pub struct Ingest {
    pub products: Vec<ProductRules>,
    by_key: HashMap<String, usize>,
    pii: PiiDetector,
    pub geo: Option<GeoDb>,
    clock: ClockRules,
    pub limiter: RateLimiter,
    pub trusted_proxies: Vec<Cidr>,
    max_decompressed_bytes: usize,
    max_batch_events: usize,
    max_event_bytes: usize,
}

/// A batch after every stage but the store: events to write (with their index in the request)
/// and the rejections so far.
#[derive(Debug, Default)]
pub struct Prepared {
    pub events: Vec<(usize, Event)>,
    pub rejected: Vec<Rejection>,
    pub duplicates: u64,
    pub retry_after_secs: u64,
    /// What the collection policies dropped or sampled out (not errors: not retried).
    pub policy: DecisionCounts,
}

impl Ingest {
    pub fn new(config: &Config, geo: Option<GeoDb>) -> Result<Ingest, ConfigError> {
        let mut products = Vec::new();
        let mut by_key = HashMap::new();
        for (index, product) in config.products.iter().enumerate() {
            let rules = ProductRules::compile(index, product, config).map_err(|e| {
                ConfigError::Invalid {
                    key: format!("products[{index}].schema.patterns"),
                    reason: e.to_string(),
                }
            })?;
            for key in &product.ingest_keys {
                by_key.insert(key.clone(), index);
            }
            products.push(rules);
        }
        Ok(Ingest {
            products,
            by_key,
            pii: PiiDetector::new(&config.pii_detectors()?),
            geo,
            clock: ClockRules::new(&config.limits),
            limiter: RateLimiter::default(),
            trusted_proxies: config.trusted_proxies()?,
            max_decompressed_bytes: config.server.max_decompressed_bytes,
            max_batch_events: config.server.max_batch_events,
            max_event_bytes: config.server.max_event_bytes,
        })
    }

    pub fn product(&self, id: &str) -> Option<&ProductRules> {
        self.products.iter().find(|p| p.id == id)
    }

    /// The product a request is for: from its ingest key, or `?product=` (which must agree with
    /// the key when both are given). With a single product configured it is the default.
    pub fn resolve_product(
        &self,
        param: Option<&str>,
        key: Option<&str>,
    ) -> Result<&ProductRules, ApiError> {
        let by_param = match param {
            Some(id) => Some(
                self.product(id)
                    .ok_or_else(|| ApiError::UnknownProduct(id.chars().take(64).collect()))?,
            ),
            None => None,
        };
        let by_key = match key {
            Some(key) => Some(
                self.by_key
                    .get(key)
                    .map(|i| &self.products[*i])
                    .ok_or(ApiError::InvalidIngestKey)?,
            ),
            None => None,
        };
        let product = match (by_param, by_key) {
            (Some(p), Some(k)) if p.index != k.index => return Err(ApiError::InvalidIngestKey),
            (_, Some(k)) => k,
            (Some(p), None) => p,
            (None, None) if self.products.len() == 1 => &self.products[0],
            (None, None) => return Err(ApiError::MissingProduct),
        };
        if product.requires_key() && by_key.is_none() {
            return Err(ApiError::MissingIngestKey(product.id.clone()));
        }
        Ok(product)
    }

    pub fn locate(&self, client_ip: Option<IpAddr>) -> Location {
        match (&self.geo, client_ip) {
            (Some(geo), Some(ip)) => geo.locate(ip),
            _ => Location::default(),
        }
    }

    /// Runs decode, mapping, schema, PII, time, policy, dedup pre-check and rate limit over one
    /// body.
    /// `state` supplies the store (dedup), the policies and the metrics.
    pub fn prepare(
        &self,
        state: &AppState,
        product: &ProductRules,
        body: Vec<u8>,
        content_encoding: Option<&str>,
        location: &Location,
    ) -> Result<Prepared, ApiError> {
        let metrics = &state.metrics;
        let body = decode::decode_body(body, content_encoding, self.max_decompressed_bytes)?;
        let text = std::str::from_utf8(&body)
            .map_err(|e| ApiError::InvalidEncoding(format!("the body is not UTF-8: {e}")))?;
        let batch = decode::parse_batch(text)?;
        if batch.events.len() > self.max_batch_events {
            return Err(ApiError::BatchTooLarge {
                count: batch.events.len(),
                limit: self.max_batch_events,
            });
        }
        let received_at = now_ms();
        let context = EventContext {
            product,
            clock: self
                .clock
                .for_batch(received_at, batch.sent_at.as_ref().and_then(parse_time)),
            location,
            pii: &self.pii,
            metrics,
        };
        let mut prepared = Prepared::default();
        for (index, raw) in batch.events.into_iter().enumerate() {
            let built = if raw.get().len() > self.max_event_bytes {
                Err(Rejection::new(
                    RejectCode::EventTooLarge,
                    format!(
                        "the event is {} bytes; the limit is {}",
                        raw.get().len(),
                        self.max_event_bytes
                    ),
                ))
            } else {
                decode::parse_event(raw)
                    .map_err(|m| Rejection::new(RejectCode::InvalidEvent, m))
                    .and_then(|pairs| context.build(pairs))
            };
            match built {
                Ok(event) => prepared.events.push((index, event)),
                Err(rejection) => prepared.rejected.push(Rejection { index, ..rejection }),
            }
        }
        enforce_policies(&mut prepared, &state.policies, received_at);
        self.drop_known_duplicates(&mut prepared, &state.store)?;
        self.apply_rate_limit(&mut prepared, product, received_at);
        Ok(prepared)
    }

    /// Events whose id is already stored are reported as duplicates before they use up rate
    /// limit; the writer checks again inside its transaction.
    fn drop_known_duplicates(
        &self,
        prepared: &mut Prepared,
        store: &Store,
    ) -> Result<(), ApiError> {
        let ids: Vec<_> = prepared.events.iter().map(|(_, e)| e.id).collect();
        let known = store.known_ids(&ids)?;
        let mut known = known.into_iter();
        let before = prepared.events.len();
        prepared.events.retain(|_| !known.next().unwrap_or(false));
        prepared.duplicates += (before - prepared.events.len()) as u64;
        Ok(())
    }

    fn apply_rate_limit(&self, prepared: &mut Prepared, product: &ProductRules, now: i64) {
        let mut wanted: HashMap<&str, u32> = HashMap::new();
        for (_, event) in &prepared.events {
            if let Some(install) = &event.install_id {
                *wanted.entry(install.as_str()).or_default() += 1;
            }
        }
        let mut allowed: HashMap<String, u32> = HashMap::with_capacity(wanted.len());
        let mut retry_after = 0;
        for (install, count) in wanted {
            let admission = self.limiter.admit(
                product.index,
                install,
                product.rate_limit_per_minute,
                count,
                now,
            );
            if admission.allowed < count {
                retry_after = retry_after.max(admission.retry_after_secs);
            }
            allowed.insert(install.to_string(), admission.allowed);
        }
        let mut kept = Vec::with_capacity(prepared.events.len());
        for (index, event) in std::mem::take(&mut prepared.events) {
            let budget = event.install_id.as_ref().and_then(|i| allowed.get_mut(i));
            match budget {
                Some(0) => prepared.rejected.push(Rejection {
                    index,
                    code: RejectCode::RateLimited,
                    message: format!(
                        "this install sent more than {} events in a minute; retry after {retry_after} s",
                        product.rate_limit_per_minute
                    ),
                }),
                Some(left) => {
                    *left -= 1;
                    kept.push((index, event));
                }
                None => kept.push((index, event)),
            }
        }
        prepared.events = kept;
        prepared.retry_after_secs = retry_after;
    }
}

/// Drops what the client's merged collection policy disables or samples out, and sets the
/// effective sample rate on the events kept.
fn enforce_policies(prepared: &mut Prepared, policies: &PolicyCache, now: i64) {
    let counts = &mut prepared.policy;
    prepared.events.retain_mut(|(_, event)| {
        let decision = policies.decide_event(event, now);
        counts.record(&decision);
        match decision {
            Decision::Keep { sample_rate } => {
                event.sample_rate = sample_rate;
                true
            }
            Decision::Drop(_) | Decision::SampledOut => false,
        }
    });
}
