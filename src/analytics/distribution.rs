//! Distribution: percentiles and a histogram of one metric, grouped by up to two fields.

use serde::{Deserialize, Serialize};

use super::distinct::Distinct;
use super::groups::{dense_keys, label, select, slots_of, Candidate, Slots, OTHER};
use super::stats::{histogram, summarize, Bin, Summary};
use super::{
    estimated, filter, group_fields, group_limit, time_range, AnalyticsError, Context, Range,
};

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

/// The values of one group: weighted events, (value, weight) pairs.
#[derive(Default)]
struct Values {
    weight: f64,
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
    let installs = &scanned.columns[0];
    let keys = dense_keys(scanned.len(), &scanned.columns[1..]);
    let mut per_key: Vec<Values> = keys.keys.iter().map(|_| Values::default()).collect();
    let mut key_installs = Distinct::new(keys.keys.len(), installs.dictionary.len());
    let mut weights = Vec::new();
    for i in 0..scanned.len() {
        let value = scanned.metric[i];
        if value.is_nan() {
            continue;
        }
        let key = keys.of_row[i] as usize;
        let entry = &mut per_key[key];
        entry.weight += scanned.weights[i];
        entry.values.push((value, scanned.weights[i]));
        key_installs.insert(key, installs.ids[i]);
        weights.push(scanned.weights[i]);
    }
    let selection = select(
        keys.keys
            .iter()
            .enumerate()
            .filter(|(n, _)| !per_key[*n].values.is_empty())
            .map(|(n, key)| Candidate {
                key: *key,
                weight: per_key[n].weight,
                installs: key_installs.count(n) as usize,
            })
            .collect(),
        limit,
        context.min_group_installs,
    );
    let Slots {
        of_key: slot_of_key,
        installs: slot_installs,
    } = slots_of(&selection, &keys, &key_installs, installs, |i| {
        !scanned.metric[i].is_nan()
    });
    let mut slots: Vec<Vec<(f64, f64)>> = vec![Vec::new(); selection.slots()];
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    for (key, group) in per_key.into_iter().enumerate() {
        for (value, _) in &group.values {
            min = min.min(*value);
            max = max.max(*value);
        }
        let slot = &mut slots[slot_of_key[key]];
        if slot.is_empty() {
            *slot = group.values;
        } else {
            slot.extend(group.values);
        }
    }
    let groups = slots
        .into_iter()
        .enumerate()
        .map(|(slot, mut values)| DistributionGroup {
            group: match selection.kept.get(slot) {
                Some(key) => scanned.columns[1..]
                    .iter()
                    .enumerate()
                    .map(|(n, column)| label(column.value(key[n])))
                    .collect(),
                None => vec![OTHER.to_string()],
            },
            installs: slot_installs[slot],
            histogram: histogram(&values, min, max, bins),
            summary: summarize(&mut values),
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
