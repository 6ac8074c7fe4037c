//! The columnar scan behind analytics: for every matching event, its timestamp, its weight
//! (1 / effective sample rate), the values of a few string columns as small integer ids, and
//! optionally one metric — read from the fast columns segment by segment, never from the store.
//!
//! Per document the segment collector only pushes numbers onto vectors (column ordinals, no
//! strings); at harvest each segment resolves the ordinals it saw in one pass over its
//! dictionaries, and the merge re-numbers them into one id space per column.

use std::collections::HashMap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader, TantivyError};

use super::schema::{SAMPLE_RATE, TIMESTAMP};
use crate::model::weight_of_rate;

/// The id of "no value" in a [`ScanColumn`].
pub const NO_VALUE: u32 = u32::MAX;

/// One string column of a scan: an id per scanned event ([`NO_VALUE`] when the event has none)
/// and the value of each id.
#[derive(Debug, Default)]
pub struct ScanColumn {
    pub ids: Vec<u32>,
    pub values: Vec<String>,
}

impl ScanColumn {
    /// The value of `id`, or `None` for [`NO_VALUE`].
    pub fn value(&self, id: u32) -> Option<&str> {
        self.values.get(id as usize).map(String::as_str)
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

/// Collects [`Scanned`] over resolved fast-column names (`platform`, `dims.carrier`) and a
/// metric column (`metrics.stt_latency_ms`).
pub struct Scan {
    pub columns: Vec<String>,
    pub metric: Option<String>,
}

pub struct ScanSegment {
    columns: Vec<Option<StrColumn>>,
    /// Integral and fractional values of the metric live in separate columns.
    metric_i64: Option<Column<i64>>,
    metric_f64: Option<Column<f64>>,
    with_metric: bool,
    timestamps: Column<i64>,
    rates: Option<Column<f64>>,
    out_timestamps: Vec<i64>,
    out_weights: Vec<f64>,
    /// Segment ordinals per column ([`NO_VALUE`] for none).
    out_ords: Vec<Vec<u32>>,
    out_metric: Vec<f64>,
}

/// A segment's part: like [`Scanned`], with ids local to the segment.
type SegmentFruit = Result<Scanned, TantivyError>;

impl Collector for Scan {
    type Fruit = Scanned;
    type Child = ScanSegment;

    fn for_segment(
        &self,
        _segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<ScanSegment> {
        let fast = segment.fast_fields();
        let columns = self
            .columns
            .iter()
            .map(|name| fast.str(name))
            .collect::<tantivy::Result<Vec<_>>>()?;
        let (metric_i64, metric_f64) = match &self.metric {
            Some(name) => (fast.column_opt::<i64>(name)?, fast.column_opt::<f64>(name)?),
            None => (None, None),
        };
        Ok(ScanSegment {
            out_ords: vec![Vec::new(); columns.len()],
            columns,
            metric_i64,
            metric_f64,
            with_metric: self.metric.is_some(),
            timestamps: fast.i64(TIMESTAMP)?,
            rates: fast.column_opt::<f64>(SAMPLE_RATE)?,
            out_timestamps: Vec::new(),
            out_weights: Vec::new(),
            out_metric: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<SegmentFruit>) -> tantivy::Result<Scanned> {
        let mut all = Scanned {
            columns: self.columns.iter().map(|_| ScanColumn::default()).collect(),
            ..Scanned::default()
        };
        let mut interned: Vec<HashMap<String, u32>> = vec![HashMap::new(); self.columns.len()];
        for fruit in fruits {
            let part = fruit?;
            all.timestamps.extend_from_slice(&part.timestamps);
            all.weights.extend_from_slice(&part.weights);
            all.metric.extend_from_slice(&part.metric);
            for ((target, ids), column) in
                all.columns.iter_mut().zip(&mut interned).zip(part.columns)
            {
                let global: Vec<u32> = column
                    .values
                    .into_iter()
                    .map(|value| {
                        let next = target.values.len() as u32;
                        *ids.entry(value).or_insert_with_key(|value| {
                            target.values.push(value.clone());
                            next
                        })
                    })
                    .collect();
                target.ids.extend(
                    column
                        .ids
                        .iter()
                        .map(|id| global.get(*id as usize).copied().unwrap_or(NO_VALUE)),
                );
            }
        }
        Ok(all)
    }
}

impl SegmentCollector for ScanSegment {
    type Fruit = SegmentFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let Some(ts) = self.timestamps.first(doc) else {
            return;
        };
        self.out_timestamps.push(ts);
        let rate = self
            .rates
            .as_ref()
            .and_then(|c| c.first(doc))
            .unwrap_or(1.0);
        self.out_weights.push(weight_of_rate(rate));
        for (column, ords) in self.columns.iter().zip(&mut self.out_ords) {
            let ord = column
                .as_ref()
                .and_then(|c| c.term_ords(doc).next())
                .map_or(NO_VALUE, |ord| u32::try_from(ord).unwrap_or(NO_VALUE));
            ords.push(ord);
        }
        if self.with_metric {
            let value = self
                .metric_i64
                .as_ref()
                .and_then(|c| c.first(doc))
                .map(|v| v as f64)
                .or_else(|| self.metric_f64.as_ref().and_then(|c| c.first(doc)))
                .unwrap_or(f64::NAN);
            self.out_metric.push(value);
        }
    }

    /// Renumbers each column's ordinals densely (0..n in ordinal order) and resolves the
    /// values in one sorted pass over the dictionary.
    fn harvest(self) -> SegmentFruit {
        let mut columns = Vec::with_capacity(self.columns.len());
        for (column, mut ords) in self.columns.into_iter().zip(self.out_ords) {
            let Some(column) = column else {
                columns.push(ScanColumn {
                    ids: ords,
                    values: Vec::new(),
                });
                continue;
            };
            // Which ordinals occur, then their dense numbers in ordinal order: one pass over
            // the documents and one over the dictionary's ordinals, no sorting or hashing.
            let mut dense = vec![NO_VALUE; column.dictionary().num_terms()];
            for ord in &ords {
                if let Some(slot) = dense.get_mut(*ord as usize) {
                    *slot = 0;
                }
            }
            let mut used: Vec<u64> = Vec::new();
            for (ord, slot) in dense.iter_mut().enumerate() {
                if *slot == 0 {
                    *slot = used.len() as u32;
                    used.push(ord as u64);
                }
            }
            for ord in &mut ords {
                *ord = dense.get(*ord as usize).copied().unwrap_or(NO_VALUE);
            }
            let mut values = Vec::with_capacity(used.len());
            column
                .dictionary()
                .sorted_ords_to_term_cb(&used, |bytes| {
                    values.push(String::from_utf8_lossy(bytes).into_owned())
                })
                .map_err(|e| TantivyError::InternalError(e.to_string()))?;
            columns.push(ScanColumn { ids: ords, values });
        }
        Ok(Scanned {
            timestamps: self.out_timestamps,
            weights: self.out_weights,
            columns,
            metric: self.out_metric,
        })
    }
}
