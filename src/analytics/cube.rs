//! Events folded by group and time bucket on the scan's own threads, so that no scanned row is
//! kept: per cell (group × bucket) the weighted and stored events, the metric's weighted values
//! and the distinct ids of one column; per group its distinct installs. Trend and distribution
//! answer from a cube: which groups are shown, and what each shown group (or "other") holds.

use rustc_hash::FxHashMap;
use std::sync::Arc;

use super::distinct::Distinct;
use super::groups::{label, select, Candidate, Selection, OTHER};
use super::stats::Values;
use crate::search::{Dictionary, Fold, Rows, NO_VALUE};

/// Above this many (value, value) combinations, group keys are numbered through a map.
const MAX_KEY_TABLE: usize = 1 << 22;

/// A row in no cell (outside the buckets, or without the metric a cube needs).
const NO_CELL: usize = usize::MAX;

/// How a cube cuts and what it keeps. Its scan's columns are the install id first, then the
/// counted column (if any), then the group columns.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The first bucket's start and the buckets' width; `None`: one bucket for everything.
    pub buckets: Option<(i64, i64)>,
    pub bucket_count: usize,
    /// The column whose distinct values each cell counts (sessions, users, installs).
    pub distinct: Option<usize>,
    /// The first group column.
    pub first_group: usize,
    /// Whether cells keep the metric's (value, weight) pairs.
    pub values: bool,
    /// Whether rows without the metric are left out altogether.
    pub only_with_metric: bool,
}

/// One group in one bucket. While every row a cube folded weighed 1, only `raw` is kept up to
/// date (see [`Cube::settle`]); the cells a cube hands out carry their weight.
#[derive(Debug, Default, Clone)]
pub struct Cell {
    pub weight: f64,
    pub raw: u64,
    pub values: Values,
}

impl Cell {
    fn add(&mut self, other: Cell) {
        self.weight += other.weight;
        self.raw += other.raw;
        self.values.append(other.values);
    }
}

/// Group keys (up to two columns' ids, [`NO_VALUE`] where a row has none) → their numbers.
#[derive(Clone)]
enum Numbers {
    /// Indexed by the first id × `width` + the second ("no value" is a column's last slot).
    Table {
        width: usize,
        sizes: [usize; 2],
        table: Vec<u32>,
    },
    Map(FxHashMap<[u32; 2], u32>),
}

#[derive(Clone)]
pub struct Cube {
    shape: Shape,
    dictionaries: Vec<Arc<Dictionary>>,
    numbers: Numbers,
    /// Per key number, the key.
    keys: Vec<[u32; 2]>,
    /// Per key number × bucket count + bucket.
    cells: Vec<Cell>,
    /// Distinct installs per key number.
    installs: Distinct,
    /// Distinct ids of the counted column per cell.
    distinct: Distinct,
    /// Whether some row weighs other than 1 (the figures are estimates). Until then the
    /// cells' weights are their `raw` counts and are not added up row by row.
    pub weighted: bool,
    bucket_of: BucketOf,
    /// Per row of a block, its key number and its cell ([`NO_CELL`]: none); reused.
    row_keys: Vec<usize>,
    row_cells: Vec<usize>,
}

/// The groups an answer shows (see [`super::groups::select`]): per output slot (the shown
/// groups, then "other" if any) the key numbers in it and their distinct installs.
pub struct Grouping {
    pub selection: Selection<[u32; 2]>,
    pub keys_of_slot: Vec<Vec<usize>>,
    pub installs: Vec<u64>,
}

impl Cube {
    /// An empty cube over a scan's columns.
    pub fn new(shape: Shape, dictionaries: &[Arc<Dictionary>]) -> Cube {
        let size = |column: usize| {
            dictionaries
                .get(shape.first_group + column)
                .map_or(1, |d| d.len() + 1)
        };
        let sizes = [size(0), size(1)];
        let numbers = match sizes[0].checked_mul(sizes[1]) {
            Some(n) if n <= MAX_KEY_TABLE => Numbers::Table {
                width: sizes[1],
                sizes,
                table: vec![NO_VALUE; n],
            },
            _ => Numbers::Map(FxHashMap::default()),
        };
        let ids = |column: Option<usize>| {
            column
                .and_then(|c| dictionaries.get(c))
                .map_or(0, |d| d.len())
        };
        Cube {
            bucket_of: BucketOf::new(shape.buckets, shape.bucket_count),
            installs: Distinct::new(0, ids(Some(0))),
            distinct: Distinct::new(0, ids(shape.distinct)),
            shape,
            dictionaries: dictionaries.to_vec(),
            numbers,
            keys: Vec::new(),
            cells: Vec::new(),
            weighted: false,
            row_keys: Vec::new(),
            row_cells: Vec::new(),
        }
    }

    /// The number of `key`, numbering it (with empty cells) when new.
    #[inline(always)]
    fn number(&mut self, key: [u32; 2]) -> usize {
        let next = self.keys.len() as u32;
        let entry = match &mut self.numbers {
            Numbers::Table {
                width,
                sizes,
                table,
            } => {
                let slot = |id: u32, size: usize| {
                    if id == NO_VALUE {
                        size - 1
                    } else {
                        (id as usize).min(size - 1)
                    }
                };
                &mut table[slot(key[0], sizes[0]) * *width + slot(key[1], sizes[1])]
            }
            Numbers::Map(map) => map.entry(key).or_insert(NO_VALUE),
        };
        if *entry != NO_VALUE {
            return *entry as usize;
        }
        *entry = next;
        self.new_key(key);
        next as usize
    }

    #[cold]
    fn new_key(&mut self, key: [u32; 2]) {
        self.keys.push(key);
        let buckets = self.shape.bucket_count;
        self.cells
            .resize(self.keys.len() * buckets, Cell::default());
        self.installs.grow(self.keys.len());
        if self.shape.distinct.is_some() {
            self.distinct.grow(self.keys.len() * buckets);
        }
    }

    /// Gives each cell the weight of its rows when all of them weighed 1 (their count).
    fn settle(&mut self) {
        if !self.weighted {
            for cell in &mut self.cells {
                cell.weight = cell.raw as f64;
            }
        }
    }

    /// A cell's weighted events.
    fn weight(&self, cell: &Cell) -> f64 {
        match self.weighted {
            true => cell.weight,
            false => cell.raw as f64,
        }
    }

    /// The parts a scan folded into, as one.
    pub fn merge(parts: Vec<Cube>) -> Cube {
        let mut parts = parts.into_iter().map(|mut part| {
            part.settle();
            part
        });
        let mut all = parts.next().expect("a fold yields at least one part");
        let buckets = all.shape.bucket_count;
        for mut part in parts {
            let into: Vec<usize> = part.keys.iter().map(|key| all.number(*key)).collect();
            for (from, to) in into.iter().enumerate() {
                for bucket in 0..buckets {
                    let cell = std::mem::take(&mut part.cells[from * buckets + bucket]);
                    all.cells[to * buckets + bucket].add(cell);
                }
            }
            all.installs.absorb(&part.installs, |key| into[key]);
            all.distinct.absorb(&part.distinct, |cell| {
                into[cell / buckets] * buckets + cell % buckets
            });
            all.weighted |= part.weighted;
        }
        all
    }

    /// The shown groups: the `limit` heaviest (weighted events over all buckets) of those with
    /// at least `min_installs` distinct installs; the rest fold into "other".
    pub fn group(&self, limit: usize, min_installs: u32) -> Grouping {
        let buckets = self.shape.bucket_count;
        let candidates = self
            .keys
            .iter()
            .enumerate()
            .map(|(n, key)| Candidate {
                key: *key,
                weight: self.cells[n * buckets..(n + 1) * buckets]
                    .iter()
                    .map(|c| self.weight(c))
                    .sum(),
                installs: self.installs.count(n) as usize,
            })
            .collect();
        let selection = select(candidates, limit, min_installs);
        let mut keys_of_slot = vec![Vec::new(); selection.slots()];
        for (n, key) in self.keys.iter().enumerate() {
            keys_of_slot[selection.slot(key)].push(n);
        }
        let installs = keys_of_slot
            .iter()
            .map(|keys| match keys[..] {
                [key] => self.installs.count(key),
                _ => self.installs.count_union(keys.iter().copied()),
            })
            .collect();
        Grouping {
            selection,
            keys_of_slot,
            installs,
        }
    }

    /// The cell of `keys` (one group's, or the keys folded into "other") in `bucket`, moved
    /// out of the cube (each is read once).
    pub fn take(&mut self, keys: &[usize], bucket: usize) -> Cell {
        let buckets = self.shape.bucket_count;
        let mut keys = keys.iter();
        let mut cell = keys
            .next()
            .map(|key| std::mem::take(&mut self.cells[key * buckets + bucket]))
            .unwrap_or_default();
        for key in keys {
            cell.add(std::mem::take(&mut self.cells[key * buckets + bucket]));
        }
        cell.weight = self.weight(&cell);
        cell
    }

    /// Distinct ids of the counted column in `keys`' cells of `bucket`.
    pub fn distinct(&self, keys: &[usize], bucket: usize) -> u64 {
        let buckets = self.shape.bucket_count;
        match keys {
            [key] => self.distinct.count(key * buckets + bucket),
            _ => self
                .distinct
                .count_union(keys.iter().map(|key| key * buckets + bucket)),
        }
    }

    /// The labels of output slot `slot`: one per group column, or `["other"]`.
    pub fn labels(&self, grouping: &Grouping, slot: usize) -> Vec<String> {
        match grouping.selection.kept.get(slot) {
            Some(key) => self.dictionaries[self.shape.first_group..]
                .iter()
                .enumerate()
                .map(|(n, dictionary)| label(dictionary.value(key[n])))
                .collect(),
            None => vec![OTHER.to_string()],
        }
    }
}

impl Fold for Cube {
    /// In passes over the block: each row's group key number, then its cell (or none), then
    /// the cells' sums, the groups' installs, the cells' distinct ids and the metric's values.
    fn rows(&mut self, rows: &Rows<'_>) {
        // The shape's fields as locals: no reference count touched per block.
        let Shape {
            bucket_count: buckets,
            distinct,
            first_group,
            values,
            only_with_metric,
            ..
        } = self.shape;
        let n = rows.timestamps.len();
        if rows.weighted && !self.weighted {
            self.settle();
            self.weighted = true;
        }
        let weighted = self.weighted;
        let kept = |i: usize| !only_with_metric || !rows.metric[i].is_nan();
        let mut keys = std::mem::take(&mut self.row_keys);
        keys.clear();
        match (
            rows.columns.get(first_group),
            rows.columns.get(first_group + 1),
        ) {
            (None, _) if !only_with_metric => {
                let key = self.number([NO_VALUE; 2]);
                keys.resize(n, key);
            }
            (first, second) => {
                for i in 0..n {
                    keys.push(match kept(i) {
                        true => self.number([
                            first.map_or(NO_VALUE, |ids| ids[i]),
                            second.map_or(NO_VALUE, |ids| ids[i]),
                        ]),
                        false => NO_CELL,
                    });
                }
            }
        }
        let mut cells = std::mem::take(&mut self.row_cells);
        cells.clear();
        let bucket_of = &self.bucket_of;
        rows.timestamps.map_into(&mut cells, |ts| bucket_of.of(ts));
        for (cell, key) in cells.iter_mut().zip(&keys) {
            *cell = match (*key, *cell) {
                (NO_CELL, _) | (_, NO_CELL) => NO_CELL,
                (key, bucket) => key * buckets + bucket,
            };
        }
        for (at, weight) in cells.iter().zip(rows.weights) {
            if let Some(cell) = self.cells.get_mut(*at) {
                cell.raw += 1;
                if weighted {
                    cell.weight += weight;
                }
            }
        }
        self.installs.insert_each(
            keys.iter()
                .zip(&cells)
                .zip(rows.columns[0])
                .filter(|((_, at), _)| **at != NO_CELL)
                .map(|((key, _), install)| (*key, *install)),
        );
        if let Some(column) = distinct {
            self.distinct.insert_each(
                cells
                    .iter()
                    .zip(rows.columns[column])
                    .filter(|(at, _)| **at != NO_CELL)
                    .map(|(at, id)| (*at, *id)),
            );
        }
        if values {
            for ((at, value), weight) in cells.iter().zip(rows.metric).zip(rows.weights) {
                if let (Some(cell), false) = (self.cells.get_mut(*at), value.is_nan()) {
                    cell.values.push(*value, *weight);
                }
            }
        }
        self.row_keys = keys;
        self.row_cells = cells;
    }
}

/// The bucket of a timestamp without a division (which costs more than the rest of a row): the
/// offset's high bits index a table of the bucket that starts that stretch and where the next
/// one starts. A stretch (2^shift ≤ width) holds at most one bucket edge.
#[derive(Debug, Clone)]
struct BucketOf {
    first: i64,
    shift: u32,
    /// Per stretch: its first offset's bucket and the offset the next bucket starts at.
    stretches: Vec<(usize, u64)>,
    /// The offset past the last bucket.
    end: i64,
    /// One bucket for every timestamp.
    single: bool,
}

impl BucketOf {
    /// `count` buckets of `width` from `first`; `None`: one bucket for everything.
    fn new(buckets: Option<(i64, i64)>, count: usize) -> BucketOf {
        let Some((first, width)) = buckets.filter(|(_, width)| *width > 0) else {
            return BucketOf {
                first: i64::MIN,
                shift: 63,
                stretches: vec![(0, u64::MAX)],
                end: i64::MAX,
                single: true,
            };
        };
        let shift = 63 - width.leading_zeros();
        let end = width.saturating_mul(count as i64);
        let stretches = (0..=(end >> shift))
            .map(|n| {
                let bucket = (n << shift) / width;
                (bucket as usize, (bucket + 1).saturating_mul(width) as u64)
            })
            .collect();
        BucketOf {
            first,
            shift,
            stretches,
            end,
            single: false,
        }
    }

    /// The bucket of `ts`, [`NO_CELL`] outside the buckets.
    #[inline]
    fn of(&self, ts: i64) -> usize {
        if self.single {
            return 0;
        }
        // Before `first` wraps to far beyond `end`.
        let offset = ts.wrapping_sub(self.first) as u64;
        if offset >= self.end as u64 {
            return NO_CELL;
        }
        let (bucket, next) = self.stretches[(offset >> self.shift) as usize];
        bucket + usize::from(offset >= next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::Stamps;

    /// A row: timestamp, weight, install, counted id, two group ids (`NO_VALUE` allowed) and
    /// a metric (NaN for none).
    type Row = (i64, f64, u32, u32, u32, u32, f64);

    fn fold(cube: &mut Cube, rows: &[Row]) {
        let column = |f: fn(&Row) -> u32| rows.iter().map(f).collect::<Vec<u32>>();
        let columns = [
            column(|r| r.2),
            column(|r| r.3),
            column(|r| r.4),
            column(|r| r.5),
        ];
        let columns: Vec<&[u32]> = columns.iter().map(Vec::as_slice).collect();
        let timestamps: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let weights: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let metric: Vec<f64> = rows.iter().map(|r| r.6).collect();
        cube.rows(&Rows {
            timestamps: Stamps::Whole(&timestamps),
            weights: &weights,
            weighted: weights.iter().any(|w| *w != 1.0),
            columns: &columns,
            metric: &metric,
        });
    }

    /// Per key: per bucket (weight, raw, sorted values, distinct), and the key's installs.
    type Seen = Vec<([u32; 2], Vec<(f64, u64, Vec<(f64, f64)>, u64)>, u64)>;

    fn seen(cube: &Cube) -> Seen {
        let mut out: Seen = (0..cube.keys.len())
            .map(|n| {
                let cells = (0..cube.shape.bucket_count)
                    .map(|b| {
                        let cell = cube.clone().take(&[n], b);
                        let mut values: Vec<(f64, f64)> = cell.values.iter().copied().collect();
                        values.sort_by(|x, y| x.partial_cmp(y).unwrap());
                        (cell.weight, cell.raw, values, cube.distinct(&[n], b))
                    })
                    .collect();
                (cube.keys[n], cells, cube.installs.count(n))
            })
            .collect();
        out.sort_by_key(|(key, ..)| *key);
        out
    }

    proptest::proptest! {
        /// The multiplied bucket is the divided one.
        #[test]
        fn buckets_by_inverse_are_exact(
            first in -1_000_000_000_000i64..2_000_000_000_000,
            width in proptest::sample::select(vec![1i64, 7, 1000, 60_000, 3_600_000, 86_400_000, 604_800_000]),
            offset in -10_000_000i64..100_000_000_000,
            count in 1usize..1000,
        ) {
            let of = |buckets: &BucketOf, ts: i64| Some(buckets.of(ts)).filter(|b| *b != NO_CELL);
            proptest::prop_assert_eq!(of(&BucketOf::new(None, 1), first + offset), Some(0));
            let buckets = BucketOf::new(Some((first, width)), count);
            let expected = (offset >= 0)
                .then(|| (offset / width) as usize)
                .filter(|b| *b < count);
            proptest::prop_assert_eq!(of(&buckets, first + offset), expected);
            // Bucket edges exactly.
            for b in [0, count - 1, count] {
                let edge = first + b as i64 * width;
                proptest::prop_assert_eq!(of(&buckets, edge), (b < count).then_some(b));
                proptest::prop_assert_eq!(of(&buckets, edge - 1), b.checked_sub(1));
            }
        }

        /// Rows folded into parts and merged give what folding them all into one cube gives,
        /// with keys numbered by table or (large dictionaries) by map.
        #[test]
        fn merged_parts_equal_one_fold(
            rows in proptest::collection::vec(
                (
                    -5i64..40,
                    proptest::sample::select(vec![1.0, 4.0]),
                    0u32..30,
                    0u32..8,
                    proptest::sample::select(vec![0u32, 1, 2, NO_VALUE]),
                    proptest::sample::select(vec![0u32, 5, 2999, NO_VALUE]),
                    proptest::option::of(0u32..100),
                ),
                0..300,
            ),
            split in 0usize..300,
            cut in 0usize..300,
            large in proptest::bool::ANY,
            unit in proptest::bool::ANY,
        ) {
            // Every row weighing 1 (only counts kept), or a mix.
            let rows: Vec<Row> = rows
                .into_iter()
                .map(|(t, w, i, d, a, b, m)| {
                    (t * 10, if unit { 1.0 } else { w }, i, d, a, b, m.map_or(f64::NAN, f64::from))
                })
                .collect();
            let values = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>();
            let dictionary = |n: usize| {
                let values = values(n);
                Arc::new(Dictionary::of(1, &values.iter().map(String::as_str).collect::<Vec<_>>()))
            };
            let groups = if large { 3000 } else { 3 };
            let dictionaries = [dictionary(30), dictionary(8), dictionary(groups), dictionary(3000)];
            let start = Cube::new(
                Shape {
                    buckets: Some((0, 100)),
                    bucket_count: 3,
                    distinct: Some(1),
                    first_group: 2,
                    values: true,
                    only_with_metric: false,
                },
                &dictionaries,
            );
            proptest::prop_assert_eq!(matches!(start.numbers, Numbers::Map(_)), large);
            let mut whole = start.clone();
            fold(&mut whole, &rows);
            // One cube given the rows in two blocks (the second may bring the first weight
            // other than 1).
            let mut blocks = start.clone();
            let (first, second) = rows.split_at(cut.min(rows.len()));
            fold(&mut blocks, first);
            fold(&mut blocks, second);
            proptest::prop_assert_eq!(seen(&blocks), seen(&whole));
            let (left, right) = rows.split_at(split.min(rows.len()));
            let (mut a, mut b) = (start.clone(), start.clone());
            fold(&mut a, left);
            fold(&mut b, right);
            let merged = Cube::merge(vec![a, b, start]);
            proptest::prop_assert_eq!(seen(&merged), seen(&whole));
            proptest::prop_assert_eq!(merged.weighted, whole.weighted);
            // Rows before the first bucket or past the last are left out.
            let kept = rows.iter().filter(|r| (0..300).contains(&r.0)).count() as u64;
            let raw: u64 = seen(&whole).iter().flat_map(|(_, cells, _)| cells.iter().map(|c| c.1)).sum();
            proptest::prop_assert_eq!(raw, kept);
        }
    }
}
