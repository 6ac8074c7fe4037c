//! Aggregations over matching events, computed from fast fields: counts and distinct installs by
//! country and region (geo), time series stacked by level, and breakdowns by one field.
//!
//! Event counts are weighted: each event stands for 1 / its effective sample rate (the
//! `sample_rate` fast column), rounded to whole events in the answers; `raw_events` is the stored
//! count and `estimated` says the two differ. Distinct installs are counted on a 64-bit hash of
//! the install id, so they are exact up to hash collisions (negligible below billions of
//! installs), and are not weighted. Events without the grouped field are not counted in any
//! group.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use serde::Serialize;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader, TantivyError};

use super::schema::{SAMPLE_RATE, TIMESTAMP};
use crate::model::{weight_of_rate, Level};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RegionCount {
    pub region_code: String,
    /// Weighted (estimated) events.
    pub events: u64,
    pub raw_events: u64,
    pub installs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CountryCount {
    pub country_code: String,
    /// Weighted (estimated) events.
    pub events: u64,
    pub raw_events: u64,
    pub installs: u64,
    /// Sorted by events, descending.
    pub regions: Vec<RegionCount>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LevelCounts {
    pub debug: u64,
    pub info: u64,
    pub warn: u64,
    pub error: u64,
    pub fatal: u64,
}

impl LevelCounts {
    fn from_weighted(counts: &[f64; 5]) -> LevelCounts {
        LevelCounts {
            debug: rounded(counts[0]),
            info: rounded(counts[1]),
            warn: rounded(counts[2]),
            error: rounded(counts[3]),
            fatal: rounded(counts[4]),
        }
    }
}

/// A weighted count as whole events.
fn rounded(weighted: f64) -> u64 {
    weighted.round().max(0.0) as u64
}

/// The weight of `doc`: 1 / its sample rate (1 without the column).
fn weight(rates: &Option<Column<f64>>, doc: DocId) -> f64 {
    weight_of_rate(rates.as_ref().and_then(|c| c.first(doc)).unwrap_or(1.0))
}

fn open_rates(segment: &SegmentReader) -> tantivy::Result<Option<Column<f64>>> {
    segment.fast_fields().column_opt::<f64>(SAMPLE_RATE)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TimeBucket {
    pub start_ms: i64,
    /// Weighted (estimated) events.
    pub total: u64,
    /// Stored events.
    pub raw_total: u64,
    /// Weighted, per level.
    pub by_level: LevelCounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BreakdownRow {
    pub value: String,
    /// Weighted (estimated) events.
    pub events: u64,
    pub raw_events: u64,
    pub installs: u64,
}

fn hash_bytes(bytes: &[u8]) -> u64 {
    // SipHash with fixed zero keys: deterministic across segments and runs.
    let mut hasher = std::hash::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

fn internal(err: impl std::fmt::Display) -> TantivyError {
    TantivyError::InternalError(err.to_string())
}

/// A string fast column with a per-segment cache of ordinal → resolved value.
struct StrOrds {
    column: Option<StrColumn>,
}

impl StrOrds {
    fn open(segment: &SegmentReader, name: &str) -> tantivy::Result<StrOrds> {
        Ok(StrOrds {
            column: segment.fast_fields().str(name)?,
        })
    }

    fn ord(&self, doc: DocId) -> Option<u64> {
        self.column.as_ref()?.term_ords(doc).next()
    }

    fn text(&self, ord: u64) -> Result<String, TantivyError> {
        let mut out = String::new();
        if let Some(column) = &self.column {
            column.ord_to_str(ord, &mut out).map_err(internal)?;
        }
        Ok(out)
    }
}

/// A fast, non-cryptographic hasher for integer keys (FxHash's mixing step): the per-document
/// hash-table work dominates aggregation time and SipHash is several times slower here.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

/// Resolves ordinals of a string column in one sequential pass over its dictionary.
fn resolve_ords<T>(
    column: &StrOrds,
    mut ords: Vec<u64>,
    mut convert: impl FnMut(&[u8]) -> T,
) -> Result<FastMap<u64, T>, TantivyError> {
    let Some(column) = &column.column else {
        return Ok(FastMap::default());
    };
    ords.sort_unstable();
    ords.dedup();
    let mut values = Vec::with_capacity(ords.len());
    column
        .dictionary()
        .sorted_ords_to_term_cb(&ords, |bytes| values.push(convert(bytes)))
        .map_err(internal)?;
    Ok(ords.into_iter().zip(values).collect())
}

/// Events and distinct installs (as hashes of the install id) of one group.
#[derive(Default)]
pub struct Group {
    events: u64,
    weighted: f64,
    installs: FastSet<u64>,
}

impl Group {
    fn merge(&mut self, other: Group) {
        self.events += other.events;
        self.weighted += other.weighted;
        if self.installs.len() < other.installs.len() {
            let mine = std::mem::replace(&mut self.installs, other.installs);
            self.installs.extend(mine);
        } else {
            self.installs.extend(other.installs);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Grouping by one or two string fast fields (breakdowns and geo)

/// Ordinal standing for "no value" in the second key column.
const MISSING: u64 = u32::MAX as u64;

/// Groups matches by the value of `column` (and optionally of `sub_column`), counting events
/// and distinct installs. Documents without a `column` value are skipped; a missing
/// `sub_column` value groups under the empty string.
pub struct GroupBy {
    pub column: String,
    pub sub_column: Option<String>,
    pub install_column: String,
}

pub struct GroupBySegment {
    column: StrOrds,
    sub_column: Option<StrOrds>,
    installs: StrOrds,
    rates: Option<Column<f64>>,
    /// Packed key (ord << 32 | sub ord) → (events, weighted events).
    events: FastMap<u64, (u64, f64)>,
    /// (packed key, install ord) pairs.
    pairs: FastSet<(u64, u64)>,
}

/// Group key (value, sub value or "") → counts.
pub type Groups = HashMap<(String, String), Group>;
type GroupFruit = Result<Groups, TantivyError>;

impl Collector for GroupBy {
    type Fruit = Groups;
    type Child = GroupBySegment;

    fn for_segment(
        &self,
        _segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<GroupBySegment> {
        Ok(GroupBySegment {
            column: StrOrds::open(segment, &self.column)?,
            sub_column: self
                .sub_column
                .as_deref()
                .map(|c| StrOrds::open(segment, c))
                .transpose()?,
            installs: StrOrds::open(segment, &self.install_column)?,
            rates: open_rates(segment)?,
            events: FastMap::default(),
            pairs: FastSet::default(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<GroupFruit>) -> tantivy::Result<Groups> {
        let mut all = Groups::new();
        for fruit in fruits {
            for (key, group) in fruit? {
                all.entry(key).or_default().merge(group);
            }
        }
        Ok(all)
    }
}

impl SegmentCollector for GroupBySegment {
    type Fruit = GroupFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let Some(ord) = self.column.ord(doc) else {
            return;
        };
        let sub = match &self.sub_column {
            Some(column) => column.ord(doc).unwrap_or(MISSING),
            None => MISSING,
        };
        let key = (ord << 32) | sub;
        let counts = self.events.entry(key).or_insert((0, 0.0));
        counts.0 += 1;
        counts.1 += weight(&self.rates, doc);
        if let Some(install) = self.installs.ord(doc) {
            self.pairs.insert((key, install));
        }
    }

    fn harvest(self) -> GroupFruit {
        let install_hash = resolve_ords(
            &self.installs,
            self.pairs.iter().map(|(_, install)| *install).collect(),
            hash_bytes,
        )?;
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let values = resolve_ords(
            &self.column,
            self.events.keys().map(|key| key >> 32).collect(),
            text,
        )?;
        let sub_values = match &self.sub_column {
            Some(column) => resolve_ords(
                column,
                self.events
                    .keys()
                    .map(|key| key & MISSING)
                    .filter(|ord| *ord != MISSING)
                    .collect(),
                text,
            )?,
            None => FastMap::default(),
        };
        let mut by_key: FastMap<u64, Group> = self
            .events
            .into_iter()
            .map(|(key, (events, weighted))| {
                (
                    key,
                    Group {
                        events,
                        weighted,
                        installs: FastSet::default(),
                    },
                )
            })
            .collect();
        for (key, install) in self.pairs {
            if let (Some(group), Some(hash)) = (by_key.get_mut(&key), install_hash.get(&install)) {
                group.installs.insert(*hash);
            }
        }
        let mut out = Groups::with_capacity(by_key.len());
        for (key, group) in by_key {
            let value = values.get(&(key >> 32)).cloned().unwrap_or_default();
            let sub = sub_values
                .get(&(key & MISSING))
                .cloned()
                .unwrap_or_default();
            out.entry((value, sub)).or_default().merge(group);
        }
        Ok(out)
    }
}

/// The label small groups are folded under.
pub const OTHER: &str = "other";

/// k-anonymity: folds every group with fewer than `min_installs` distinct installs (0 = none)
/// into one `other` group (by the first key part; with `by_region`, regions are folded within
/// their country and whole countries under `other`). Returns the groups and how many were folded.
pub fn fold_small_groups(groups: Groups, min_installs: u32, by_region: bool) -> (Groups, usize) {
    if min_installs == 0 {
        return (groups, 0);
    }
    let min = min_installs as usize;
    let mut folded = 0;
    let mut out = Groups::with_capacity(groups.len());
    // Whole first-level values (countries) below the bound go first.
    let mut first_level: HashMap<String, FastSet<u64>> = HashMap::new();
    for ((value, _), group) in &groups {
        first_level
            .entry(value.clone())
            .or_default()
            .extend(group.installs.iter().copied());
    }
    let small_values: HashSet<&String> = first_level
        .iter()
        .filter(|(_, installs)| installs.len() < min)
        .map(|(value, _)| value)
        .collect();
    folded += small_values.len();
    let mut small_regions: HashSet<(String, String)> = HashSet::new();
    for ((value, sub), group) in groups {
        let key = if small_values.contains(&value) {
            (OTHER.to_string(), String::new())
        } else if by_region && !sub.is_empty() && group.installs.len() < min {
            small_regions.insert((value.clone(), sub));
            (value, OTHER.to_string())
        } else {
            (value, sub)
        };
        out.entry(key).or_default().merge(group);
    }
    (out, folded + small_regions.len())
}

fn sort_rows(rows: &mut [BreakdownRow]) {
    rows.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.value.cmp(&b.value)));
}

/// Turns groups on one column into breakdown rows, sorted by events descending.
pub fn breakdown_rows(groups: Groups, limit: usize) -> Vec<BreakdownRow> {
    let mut rows: Vec<BreakdownRow> = groups
        .into_iter()
        .map(|((value, _), group)| BreakdownRow {
            value,
            events: rounded(group.weighted),
            raw_events: group.events,
            installs: group.installs.len() as u64,
        })
        .collect();
    sort_rows(&mut rows);
    rows.truncate(limit);
    rows
}

/// Turns (country, region) groups into the geo answer: countries sorted by events descending,
/// each with its regions (also by events); country installs are the union over its regions.
pub fn geo_rows(groups: Groups) -> Vec<CountryCount> {
    let mut countries: BTreeMap<String, (Group, Vec<RegionCount>)> = BTreeMap::new();
    for ((country, region), group) in groups {
        let entry = countries.entry(country).or_default();
        if !region.is_empty() {
            entry.1.push(RegionCount {
                region_code: region,
                events: rounded(group.weighted),
                raw_events: group.events,
                installs: group.installs.len() as u64,
            });
        }
        entry.0.merge(group);
    }
    let mut out: Vec<CountryCount> = countries
        .into_iter()
        .map(|(country, (group, mut regions))| {
            regions.sort_by(|a, b| {
                b.events
                    .cmp(&a.events)
                    .then_with(|| a.region_code.cmp(&b.region_code))
            });
            CountryCount {
                country_code: country,
                events: rounded(group.weighted),
                raw_events: group.events,
                installs: group.installs.len() as u64,
                regions,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.events
            .cmp(&a.events)
            .then_with(|| a.country_code.cmp(&b.country_code))
    });
    out
}

// ---------------------------------------------------------------------------------------------
// Time series stacked by level

/// Counts matches per epoch-aligned bucket of `bucket_ms` and per level.
pub struct LevelSeries {
    pub bucket_ms: i64,
    pub level_column: String,
}

pub struct LevelSeriesSegment {
    bucket_ms: i64,
    timestamps: Column<i64>,
    levels: StrOrds,
    /// Level ordinal in this segment → index in `Level::ALL`.
    level_of_ord: Vec<usize>,
    rates: Option<Column<f64>>,
    buckets: HashMap<i64, BucketCounts>,
}

/// One bucket's stored events and weighted events per level.
#[derive(Debug, Clone, Copy, Default)]
pub struct BucketCounts {
    pub raw: u64,
    pub weighted: [f64; 5],
}

impl Collector for LevelSeries {
    type Fruit = BTreeMap<i64, BucketCounts>;
    type Child = LevelSeriesSegment;

    fn for_segment(
        &self,
        _segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<LevelSeriesSegment> {
        let levels = StrOrds::open(segment, &self.level_column)?;
        let mut level_of_ord = Vec::new();
        if let Some(column) = &levels.column {
            for ord in 0..column.num_terms() as u64 {
                let text = levels.text(ord)?;
                let index = Level::parse(&text)
                    .and_then(|l| Level::ALL.iter().position(|x| *x == l))
                    .unwrap_or(1);
                level_of_ord.push(index);
            }
        }
        Ok(LevelSeriesSegment {
            bucket_ms: self.bucket_ms,
            timestamps: segment.fast_fields().i64(TIMESTAMP)?,
            levels,
            level_of_ord,
            rates: open_rates(segment)?,
            buckets: HashMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(
        &self,
        fruits: Vec<HashMap<i64, BucketCounts>>,
    ) -> tantivy::Result<Self::Fruit> {
        let mut all: BTreeMap<i64, BucketCounts> = BTreeMap::new();
        for fruit in fruits {
            for (start, counts) in fruit {
                let slot = all.entry(start).or_default();
                slot.raw += counts.raw;
                for (a, b) in slot.weighted.iter_mut().zip(counts.weighted) {
                    *a += b;
                }
            }
        }
        Ok(all)
    }
}

impl SegmentCollector for LevelSeriesSegment {
    type Fruit = HashMap<i64, BucketCounts>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let Some(ts) = self.timestamps.first(doc) else {
            return;
        };
        let start = crate::timespan::bucket_start(ts, self.bucket_ms);
        let level = self
            .levels
            .ord(doc)
            .and_then(|ord| self.level_of_ord.get(ord as usize).copied())
            .unwrap_or(1);
        let counts = self.buckets.entry(start).or_default();
        counts.raw += 1;
        counts.weighted[level] += weight(&self.rates, doc);
    }

    fn harvest(self) -> HashMap<i64, BucketCounts> {
        self.buckets
    }
}

/// Every bucket from `first` to `last` (bucket starts, inclusive), zero buckets included.
pub fn series_rows(
    counts: &BTreeMap<i64, BucketCounts>,
    first: i64,
    last: i64,
    bucket_ms: i64,
) -> Vec<TimeBucket> {
    let mut out = Vec::new();
    let mut start = first;
    while start <= last {
        let bucket = counts.get(&start).copied().unwrap_or_default();
        out.push(TimeBucket {
            start_ms: start,
            total: rounded(bucket.weighted.iter().sum()),
            raw_total: bucket.raw,
            by_level: LevelCounts::from_weighted(&bucket.weighted),
        });
        match start.checked_add(bucket_ms) {
            Some(next) => start = next,
            None => break,
        }
    }
    out
}
