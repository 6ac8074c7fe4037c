//! The columnar scan behind analytics: for every matching event, its timestamp, its weight
//! (1 / effective sample rate), the values of a few string columns as small integer ids, and
//! optionally one metric — read from the fast columns segment by segment, never from the store.
//!
//! Per block of documents the segment collector reads each column in one call and pushes
//! numbers onto vectors: string values become global ids through the segment's table
//! ([`super::ordinals`]), so no strings are touched and the merge only concatenates.

use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Cardinality, Column, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

use super::ordinals::{Dictionary, SegmentTables};
use super::schema::{SAMPLE_RATE, TIMESTAMP};
use crate::model::weight_of_rate;

/// The id of "no value" in a [`ScanColumn`].
pub const NO_VALUE: u32 = u32::MAX;

/// One string column of a scan: a global id per scanned event ([`NO_VALUE`] when the event has
/// none) and the column's dictionary. Scans of the same column whose dictionaries have the same
/// generation share their ids.
#[derive(Debug, Default)]
pub struct ScanColumn {
    pub ids: Vec<u32>,
    pub dictionary: Arc<Dictionary>,
}

impl ScanColumn {
    /// The value of `id`, or `None` for [`NO_VALUE`].
    pub fn value(&self, id: u32) -> Option<&str> {
        self.dictionary.value(id)
    }
}

/// What a scan returns, one entry per matching event in every vector (in no particular order).
#[derive(Debug, Default)]
pub struct Scanned {
    pub timestamps: Vec<i64>,
    /// 1 / the event's effective sample rate (1 for a rate that is missing or not in (0, 1]).
    pub weights: Vec<f64>,
    /// In the order the columns were asked for.
    pub columns: Vec<ScanColumn>,
    /// The metric's value per event, NaN where the event lacks it (empty without a metric).
    pub metric: Vec<f64>,
}

impl Scanned {
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }
}

/// Collects [`Scanned`]: per string column its dictionary and per-segment columns and tables,
/// and a metric column (`metrics.stt_latency_ms`).
pub struct Scan {
    pub columns: Vec<ScanSource>,
    pub metric: Option<String>,
    /// Only documents with `from_ms <= timestamp < to_ms` (the query skips whole segments
    /// only).
    pub from_ms: i64,
    pub to_ms: i64,
}

/// A string column to scan, with its global ordinals.
pub struct ScanSource {
    pub dictionary: Arc<Dictionary>,
    pub tables: SegmentTables,
}

pub struct ScanSegment {
    /// Per column: the segment's column and its ordinal → global id table.
    columns: Vec<Option<(StrColumn, Arc<[u32]>)>>,
    /// Integral and fractional values of the metric live in separate columns.
    metric_i64: Option<Column<i64>>,
    metric_f64: Option<Column<f64>>,
    with_metric: bool,
    timestamps: Column<i64>,
    from_ms: i64,
    to_ms: i64,
    rates: Rates,
    out: Scanned,
    /// Reused per block.
    kept_docs: Vec<DocId>,
    kept_timestamps: Vec<i64>,
    block_i64: Vec<Option<i64>>,
    block_f64: Vec<Option<f64>>,
    block_u64: Vec<Option<u64>>,
}

impl Collector for Scan {
    type Fruit = Scanned;
    type Child = ScanSegment;

    fn for_segment(
        &self,
        segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<ScanSegment> {
        let fast = segment.fast_fields();
        let columns = self
            .columns
            .iter()
            .map(|source| {
                source
                    .tables
                    .get(segment_local_id as usize)
                    .cloned()
                    .flatten()
            })
            .collect();
        let (metric_i64, metric_f64) = match &self.metric {
            Some(name) => (fast.column_opt::<i64>(name)?, fast.column_opt::<f64>(name)?),
            None => (None, None),
        };
        Ok(ScanSegment {
            out: Scanned {
                columns: self
                    .columns
                    .iter()
                    .map(|source| ScanColumn {
                        ids: Vec::new(),
                        dictionary: source.dictionary.clone(),
                    })
                    .collect(),
                ..Scanned::default()
            },
            columns,
            metric_i64,
            metric_f64,
            with_metric: self.metric.is_some(),
            timestamps: fast.i64(TIMESTAMP)?,
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            rates: Rates::of(fast.column_opt::<f64>(SAMPLE_RATE)?),
            kept_docs: Vec::new(),
            kept_timestamps: Vec::new(),
            block_i64: Vec::new(),
            block_f64: Vec::new(),
            block_u64: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<tantivy::Result<Scanned>>) -> tantivy::Result<Scanned> {
        let parts = fruits.into_iter().collect::<tantivy::Result<Vec<_>>>()?;
        let total: usize = parts.iter().map(Scanned::len).sum();
        let with_metric = self.metric.is_some();
        let mut all = Scanned {
            timestamps: Vec::with_capacity(total),
            weights: Vec::with_capacity(total),
            columns: self
                .columns
                .iter()
                .map(|source| ScanColumn {
                    ids: Vec::with_capacity(total),
                    dictionary: source.dictionary.clone(),
                })
                .collect(),
            metric: Vec::with_capacity(if with_metric { total } else { 0 }),
        };
        for part in parts {
            all.timestamps.extend_from_slice(&part.timestamps);
            all.weights.extend_from_slice(&part.weights);
            all.metric.extend_from_slice(&part.metric);
            for (target, column) in all.columns.iter_mut().zip(&part.columns) {
                target.ids.extend_from_slice(&column.ids);
            }
        }
        Ok(all)
    }
}

impl ScanSegment {
    fn in_range(&self, ts: i64) -> bool {
        self.from_ms <= ts && ts < self.to_ms
    }

    /// Adds the documents `docs` (in range, with these timestamps), each column read once for
    /// all of them.
    fn rows(&mut self, docs: &[DocId], timestamps: &[i64]) {
        let n = docs.len();
        self.out.timestamps.extend_from_slice(timestamps);
        let mut floats = std::mem::take(&mut self.block_f64);
        match &self.rates {
            Rates::Column(rates) => {
                fill(&mut floats, n);
                rates.first_vals(docs, &mut floats);
                self.out
                    .weights
                    .extend(floats.iter().map(|r| weight_of_rate(r.unwrap_or(1.0))));
            }
            Rates::Same(weight) => self.out.weights.extend(std::iter::repeat_n(*weight, n)),
        }
        let mut ords = std::mem::take(&mut self.block_u64);
        for (column, out) in self.columns.iter().zip(&mut self.out.columns) {
            match column {
                Some((column, table)) => {
                    fill(&mut ords, n);
                    column.ords().first_vals(docs, &mut ords);
                    out.ids
                        .extend(ords.iter().map(|ord| global_id(table, *ord)));
                }
                None => out.ids.extend(std::iter::repeat_n(NO_VALUE, n)),
            }
        }
        if self.with_metric {
            let mut integers = std::mem::take(&mut self.block_i64);
            fill(&mut integers, n);
            if let Some(column) = &self.metric_i64 {
                column.first_vals(docs, &mut integers);
            }
            fill(&mut floats, n);
            if let Some(column) = &self.metric_f64 {
                column.first_vals(docs, &mut floats);
            }
            self.out.metric.extend(
                integers
                    .iter()
                    .zip(&floats)
                    .map(|(i, f)| metric_value(*i, *f)),
            );
            self.block_i64 = integers;
        }
        self.block_f64 = floats;
        self.block_u64 = ords;
    }
}

/// A segment's sample rates: one for every document (no column, or one value in a full
/// column: the usual unsampled segment) as its weight, or per document.
enum Rates {
    Same(f64),
    Column(Column<f64>),
}

impl Rates {
    fn of(column: Option<Column<f64>>) -> Rates {
        match column {
            None => Rates::Same(1.0),
            Some(c)
                if c.get_cardinality() == Cardinality::Full && c.min_value() == c.max_value() =>
            {
                Rates::Same(weight_of_rate(c.min_value()))
            }
            Some(c) => Rates::Column(c),
        }
    }
}

/// The global id of a segment ordinal.
fn global_id(table: &[u32], ord: Option<u64>) -> u32 {
    ord.and_then(|ord| table.get(ord as usize).copied())
        .unwrap_or(NO_VALUE)
}

/// A metric's value from its integral or fractional column, NaN for none.
fn metric_value(integral: Option<i64>, fractional: Option<f64>) -> f64 {
    integral
        .map(|v| v as f64)
        .or(fractional)
        .unwrap_or(f64::NAN)
}

impl SegmentCollector for ScanSegment {
    type Fruit = tantivy::Result<Scanned>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.collect_block(&[doc]);
    }

    /// Reads the block's timestamps, keeps the documents in range, then reads each other
    /// column once for all of them.
    fn collect_block(&mut self, docs: &[DocId]) {
        let mut timestamps = std::mem::take(&mut self.block_i64);
        fill(&mut timestamps, docs.len());
        self.timestamps.first_vals(docs, &mut timestamps);
        let mut kept_docs = std::mem::take(&mut self.kept_docs);
        let mut kept_timestamps = std::mem::take(&mut self.kept_timestamps);
        kept_docs.clear();
        kept_timestamps.clear();
        // Documents without a timestamp (none are written so) are skipped too.
        for (doc, ts) in docs.iter().zip(&timestamps) {
            if let Some(ts) = ts.filter(|ts| self.in_range(*ts)) {
                kept_docs.push(*doc);
                kept_timestamps.push(ts);
            }
        }
        self.block_i64 = timestamps;
        self.rows(&kept_docs, &kept_timestamps);
        self.kept_docs = kept_docs;
        self.kept_timestamps = kept_timestamps;
    }

    fn harvest(self) -> Self::Fruit {
        Ok(self.out)
    }
}

/// `buffer` as `n` Nones (`first_vals` leaves a document without a value untouched).
fn fill<T>(buffer: &mut Vec<Option<T>>, n: usize) {
    buffer.clear();
    buffer.resize_with(n, || None);
}
