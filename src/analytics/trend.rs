//! Trend: one measure per time bucket, grouped by up to two fields (top N plus "other").

use serde::{Deserialize, Serialize};

use super::distinct::Distinct;
use super::groups::{dense_keys, label, select, slots_of, Candidate, Slots, OTHER};
use super::stats::{summarize, weighted_percentile};
use super::{
    duration, estimated, filter, group_fields, group_limit, time_range, AnalyticsError, Context,
    Range, MAX_BUCKETS,
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

/// The cell of one bucket and group.
#[derive(Default)]
struct Cell {
    weight: f64,
    raw: u64,
    values: Vec<(f64, f64)>,
}

/// The bucket of a timestamp, remembering the last bucket's bounds (rows come roughly in time
/// order, so most need no division).
struct Buckets {
    first: i64,
    width: i64,
    current: (i64, i64, i64),
}

impl Buckets {
    fn new(first: i64, width: i64) -> Buckets {
        Buckets {
            first,
            width,
            current: (0, 0, -1),
        }
    }

    /// The bucket number of `ts` counted from `first`, `None` before it.
    #[inline]
    fn of(&mut self, ts: i64) -> Option<i64> {
        let (lo, hi, n) = self.current;
        if lo <= ts && ts < hi {
            return Some(n);
        }
        if ts < self.first {
            return None;
        }
        // Past i64 (a far future event against a range from the far past): beyond any bucket.
        let n = ts.checked_sub(self.first)? / self.width;
        let lo = self.first + n * self.width;
        self.current = (lo, lo.saturating_add(self.width), n);
        Some(n)
    }
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
    let count = count as i64;
    let scanned = context.index.scan(
        &filter(context, Some(from), to, spec.range.q.as_deref(), None),
        &columns,
        metric,
    )?;
    let installs = &scanned.columns[0].ids;
    let install_ids = scanned.columns[0].dictionary.len();
    let distinct = &scanned.columns[first_group - 1];
    let keys = dense_keys(scanned.len(), &scanned.columns[first_group..]);

    // Which groups are shown: weighted events and distinct installs per key.
    let mut key_weight = vec![0.0; keys.keys.len()];
    let mut key_installs = Distinct::new(keys.keys.len(), install_ids);
    for (i, key) in keys.of_row.iter().enumerate() {
        key_weight[*key as usize] += scanned.weights[i];
        key_installs.insert(*key as usize, installs[i]);
    }
    let selection = select(
        keys.keys
            .iter()
            .enumerate()
            .map(|(n, key)| Candidate {
                key: *key,
                weight: key_weight[n],
                installs: key_installs.count(n) as usize,
            })
            .collect(),
        limit,
        context.min_group_installs,
    );
    let slots = selection.slots();
    let Slots {
        of_key: slot_of_key,
        installs: slot_installs,
    } = slots_of(
        &selection,
        &keys,
        &key_installs,
        &scanned.columns[0],
        |_| true,
    );

    let cell_count = count as usize * slots;
    let mut cells: Vec<Cell> = (0..cell_count).map(|_| Cell::default()).collect();
    let mut cell_distinct = match spec.measure.distinct_column() {
        Some(_) => Distinct::new(cell_count, distinct.dictionary.len()),
        None => Distinct::new(0, 0),
    };
    let counts_distinct = spec.measure.distinct_column().is_some();
    let mut slot_weight = vec![0.0; slots];
    let mut buckets = Buckets::new(first, bucket_ms);
    for i in 0..scanned.len() {
        let Some(bucket) = buckets.of(scanned.timestamps[i]).filter(|b| *b < count) else {
            continue;
        };
        let slot = slot_of_key[keys.of_row[i] as usize];
        let weight = scanned.weights[i];
        let at = bucket as usize * slots + slot;
        let cell = &mut cells[at];
        cell.weight += weight;
        cell.raw += 1;
        slot_weight[slot] += weight;
        if counts_distinct {
            cell_distinct.insert(at, distinct.ids[i]);
        }
        if metric.is_some() && !scanned.metric[i].is_nan() {
            cell.values.push((scanned.metric[i], weight));
        }
    }

    let labels = |slot: usize| -> Vec<String> {
        match selection.kept.get(slot) {
            Some(key) => scanned.columns[first_group..]
                .iter()
                .enumerate()
                .map(|(n, column)| label(column.value(key[n])))
                .collect(),
            None => vec![OTHER.to_string()],
        }
    };
    let series = (0..slots)
        .map(|slot| {
            let (values, raw_events) = (0..count as usize)
                .map(|bucket| {
                    let at = bucket * slots + slot;
                    let cell = &mut cells[at];
                    (value(spec.measure, cell, cell_distinct.count(at)), cell.raw)
                })
                .unzip();
            TrendSeries {
                group: labels(slot),
                values,
                raw_events,
                events: slot_weight[slot],
                installs: slot_installs[slot],
            }
        })
        .collect();
    Ok(TrendAnswer {
        measure: spec.measure,
        metric: metric.map(str::to_string),
        group_by: spec.group_by.clone(),
        bucket_ms,
        buckets: (0..count).map(|b| first + b * bucket_ms).collect(),
        series,
        estimated: estimated(&scanned.weights),
        suppressed_groups: selection.suppressed,
    })
}

fn value(measure: Measure, cell: &mut Cell, distinct: u64) -> Option<f64> {
    match measure {
        Measure::Events => Some(cell.weight),
        Measure::Installs | Measure::Sessions | Measure::Users => Some(distinct as f64),
        Measure::Sum => Some(cell.values.iter().map(|(v, w)| v * w).sum()),
        Measure::Avg | Measure::Min | Measure::Max => {
            let summary = summarize(&mut cell.values)?;
            Some(match measure {
                Measure::Avg => summary.avg,
                Measure::Min => summary.min,
                _ => summary.max,
            })
        }
        Measure::P50 => weighted_percentile(&mut cell.values, 0.50),
        Measure::P90 => weighted_percentile(&mut cell.values, 0.90),
        Measure::P95 => weighted_percentile(&mut cell.values, 0.95),
        Measure::P99 => weighted_percentile(&mut cell.values, 0.99),
    }
}
