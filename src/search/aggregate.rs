//! Aggregations over matching events, computed from fast fields: counts and distinct installs by
//! country and region (geo), time series stacked by level, and breakdowns by one field.
//!
//! Counts are raw event counts (no sample-rate weighting). Distinct installs are counted on a
//! 64-bit hash of the install id, so they are exact up to hash collisions (negligible below
//! billions of installs). Events without the grouped field are not counted in any group.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use serde::Serialize;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader, TantivyError};

use super::schema::TIMESTAMP;
use crate::model::Level;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionCount {
    pub region: String,
    pub events: u64,
    pub installs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountryCount {
    pub country: String,
    pub events: u64,
    pub installs: u64,
    /// Sorted by events, descending.
    pub regions: Vec<RegionCount>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LevelCounts {
    pub debug: u64,
    pub info: u64,
    pub warn: u64,
    pub error: u64,
    pub fatal: u64,
}

impl LevelCounts {
    fn add(&mut self, counts: &[u64; 5]) {
        self.debug += counts[0];
        self.info += counts[1];
        self.warn += counts[2];
        self.error += counts[3];
        self.fatal += counts[4];
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimeBucket {
    pub start_ms: i64,
    pub total: u64,
    pub by_level: LevelCounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakdownRow {
    pub value: String,
    pub events: u64,
    pub installs: u64,
}

fn hash_str(s: &str) -> u64 {
    // SipHash with fixed zero keys: deterministic across segments and runs.
    let mut hasher = std::hash::DefaultHasher::new();
    s.hash(&mut hasher);
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

/// Per-segment ordinals → install hashes.
fn install_hashes(installs: &StrOrds, ords: &HashSet<u64>) -> Result<HashSet<u64>, TantivyError> {
    ords.iter()
        .map(|ord| installs.text(*ord).map(|s| hash_str(&s)))
        .collect()
}

#[derive(Default)]
pub struct Group {
    events: u64,
    installs: HashSet<u64>,
}

impl Group {
    fn merge(&mut self, other: Group) {
        self.events += other.events;
        if self.installs.len() < other.installs.len() {
            let mine = std::mem::replace(&mut self.installs, other.installs);
            self.installs.extend(mine);
        } else {
            self.installs.extend(other.installs);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Breakdown by one string fast field (also the building block of geo)

/// Groups matches by the value of a string fast column, counting events and distinct installs.
pub struct GroupBy {
    /// Fast column names; a group key is the tuple of their values (docs missing any are skipped).
    pub columns: Vec<String>,
    pub install_column: String,
}

pub struct GroupBySegment {
    columns: Vec<StrOrds>,
    installs: StrOrds,
    groups: HashMap<Vec<u64>, (u64, HashSet<u64>)>,
    key: Vec<u64>,
}

type GroupFruit = Result<HashMap<Vec<String>, Group>, TantivyError>;

impl Collector for GroupBy {
    type Fruit = HashMap<Vec<String>, Group>;
    type Child = GroupBySegment;

    fn for_segment(
        &self,
        _segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<GroupBySegment> {
        let columns = self
            .columns
            .iter()
            .map(|c| StrOrds::open(segment, c))
            .collect::<tantivy::Result<Vec<_>>>()?;
        Ok(GroupBySegment {
            key: Vec::with_capacity(columns.len()),
            columns,
            installs: StrOrds::open(segment, &self.install_column)?,
            groups: HashMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<GroupFruit>) -> tantivy::Result<Self::Fruit> {
        let mut all: HashMap<Vec<String>, Group> = HashMap::new();
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
        self.key.clear();
        for column in &self.columns {
            match column.ord(doc) {
                Some(ord) => self.key.push(ord),
                None => return,
            }
        }
        let install = self.installs.ord(doc);
        let entry = match self.groups.get_mut(&self.key) {
            Some(entry) => entry,
            None => self.groups.entry(self.key.clone()).or_default(),
        };
        entry.0 += 1;
        if let Some(install) = install {
            entry.1.insert(install);
        }
    }

    fn harvest(self) -> GroupFruit {
        let mut out = HashMap::with_capacity(self.groups.len());
        for (ords, (events, installs)) in self.groups {
            let key = ords
                .iter()
                .zip(&self.columns)
                .map(|(ord, column)| column.text(*ord))
                .collect::<Result<Vec<_>, _>>()?;
            let installs = install_hashes(&self.installs, &installs)?;
            out.entry(key)
                .or_insert_with(Group::default)
                .merge(Group { events, installs });
        }
        Ok(out)
    }
}

fn sort_rows(rows: &mut [BreakdownRow]) {
    rows.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.value.cmp(&b.value)));
}

/// Turns grouped counts on one column into breakdown rows, sorted by events descending.
pub fn breakdown_rows(groups: HashMap<Vec<String>, Group>, limit: usize) -> Vec<BreakdownRow> {
    let mut rows: Vec<BreakdownRow> = groups
        .into_iter()
        .map(|(mut key, group)| BreakdownRow {
            value: key.pop().unwrap_or_default(),
            events: group.events,
            installs: group.installs.len() as u64,
        })
        .collect();
    sort_rows(&mut rows);
    rows.truncate(limit);
    rows
}

/// Combines (country) and (country, region) groups into the geo answer.
pub fn geo_rows(
    countries: HashMap<Vec<String>, Group>,
    regions: HashMap<Vec<String>, Group>,
) -> Vec<CountryCount> {
    let mut by_country: BTreeMap<String, Vec<RegionCount>> = BTreeMap::new();
    for (key, group) in regions {
        if let [country, region] = key.as_slice() {
            by_country
                .entry(country.clone())
                .or_default()
                .push(RegionCount {
                    region: region.clone(),
                    events: group.events,
                    installs: group.installs.len() as u64,
                });
        }
    }
    let mut out: Vec<CountryCount> = countries
        .into_iter()
        .map(|(mut key, group)| {
            let country = key.pop().unwrap_or_default();
            let mut regions = by_country.remove(&country).unwrap_or_default();
            regions.sort_by(|a, b| {
                b.events
                    .cmp(&a.events)
                    .then_with(|| a.region.cmp(&b.region))
            });
            CountryCount {
                country,
                events: group.events,
                installs: group.installs.len() as u64,
                regions,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.events
            .cmp(&a.events)
            .then_with(|| a.country.cmp(&b.country))
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
    buckets: HashMap<i64, [u64; 5]>,
}

impl Collector for LevelSeries {
    type Fruit = BTreeMap<i64, [u64; 5]>;
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
            buckets: HashMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<HashMap<i64, [u64; 5]>>) -> tantivy::Result<Self::Fruit> {
        let mut all: BTreeMap<i64, [u64; 5]> = BTreeMap::new();
        for fruit in fruits {
            for (start, counts) in fruit {
                let slot = all.entry(start).or_insert([0; 5]);
                for (a, b) in slot.iter_mut().zip(counts) {
                    *a += b;
                }
            }
        }
        Ok(all)
    }
}

impl SegmentCollector for LevelSeriesSegment {
    type Fruit = HashMap<i64, [u64; 5]>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let Some(ts) = self.timestamps.first(doc) else {
            return;
        };
        let start = ts.div_euclid(self.bucket_ms) * self.bucket_ms;
        let level = self
            .levels
            .ord(doc)
            .and_then(|ord| self.level_of_ord.get(ord as usize).copied())
            .unwrap_or(1);
        self.buckets.entry(start).or_insert([0; 5])[level] += 1;
    }

    fn harvest(self) -> HashMap<i64, [u64; 5]> {
        self.buckets
    }
}

/// Every bucket from `first` to `last` (bucket starts, inclusive), zero buckets included.
pub fn series_rows(
    counts: &BTreeMap<i64, [u64; 5]>,
    first: i64,
    last: i64,
    bucket_ms: i64,
) -> Vec<TimeBucket> {
    let mut out = Vec::new();
    let mut start = first;
    while start <= last {
        let mut by_level = LevelCounts::default();
        if let Some(c) = counts.get(&start) {
            by_level.add(c);
        }
        out.push(TimeBucket {
            start_ms: start,
            total: counts.get(&start).map_or(0, |c| c.iter().sum()),
            by_level,
        });
        match start.checked_add(bucket_ms) {
            Some(next) => start = next,
            None => break,
        }
    }
    out
}
