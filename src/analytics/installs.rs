//! Active installs (daily, weekly, monthly; new vs returning; version adoption) and retention
//! cohorts. Both read every event of the product up to the end of the range, for each install's
//! first-seen time.

use rustc_hash::{FxHashMap, FxHashSet};

use serde::{Deserialize, Serialize};

use super::groups::{label, select, Candidate, OTHER};
use super::{filter, group_limit, time_range, AnalyticsError, Context, Range, MAX_BUCKETS};
use crate::search::{Scanned, NO_VALUE};
use crate::timespan::DAY_MS;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActiveSpec {
    #[serde(flatten)]
    pub range: Range,
    /// App versions shown in the adoption (default 10), the rest in "other".
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionShare {
    pub version: String,
    /// Installs whose last event of the day had this version, per day.
    pub installs: Vec<u64>,
    /// That over the day's active installs.
    pub share: Vec<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActiveAnswer {
    /// Day starts (UTC midnight, ms).
    pub days: Vec<i64>,
    pub dau: Vec<u64>,
    /// Installs active in the 7 days ending that day.
    pub wau: Vec<u64>,
    /// Installs active in the 30 days ending that day.
    pub mau: Vec<u64>,
    /// Active installs first seen that day.
    pub new: Vec<u64>,
    pub returning: Vec<u64>,
    pub versions: Vec<VersionShare>,
    pub suppressed_groups: usize,
}

/// Per install (scan id): its sorted distinct active periods and the first one.
fn active_periods(scanned: &Scanned, period_of: impl Fn(i64) -> i64) -> FxHashMap<u32, Vec<i64>> {
    let mut periods: FxHashMap<u32, Vec<i64>> = FxHashMap::default();
    for (i, install) in scanned.columns[0].ids.iter().enumerate() {
        if *install != NO_VALUE {
            periods
                .entry(*install)
                .or_default()
                .push(period_of(scanned.timestamps[i]));
        }
    }
    for list in periods.values_mut() {
        list.sort_unstable();
        list.dedup();
    }
    periods
}

fn day_of(ts: i64) -> i64 {
    ts.div_euclid(DAY_MS)
}

/// Days `[from, to)` as day numbers, checked against [`MAX_BUCKETS`].
fn day_span(from: i64, to: i64) -> Result<(i64, usize), AnalyticsError> {
    let (first, last) = (day_of(from), day_of(to - 1));
    let count = last - first + 1;
    if count > MAX_BUCKETS {
        return Err(AnalyticsError::invalid(
            "from",
            format!("more than {MAX_BUCKETS} days in the range"),
        ));
    }
    Ok((first, count as usize))
}

pub fn active(context: &Context, spec: &ActiveSpec) -> Result<ActiveAnswer, AnalyticsError> {
    let (from, to) = time_range(context, &spec.range)?;
    let limit = group_limit(spec.limit)?;
    let (first, count) = day_span(from, to)?;
    let scanned = context.index.scan(
        &filter(context, None, to, spec.range.q.as_deref(), None),
        &["install_id", "app_version"],
        None,
    )?;
    let periods = active_periods(&scanned, day_of);
    let in_range =
        |day: i64| (day >= first && day < first + count as i64).then(|| (day - first) as usize);
    let mut dau = vec![0u64; count];
    let mut new = vec![0u64; count];
    let mut wau = vec![0u64; count];
    let mut mau = vec![0u64; count];
    for days in periods.values() {
        for day in days {
            if let Some(index) = in_range(*day) {
                dau[index] += 1;
            }
        }
        if let Some(index) = in_range(days[0]) {
            new[index] += 1;
        }
        for (span, series) in [(7, &mut wau), (30, &mut mau)] {
            // Days d with an active day in [d - span + 1, d], each counted once.
            let mut marked_to = i64::MIN;
            for day in days {
                let start = (*day).max(marked_to.saturating_add(1));
                let end = day + span - 1;
                for d in start..=end {
                    if let Some(index) = in_range(d) {
                        series[index] += 1;
                    }
                }
                marked_to = marked_to.max(end);
            }
        }
    }
    let returning = dau.iter().zip(&new).map(|(a, n)| a - n).collect();

    // Version adoption: each install's version on its last event of the day.
    let mut last: FxHashMap<(u32, usize), (i64, u32)> = FxHashMap::default();
    for i in 0..scanned.len() {
        let install = scanned.columns[0].ids[i];
        let Some(index) = in_range(day_of(scanned.timestamps[i])) else {
            continue;
        };
        if install == NO_VALUE {
            continue;
        }
        let entry = last.entry((install, index)).or_insert((i64::MIN, NO_VALUE));
        if scanned.timestamps[i] >= entry.0 {
            *entry = (scanned.timestamps[i], scanned.columns[1].ids[i]);
        }
    }
    let mut version_installs: FxHashMap<u32, FxHashSet<u32>> = FxHashMap::default();
    for ((install, _), (_, version)) in &last {
        version_installs
            .entry(*version)
            .or_default()
            .insert(*install);
    }
    let selection = select(
        version_installs
            .iter()
            .map(|(version, installs)| Candidate {
                key: *version,
                weight: installs.len() as f64,
                installs: installs.len(),
            })
            .collect(),
        limit,
        context.min_group_installs,
    );
    let mut per_version = vec![vec![0u64; count]; selection.slots()];
    for ((_, day), (_, version)) in &last {
        per_version[selection.slot(version)][*day] += 1;
    }
    let versions = per_version
        .into_iter()
        .enumerate()
        .map(|(slot, installs)| VersionShare {
            version: match selection.kept.get(slot) {
                Some(version) => label(scanned.columns[1].value(*version)),
                None => OTHER.to_string(),
            },
            share: installs
                .iter()
                .zip(&dau)
                .map(|(n, d)| if *d > 0 { *n as f64 / *d as f64 } else { 0.0 })
                .collect(),
            installs,
        })
        .collect();
    Ok(ActiveAnswer {
        days: (0..count as i64).map(|d| (first + d) * DAY_MS).collect(),
        dau,
        wau,
        mau,
        new,
        returning,
        versions,
        suppressed_groups: selection.suppressed,
    })
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    #[default]
    Week,
}

impl Period {
    /// The period number of `ts` (weeks start on Monday, UTC).
    fn of(self, ts: i64) -> i64 {
        match self {
            Period::Day => day_of(ts),
            // The epoch was a Thursday: day 4 is the first Monday.
            Period::Week => (day_of(ts) - 4).div_euclid(7),
        }
    }

    fn start_ms(self, period: i64) -> i64 {
        match self {
            Period::Day => period * DAY_MS,
            Period::Week => (period * 7 + 4) * DAY_MS,
        }
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionSpec {
    /// Cohorts are the installs first seen in each period starting in the range.
    #[serde(flatten)]
    pub range: Range,
    #[serde(default)]
    pub period: Period,
    /// Following periods reported per cohort, the first-seen one included (default 8).
    pub periods: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Cohort {
    /// Start of the first-seen period (ms); null for "other".
    pub start_ms: Option<i64>,
    pub label: String,
    pub installs: u64,
    /// Installs active in the cohort's period k (0 = the first-seen one); null past `to`.
    pub active: Vec<Option<u64>>,
    pub share: Vec<Option<f64>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RetentionAnswer {
    pub period: Period,
    pub cohorts: Vec<Cohort>,
    pub suppressed_groups: usize,
}

pub fn retention(
    context: &Context,
    spec: &RetentionSpec,
) -> Result<RetentionAnswer, AnalyticsError> {
    let (from, to) = time_range(context, &spec.range)?;
    let periods_wanted = match spec.periods.unwrap_or(8) {
        n @ 1..=100 => n,
        _ => return Err(AnalyticsError::invalid("periods", "must be 1 to 100")),
    };
    let period = spec.period;
    let scanned = context.index.scan(
        &filter(context, None, to, spec.range.q.as_deref(), None),
        &["install_id"],
        None,
    )?;
    let (first_period, last_period) = (period.of(from), period.of(to - 1));
    if last_period - first_period >= MAX_BUCKETS {
        return Err(AnalyticsError::invalid(
            "from",
            "too many cohorts in the range",
        ));
    }
    let first_cohort = if period.start_ms(first_period) < from {
        first_period + 1
    } else {
        first_period
    };
    let mut cohorts: FxHashMap<i64, Vec<Vec<i64>>> = FxHashMap::default();
    for days in active_periods(&scanned, |ts| period.of(ts)).into_values() {
        if (first_cohort..=last_period).contains(&days[0]) {
            cohorts.entry(days[0]).or_default().push(days);
        }
    }
    let selection = select(
        cohorts
            .iter()
            .map(|(start, members)| Candidate {
                key: *start,
                weight: -(*start as f64),
                installs: members.len(),
            })
            .collect(),
        usize::MAX,
        context.min_group_installs,
    );
    // Each slot: installs, and per relative period the installs active (None past `to`).
    let mut slots: Vec<(u64, Vec<Option<u64>>)> =
        vec![(0, vec![None; periods_wanted]); selection.slots()];
    for (start, members) in &cohorts {
        let slot = &mut slots[selection.slot(start)];
        slot.0 += members.len() as u64;
        for k in 0..periods_wanted {
            let p = start + k as i64;
            if p > last_period {
                continue;
            }
            let active = members
                .iter()
                .filter(|m| m.binary_search(&p).is_ok())
                .count() as u64;
            *slot.1[k].get_or_insert(0) += active;
        }
    }
    let out = slots
        .into_iter()
        .enumerate()
        .map(|(slot, (installs, active))| {
            let start_ms = selection.kept.get(slot).map(|p| period.start_ms(*p));
            Cohort {
                start_ms,
                label: start_ms.map_or(OTHER.to_string(), |ms| ms.to_string()),
                installs,
                share: active
                    .iter()
                    .map(|a| {
                        a.map(|a| {
                            if installs > 0 {
                                a as f64 / installs as f64
                            } else {
                                0.0
                            }
                        })
                    })
                    .collect(),
                active,
            }
        })
        .collect();
    Ok(RetentionAnswer {
        period,
        cohorts: out,
        suppressed_groups: selection.suppressed,
    })
}
