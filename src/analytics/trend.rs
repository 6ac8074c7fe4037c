//! Trend: one measure per time bucket, grouped by up to two fields (top N plus "other").

use rustc_hash::{FxHashMap, FxHashSet};

use serde::{Deserialize, Serialize};

use super::groups::{label, select, Candidate, OTHER};
use super::stats::{summarize, weighted_percentile};
use super::{
    duration, estimated, filter, group_fields, group_limit, time_range, AnalyticsError, Context,
    Range, MAX_BUCKETS,
};
use crate::search::NO_VALUE;
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
    distinct: FxHashSet<u32>,
    values: Vec<(f64, f64)>,
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
    let distinct = &scanned.columns[first_group - 1].ids;
    let key_of = |i: usize| -> [u32; 2] {
        let mut key = [NO_VALUE; 2];
        for (slot, column) in scanned.columns[first_group..].iter().enumerate() {
            key[slot] = column.ids[i];
        }
        key
    };

    // Which groups are shown: weighted events and distinct installs per key.
    let mut per_key: FxHashMap<[u32; 2], (f64, FxHashSet<u32>)> = FxHashMap::default();
    for (i, install) in installs.iter().enumerate() {
        let entry = per_key.entry(key_of(i)).or_default();
        entry.0 += scanned.weights[i];
        if *install != NO_VALUE {
            entry.1.insert(*install);
        }
    }
    let selection = select(
        per_key
            .iter()
            .map(|(key, (weight, installs))| Candidate {
                key: *key,
                weight: *weight,
                installs: installs.len(),
            })
            .collect(),
        limit,
        context.min_group_installs,
    );
    let slots = selection.slots();
    let slot_of: FxHashMap<[u32; 2], usize> =
        per_key.keys().map(|k| (*k, selection.slot(k))).collect();

    let mut cells: Vec<Cell> = (0..count as usize * slots)
        .map(|_| Cell::default())
        .collect();
    let mut slot_installs: Vec<FxHashSet<u32>> = vec![FxHashSet::default(); slots];
    let mut slot_weight = vec![0.0; slots];
    for i in 0..scanned.len() {
        let bucket = (bucket_start(scanned.timestamps[i], bucket_ms) - first) / bucket_ms;
        if !(0..count).contains(&bucket) {
            continue;
        }
        let slot = slot_of[&key_of(i)];
        let weight = scanned.weights[i];
        let cell = &mut cells[bucket as usize * slots + slot];
        cell.weight += weight;
        cell.raw += 1;
        slot_weight[slot] += weight;
        if installs[i] != NO_VALUE {
            slot_installs[slot].insert(installs[i]);
        }
        if spec.measure.distinct_column().is_some() && distinct[i] != NO_VALUE {
            cell.distinct.insert(distinct[i]);
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
                    let cell = &mut cells[bucket * slots + slot];
                    (value(spec.measure, cell), cell.raw)
                })
                .unzip();
            TrendSeries {
                group: labels(slot),
                values,
                raw_events,
                events: slot_weight[slot],
                installs: slot_installs[slot].len() as u64,
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

fn value(measure: Measure, cell: &mut Cell) -> Option<f64> {
    match measure {
        Measure::Events => Some(cell.weight),
        Measure::Installs | Measure::Sessions | Measure::Users => Some(cell.distinct.len() as f64),
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
