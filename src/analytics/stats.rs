//! Pure statistics over weighted values: weighted percentiles, weighted summaries and
//! histograms. A value `(v, w)` stands for `w` events of value `v`.

use serde::Serialize;

/// The `q`-quantile (0..=1) of weighted values: the smallest value whose cumulative weight
/// (in value order) reaches `q` × the total weight. Reorders `values`. `None` when empty.
pub fn weighted_percentile(values: &mut [(f64, f64)], q: f64) -> Option<f64> {
    weighted_percentiles(values, &[q])[0]
}

/// [`weighted_percentile`] for each of `qs` (ascending), by selection rather than sorting: each
/// quantile narrows the part of `values` the next one is looked for in, so all of them cost
/// about two passes over the values.
pub fn weighted_percentiles(values: &mut [(f64, f64)], qs: &[f64]) -> Vec<Option<f64>> {
    let total: f64 = values.iter().map(|(_, w)| w).sum();
    if values.is_empty() || total <= 0.0 {
        return vec![None; qs.len()];
    }
    let by_value = |a: &(f64, f64), b: &(f64, f64)| a.0.total_cmp(&b.0);
    let weight = values[0].1;
    if values.iter().all(|(_, w)| *w == weight) {
        return equal_weight_percentiles(values, qs, weight);
    }
    // values[..lo] are no greater than values[lo..], and weigh `before`.
    let (mut lo, mut before) = (0, 0.0);
    qs.iter()
        .map(|q| {
            let wanted = q.clamp(0.0, 1.0) * total - total * 1e-12;
            let mut hi = values.len();
            loop {
                if hi - lo <= 16 {
                    let part = &mut values[lo..hi];
                    part.sort_unstable_by(by_value);
                    let mut cumulative = before;
                    let last = part.len() - 1;
                    for (n, (value, weight)) in part.iter().enumerate() {
                        if cumulative + weight >= wanted || n == last {
                            (lo, before) = (lo + n, cumulative);
                            return Some(*value);
                        }
                        cumulative += weight;
                    }
                }
                let mid = lo + (hi - lo) / 2;
                values[lo..hi].select_nth_unstable_by(mid - lo, by_value);
                let left: f64 = values[lo..mid].iter().map(|(_, w)| w).sum();
                let through_mid = before + left + values[mid].1;
                if before + left >= wanted {
                    hi = mid;
                } else if through_mid >= wanted {
                    (lo, before) = (mid, before + left);
                    return Some(values[mid].0);
                } else {
                    (lo, before) = (mid + 1, through_mid);
                }
            }
        })
        .collect()
}

/// [`weighted_percentiles`] when every value weighs `weight` (no sampling, the usual case):
/// the quantile is the value of rank ⌈q × n⌉, found by one selection each.
fn equal_weight_percentiles(
    values: &mut [(f64, f64)],
    qs: &[f64],
    weight: f64,
) -> Vec<Option<f64>> {
    let n = values.len();
    let total = weight * n as f64;
    let mut lo = 0;
    qs.iter()
        .map(|q| {
            let wanted = q.clamp(0.0, 1.0) * total - total * 1e-12;
            // The fewest values whose weight reaches `wanted`, at least one.
            let mut rank = ((wanted / weight).ceil().max(1.0) as usize).min(n);
            while rank > 1 && (rank - 1) as f64 * weight >= wanted {
                rank -= 1;
            }
            while rank < n && (rank as f64) * weight < wanted {
                rank += 1;
            }
            let at = (rank - 1).max(lo);
            values[lo..].select_nth_unstable_by(at - lo, |a, b| a.0.total_cmp(&b.0));
            lo = at;
            Some(values[at].0)
        })
        .collect()
}

/// The summary of a set of weighted values.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// Weighted count of values (estimated events).
    pub count: f64,
    /// Values stored (unweighted).
    pub raw_count: u64,
    pub sum: f64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
}

/// Weighted count, sum, mean and percentiles; min and max of the values. `None` when empty.
pub fn summarize(values: &mut [(f64, f64)]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let count: f64 = values.iter().map(|(_, w)| w).sum();
    let sum: f64 = values.iter().map(|(v, w)| v * w).sum();
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (v, _)| {
            (lo.min(*v), hi.max(*v))
        });
    let pct = weighted_percentiles(values, &[0.50, 0.90, 0.95, 0.99]);
    let pct = |n: usize| pct[n].unwrap_or(f64::NAN);
    Some(Summary {
        count,
        raw_count: values.len() as u64,
        sum,
        avg: if count > 0.0 { sum / count } else { f64::NAN },
        min,
        max,
        p50: pct(0),
        p90: pct(1),
        p95: pct(2),
        p99: pct(3),
    })
}

/// One histogram bin: `[lower, upper)`, the last one closed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Bin {
    pub lower: f64,
    pub upper: f64,
    /// Weighted count.
    pub count: f64,
    pub raw_count: u64,
}

/// `bins` equal-width bins over `[min, max]` (one bin when min = max).
pub fn histogram(values: &[(f64, f64)], min: f64, max: f64, bins: usize) -> Vec<Bin> {
    let bins = if max > min { bins.max(1) } else { 1 };
    let width = if max > min {
        (max - min) / bins as f64
    } else {
        1.0
    };
    let mut out: Vec<Bin> = (0..bins)
        .map(|i| Bin {
            lower: min + width * i as f64,
            upper: if i + 1 == bins {
                max.max(min + width)
            } else {
                min + width * (i + 1) as f64
            },
            count: 0.0,
            raw_count: 0,
        })
        .collect();
    for (value, weight) in values {
        let index = (((value - min) / width) as usize).min(bins - 1);
        out[index].count += weight;
        out[index].raw_count += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unweighted_percentiles_are_nearest_rank() {
        let mut values: Vec<(f64, f64)> = (1..=100).map(|v| (v as f64, 1.0)).collect();
        assert_eq!(weighted_percentile(&mut values, 0.5), Some(50.0));
        assert_eq!(weighted_percentile(&mut values, 0.95), Some(95.0));
        assert_eq!(weighted_percentile(&mut values, 0.99), Some(99.0));
        assert_eq!(weighted_percentile(&mut [], 0.5), None);
    }

    /// The definition, by sorting: the first value whose cumulative weight reaches q × total.
    fn by_sorting(values: &[(f64, f64)], q: f64) -> Option<f64> {
        let mut sorted = values.to_vec();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = sorted.iter().map(|(_, w)| w).sum();
        let wanted = q * total - total * 1e-12;
        let mut cumulative = 0.0;
        for (value, weight) in &sorted {
            cumulative += weight;
            if cumulative >= wanted {
                return Some(*value);
            }
        }
        sorted.last().map(|(v, _)| *v)
    }

    proptest::proptest! {
        #[test]
        fn selection_finds_what_sorting_finds(
            values in proptest::collection::vec(
                (0u32..50, proptest::sample::select(vec![1.0, 4.0, 10.0, 1.0 / 0.3])),
                1..3000,
            ),
        ) {
            let values: Vec<(f64, f64)> = values.iter().map(|(v, w)| (*v as f64 * 1.5, *w)).collect();
            let qs = [0.0, 0.1, 0.5, 0.5, 0.9, 0.95, 0.99, 1.0];
            let found = weighted_percentiles(&mut values.clone(), &qs);
            for (q, found) in qs.iter().zip(found) {
                proptest::prop_assert_eq!(found, by_sorting(&values, *q), "q {}", q);
            }
        }
    }

    proptest::proptest! {
        /// Equal weights (any one weight) take the rank path; it finds what sorting finds.
        #[test]
        fn equal_weights_find_what_sorting_finds(
            values in proptest::collection::vec(0u32..50, 1..3000),
            weight in proptest::sample::select(vec![1.0, 4.0, 1.0 / 0.3, 1.0 / 0.07]),
        ) {
            let values: Vec<(f64, f64)> = values.iter().map(|v| (*v as f64 * 1.5, weight)).collect();
            let qs = [0.0, 0.1, 0.5, 0.5, 0.9, 0.95, 0.99, 1.0];
            let found = weighted_percentiles(&mut values.clone(), &qs);
            for (q, found) in qs.iter().zip(found) {
                proptest::prop_assert_eq!(found, by_sorting(&values, *q), "q {}", q);
            }
        }
    }

    #[test]
    fn weights_move_percentiles() {
        // 10 stands for 4 events, 20 and 30 for one each: the median is 10.
        let mut values = vec![(30.0, 1.0), (10.0, 4.0), (20.0, 1.0)];
        assert_eq!(weighted_percentile(&mut values, 0.5), Some(10.0));
        assert_eq!(weighted_percentile(&mut values, 0.7), Some(20.0));
        assert_eq!(weighted_percentile(&mut values, 0.9), Some(30.0));
        let summary = summarize(&mut values).unwrap();
        assert_eq!(summary.count, 6.0);
        assert_eq!(summary.raw_count, 3);
        assert_eq!(summary.sum, 90.0);
        assert_eq!(summary.avg, 15.0);
        assert_eq!((summary.min, summary.max), (10.0, 30.0));
    }

    #[test]
    fn histogram_bins_cover_min_to_max() {
        let values = vec![(0.0, 1.0), (5.0, 2.0), (10.0, 1.0)];
        let bins = histogram(&values, 0.0, 10.0, 2);
        assert_eq!(bins.len(), 2);
        assert_eq!(
            (bins[0].lower, bins[0].upper, bins[0].count),
            (0.0, 5.0, 1.0)
        );
        assert_eq!(
            (bins[1].lower, bins[1].upper, bins[1].count),
            (5.0, 10.0, 3.0)
        );
        assert_eq!(bins[1].raw_count, 2);
        let single = histogram(&[(3.0, 1.0)], 3.0, 3.0, 10);
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].count, 1.0);
    }
}
