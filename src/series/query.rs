//! Reading series back: one metric's points over a time range, cut into equal buckets and
//! grouped by attribute values, reduced to one statistic per bucket and group (and over the
//! whole range), plus the quantile estimate for histograms.
//!
//! Statistics: `increase` (counters: the sum of the increases; histograms and summaries: the
//! number of observations), `rate` (the increase per second of the bucket), `value` (gauges and
//! up-down counters: the mean of the points in the bucket), `sum` and `avg` (sum ÷ count) of
//! histogram and summary observations, `min`/`max` as reported by histograms, and `pNN`:
//! for explicit-bucket histograms an estimate from the bucket counts of the bucket's points
//! (linear interpolation inside the bucket holding the rank, as Prometheus'
//! `histogram_quantile`), for summaries the mean of the reported quantile.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::series::model::{max_of, min_of, Kind, Point, SeriesDef};
use crate::timespan::{bucket_count, bucket_start};

/// Most buckets × groups one query may produce.
pub const MAX_CELLS: u64 = 20_000;

/// A statistic a query asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    Increase,
    Rate,
    Value,
    Sum,
    Avg,
    Min,
    Max,
    /// A quantile in (0, 1).
    Quantile(f64),
}

impl Stat {
    /// Parses a statistic's name and checks that `kind` answers it.
    pub fn parse(text: &str, kind: Kind) -> Result<Stat, String> {
        let allowed = || {
            let mut names = kind.stats().join(", ");
            if kind.has_quantiles() {
                names.push_str(" (or any pNN)");
            }
            format!(
                "a {} metric answers {names}; `{}` is not one of them",
                kind.as_str(),
                text.chars().take(20).collect::<String>()
            )
        };
        let stat = match text {
            "increase" => Stat::Increase,
            "rate" => Stat::Rate,
            "value" => Stat::Value,
            "sum" => Stat::Sum,
            "avg" => Stat::Avg,
            "min" => Stat::Min,
            "max" => Stat::Max,
            _ => {
                let q = text
                    .strip_prefix('p')
                    .filter(|d| (1..=2).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|d| d.parse::<u8>().ok())
                    .filter(|d| (1..=99).contains(d))
                    .ok_or_else(allowed)?;
                if !kind.has_quantiles() {
                    return Err(allowed());
                }
                return Ok(Stat::Quantile(f64::from(q) / 100.0));
            }
        };
        if !kind.stats().contains(&text) {
            return Err(allowed());
        }
        Ok(stat)
    }
}

/// A histogram summed over points that share its bounds.
#[derive(Debug, Clone, Default, PartialEq)]
struct Merged {
    bounds: Vec<f64>,
    counts: Vec<u64>,
}

/// Everything a bucket (or a whole group) accumulates; `stat` decides what it answers.
#[derive(Debug, Clone, Default)]
struct Cell {
    /// Counter increases, or histogram/summary observation counts.
    total: f64,
    sum: f64,
    mean_sum: f64,
    mean_n: f64,
    min: Option<f64>,
    max: Option<f64>,
    /// Histograms by their bounds (only for quantiles).
    histograms: Vec<Merged>,
    /// Summary quantile → (sum of reported values, reports) (only for quantiles).
    quantiles: Vec<(f64, f64, f64)>,
}

impl Cell {
    fn add(&mut self, point: &Point, bounds: &[f64], stat: Stat) {
        match point {
            Point::Increase(v) => self.total += v,
            Point::Value { mean, n } => {
                self.mean_sum += mean * f64::from(*n);
                self.mean_n += f64::from(*n);
            }
            Point::Histogram(h) => {
                self.total += h.count as f64;
                self.sum += h.sum;
                self.min = min_of(self.min, h.min);
                self.max = max_of(self.max, h.max);
                if matches!(stat, Stat::Quantile(_)) && h.buckets.len() == bounds.len() + 1 {
                    match self.histograms.iter_mut().find(|m| m.bounds == bounds) {
                        Some(m) => {
                            for (a, b) in m.counts.iter_mut().zip(&h.buckets) {
                                *a += b;
                            }
                        }
                        None => self.histograms.push(Merged {
                            bounds: bounds.to_vec(),
                            counts: h.buckets.clone(),
                        }),
                    }
                }
            }
            Point::Summary(s) => {
                self.total += s.count as f64;
                self.sum += s.sum;
                if let Stat::Quantile(want) = stat {
                    for (q, v) in &s.quantiles {
                        if (q - want).abs() > 1e-9 {
                            continue;
                        }
                        let n = f64::from(s.n);
                        match self.quantiles.iter_mut().find(|(qq, _, _)| *qq == *q) {
                            Some((_, sum, count)) => {
                                *sum += v * n;
                                *count += n;
                            }
                            None => self.quantiles.push((*q, v * n, n)),
                        }
                    }
                }
            }
        }
    }

    fn answer(&self, stat: Stat, seconds: f64) -> Option<f64> {
        match stat {
            Stat::Increase => Some(self.total),
            Stat::Rate => Some(if seconds > 0.0 {
                self.total / seconds
            } else {
                0.0
            }),
            Stat::Value => (self.mean_n > 0.0).then(|| self.mean_sum / self.mean_n),
            Stat::Sum => Some(self.sum),
            Stat::Avg => (self.total > 0.0).then(|| self.sum / self.total),
            Stat::Min => self.min,
            Stat::Max => self.max,
            Stat::Quantile(q) => {
                if let Some((_, sum, n)) = self.quantiles.first() {
                    return (*n > 0.0).then(|| sum / n);
                }
                let merged = union(&self.histograms)?;
                quantile(q, &merged.bounds, &merged.counts, self.min, self.max)
            }
        }
    }
}

/// Histograms with different bounds on the union of their bounds: each bucket's count moves to
/// the union bucket with the same upper bound (an approximation: its lower bound may be higher).
fn union(histograms: &[Merged]) -> Option<Merged> {
    match histograms {
        [] => None,
        [one] => Some(one.clone()),
        many => {
            let mut bounds: Vec<f64> = many.iter().flat_map(|m| m.bounds.clone()).collect();
            bounds.sort_by(f64::total_cmp);
            bounds.dedup();
            let mut counts = vec![0u64; bounds.len() + 1];
            for m in many {
                for (i, c) in m.counts.iter().enumerate() {
                    let at = match m.bounds.get(i) {
                        Some(upper) => bounds
                            .binary_search_by(|b| b.total_cmp(upper))
                            .unwrap_or_else(|i| i),
                        None => bounds.len(),
                    };
                    counts[at] += c;
                }
            }
            Some(Merged { bounds, counts })
        }
    }
}

/// The `q` quantile of observations counted in buckets `(bounds[i-1], bounds[i]]` (the last
/// bucket is everything above the last bound): find the bucket holding rank `q × total` and
/// interpolate linearly inside it. The first bucket starts at `min` when known, else at 0 (or
/// at its upper bound when that is not positive); the open last bucket ends at `max` when
/// known, else the answer is the last bound. `None` with no observations.
pub fn quantile(
    q: f64,
    bounds: &[f64],
    counts: &[u64],
    min: Option<f64>,
    max: Option<f64>,
) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || counts.len() != bounds.len() + 1 || bounds.is_empty() {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, count) in counts.iter().enumerate() {
        let cumulative = below + count;
        if (cumulative as f64) < rank || *count == 0 {
            below = cumulative;
            continue;
        }
        let upper = match bounds.get(i) {
            Some(upper) => *upper,
            None => match max {
                Some(max) if max > bounds[bounds.len() - 1] => max,
                _ => return Some(bounds[bounds.len() - 1]),
            },
        };
        let lower = match i {
            0 => match min {
                Some(min) if min <= upper => min,
                _ if upper > 0.0 => 0.0,
                _ => return Some(upper),
            },
            _ => bounds[i - 1],
        };
        let within = (rank - below as f64) / *count as f64;
        return Some(lower + (upper - lower) * within);
    }
    Some(bounds[bounds.len() - 1])
}

/// One bucket of a group.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Bucket {
    pub start_ms: i64,
    pub value: Option<f64>,
}

/// One group of series: the attribute values it shares, its buckets, and the statistic over
/// the whole range.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Group {
    pub attributes: BTreeMap<String, String>,
    pub series: u64,
    pub overall: Option<f64>,
    pub buckets: Vec<Bucket>,
}

/// The time grid of a query: `count` buckets of `bucket_ms` from `start_ms` (a multiple of
/// `bucket_ms`) to cover `[start_ms, to_ms]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub start_ms: i64,
    pub to_ms: i64,
    pub bucket_ms: i64,
    pub count: u64,
}

impl Grid {
    /// Buckets aligned on multiples of `bucket_ms` (UTC), from the one holding `from_ms` to the
    /// one holding `to_ms`. `None` for an empty or reversed range. Any `i64` range and bucket
    /// are fine: the count is computed without overflow (and saturates at `u64::MAX`), so the
    /// caller can refuse a grid too large before anything is allocated.
    pub fn new(from_ms: i64, to_ms: i64, bucket_ms: i64) -> Option<Grid> {
        if bucket_ms <= 0 || to_ms < from_ms {
            return None;
        }
        let start_ms = bucket_start(from_ms, bucket_ms);
        Some(Grid {
            start_ms,
            to_ms,
            bucket_ms,
            count: bucket_count(start_ms, to_ms, bucket_ms),
        })
    }

    fn index(&self, time_ms: i64) -> Option<usize> {
        if time_ms < self.start_ms || time_ms > self.to_ms {
            return None;
        }
        let offset = (i128::from(time_ms) - i128::from(self.start_ms)) / i128::from(self.bucket_ms);
        usize::try_from(offset).ok()
    }

    /// The start of bucket `i` (saturating at the ends of `i64`).
    fn bucket_start(&self, i: usize) -> i64 {
        let start = i128::from(self.start_ms) + i as i128 * i128::from(self.bucket_ms);
        i64::try_from(start).unwrap_or(i64::MAX)
    }
}

/// Groups `series` by the values of `group_by` (a missing attribute groups as ""), in the
/// order of their values.
pub fn group_series<'a>(
    series: &'a [SeriesDef],
    group_by: &[String],
) -> BTreeMap<Vec<String>, Vec<&'a SeriesDef>> {
    let mut groups: BTreeMap<Vec<String>, Vec<&SeriesDef>> = BTreeMap::new();
    for def in series {
        let key = group_by
            .iter()
            .map(|k| def.identity.attributes.get(k).cloned().unwrap_or_default())
            .collect();
        groups.entry(key).or_default().push(def);
    }
    groups
}

/// Accumulates one group's points into its buckets.
pub struct GroupBuilder {
    grid: Grid,
    stat: Stat,
    cells: Vec<Cell>,
    overall: Cell,
}

impl GroupBuilder {
    /// Allocates the group's buckets: callers check `groups × grid.count` against
    /// [`MAX_CELLS`] first.
    pub fn new(grid: Grid, stat: Stat) -> GroupBuilder {
        GroupBuilder {
            grid,
            stat,
            cells: vec![Cell::default(); grid.count as usize],
            overall: Cell::default(),
        }
    }

    /// A point of a series with `bounds` (histograms) at `time_ms`.
    pub fn add(&mut self, time_ms: i64, point: &Point, bounds: &[f64]) {
        if let Some(cell) = self.grid.index(time_ms).and_then(|i| self.cells.get_mut(i)) {
            cell.add(point, bounds, self.stat);
            self.overall.add(point, bounds, self.stat);
        }
    }

    pub fn finish(self, attributes: BTreeMap<String, String>, series: u64) -> Group {
        let grid = self.grid;
        let bucket_s = grid.bucket_ms as f64 / 1000.0;
        let range_s = (grid.to_ms as f64 - grid.start_ms as f64) / 1000.0;
        Group {
            attributes,
            series,
            overall: self.overall.answer(self.stat, range_s),
            buckets: self
                .cells
                .iter()
                .enumerate()
                .map(|(i, cell)| Bucket {
                    start_ms: grid.bucket_start(i),
                    value: cell.answer(self.stat, bucket_s),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::model::{HistogramPoint, Identity, SummaryPoint};

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("a value");
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_holding_the_rank() {
        // Buckets (-inf,1], (1,2], (2,4], (4,+inf): 10, 20, 10, 0 observations.
        let bounds = [1.0, 2.0, 4.0];
        let counts = [10, 20, 10, 0];
        // p50: rank 20 is the 10th of 20 in (1, 2] → 1.5.
        close(quantile(0.5, &bounds, &counts, None, None), 1.5);
        // p90: rank 36 is the 6th of 10 in (2, 4] → 3.2.
        close(quantile(0.9, &bounds, &counts, None, None), 3.2);
        // p10: rank 4 in the first bucket, from 0 (or from the reported min).
        close(quantile(0.1, &bounds, &counts, None, None), 0.4);
        close(quantile(0.1, &bounds, &counts, Some(0.5), None), 0.7);
        // Ranks in the open last bucket: its lower bound, or up to the reported max.
        let counts = [0, 0, 5, 5];
        close(quantile(0.99, &bounds, &counts, None, None), 4.0);
        close(quantile(0.9, &bounds, &counts, None, Some(9.0)), 8.0);
        // Nothing observed, or counts that do not fit the bounds.
        assert_eq!(quantile(0.5, &bounds, &[0, 0, 0, 0], None, None), None);
        assert_eq!(quantile(0.5, &bounds, &[1, 2], None, None), None);
        // A first bucket with a negative bound answers its bound.
        close(quantile(0.5, &[-1.0, 0.0], &[4, 0, 0], None, None), -1.0);
    }

    #[test]
    fn histograms_with_other_bounds_merge_on_their_union() {
        let merged = union(&[
            Merged {
                bounds: vec![1.0, 4.0],
                counts: vec![1, 2, 3],
            },
            Merged {
                bounds: vec![2.0, 4.0],
                counts: vec![10, 20, 30],
            },
        ])
        .unwrap();
        assert_eq!(merged.bounds, vec![1.0, 2.0, 4.0]);
        assert_eq!(merged.counts, vec![1, 10, 22, 33]);
    }

    #[test]
    fn stats_are_checked_against_the_kind() {
        assert_eq!(
            Stat::parse("increase", Kind::Counter).unwrap(),
            Stat::Increase
        );
        assert_eq!(
            Stat::parse("p95", Kind::Histogram).unwrap(),
            Stat::Quantile(0.95)
        );
        assert_eq!(
            Stat::parse("p5", Kind::Summary).unwrap(),
            Stat::Quantile(0.05)
        );
        assert!(Stat::parse("value", Kind::Counter)
            .unwrap_err()
            .contains("a counter metric answers increase, rate"));
        assert!(Stat::parse("p95", Kind::Gauge).is_err());
        assert!(Stat::parse("p100", Kind::Histogram).is_err());
        assert!(Stat::parse("p0", Kind::Histogram).is_err());
        assert!(Stat::parse("increase", Kind::Gauge).is_err());
        assert!(Stat::parse("min", Kind::Summary).is_err());
    }

    #[test]
    fn grids_align_on_the_bucket() {
        let grid = Grid::new(3_500, 10_000, 1_000).unwrap();
        assert_eq!((grid.start_ms, grid.count), (3_000, 8));
        assert_eq!(grid.index(3_000), Some(0));
        assert_eq!(grid.index(9_999), Some(6));
        assert_eq!(grid.index(10_000), Some(7));
        assert_eq!(grid.index(10_001), None);
        assert_eq!(grid.index(2_999), None);
        assert!(Grid::new(5, 4, 1).is_none());
        assert!(Grid::new(0, 10, 0).is_none());
        // The ends of i64: no overflow, a count to refuse.
        assert_eq!(
            Grid::new(i64::MIN, i64::MIN, 1_000).unwrap().start_ms,
            i64::MIN
        );
        let whole = Grid::new(i64::MIN, i64::MAX, 1).unwrap();
        assert_eq!(whole.count, u64::MAX);
        let wide = Grid::new(i64::MIN + 1, i64::MAX, i64::MAX).unwrap();
        assert_eq!((wide.start_ms, wide.count), (i64::MIN + 1, 3));
        assert_eq!(wide.index(i64::MAX), Some(2));
        assert_eq!(wide.bucket_start(2), i64::MAX);
    }

    fn def(id: u64, attrs: &[(&str, &str)]) -> SeriesDef {
        SeriesDef {
            id,
            product: "p".into(),
            name: "m".into(),
            identity: Identity {
                attributes: attrs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                install: None,
                bounds: Vec::new(),
            },
            first_ms: 0,
            last_ms: 0,
            counted_from_ns: 0,
        }
    }

    #[test]
    fn groups_and_buckets_reduce_to_the_stat() {
        let series = [
            def(1, &[("surface", "cli"), ("event", "a")]),
            def(2, &[("surface", "cli"), ("event", "b")]),
            def(3, &[("surface", "web")]),
            def(4, &[]),
        ];
        let groups = group_series(&series, &["surface".to_string()]);
        let keys: Vec<_> = groups.keys().cloned().collect();
        assert_eq!(
            keys,
            vec![vec![String::new()], vec!["cli".into()], vec!["web".into()]]
        );
        assert_eq!(groups[&vec!["cli".to_string()]].len(), 2);

        let grid = Grid::new(0, 2_999, 1_000).unwrap();
        let mut g = GroupBuilder::new(grid, Stat::Increase);
        g.add(100, &Point::Increase(2.0), &[]);
        g.add(900, &Point::Increase(3.0), &[]);
        g.add(2_500, &Point::Increase(1.0), &[]);
        g.add(5_000, &Point::Increase(100.0), &[]);
        let group = g.finish(BTreeMap::new(), 2);
        let values: Vec<_> = group.buckets.iter().map(|b| b.value).collect();
        assert_eq!(values, vec![Some(5.0), Some(0.0), Some(1.0)]);
        assert_eq!(group.overall, Some(6.0));

        let mut g = GroupBuilder::new(grid, Stat::Rate);
        g.add(100, &Point::Increase(2.0), &[]);
        let group = g.finish(BTreeMap::new(), 1);
        assert_eq!(group.buckets[0].value, Some(2.0));

        let mut g = GroupBuilder::new(grid, Stat::Value);
        g.add(100, &Point::Value { mean: 10.0, n: 1 }, &[]);
        g.add(200, &Point::Value { mean: 40.0, n: 2 }, &[]);
        let group = g.finish(BTreeMap::new(), 1);
        assert_eq!(group.buckets[0].value, Some(30.0));
        assert_eq!(group.buckets[1].value, None);

        let bounds = [1.0, 2.0];
        let h = |buckets: Vec<u64>, sum: f64| {
            Point::Histogram(HistogramPoint {
                count: buckets.iter().sum(),
                sum,
                min: None,
                max: None,
                buckets,
            })
        };
        let mut g = GroupBuilder::new(grid, Stat::Quantile(0.5));
        g.add(100, &h(vec![2, 0, 0], 1.0), &bounds);
        g.add(200, &h(vec![0, 2, 0], 3.0), &bounds);
        g.add(1_200, &h(vec![0, 0, 1], 5.0), &bounds);
        let group = g.finish(BTreeMap::new(), 1);
        close(group.buckets[0].value, 1.0);
        assert_eq!(group.buckets[1].value, Some(2.0));
        assert_eq!(group.buckets[2].value, None);
        // Over the whole range: 5 observations, rank 2.5 is the half of (1, 2].
        close(group.overall, 1.25);

        let mut g = GroupBuilder::new(grid, Stat::Avg);
        g.add(100, &h(vec![2, 0, 0], 1.0), &bounds);
        g.add(200, &h(vec![0, 2, 0], 3.0), &bounds);
        assert_eq!(g.finish(BTreeMap::new(), 1).buckets[0].value, Some(1.0));

        let s = |q: f64, v: f64| {
            Point::Summary(SummaryPoint {
                count: 1,
                sum: v,
                quantiles: vec![(0.5, q), (0.99, v)],
                n: 1,
            })
        };
        let mut g = GroupBuilder::new(grid, Stat::Quantile(0.99));
        g.add(100, &s(1.0, 10.0), &[]);
        g.add(200, &s(2.0, 20.0), &[]);
        assert_eq!(g.finish(BTreeMap::new(), 1).buckets[0].value, Some(15.0));
    }
}
