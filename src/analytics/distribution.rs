//! Distribution: percentiles and a histogram of one metric, grouped by up to two fields.

use serde::{Deserialize, Serialize};

use super::cube::{Cube, Shape};
use super::stats::{histogram, Bin, Summary, Values};
use super::{filter, group_fields, group_limit, time_range, AnalyticsError, Context, Range};

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
    let shape = Shape {
        buckets: None,
        bucket_count: 1,
        distinct: None,
        first_group: 1,
        values: true,
        only_with_metric: true,
    };
    let parts = context.index.fold(
        &filter(context, Some(from), to, spec.range.q.as_deref(), None),
        &columns,
        Some(&spec.metric),
        |dictionaries| Cube::new(shape, dictionaries),
    )?;
    let mut cube = Cube::merge(parts);
    let grouping = cube.group(limit, context.min_group_installs);
    let slots: Vec<Values> = grouping
        .keys_of_slot
        .iter()
        .map(|keys| cube.take(keys, 0).values)
        .collect();
    // Each group's summary (its min and max among them), then the histograms over the range
    // of all groups, the groups spread over the cores.
    let summarized = context.index.in_parallel(slots, |values| {
        let summary = values.summary();
        (values, summary)
    });
    let (min, max) = summarized
        .iter()
        .filter_map(|(_, summary)| summary.as_ref())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| {
            (lo.min(s.min), hi.max(s.max))
        });
    let groups = context
        .index
        .in_parallel(summarized, |(values, summary)| {
            (histogram(&values, min, max, bins), summary)
        })
        .into_iter()
        .enumerate()
        .map(|(slot, (histogram, summary))| DistributionGroup {
            group: cube.labels(&grouping, slot),
            installs: grouping.installs[slot],
            histogram,
            summary,
        })
        .collect();
    Ok(DistributionAnswer {
        metric: spec.metric.clone(),
        group_by: spec.group_by.clone(),
        groups,
        estimated: cube.weighted,
        suppressed_groups: grouping.selection.suppressed,
    })
}
