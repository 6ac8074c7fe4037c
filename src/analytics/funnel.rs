//! Funnel: 2–8 ordered steps within a conversion window, per install or per session; conversion,
//! drop-off and median time per step, an optional breakdown, and the errors that the units which
//! stopped after a step hit within the window after it.
//!
//! A unit's path starts at one of its first-step events and takes, for each next step, the
//! earliest matching event at or after the previous step and within the window of the start;
//! of its first-step events the one that gets furthest counts (the earliest on ties). A unit
//! counts with the weight of that first-step event at every step it reaches.

use std::borrow::Cow;

use rustc_hash::{FxHashMap, FxHashSet};

use serde::{Deserialize, Serialize};

use super::groups::{select, Candidate, Interner, OTHER};
use super::stats::weighted_percentile;
use super::{duration, filter, group_limit, time_range, AnalyticsError, Context, Range};
use crate::fields::EventField;
use crate::search::{Filter, Scanned, NO_VALUE};
use crate::timespan::DAY_MS;

/// Errors listed per step.
const TOP_ERRORS: usize = 10;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The event name.
    pub name: String,
    /// Also matching this query.
    pub q: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    #[default]
    Install,
    Session,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunnelSpec {
    /// The range the first step happens in; later steps may follow up to `window` after `to`.
    #[serde(flatten)]
    pub range: Range,
    pub steps: Vec<Step>,
    /// Conversion window from the first step (default `1d`).
    pub window: Option<String>,
    #[serde(default)]
    pub per: Unit,
    /// Break down by this field's value on the first-step event.
    pub breakdown: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DropError {
    pub error_code: Option<String>,
    pub fingerprint: Option<String>,
    /// Units that stopped here and hit it.
    pub units: u64,
    /// Weighted events.
    pub events: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepFigures {
    pub name: String,
    /// Weighted units that reached the step.
    pub count: f64,
    /// Units that reached it (unweighted).
    pub raw_count: u64,
    /// Share of the first step's count.
    pub conversion: f64,
    /// Share of the previous step's count (1 on the first step).
    pub step_conversion: f64,
    /// Weighted units of the previous step that did not reach this one (0 on the first).
    pub drop_off: f64,
    /// Median time from the previous step, over the units that reached this one.
    pub median_ms_from_previous: Option<f64>,
    /// For the units that reached this step but not the next: the errors they hit within the
    /// window after reaching it, by units then events (empty on the last step).
    pub dropped_errors: Vec<DropError>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FunnelGroup {
    pub value: String,
    pub installs: u64,
    pub steps: Vec<StepFigures>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FunnelAnswer {
    pub per: Unit,
    pub window_ms: i64,
    pub steps: Vec<StepFigures>,
    pub breakdown: Option<String>,
    pub groups: Vec<FunnelGroup>,
    pub estimated: bool,
    pub suppressed_groups: usize,
}

/// One step event of a unit.
#[derive(Clone, Copy, Default)]
struct Occurrence {
    ts: i64,
    weight: f64,
    install: u32,
    group: u32,
}

/// One step's occurrences by unit, in one list: unit `u`'s, in time order, are
/// `list[start[u]..start[u + 1]]` (units are dense ids, so no map).
struct ByUnit {
    start: Vec<usize>,
    list: Vec<Occurrence>,
}

impl ByUnit {
    /// From (unit, occurrence) pairs; pairs without a unit ([`NO_VALUE`]) are left out.
    fn new(unsorted: impl ExactSizeIterator<Item = (u32, Occurrence)>) -> ByUnit {
        // Sized once: grown by doubling, the pairs of millions of events were copied over and
        // over.
        let mut pairs: Vec<(u32, Occurrence)> = Vec::with_capacity(unsorted.len());
        pairs.extend(unsorted.filter(|(u, _)| *u != NO_VALUE));
        let units = pairs
            .iter()
            .map(|(u, _)| *u as usize + 1)
            .max()
            .unwrap_or(0);
        sort_by_unit(&mut pairs, units);
        let mut start = vec![0usize; units + 1];
        for (unit, _) in &pairs {
            start[*unit as usize + 1] += 1;
        }
        for u in 0..units {
            start[u + 1] += start[u];
        }
        let mut list: Vec<Occurrence> = pairs.into_iter().map(|(_, o)| o).collect();
        for u in 0..units {
            list[start[u]..start[u + 1]].sort_by_key(|o| o.ts);
        }
        ByUnit { start, list }
    }

    /// The occurrences of `unit`, in time order (none for a unit it does not know).
    fn of(&self, unit: u32) -> &[Occurrence] {
        let u = unit as usize;
        match (self.start.get(u), self.start.get(u + 1)) {
            (Some(a), Some(b)) => &self.list[*a..*b],
            _ => &[],
        }
    }

    /// Each unit with occurrences, with them.
    fn units(&self) -> impl Iterator<Item = (u32, &[Occurrence])> {
        (0..self.start.len().saturating_sub(1))
            .map(|u| (u as u32, self.of(u as u32)))
            .filter(|(_, list)| !list.is_empty())
    }
}

/// Bits of the unit a pass of [`sort_by_unit`] orders by.
const RADIX_BITS: u32 = 11;

/// Orders `pairs` by unit (all below `units`), keeping their order within a unit: a radix sort,
/// [`RADIX_BITS`] of the unit per pass. Each pass writes to a few thousand places at once, which
/// stay in cache, where placing each pair straight at its unit's place would miss the cache
/// on nearly every pair once there are many units.
fn sort_by_unit(pairs: &mut Vec<(u32, Occurrence)>, units: usize) {
    let mut spare = vec![(0, Occurrence::default()); pairs.len()];
    let mut shift = 0;
    while shift == 0 || (units.saturating_sub(1) >> shift) > 0 {
        let digit = |unit: u32| ((unit >> shift) & ((1 << RADIX_BITS) - 1)) as usize;
        let mut next = vec![0usize; (1 << RADIX_BITS) + 1];
        for (unit, _) in pairs.iter() {
            next[digit(*unit) + 1] += 1;
        }
        for d in 0..1 << RADIX_BITS {
            next[d + 1] += next[d];
        }
        for pair in pairs.iter() {
            let at = &mut next[digit(pair.0)];
            spare[*at] = *pair;
            *at += 1;
        }
        std::mem::swap(pairs, &mut spare);
        shift += RADIX_BITS;
    }
}

/// How far one unit got.
struct Path {
    /// Per step reached: (time, weight).
    reached: Vec<(i64, f64)>,
    install: u32,
    group: u32,
}

pub fn run(context: &Context, spec: &FunnelSpec) -> Result<FunnelAnswer, AnalyticsError> {
    if !(2..=8).contains(&spec.steps.len()) {
        return Err(AnalyticsError::invalid("steps", "2 to 8 steps"));
    }
    if let Some(i) = spec.steps.iter().position(|s| s.name.trim().is_empty()) {
        return Err(AnalyticsError::invalid(
            format!("steps[{i}].name"),
            "is required",
        ));
    }
    let (from, to) = time_range(context, &spec.range)?;
    let window = duration("window", spec.window.as_deref(), DAY_MS)?;
    let limit = group_limit(spec.limit)?;
    let unit_column = match spec.per {
        Unit::Install => "install_id",
        Unit::Session => "session_id",
    };
    // Per install, the unit is the install: its column is read once.
    let mut columns = vec![unit_column];
    if spec.per != Unit::Install {
        columns.push("install_id");
    }
    let install_column = columns.len() - 1;
    if let Some(field) = &spec.breakdown {
        columns.push(field);
    }
    let mut units = Interner::default();
    let mut installs = Interner::default();
    let mut groups = Interner::default();
    let mut weights_seen = false;
    // Per step: its scan, with the ids that the interners translated (where they did).
    let mut scans = Vec::new();
    for (n, step) in spec.steps.iter().enumerate() {
        let step_to = if n == 0 {
            to
        } else {
            to.saturating_add(window)
        };
        let step_filter = filter(
            context,
            Some(from),
            step_to,
            spec.range.q.as_deref(),
            step.q.as_deref(),
        )
        .with(EventField::Name, step.name.clone());
        let scanned = context.index.scan(&step_filter, &columns, None)?;
        weights_seen |= scanned.weighted;
        let unit_ids = translated(units.ids(&scanned.columns[0]));
        let install_ids = translated(installs.ids(&scanned.columns[install_column]));
        let group_ids = scanned
            .columns
            .get(install_column + 1)
            .and_then(|c| translated(groups.ids(c)));
        scans.push((scanned, unit_ids, install_ids, group_ids));
    }
    // Per step, per unit: its occurrences (the steps on the scan threads).
    let grouped = spec.breakdown.is_some();
    let occurrences: Vec<ByUnit> =
        context
            .index
            .in_parallel(scans, |(scanned, unit_ids, install_ids, group_ids)| {
                ByUnit::new((0..scanned.len()).map(|i| {
                    let occurrence = Occurrence {
                        ts: scanned.timestamps[i],
                        weight: scanned.weights[i],
                        install: id_at(&scanned, &install_ids, install_column, i),
                        group: match grouped {
                            true => id_at(&scanned, &group_ids, install_column + 1, i),
                            false => NO_VALUE,
                        },
                    };
                    (id_at(&scanned, &unit_ids, 0, i), occurrence)
                }))
            });
    // Each unit's path, the units in a few runs on the scan threads.
    let starts: Vec<(u32, &[Occurrence])> = occurrences[0].units().collect();
    let path_units: Vec<u32> = starts.iter().map(|(unit, _)| *unit).collect();
    let run = starts.len().div_ceil(8).max(1);
    let paths: Vec<Path> = context
        .index
        .in_parallel(starts.chunks(run).collect(), |run| {
            run.iter()
                .map(|(unit, starts)| best_path(*unit, starts, &occurrences[1..], window))
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect();

    let dropped = dropped_errors(
        context,
        spec,
        from,
        to,
        window,
        &mut units,
        &paths,
        &path_units,
    )?;
    let names: Vec<&str> = spec.steps.iter().map(|s| s.name.as_str()).collect();
    let all: Vec<usize> = (0..paths.len()).collect();
    let steps = figures(&names, &paths, &all, dropped);

    let mut suppressed_groups = 0;
    let mut out_groups = Vec::new();
    if spec.breakdown.is_some() {
        let mut members: FxHashMap<u32, Vec<usize>> = FxHashMap::default();
        for (i, path) in paths.iter().enumerate() {
            members.entry(path.group).or_default().push(i);
        }
        let installs_of = |list: &[usize]| -> usize {
            list.iter()
                .map(|i| paths[*i].install)
                .filter(|i| *i != NO_VALUE)
                .collect::<FxHashSet<_>>()
                .len()
        };
        let selection = select(
            members
                .iter()
                .map(|(group, list)| Candidate {
                    key: *group,
                    weight: list.iter().map(|i| paths[*i].reached[0].1).sum(),
                    installs: installs_of(list),
                })
                .collect(),
            limit,
            context.min_group_installs,
        );
        suppressed_groups = selection.suppressed;
        let mut slots: Vec<Vec<usize>> = vec![Vec::new(); selection.slots()];
        for (group, list) in members {
            slots[selection.slot(&group)].extend(list);
        }
        for (slot, list) in slots.iter().enumerate() {
            out_groups.push(FunnelGroup {
                value: match selection.kept.get(slot) {
                    Some(group) => groups.label(*group),
                    None => OTHER.to_string(),
                },
                installs: installs_of(list) as u64,
                steps: figures(&names, &paths, list, Vec::new()),
            });
        }
    }
    Ok(FunnelAnswer {
        per: spec.per,
        window_ms: window,
        steps,
        breakdown: spec.breakdown.clone(),
        groups: out_groups,
        estimated: weights_seen,
        suppressed_groups,
    })
}

/// The ids an interner translated, `None` where it kept the scan's.
fn translated(ids: Cow<'_, [u32]>) -> Option<Vec<u32>> {
    match ids {
        Cow::Owned(ids) => Some(ids),
        Cow::Borrowed(_) => None,
    }
}

/// Row `i`'s id of `column`: as an interner translated it, where it did, else as scanned.
fn id_at(scanned: &Scanned, translated: &Option<Vec<u32>>, column: usize, i: usize) -> u32 {
    match translated {
        Some(ids) => ids[i],
        None => scanned.columns[column].ids[i],
    }
}

/// The path of one unit from the start that gets furthest (earliest on ties).
fn best_path(unit: u32, starts: &[Occurrence], later: &[ByUnit], window: i64) -> Path {
    let mut best: Option<Vec<(i64, f64)>> = None;
    for start in starts {
        let deadline = start.ts.saturating_add(window);
        let mut reached = vec![(start.ts, start.weight)];
        let mut at = start.ts;
        for step in later {
            let list = step.of(unit);
            let next = list[list.partition_point(|o| o.ts < at)..]
                .first()
                .filter(|o| o.ts <= deadline);
            match next {
                Some(o) => {
                    at = o.ts;
                    reached.push((o.ts, start.weight));
                }
                None => break,
            }
        }
        if best.as_ref().is_none_or(|b| reached.len() > b.len()) {
            let done = reached.len() == later.len() + 1;
            best = Some(reached);
            if done {
                break;
            }
        }
    }
    let first = starts[0];
    let start_ts = best.as_ref().map_or(first.ts, |b| b[0].0);
    let start = starts.iter().find(|o| o.ts == start_ts).unwrap_or(&first);
    Path {
        reached: best.unwrap_or_else(|| vec![(first.ts, first.weight)]),
        install: start.install,
        group: start.group,
    }
}

/// Errors hit per step by the units that stopped there: (step → ranked errors).
#[allow(clippy::too_many_arguments)]
fn dropped_errors(
    context: &Context,
    spec: &FunnelSpec,
    from: i64,
    to: i64,
    window: i64,
    units: &mut Interner,
    paths: &[Path],
    path_units: &[u32],
) -> Result<Vec<Vec<DropError>>, AnalyticsError> {
    let last = spec.steps.len();
    // Unit → (step it stopped after, time it reached it).
    let mut stopped: FxHashMap<u32, (usize, i64)> = FxHashMap::default();
    for (path, unit) in paths.iter().zip(path_units) {
        if path.reached.len() < last {
            let step = path.reached.len() - 1;
            stopped.insert(*unit, (step, path.reached[step].0));
        }
    }
    let mut out: Vec<Vec<DropError>> = (0..last).map(|_| Vec::new()).collect();
    if stopped.is_empty() {
        return Ok(out);
    }
    let unit_column = match spec.per {
        Unit::Install => "install_id",
        Unit::Session => "session_id",
    };
    let errors = Filter {
        present: vec![EventField::ErrorCode, EventField::Fingerprint],
        ..filter(
            context,
            Some(from),
            to.saturating_add(window),
            spec.range.q.as_deref(),
            None,
        )
    };
    let scanned = context
        .index
        .scan(&errors, &[unit_column, "error_code", "fingerprint"], None)?;
    let unit_ids = units.ids(&scanned.columns[0]);
    // (step, code id, fingerprint id) → (units, weighted events)
    let mut tally: FxHashMap<(usize, u32, u32), (FxHashSet<u32>, f64)> = FxHashMap::default();
    for i in 0..scanned.len() {
        let (code, print) = (scanned.columns[1].ids[i], scanned.columns[2].ids[i]);
        if code == NO_VALUE && print == NO_VALUE {
            continue;
        }
        let unit = unit_ids[i];
        let Some((step, at)) = stopped.get(&unit) else {
            continue;
        };
        let ts = scanned.timestamps[i];
        if ts < *at || ts > at.saturating_add(window) {
            continue;
        }
        let entry = tally.entry((*step, code, print)).or_default();
        entry.0.insert(unit);
        entry.1 += scanned.weights[i];
    }
    let mut ranked: Vec<_> = tally.into_iter().collect();
    ranked.sort_by(|a, b| {
        b.1 .0
            .len()
            .cmp(&a.1 .0.len())
            .then_with(|| b.1 .1.total_cmp(&a.1 .1))
            .then_with(|| a.0.cmp(&b.0))
    });
    for ((step, code, print), (hit, events)) in ranked {
        if out[step].len() < TOP_ERRORS {
            out[step].push(DropError {
                error_code: scanned.columns[1].value(code).map(str::to_string),
                fingerprint: scanned.columns[2].value(print).map(str::to_string),
                units: hit.len() as u64,
                events,
            });
        }
    }
    Ok(out)
}

/// The figures of each step over the paths `members`.
fn figures(
    names: &[&str],
    paths: &[Path],
    members: &[usize],
    mut dropped: Vec<Vec<DropError>>,
) -> Vec<StepFigures> {
    let mut counts = vec![0.0; names.len()];
    let mut raw = vec![0u64; names.len()];
    let mut gaps: Vec<Vec<(f64, f64)>> = vec![Vec::new(); names.len()];
    for i in members {
        let reached = &paths[*i].reached;
        for (step, (ts, weight)) in reached.iter().enumerate() {
            counts[step] += weight;
            raw[step] += 1;
            if step > 0 {
                gaps[step].push(((ts - reached[step - 1].0) as f64, 1.0));
            }
        }
    }
    names
        .iter()
        .enumerate()
        .map(|(step, name)| {
            let share = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
            let previous = if step == 0 {
                counts[0]
            } else {
                counts[step - 1]
            };
            StepFigures {
                name: name.to_string(),
                count: counts[step],
                raw_count: raw[step],
                conversion: share(counts[step], counts[0]),
                step_conversion: share(counts[step], previous),
                drop_off: previous - counts[step],
                median_ms_from_previous: weighted_percentile(&mut gaps[step], 0.5),
                dropped_errors: dropped
                    .get_mut(step)
                    .map(std::mem::take)
                    .unwrap_or_default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurrences_are_grouped_by_unit_in_time_order() {
        let at = |ts: i64| Occurrence {
            ts,
            weight: 1.0,
            install: 0,
            group: NO_VALUE,
        };
        let pairs = [
            (3, at(30)),
            (1, at(20)),
            (NO_VALUE, at(5)),
            (3, at(10)),
            (1, at(15)),
            // A unit past two radix passes' bits.
            (1 << 22 | 1, at(7)),
        ];
        let by_unit = ByUnit::new(pairs.into_iter());
        let times = |unit: u32| -> Vec<i64> { by_unit.of(unit).iter().map(|o| o.ts).collect() };
        assert_eq!(times(1), [15, 20]);
        assert_eq!(times(3), [10, 30]);
        assert!(times(0).is_empty() && times(2).is_empty() && times(99).is_empty());
        let units: Vec<u32> = by_unit.units().map(|(u, _)| u).collect();
        assert_eq!(units, [1, 3, 1 << 22 | 1]);
        assert_eq!(times(1 << 22 | 1), [7]);
    }

    proptest::proptest! {
        /// Every unit's occurrences, in time order, whatever the units (one or two radix
        /// passes) and their order.
        #[test]
        fn grouping_by_unit_keeps_every_occurrence(
            pairs in proptest::collection::vec(
                (proptest::prop_oneof![0u32..50, 0u32..1 << 13], 0i64..1000),
                0..2000,
            ),
        ) {
            let occurrence = |ts: i64| Occurrence { ts, weight: 1.0, install: 0, group: NO_VALUE };
            let by_unit = ByUnit::new(pairs.iter().map(|(u, ts)| (*u, occurrence(*ts))));
            let mut expected: std::collections::BTreeMap<u32, Vec<i64>> = Default::default();
            for (unit, ts) in &pairs {
                expected.entry(*unit).or_default().push(*ts);
            }
            let found: std::collections::BTreeMap<u32, Vec<i64>> = by_unit
                .units()
                .map(|(unit, list)| (unit, list.iter().map(|o| o.ts).collect()))
                .collect();
            for times in expected.values_mut() {
                times.sort();
            }
            proptest::prop_assert_eq!(found, expected);
        }
    }
}
