//! The batch-wide stages of the shared pipeline, after each event was built: the collection
//! policy (drop or sample, set the effective sample rate), the dedup pre-check against the store,
//! and the rate limits (per install, per client address, per product). Each takes the batch as [`Prepared`] and narrows it.

use std::collections::HashMap;
use std::net::IpAddr;

use super::limits::{RateKey, RateLimiter};
use super::Prepared;
use crate::error::{RejectCode, Rejection, StoreError};
use crate::model::Event;
use crate::policies::{Decision, PolicyCache};
use crate::products::Product;
use crate::store::Store;

/// Drops what the client's merged collection policy disables or samples out, and sets the
/// effective sample rate on the events kept.
pub fn enforce_policies(prepared: &mut Prepared, policies: &PolicyCache, now: i64) {
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

/// Events whose id is already stored are reported as duplicates before they use up rate
/// limit; the writer checks again inside its transaction.
pub fn drop_known_duplicates(prepared: &mut Prepared, store: &Store) -> Result<(), StoreError> {
    let ids: Vec<_> = prepared.events.iter().map(|(_, e)| e.id).collect();
    let known = store.known_ids(&ids)?;
    let mut known = known.into_iter();
    let before = prepared.events.len();
    prepared.events.retain(|_| !known.next().unwrap_or(false));
    prepared.duplicates += (before - prepared.events.len()) as u64;
    Ok(())
}

/// Admits at most the product's per-minute budget per install, and for events without an
/// install id per client address (`client_address`, used for the lookup only: the limiter keeps
/// a keyed hash of it); then at most the product's events-per-second cap, if it has one. The
/// rest are rejected as `rate_limited` with the time to wait.
pub fn apply_rate_limit(
    prepared: &mut Prepared,
    limiter: &RateLimiter,
    product: &Product,
    client_address: Option<IpAddr>,
    now: i64,
) {
    let address = client_address.map(|address| limiter.address_key(address));
    let key_of = |event: &Event| match &event.install_id {
        Some(install) => Some(RateKey::Install(install.clone())),
        None => address.clone(),
    };
    let mut wanted: HashMap<RateKey, u32> = HashMap::new();
    for (_, event) in &prepared.events {
        if let Some(key) = key_of(event) {
            *wanted.entry(key).or_default() += 1;
        }
    }
    let mut retry_after = 0;
    let mut allowed: HashMap<RateKey, u32> = HashMap::with_capacity(wanted.len());
    for (key, count) in wanted {
        let admission = limiter.admit(
            product.index,
            &key,
            product.rate_limit_per_minute,
            count,
            now,
        );
        if admission.allowed < count {
            retry_after = retry_after.max(admission.retry_after_secs);
        }
        allowed.insert(key, admission.allowed);
    }
    let mut kept = Vec::with_capacity(prepared.events.len());
    let mut limited = Vec::new();
    for (index, event) in std::mem::take(&mut prepared.events) {
        let key = key_of(&event);
        match key.as_ref().and_then(|k| allowed.get_mut(k)) {
            Some(0) => limited.push((index, key)),
            Some(left) => {
                *left -= 1;
                kept.push((index, event));
            }
            None => kept.push((index, event)),
        }
    }
    let per_minute = product.rate_limit_per_minute;
    for (index, key) in limited {
        let who = match key {
            Some(RateKey::Install(_)) => "this install",
            _ => "this client address (events without an install id)",
        };
        prepared.rejected.push(Rejection {
            index,
            code: RejectCode::RateLimited,
            message: format!(
                "{who} sent more than {per_minute} events in a minute; retry after {retry_after} s"
            ),
        });
    }
    let cap = product.max_events_per_second;
    if cap > 0 && !kept.is_empty() {
        let wanted = u32::try_from(kept.len()).unwrap_or(u32::MAX);
        let admission = limiter.admit(product.index, &RateKey::Product, cap, wanted, now);
        if admission.allowed < wanted {
            retry_after = retry_after.max(admission.retry_after_secs);
            for (index, _) in kept.split_off(admission.allowed as usize) {
                prepared.rejected.push(Rejection {
                    index,
                    code: RejectCode::RateLimited,
                    message: format!(
                        "product `{}` takes at most {cap} events per second; retry after {} s",
                        product.id, admission.retry_after_secs
                    ),
                });
            }
        }
    }
    prepared.events = kept;
    prepared.retry_after_secs = retry_after;
}
