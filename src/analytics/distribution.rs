//! Distribution: percentiles and a histogram of one metric, grouped by up to two fields.

use rustc_hash::{FxHashMap, FxHashSet};

use serde::{Deserialize, Serialize};

use super::groups::{label, select, Candidate, OTHER};
use super::stats::{histogram, summarize, Bin, Summary};
use super::{
    estimated, filter, group_fields, group_limit, time_range, AnalyticsError, Context, Range,
};
use crate::search::NO_VALUE;

/// The most histogram bins.
const MAX_BINS: usize = 200;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DistributionSpec {
    #[serde(flatten)]
    pub range: Range,
    pub metric: String,
    #[serde(default)]
    pub group_by: Vec<String>,
    pub limit: Option<usize>,
    /// Histogram bins (default 20), equal width from the smallest to the largest value.
    pub bins: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DistributionGroup {
    pub group: Vec<String>,
    pub installs: u64,
    /// Weighted count, sum, mean, min, max and p50/p90/p95/p99 (null without values).
    pub summary: Option<Summary>,
    pub histogram: Vec<Bin>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DistributionAnswer {
    pub metric: String,
    pub group_by: Vec<String>,
    pub groups: Vec<DistributionGroup>,
    pub estimated: bool,
    pub suppressed_groups: usize,
}

/// The values of one group: weighted events, distinct installs, (value, weight) pairs.
#[derive(Default)]
struct Values {
    weight: f64,
    installs: FxHashSet<u32>,
    values: Vec<(f64, f64)>,
}

pub fn run(
    context: &Context,
    spec: &DistributionSpec,
) -> Result<DistributionAnswer, AnalyticsError> {
    let (from, to) = time_range(context, &spec.range)?;
    let group_by = group_fields(&spec.group_by)?;
    let limit = group_limit(spec.limit)?;
    let bins = match spec.bins.unwrap_or(20) {
        n @ 1..=MAX_BINS => n,
        _ => {
            return Err(AnalyticsError::invalid(
                "bins",
                format!("must be 1 to {MAX_BINS}"),
            ))
        }
    };
    let mut columns = vec!["install_id"];
    columns.extend(&group_by);
    let scanned = context.index.scan(
        &filter(context, Some(from), to, spec.range.q.as_deref(), None),
        &columns,
        Some(&spec.metric),
    )?;
    let key_of = |i: usize| -> [u32; 2] {
        let mut key = [NO_VALUE; 2];
        for (slot, column) in scanned.columns[1..].iter().enumerate() {
            key[slot] = column.ids[i];
        }
        key
    };
    let mut per_key: FxHashMap<[u32; 2], Values> = FxHashMap::default();
    let mut weights = Vec::new();
    for i in 0..scanned.len() {
        let value = scanned.metric[i];
        if value.is_nan() {
            continue;
        }
        let entry = per_key.entry(key_of(i)).or_default();
        entry.weight += scanned.weights[i];
        if scanned.columns[0].ids[i] != NO_VALUE {
            entry.installs.insert(scanned.columns[0].ids[i]);
        }
        entry.values.push((value, scanned.weights[i]));
        weights.push(scanned.weights[i]);
    }
    let selection = select(
        per_key
            .iter()
            .map(|(key, group)| Candidate {
                key: *key,
                weight: group.weight,
                installs: group.installs.len(),
            })
            .collect(),
        limit,
        context.min_group_installs,
    );
    let mut slots: Vec<Values> = (0..selection.slots()).map(|_| Values::default()).collect();
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    for (key, group) in per_key {
        let slot = &mut slots[selection.slot(&key)];
        for (value, _) in &group.values {
            min = min.min(*value);
            max = max.max(*value);
        }
        slot.installs.extend(group.installs);
        slot.values.extend(group.values);
    }
    let groups = slots
        .into_iter()
        .enumerate()
        .map(|(slot, mut group)| DistributionGroup {
            group: match selection.kept.get(slot) {
                Some(key) => scanned.columns[1..]
                    .iter()
                    .enumerate()
                    .map(|(n, column)| label(column.value(key[n])))
                    .collect(),
                None => vec![OTHER.to_string()],
            },
            installs: group.installs.len() as u64,
            histogram: histogram(&group.values, min, max, bins),
            summary: summarize(&mut group.values),
        })
        .collect();
    Ok(DistributionAnswer {
        metric: spec.metric.clone(),
        group_by: spec.group_by.clone(),
        groups,
        estimated: estimated(&weights),
        suppressed_groups: selection.suppressed,
    })
}
