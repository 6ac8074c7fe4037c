//! Trend: one measure per time bucket, grouped by up to two fields (top N plus "other").

use serde::{Deserialize, Serialize};

use super::cube::{Cell, Cube, Shape};

use super::{
    duration, filter, group_fields, group_limit, time_range, AnalyticsError, Context, Range,
    MAX_BUCKETS,
};
use crate::timespan::{bucket_count, bucket_start, DAY_MS};

/// What a trend counts per bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    Events,
    Installs,
    Sessions,
    Users,
    Sum,
    Avg,
    Min,
    Max,
    P50,
    P90,
    P95,
    P99,
}

impl Measure {
    fn needs_metric(self) -> bool {
        !matches!(
            self,
            Measure::Events | Measure::Installs | Measure::Sessions | Measure::Users
        )
    }

    /// The id column whose distinct values it counts.
    fn distinct_column(self) -> Option<&'static str> {
        match self {
            Measure::Installs => Some("install_id"),
            Measure::Sessions => Some("session_id"),
            Measure::Users => Some("user_id"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrendSpec {
    #[serde(flatten)]
    pub range: Range,
    /// Bucket width (default `1d`), buckets aligned to multiples of it since the epoch.
    pub bucket: Option<String>,
    pub measure: Measure,
    /// The metric of sum/avg/min/max/pNN.
    pub metric: Option<String>,
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Groups shown besides "other" (default 10).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TrendSeries {
    /// One label per group-by field (`["other"]` for the folded group, `[]` without grouping).
    pub group: Vec<String>,
    /// The measure per bucket (null where a metric measure has no values).
    pub values: Vec<Option<f64>>,
    /// Stored events per bucket (unweighted).
    pub raw_events: Vec<u64>,
    /// Weighted events over the whole range.
    pub events: f64,
    /// Distinct installs over the whole range.
    pub installs: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TrendAnswer {
    pub measure: Measure,
    pub metric: Option<String>,
    pub group_by: Vec<String>,
    pub bucket_ms: i64,
    /// Bucket starts (ms).
    pub buckets: Vec<i64>,
    pub series: Vec<TrendSeries>,
    pub estimated: bool,
    pub suppressed_groups: usize,
}

pub fn run(context: &Context, spec: &TrendSpec) -> Result<TrendAnswer, AnalyticsError> {
    let (from, to) = time_range(context, &spec.range)?;
    let bucket_ms = duration("bucket", spec.bucket.as_deref(), DAY_MS)?;
    let first = bucket_start(from, bucket_ms);
    let count = bucket_count(first, bucket_start(to - 1, bucket_ms), bucket_ms);
    if count > MAX_BUCKETS as u64 {
        return Err(AnalyticsError::invalid(
            "bucket",
            format!("more than {MAX_BUCKETS} buckets in the range"),
        ));
    }
    let group_by = group_fields(&spec.group_by)?;
    let limit = group_limit(spec.limit)?;
    let metric = match (spec.measure.needs_metric(), spec.metric.as_deref()) {
        (true, None) => {
            return Err(AnalyticsError::invalid(
                "metric",
                "is required for this measure",
            ))
        }
        (true, Some(m)) => Some(m),
        (false, _) => None,
    };
    let mut columns = vec!["install_id"];
    if let Some(c) = spec.measure.distinct_column() {
        columns.push(c);
    }
    let first_group = columns.len();
    columns.extend(&group_by);
    let counts_distinct = spec.measure.distinct_column().is_some();
    let shape = Shape {
        buckets: Some((first, bucket_ms)),
        bucket_count: count as usize,
        distinct: counts_distinct.then_some(1),
        first_group,
        values: metric.is_some(),
        only_with_metric: false,
    };
    let parts = context.index.fold(
        &filter(context, Some(from), to, spec.range.q.as_deref(), None),
        &columns,
        metric,
        |dictionaries| Cube::new(shape, dictionaries),
    )?;
    let mut cube = Cube::merge(parts);
    let grouping = cube.group(limit, context.min_group_installs);
    let series = grouping
        .keys_of_slot
        .iter()
        .enumerate()
        .map(|(slot, keys)| {
            let mut events = 0.0;
            let (values, raw_events) = (0..count as usize)
                .map(|bucket| {
                    let cell = cube.take(keys, bucket);
                    events += cell.weight;
                    let distinct = if counts_distinct {
                        cube.distinct(keys, bucket)
                    } else {
                        0
                    };
                    (value(spec.measure, &cell, distinct), cell.raw)
                })
                .unzip();
            TrendSeries {
                group: cube.labels(&grouping, slot),
                values,
                raw_events,
                events,
                installs: grouping.installs[slot],
            }
        })
        .collect();
    Ok(TrendAnswer {
        measure: spec.measure,
        metric: metric.map(str::to_string),
        group_by: spec.group_by.clone(),
        bucket_ms,
        buckets: (0..count as i64).map(|b| first + b * bucket_ms).collect(),
        series,
        estimated: cube.weighted,
        suppressed_groups: grouping.selection.suppressed,
    })
}

fn value(measure: Measure, cell: &Cell, distinct: u64) -> Option<f64> {
    let percentile = |q: f64| cell.values.percentiles(&[q])[0];
    match measure {
        Measure::Events => Some(cell.weight),
        Measure::Installs | Measure::Sessions | Measure::Users => Some(distinct as f64),
        Measure::Sum => Some(cell.values.iter().map(|(v, w)| v * w).sum()),
        Measure::Avg | Measure::Min | Measure::Max => {
            let summary = cell.values.summary()?;
            Some(match measure {
                Measure::Avg => summary.avg,
                Measure::Min => summary.min,
                _ => summary.max,
            })
        }
        Measure::P50 => percentile(0.50),
        Measure::P90 => percentile(0.90),
        Measure::P95 => percentile(0.95),
        Measure::P99 => percentile(0.99),
    }
}
