//! The batch-wide stages of the shared pipeline, after each event was built: the collection
//! policy (drop or sample, set the effective sample rate), the dedup pre-check against the store,
//! and the per-install rate limit. Each takes the batch as [`Prepared`] and narrows it.

use std::collections::HashMap;

use super::limits::RateLimiter;
use super::Prepared;
use crate::error::{RejectCode, Rejection, StoreError};
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

/// Admits at most the product's per-minute budget per install; the rest are rejected as
/// `rate_limited` with the time to wait.
pub fn apply_rate_limit(
    prepared: &mut Prepared,
    limiter: &RateLimiter,
    product: &Product,
    now: i64,
) {
    let mut wanted: HashMap<&str, u32> = HashMap::new();
    for (_, event) in &prepared.events {
        if let Some(install) = &event.install_id {
            *wanted.entry(install.as_str()).or_default() += 1;
        }
    }
    let mut allowed: HashMap<String, u32> = HashMap::with_capacity(wanted.len());
    let mut retry_after = 0;
    for (install, count) in wanted {
        let admission = limiter.admit(
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
