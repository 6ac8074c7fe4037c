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
        return equal_weight_percentiles(&[values], qs, weight);
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

/// The fewest values whose weight (each `weight`, `n` of them) reaches the `q`-quantile's share
/// of the total, at least one: the 1-based rank of the `q`-quantile.
fn rank_of(q: f64, n: usize, weight: f64) -> usize {
    let total = weight * n as f64;
    let wanted = q.clamp(0.0, 1.0) * total - total * 1e-12;
    let mut rank = ((wanted / weight).ceil().max(1.0) as usize).min(n);
    while rank > 1 && (rank - 1) as f64 * weight >= wanted {
        rank -= 1;
    }
    while rank < n && (rank as f64) * weight < wanted {
        rank += 1;
    }
    rank
}

/// A value's place in `f64::total_cmp` order, as an unsigned integer.
fn order_key(value: f64) -> u64 {
    let bits = value.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// Leading bits of [`order_key`] that a radix pass counts by.
const RADIX_BITS: u32 = 16;

/// The fewest values whose percentiles are found by counting (a few in unit tests, so that
/// their small sets take that way too).
const RADIX_FROM: usize = if cfg!(test) { 64 } else { 1 << 14 };

/// The percentiles of values that all weigh `weight`, spread over `parts`: the value of rank
/// ⌈q × n⌉ (see [`rank_of`]) for each of `qs`. Many values are neither sorted nor moved: one
/// pass counts them by their leading bits, a second gathers those in the few buckets holding a
/// wanted rank, and a selection among these finds it.
fn equal_weight_percentiles(parts: &[&[(f64, f64)]], qs: &[f64], weight: f64) -> Vec<Option<f64>> {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    if n == 0 {
        return vec![None; qs.len()];
    }
    if n < RADIX_FROM {
        // Few values (a trend's cell): selecting among them all costs less than the counts.
        let mut values: Vec<f64> = parts.iter().copied().flatten().map(|(v, _)| *v).collect();
        return qs
            .iter()
            .map(|q| {
                let rank = rank_of(*q, n, weight);
                Some(*values.select_nth_unstable_by(rank - 1, f64::total_cmp).1)
            })
            .collect();
    }
    let bucket = |value: f64| (order_key(value) >> (64 - RADIX_BITS)) as usize;
    let mut counts = vec![0u32; 1 << RADIX_BITS];
    for (value, _) in parts.iter().copied().flatten() {
        counts[bucket(*value)] += 1;
    }
    // Per wanted rank: its bucket and its rank among the bucket's values.
    let ranks: Vec<usize> = qs.iter().map(|q| rank_of(*q, n, weight)).collect();
    let mut order: Vec<usize> = (0..ranks.len()).collect();
    order.sort_by_key(|i| ranks[*i]);
    let mut within = vec![(0, 0); ranks.len()];
    let (mut b, mut before) = (0, 0);
    for i in order {
        while before + (counts[b] as usize) < ranks[i] {
            before += counts[b] as usize;
            b += 1;
        }
        within[i] = (b, ranks[i] - before);
    }
    // The wanted buckets' values.
    let mut slot_of = vec![u16::MAX; 1 << RADIX_BITS];
    let mut gathered: Vec<Vec<f64>> = Vec::new();
    for (b, _) in &within {
        if slot_of[*b] == u16::MAX {
            slot_of[*b] = gathered.len() as u16;
            gathered.push(Vec::with_capacity(counts[*b] as usize));
        }
    }
    for (value, _) in parts.iter().copied().flatten() {
        if let Some(values) = gathered.get_mut(slot_of[bucket(*value)] as usize) {
            values.push(*value);
        }
    }
    within
        .iter()
        .map(|(b, rank)| {
            let values = &mut gathered[slot_of[*b] as usize];
            let (_, value, _) = values.select_nth_unstable_by(rank - 1, f64::total_cmp);
            Some(*value)
        })
        .collect()
}

/// Values a part holds at most: past it a new part starts, rather than the last being copied
/// into one twice its size.
const PART: usize = 1 << 16;

/// Weighted values gathered in parts (a part per scan thread and group, and per [`PART`]
/// values): put together by moving parts, never by copying values.
#[derive(Debug, Clone)]
pub struct Values {
    parts: Vec<Vec<(f64, f64)>>,
    /// The first value's weight, and whether every value weighs it (the usual case: nothing
    /// is sampled).
    weight: f64,
    equal: bool,
}

impl Default for Values {
    fn default() -> Values {
        Values {
            parts: Vec::new(),
            weight: 1.0,
            equal: true,
        }
    }
}

impl Values {
    #[inline]
    pub fn push(&mut self, value: f64, weight: f64) {
        match self.parts.last_mut() {
            Some(part) if part.len() < PART => part.push((value, weight)),
            _ => {
                if self.parts.is_empty() {
                    self.weight = weight;
                }
                let mut part = Vec::with_capacity(if self.parts.is_empty() { 16 } else { PART });
                part.push((value, weight));
                self.parts.push(part);
            }
        }
        self.equal &= weight == self.weight;
    }

    /// `other`'s values added to these.
    pub fn append(&mut self, other: Values) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            *self = other;
            return;
        }
        self.equal &= other.equal && other.weight == self.weight;
        self.parts.extend(other.parts);
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| p.is_empty())
    }

    pub fn iter(&self) -> impl Iterator<Item = &(f64, f64)> {
        self.parts.iter().flatten()
    }

    /// [`weighted_percentiles`] of these values.
    pub fn percentiles(&self, qs: &[f64]) -> Vec<Option<f64>> {
        if self.equal && self.weight > 0.0 {
            let parts: Vec<&[(f64, f64)]> = self.parts.iter().map(|p| &p[..]).collect();
            return equal_weight_percentiles(&parts, qs, self.weight);
        }
        weighted_percentiles(&mut self.iter().copied().collect::<Vec<_>>(), qs)
    }

    /// Weighted count, sum, mean and percentiles; min and max of the values. `None` when
    /// empty.
    pub fn summary(&self) -> Option<Summary> {
        if self.is_empty() {
            return None;
        }
        let (mut count, mut sum) = (0.0, 0.0);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for (value, weight) in self.iter() {
            count += weight;
            sum += value * weight;
            min = min.min(*value);
            max = max.max(*value);
        }
        let pct = self.percentiles(&[0.50, 0.90, 0.95, 0.99]);
        let pct = |n: usize| pct[n].unwrap_or(f64::NAN);
        Some(Summary {
            count,
            raw_count: self.len() as u64,
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
}

/// Values pushed one by one, for tests.
#[cfg(test)]
impl From<Vec<(f64, f64)>> for Values {
    fn from(values: Vec<(f64, f64)>) -> Values {
        let mut out = Values::default();
        for (value, weight) in values {
            out.push(value, weight);
        }
        out
    }
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
pub fn histogram(values: &Values, min: f64, max: f64, bins: usize) -> Vec<Bin> {
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
    for (value, weight) in values.iter() {
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

    proptest::proptest! {
        /// Values spread over parts, equally weighted (the radix path) or not, with negative
        /// values, zeros of both signs, infinities and long runs of one value: what sorting
        /// finds.
        #[test]
        fn parts_find_what_sorting_finds(
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    -1e6f64..1e6,
                    proptest::sample::select(vec![0.0, -0.0, 1.0, 250.0, f64::INFINITY, f64::NEG_INFINITY]),
                ],
                1..3000,
            ),
            cuts in proptest::collection::vec(0usize..3000, 0..4),
            weighted in proptest::bool::ANY,
        ) {
            let values: Vec<(f64, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (*v, if weighted && i % 3 == 0 { 4.0 } else { 1.0 }))
                .collect();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % values.len()).collect();
            cuts.sort();
            let mut parts = Values::default();
            let mut start = 0;
            for cut in cuts.into_iter().chain([values.len()]) {
                parts.append(Values::from(values[start..cut.max(start)].to_vec()));
                start = cut.max(start);
            }
            proptest::prop_assert_eq!(parts.len(), values.len());
            let qs = [0.0, 0.1, 0.5, 0.9, 0.95, 0.99, 1.0];
            for (q, found) in qs.iter().zip(parts.percentiles(&qs)) {
                let expected = by_sorting(&values, *q);
                proptest::prop_assert_eq!(found.map(f64::to_bits), expected.map(f64::to_bits), "q {}", q);
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
        let summary = Values::from(values).summary().unwrap();
        assert_eq!(summary.count, 6.0);
        assert_eq!(summary.raw_count, 3);
        assert_eq!(summary.sum, 90.0);
        assert_eq!(summary.avg, 15.0);
        assert_eq!((summary.min, summary.max), (10.0, 30.0));
    }

    #[test]
    fn histogram_bins_cover_min_to_max() {
        let values = Values::from(vec![(0.0, 1.0), (5.0, 2.0), (10.0, 1.0)]);
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
        let single = histogram(&Values::from(vec![(3.0, 1.0)]), 3.0, 3.0, 10);
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].count, 1.0);
    }
}
