//! The columnar scan behind analytics: for every matching event, its timestamp, its weight
//! (1 / effective sample rate), the values of a few string columns as small integer ids, and
//! optionally one metric — read from the fast columns, never from the store.
//!
//! Segments are cut into pieces run on the scan threads ([`pieces`]). Per block of matching
//! documents a piece reads each column once — from the decoded arrays ([`super::decoded`])
//! where kept, else from the fast columns, string values becoming global ids through the
//! segment's table ([`super::ordinals`]) — and hands the rows to a [`Fold`]. [`Scanned`] keeps
//! every row; analytics folds aggregate them on the scan's threads instead.

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use tantivy::columnar::{Cardinality, Column, StrColumn};
use tantivy::query::Weight;
use tantivy::{DocId, DocSet, Searcher, SegmentOrdinal, SegmentReader, COLLECT_BLOCK_BUFFER_LEN};

use super::decoded::{Decoded, Timestamps};
use super::ordinals::{Dictionary, SegmentTables};
use super::schema::{SAMPLE_RATE, TIMESTAMP};
use crate::model::weight_of_rate;

/// The id of "no value" in a [`ScanColumn`].
pub const NO_VALUE: u32 = u32::MAX;

/// One string column of a scan: a global id per scanned event ([`NO_VALUE`] when the event has
/// none) and the column's dictionary. Scans of the same column whose dictionaries have the same
/// generation share their ids.
#[derive(Debug, Default, Clone)]
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
#[derive(Debug, Default, Clone)]
pub struct Scanned {
    pub timestamps: Vec<i64>,
    /// 1 / the event's effective sample rate (1 for a rate that is missing or not in (0, 1]).
    pub weights: Vec<f64>,
    /// Whether some weight is other than 1 (the figures are estimates).
    pub weighted: bool,
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

impl Scanned {
    /// An empty scan of columns with these dictionaries (the fold [`super::Index::scan`]
    /// starts from).
    pub fn of(dictionaries: &[Arc<Dictionary>]) -> Scanned {
        Scanned {
            columns: dictionaries
                .iter()
                .map(|dictionary| ScanColumn {
                    ids: Vec::new(),
                    dictionary: dictionary.clone(),
                })
                .collect(),
            ..Scanned::default()
        }
    }

    /// The parts of a scan as one.
    pub fn concat(parts: Vec<Scanned>) -> Scanned {
        let mut parts = parts.into_iter();
        let Some(mut all) = parts.next() else {
            return Scanned::default();
        };
        let rest: Vec<Scanned> = parts.collect();
        let more = rest.iter().map(Scanned::len).sum();
        all.timestamps.reserve_exact(more);
        all.weights.reserve_exact(more);
        if rest.iter().any(|part| !part.metric.is_empty()) {
            all.metric.reserve_exact(more);
        }
        for column in &mut all.columns {
            column.ids.reserve_exact(more);
        }
        for part in rest {
            all.timestamps.extend_from_slice(&part.timestamps);
            all.weights.extend_from_slice(&part.weights);
            all.weighted |= part.weighted;
            all.metric.extend_from_slice(&part.metric);
            for (target, column) in all.columns.iter_mut().zip(&part.columns) {
                target.ids.extend_from_slice(&column.ids);
            }
        }
        all
    }
}

/// A block of scanned rows: every slice has one entry per row (`metric` is empty when the
/// scan has no metric). A block of consecutive documents borrows them from the decoded arrays.
pub struct Rows<'a> {
    pub timestamps: Stamps<'a>,
    /// 1 / the event's effective sample rate (1 for a rate that is missing or not in (0, 1]).
    pub weights: &'a [f64],
    /// Whether some weight is other than 1 (the figures are estimates).
    pub weighted: bool,
    /// Per scanned column, in the order asked for: the rows' global ids ([`NO_VALUE`] for none).
    pub columns: &'a [&'a [u32]],
    /// NaN where the event lacks the metric.
    pub metric: &'a [f64],
}

/// A block's timestamps: as they are, or as offsets from a base (as decoded segments keep
/// them).
#[derive(Debug, Clone, Copy)]
pub enum Stamps<'a> {
    Whole(&'a [i64]),
    Offsets(i64, &'a [u32]),
}

impl Stamps<'_> {
    pub fn len(&self) -> usize {
        match self {
            Stamps::Whole(whole) => whole.len(),
            Stamps::Offsets(_, offsets) => offsets.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `f(timestamp)` for each row to `out`.
    #[inline]
    pub fn map_into<T>(self, out: &mut Vec<T>, f: impl Fn(i64) -> T) {
        match self {
            Stamps::Whole(whole) => out.extend(whole.iter().map(|ts| f(*ts))),
            Stamps::Offsets(base, offsets) => {
                out.extend(offsets.iter().map(|offset| f(base + i64::from(*offset))))
            }
        }
    }

    /// Whether every timestamp satisfies `f`.
    fn all(self, f: impl Fn(i64) -> bool) -> bool {
        match self {
            Stamps::Whole(whole) => whole.iter().all(|ts| f(*ts)),
            Stamps::Offsets(base, offsets) => {
                offsets.iter().all(|offset| f(base + i64::from(*offset)))
            }
        }
    }
}

/// What a scan does with the rows it reads. Every scan thread folds into its own copy of the
/// scan's starting fold (segments on one thread share it); the caller merges the copies.
pub trait Fold: Clone + Send + Sync + 'static {
    fn rows(&mut self, rows: &Rows<'_>);
}

/// Keeps every row.
impl Fold for Scanned {
    fn rows(&mut self, rows: &Rows<'_>) {
        rows.timestamps.map_into(&mut self.timestamps, |ts| ts);
        self.weights.extend_from_slice(rows.weights);
        self.weighted |= rows.weighted;
        self.metric.extend_from_slice(rows.metric);
        for (column, ids) in self.columns.iter_mut().zip(rows.columns) {
            column.ids.extend_from_slice(ids);
        }
    }
}

/// Reads per string column its per-segment columns and tables, and a metric column
/// (`metrics.stt_latency_ms`), over pieces of segments into copies of `start`.
pub struct Scan<'a, F> {
    pub columns: Vec<Source>,
    /// Decoded timestamps and ids, where kept.
    pub decoded: &'a Decoded,
    pub metric: Option<String>,
    /// Only documents with `from_ms <= timestamp < to_ms` (the query skips whole segments
    /// only).
    pub from_ms: i64,
    pub to_ms: i64,
    pub start: F,
    /// The folds of threads that finished a piece, for the next piece to continue.
    pub folds: Mutex<Vec<F>>,
}

/// A string column to scan: its name, its dictionary's generation and its segments' tables.
pub struct Source {
    pub name: String,
    pub generation: u64,
    pub tables: SegmentTables,
}

/// A segment's global ids of a column: decoded per document, or its column and ordinal → id
/// table.
enum Ids {
    Decoded(Arc<[u32]>),
    Column(StrColumn, Arc<[u32]>),
}

/// A segment's values of the scan's metric: none asked for, decoded per document (NaN for
/// none), or its integral and fractional columns (a metric's values live in either).
enum Metric {
    None,
    Decoded(Arc<[f64]>),
    Columns(Option<Column<i64>>, Option<Column<f64>>),
}

/// A segment's timestamps: decoded per document, or its column.
enum Times {
    Decoded(Timestamps),
    Column(Column<i64>),
}

pub struct ScanSegment<F: Fold> {
    /// Per column: its ids, `None` where the segment lacks the column.
    columns: Vec<Option<Ids>>,
    metric: Metric,
    timestamps: Times,
    from_ms: i64,
    to_ms: i64,
    /// Whether every timestamp of the segment is in range (none then checked).
    all_in_range: bool,
    rates: Rates,
    fold: F,
    /// Reused per block.
    block: Block,
}

/// The buffers a segment reads a block into, where its rows are not borrowed.
#[derive(Default)]
struct Block {
    /// The documents in range, when some of the block's are not.
    docs: Vec<DocId>,
    timestamps: Vec<i64>,
    /// With one rate for the whole segment, always that rate's weight (only resized).
    weights: Vec<f64>,
    columns: Vec<Vec<u32>>,
    metric: Vec<f64>,
    read_i64: Vec<Option<i64>>,
    read_f64: Vec<Option<f64>>,
    read_u64: Vec<Option<u64>>,
}

impl<F: Fold> Scan<'_, F> {
    /// Folds the documents of `docs` (a range of the segment's) that `weight` matches and that
    /// are not deleted, in blocks.
    pub fn collect_piece(
        &self,
        weight: &dyn Weight,
        ordinal: SegmentOrdinal,
        segment: &SegmentReader,
        docs: Range<DocId>,
    ) -> tantivy::Result<()> {
        let fold = self
            .folds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| self.start.clone());
        let mut collector = self.segment(ordinal, segment, fold)?;
        let mut scorer = weight.scorer(segment, 1.0)?;
        if scorer.doc() < docs.start {
            scorer.seek(docs.start);
        }
        let alive = segment.alive_bitset();
        let mut found = [0; COLLECT_BLOCK_BUFFER_LEN];
        // The scorer hands over a few dozen documents at a time; the fold gets them in larger
        // blocks, so that its per-block work is spread over more rows.
        let mut kept = Vec::with_capacity(FOLD_BLOCK + COLLECT_BLOCK_BUFFER_LEN);
        loop {
            let n = scorer.fill_buffer(&mut found);
            let within = found[..n].partition_point(|doc| *doc < docs.end);
            match alive {
                None => kept.extend_from_slice(&found[..within]),
                Some(alive) => {
                    kept.extend(found[..within].iter().filter(|doc| alive.is_alive(**doc)))
                }
            }
            let done = within < found.len();
            if kept.len() >= FOLD_BLOCK || (done && !kept.is_empty()) {
                collector.collect_block(&kept);
                kept.clear();
            }
            if done {
                break;
            }
        }
        self.folds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(collector.fold);
        Ok(())
    }

    /// The folds the pieces left (at least one).
    pub fn into_folds(self) -> Vec<F> {
        let mut folds = self
            .folds
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        if folds.is_empty() {
            folds.push(self.start);
        }
        folds
    }
}

/// Documents a fold gets at once (at most this and one scorer buffer more).
const FOLD_BLOCK: usize = 1024;

/// The fewest documents of a piece of a segment (a few in unit tests, so that their small
/// segments are cut too).
const MIN_PIECE: u64 = if cfg!(test) { 16 } else { 1 << 16 };

/// Every segment's documents as ranges of at most an equal share of all documents per scan
/// thread and a quarter (at least [`MIN_PIECE`]), largest first: a large segment no longer
/// keeps one thread busy while the others are done.
pub fn pieces(searcher: &Searcher, threads: usize) -> Vec<(SegmentOrdinal, Range<DocId>)> {
    let readers = searcher.segment_readers();
    let total: u64 = readers.iter().map(|r| u64::from(r.max_doc())).sum();
    let size = (total / (threads.max(1) as u64 * 4)).clamp(MIN_PIECE, u64::from(u32::MAX)) as u32;
    let mut pieces = Vec::new();
    for (ordinal, reader) in readers.iter().enumerate() {
        let mut start = 0;
        while start < reader.max_doc() {
            let end = start.saturating_add(size).min(reader.max_doc());
            pieces.push((ordinal as SegmentOrdinal, start..end));
            start = end;
        }
    }
    pieces.sort_by_key(|(_, docs)| std::cmp::Reverse(docs.len()));
    pieces
}

impl<F: Fold> Scan<'_, F> {
    /// The columns of one segment, read into `fold`.
    fn segment(
        &self,
        segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
        fold: F,
    ) -> tantivy::Result<ScanSegment<F>> {
        let fast = segment.fast_fields();
        let (id, docs) = (segment.segment_id(), segment.max_doc());
        let columns = self
            .columns
            .iter()
            .map(|source| {
                let (column, table) = source
                    .tables
                    .get(segment_local_id as usize)
                    .cloned()
                    .flatten()?;
                let decoded =
                    self.decoded
                        .ids(id, &source.name, source.generation, &column, &table, docs);
                Some(match decoded {
                    Some(ids) => Ids::Decoded(ids),
                    None => Ids::Column(column, table),
                })
            })
            .collect();
        let timestamps = fast.i64(TIMESTAMP)?;
        let all_in_range =
            self.from_ms <= timestamps.min_value() && timestamps.max_value() < self.to_ms;
        let timestamps = match self.decoded.timestamps(id, &timestamps, docs) {
            Some(decoded) => Times::Decoded(decoded),
            None => Times::Column(timestamps),
        };
        let metric = match &self.metric {
            Some(name) => {
                let (integral, fractional) =
                    (fast.column_opt::<i64>(name)?, fast.column_opt::<f64>(name)?);
                match self
                    .decoded
                    .metric(id, name, integral.as_ref(), fractional.as_ref(), docs)
                {
                    Some(decoded) => Metric::Decoded(decoded),
                    None => Metric::Columns(integral, fractional),
                }
            }
            None => Metric::None,
        };
        Ok(ScanSegment {
            columns,
            metric,
            timestamps,
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            all_in_range,
            rates: Rates::of(fast.column_opt::<f64>(SAMPLE_RATE)?),
            fold,
            block: Block {
                columns: vec![Vec::new(); self.columns.len()],
                ..Block::default()
            },
        })
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
pub(super) fn global_id(table: &[u32], ord: Option<u64>) -> u32 {
    ord.and_then(|ord| table.get(ord as usize).copied())
        .unwrap_or(NO_VALUE)
}

/// A metric's value from its integral or fractional column, NaN for none.
pub(super) fn metric_value(integral: Option<i64>, fractional: Option<f64>) -> f64 {
    integral
        .map(|v| v as f64)
        .or(fractional)
        .unwrap_or(f64::NAN)
}

impl<F: Fold> ScanSegment<F> {
    /// Reads the block's timestamps, keeps the documents in range, reads each other column
    /// once for all of them and folds the rows. A run of consecutive documents all in range
    /// (the usual block) is read in place from the decoded arrays.
    fn collect_block(&mut self, docs: &[DocId]) {
        let Block {
            docs: kept,
            timestamps,
            weights,
            columns,
            metric,
            read_i64,
            read_f64,
            read_u64,
        } = &mut self.block;
        let (from, to) = (self.from_ms, self.to_ms);
        let in_range = |ts: i64| from <= ts && ts < to;
        let run = match &self.timestamps {
            Times::Decoded(decoded) => contiguous(docs)
                .filter(|run| self.all_in_range || decoded.run(run.clone()).all(in_range)),
            Times::Column(_) => None,
        };
        let (docs, times): (&[DocId], Stamps) = match (&self.timestamps, &run) {
            (Times::Decoded(decoded), Some(run)) => (docs, decoded.run(run.clone())),
            (Times::Decoded(decoded), None) => {
                kept.clear();
                timestamps.clear();
                for doc in docs {
                    let ts = decoded.at(*doc as usize);
                    if in_range(ts) {
                        kept.push(*doc);
                        timestamps.push(ts);
                    }
                }
                (kept, Stamps::Whole(timestamps))
            }
            (Times::Column(column), _) => {
                fill(read_i64, docs.len());
                column.first_vals(docs, read_i64);
                kept.clear();
                timestamps.clear();
                // Documents without a timestamp (none are written so) are skipped.
                for (doc, ts) in docs.iter().zip(read_i64.iter()) {
                    if let Some(ts) = ts.filter(|ts| in_range(*ts)) {
                        kept.push(*doc);
                        timestamps.push(ts);
                    }
                }
                (kept, Stamps::Whole(timestamps))
            }
        };
        let n = docs.len();
        if n == 0 {
            return;
        }
        let weighted = match &self.rates {
            Rates::Column(rates) => {
                fill(read_f64, n);
                rates.first_vals(docs, read_f64);
                weights.clear();
                weights.extend(read_f64.iter().map(|r| weight_of_rate(r.unwrap_or(1.0))));
                weights.iter().any(|w| *w != 1.0)
            }
            Rates::Same(weight) => {
                weights.resize(n, *weight);
                *weight != 1.0
            }
        };
        let ids: Vec<&[u32]> = self
            .columns
            .iter()
            .zip(columns.iter_mut())
            .map(|(column, buffer)| -> &[u32] {
                match column {
                    Some(Ids::Decoded(decoded)) => gather(decoded, &run, docs, buffer),
                    Some(Ids::Column(column, table)) => {
                        fill(read_u64, n);
                        column.ords().first_vals(docs, read_u64);
                        buffer.clear();
                        buffer.extend(read_u64.iter().map(|ord| global_id(table, *ord)));
                        buffer
                    }
                    None => {
                        buffer.clear();
                        buffer.resize(n, NO_VALUE);
                        buffer
                    }
                }
            })
            .collect();
        let values: &[f64] = match &self.metric {
            Metric::None => &[],
            Metric::Decoded(decoded) => gather(decoded, &run, docs, metric),
            Metric::Columns(integral, fractional) => {
                fill(read_i64, n);
                if let Some(column) = integral {
                    column.first_vals(docs, read_i64);
                }
                fill(read_f64, n);
                if let Some(column) = fractional {
                    column.first_vals(docs, read_f64);
                }
                metric.clear();
                metric.extend(
                    read_i64
                        .iter()
                        .zip(read_f64.iter())
                        .map(|(i, f)| metric_value(*i, *f)),
                );
                metric
            }
        };
        self.fold.rows(&Rows {
            timestamps: times,
            weights,
            weighted,
            columns: &ids,
            metric: values,
        });
    }
}

/// The values of `docs` in a decoded array: in place when they are the consecutive `run`,
/// else gathered into `out`.
fn gather<'a, T: Copy>(
    decoded: &'a [T],
    run: &Option<Range<usize>>,
    docs: &[DocId],
    out: &'a mut Vec<T>,
) -> &'a [T] {
    if let Some(run) = run {
        return &decoded[run.clone()];
    }
    out.clear();
    out.extend(docs.iter().map(|doc| decoded[*doc as usize]));
    out
}

/// The document range `docs` covers when it is one run of consecutive documents.
fn contiguous(docs: &[DocId]) -> Option<Range<usize>> {
    let (first, last) = (*docs.first()? as usize, *docs.last()? as usize);
    (last.checked_sub(first)? + 1 == docs.len()).then_some(first..last + 1)
}

/// `buffer` as `n` Nones (`first_vals` leaves a document without a value untouched).
fn fill<T>(buffer: &mut Vec<Option<T>>, n: usize) {
    buffer.clear();
    buffer.resize_with(n, || None);
}
