//! Time ranges as index queries. A fast-field range on its own is a scan of the timestamp
//! column from the first document, however narrow the range, and as the cheapest-looking
//! clause it leads every intersection it is in. So a range is covered by whole days and whole
//! hours (`time_day`/`time_hour` terms: posting lists that intersect cheaply with the rest of a
//! query) and, at its ends, by an hour's posting list filtered on the exact timestamp, one
//! candidate at a time.
//!
//! Per segment, the range is first checked against the segment's own time span: a segment
//! wholly inside it matches every document (no posting lists read at all), one wholly outside
//! matches none.

use std::ops::Bound;

use tantivy::columnar::Cardinality;
use tantivy::columnar::Column;
use tantivy::query::{
    AllQuery, AllScorer, BooleanQuery, EmptyQuery, EmptyScorer, EnableScoring, Explanation, Occur,
    Query, RangeQuery, Scorer, TermQuery, Weight,
};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, DocSet, Score, SegmentReader, Term, TERMINATED};

use super::schema::{IndexFields, TIMESTAMP};
use crate::timespan::{DAY_MS, HOUR_MS};

/// A range covered by more pieces than this is matched by the fast-field range alone.
const MAX_PIECES: usize = 512;

/// Matches documents with `from <= timestamp < to` (either end open), given the index's own
/// time span `bounds` (inclusive; `None` when it is empty).
pub fn time_range_query(
    fields: &IndexFields,
    from: Option<i64>,
    to: Option<i64>,
    bounds: Option<(i64, i64)>,
) -> Box<dyn Query> {
    let Some((min_ts, max_ts)) = bounds else {
        return Box::new(EmptyQuery);
    };
    let end = max_ts.saturating_add(1);
    let lo = from.map_or(min_ts, |from| from.max(min_ts));
    let hi = to.map_or(end, |to| to.min(end));
    if lo >= hi {
        return Box::new(EmptyQuery);
    }
    if lo == min_ts && hi == end {
        return Box::new(AllQuery);
    }
    let inner: Box<dyn Query> = match pieces(fields, lo, hi) {
        Some(mut pieces) if pieces.len() == 1 => pieces.remove(0),
        Some(pieces) => Box::new(BooleanQuery::new(
            pieces.into_iter().map(|p| (Occur::Should, p)).collect(),
        )),
        None => Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_i64(fields.timestamp, lo)),
            Bound::Excluded(Term::from_field_i64(fields.timestamp, hi)),
        )),
    };
    Box::new(InTime {
        inner,
        lo,
        hi,
        check: Check::Segments,
    })
}

/// Every document of the segments whose time span meets `[from, to)` (either end open): the
/// time range of a scan that checks each document's timestamp itself.
pub fn segments_in_range(from: Option<i64>, to: Option<i64>) -> Box<dyn Query> {
    Box::new(InTime {
        inner: Box::new(AllQuery),
        lo: from.unwrap_or(i64::MIN),
        hi: to.unwrap_or(i64::MAX),
        check: Check::Segments,
    })
}

/// `[lo, hi)` as whole days, whole hours and filtered partial hours, or `None` past
/// [`MAX_PIECES`].
fn pieces(fields: &IndexFields, lo: i64, hi: i64) -> Option<Vec<Box<dyn Query>>> {
    let whole = |t: i64, unit: i64| t.rem_euclid(unit) == 0 && t.saturating_add(unit) <= hi;
    let term = |field, value: i64| -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_i64(field, value),
            IndexRecordOption::Basic,
        ))
    };
    let mut pieces: Vec<Box<dyn Query>> = Vec::new();
    let mut t = lo;
    while t < hi {
        if pieces.len() == MAX_PIECES {
            return None;
        }
        let hour = term(fields.time_hour, t.div_euclid(HOUR_MS));
        if whole(t, DAY_MS) {
            pieces.push(term(fields.time_day, t.div_euclid(DAY_MS)));
            t += DAY_MS;
        } else if whole(t, HOUR_MS) {
            pieces.push(hour);
            t += HOUR_MS;
        } else {
            let end = (t.div_euclid(HOUR_MS) + 1).saturating_mul(HOUR_MS).min(hi);
            pieces.push(Box::new(InTime {
                inner: hour,
                lo: t,
                hi: end,
                check: Check::Documents,
            }));
            t = end;
        }
    }
    Some(pieces)
}

/// `inner` limited to the documents with `lo <= timestamp < hi`, checked as `check` says.
#[derive(Debug)]
struct InTime {
    inner: Box<dyn Query>,
    lo: i64,
    hi: i64,
    check: Check,
}

#[derive(Debug, Clone, Copy)]
enum Check {
    /// Per segment: one wholly outside the range matches nothing, one wholly inside every
    /// document, any other what `inner` matches (`inner` is already the range, or the
    /// collector checks each timestamp).
    Segments,
    /// Each candidate of `inner`, on the timestamp column.
    Documents,
}

impl Clone for InTime {
    fn clone(&self) -> Self {
        InTime {
            inner: self.inner.box_clone(),
            ..*self
        }
    }
}

impl Query for InTime {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(InTimeWeight {
            inner: self.inner.weight(scoring)?,
            lo: self.lo,
            hi: self.hi,
            check: self.check,
        }))
    }
}

struct InTimeWeight {
    inner: Box<dyn Weight>,
    lo: i64,
    hi: i64,
    check: Check,
}

impl Weight for InTimeWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let timestamps = reader.fast_fields().i64(TIMESTAMP)?;
        match self.check {
            Check::Segments => {
                if timestamps.values.num_vals() == 0 {
                    return Ok(Box::new(EmptyScorer));
                }
                let (min, max) = (timestamps.min_value(), timestamps.max_value());
                if max < self.lo || min >= self.hi {
                    return Ok(Box::new(EmptyScorer));
                }
                // Every document has one timestamp (a full column), all of them in range.
                let full = timestamps.get_cardinality() == Cardinality::Full;
                if full && self.lo <= min && max < self.hi {
                    return Ok(Box::new(AllScorer::new(reader.max_doc())));
                }
                self.inner.scorer(reader, boost)
            }
            Check::Documents => {
                let mut scorer = TimeFilterScorer {
                    inner: self.inner.scorer(reader, boost)?,
                    timestamps,
                    lo: self.lo,
                    hi: self.hi,
                };
                scorer.settle();
                Ok(Box::new(scorer))
            }
        }
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) == doc {
            Ok(Explanation::new("timestamp in range", 1.0))
        } else {
            Err(tantivy::TantivyError::InvalidArgument(format!(
                "document {doc} is not in the time range"
            )))
        }
    }
}

struct TimeFilterScorer {
    inner: Box<dyn Scorer>,
    timestamps: Column<i64>,
    lo: i64,
    hi: i64,
}

impl TimeFilterScorer {
    /// Moves on from the current candidate to the first one in range.
    fn settle(&mut self) -> DocId {
        let mut doc = self.inner.doc();
        while doc != TERMINATED && !self.in_range(doc) {
            doc = self.inner.advance();
        }
        doc
    }

    fn in_range(&self, doc: DocId) -> bool {
        self.timestamps
            .values_for_doc(doc)
            .any(|t| self.lo <= t && t < self.hi)
    }
}

impl DocSet for TimeFilterScorer {
    fn advance(&mut self) -> DocId {
        self.inner.advance();
        self.settle()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.inner.seek(target);
        self.settle()
    }

    fn doc(&self) -> DocId {
        self.inner.doc()
    }

    fn size_hint(&self) -> u32 {
        self.inner.size_hint()
    }
}

impl Scorer for TimeFilterScorer {
    fn score(&mut self) -> Score {
        1.0
    }
}
