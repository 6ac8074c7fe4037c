//! Decoded columns for scans: per live segment, its timestamps, a string column's global ids and
//! a metric's values per document, decoded once from the fast columns into plain arrays and kept
//! within a memory budget (`[search] scan_cache_mb`). A scan then reads `timestamps[doc]` instead
//! of unpacking bits and translating ordinals for every document it meets, every time.
//! Timestamps are kept as 32-bit offsets where a segment's span allows: a scan over many
//! events is bound by the memory it streams.
//!
//! Entries die with their segment (merged away, or all its events deleted) or with their
//! column's dictionary generation; beyond the budget the least recently scanned go first, and a
//! segment that does not fit is read from the fast columns as before.

use std::any::Any;
use std::fmt::Debug;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use rustc_hash::FxHashMap;
use tantivy::columnar::{Cardinality, Column, StrColumn};
use tantivy::index::SegmentId;
use tantivy::Searcher;

use super::scan::{global_id, metric_value, Stamps};

/// Documents decoded per call.
const CHUNK: usize = 4096;

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Timestamps(SegmentId),
    /// A column's ids under one dictionary generation.
    Ids(SegmentId, String, u64),
    /// A metric's values (its fast column's name).
    Metric(SegmentId, String),
}

impl Key {
    fn segment(&self) -> SegmentId {
        match self {
            Key::Timestamps(segment) | Key::Ids(segment, ..) | Key::Metric(segment, _) => *segment,
        }
    }
}

struct Entry {
    /// The decoded array, of the type its key decodes to.
    array: Box<dyn Any + Send + Sync>,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct State {
    entries: FxHashMap<Key, Entry>,
    bytes: usize,
    clock: u64,
}

pub struct Decoded {
    budget_bytes: usize,
    state: Mutex<State>,
}

impl Decoded {
    /// Keeping at most `budget_bytes` of arrays (0: none).
    pub fn new(budget_bytes: usize) -> Decoded {
        Decoded {
            budget_bytes,
            state: Mutex::default(),
        }
    }

    /// Drops the arrays of segments `searcher` no longer has, and of `columns`' (name,
    /// generation) other generations.
    pub fn prune(&self, searcher: &Searcher, columns: &[(&str, u64)]) {
        let live: Vec<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(|r| r.segment_id())
            .collect();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let before = state.entries.len();
        state.entries.retain(|key, _| {
            live.contains(&key.segment())
                && match key {
                    Key::Ids(_, name, kept) => columns
                        .iter()
                        .all(|(column, generation)| name != column || kept == generation),
                    Key::Timestamps(_) | Key::Metric(..) => true,
                }
        });
        if state.entries.len() != before {
            state.bytes = state.entries.values().map(|e| e.bytes).sum();
        }
    }

    /// A segment's timestamps by document (`None`: its column is not full, so read it).
    pub fn timestamps(
        &self,
        segment: SegmentId,
        column: &Column<i64>,
        docs: u32,
    ) -> Option<Timestamps> {
        if column.get_cardinality() != Cardinality::Full {
            return None;
        }
        self.get_or_decode(Key::Timestamps(segment), bytes_of::<i64>(docs), || {
            let mut values = vec![0; docs as usize];
            for (n, chunk) in values.chunks_mut(CHUNK).enumerate() {
                column.values.get_range((n * CHUNK) as u64, chunk);
            }
            Timestamps::of(values)
        })
    }

    /// A segment's global ids of `column` (named `name`, ids of dictionary `generation`, through
    /// the segment's ordinal → id `table`) by document, `NO_VALUE` where a document has none.
    pub fn ids(
        &self,
        segment: SegmentId,
        name: &str,
        generation: u64,
        column: &StrColumn,
        table: &[u32],
        docs: u32,
    ) -> Option<Arc<[u32]>> {
        let key = Key::Ids(segment, name.to_string(), generation);
        self.get_or_decode(key, bytes_of::<u32>(docs), || {
            let mut ids = Vec::with_capacity(docs as usize);
            each_chunk(column.ords(), docs, |ords| {
                ids.extend(ords.iter().map(|ord| global_id(table, *ord)));
            });
            array(ids)
        })
    }

    /// A segment's values of the metric column `name` by document (NaN where a document has
    /// none), from its `integral` and `fractional` columns (integral first, as a scan reads);
    /// `None` when the segment has neither.
    pub fn metric(
        &self,
        segment: SegmentId,
        name: &str,
        integral: Option<&Column<i64>>,
        fractional: Option<&Column<f64>>,
        docs: u32,
    ) -> Option<Arc<[f64]>> {
        if integral.is_none() && fractional.is_none() {
            return None;
        }
        let key = Key::Metric(segment, name.to_string());
        self.get_or_decode(key, bytes_of::<f64>(docs), || {
            let mut values = vec![f64::NAN; docs as usize];
            if let Some(column) = fractional {
                let mut at = 0;
                each_chunk(column, docs, |found| {
                    for (value, found) in values[at..].iter_mut().zip(found) {
                        *value = metric_value(None, *found);
                    }
                    at += found.len();
                });
            }
            if let Some(column) = integral {
                let mut at = 0;
                each_chunk(column, docs, |found| {
                    for (value, found) in values[at..].iter_mut().zip(found) {
                        if found.is_some() {
                            *value = metric_value(*found, None);
                        }
                    }
                    at += found.len();
                });
            }
            array(values)
        })
    }

    /// The array of `key` (at most `most_bytes`), decoded (with its size) and kept (room made
    /// by dropping the least recently used) when missing; `None` when it alone could exceed the
    /// budget.
    fn get_or_decode<V: Clone + Send + Sync + 'static>(
        &self,
        key: Key,
        most_bytes: usize,
        decode: impl FnOnce() -> (V, usize),
    ) -> Option<V> {
        if most_bytes > self.budget_bytes {
            return None;
        }
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.clock += 1;
            let clock = state.clock;
            if let Some(entry) = state.entries.get_mut(&key) {
                entry.last_used = clock;
                return entry.array.downcast_ref::<V>().cloned();
            }
        }
        // Decoded outside the lock: scans of other segments go on meanwhile.
        let (array, bytes) = decode();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while state.bytes + bytes > self.budget_bytes {
            let Some(oldest) = state
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(entry) = state.entries.remove(&oldest) {
                state.bytes -= entry.bytes;
            }
        }
        let clock = state.clock;
        let entry = Entry {
            array: Box::new(array.clone()),
            bytes,
            last_used: clock,
        };
        if let Some(previous) = state.entries.insert(key, entry) {
            state.bytes -= previous.bytes;
        }
        state.bytes += bytes;
        Some(array)
    }

    /// Bytes kept.
    pub fn bytes(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }
}

/// A segment's decoded timestamps by document: offsets from the earliest when they span less
/// than 2^32 ms (49 days, the usual segment), else as they are.
#[derive(Clone)]
pub enum Timestamps {
    Offsets { base: i64, offsets: Arc<[u32]> },
    Whole(Arc<[i64]>),
}

impl Timestamps {
    /// The compact form of `values`, with its size in bytes.
    fn of(values: Vec<i64>) -> (Timestamps, usize) {
        let base = values.iter().copied().min().unwrap_or(0);
        let span = values.iter().copied().max().unwrap_or(0).abs_diff(base);
        if span > u64::from(u32::MAX) {
            let (whole, bytes) = array(values);
            return (Timestamps::Whole(whole), bytes);
        }
        let (offsets, bytes) = array(values.iter().map(|ts| ts.abs_diff(base) as u32).collect());
        (Timestamps::Offsets { base, offsets }, bytes)
    }

    /// Document `doc`'s timestamp.
    #[inline]
    pub fn at(&self, doc: usize) -> i64 {
        match self {
            Timestamps::Offsets { base, offsets } => base + i64::from(offsets[doc]),
            Timestamps::Whole(whole) => whole[doc],
        }
    }

    /// The timestamps of the documents `docs`, in place.
    pub fn run(&self, docs: Range<usize>) -> Stamps<'_> {
        match self {
            Timestamps::Offsets { base, offsets } => Stamps::Offsets(*base, &offsets[docs]),
            Timestamps::Whole(whole) => Stamps::Whole(&whole[docs]),
        }
    }
}

/// The memory `docs` values of `T` take.
fn bytes_of<T>(docs: u32) -> usize {
    docs as usize * std::mem::size_of::<T>()
}

/// `values` as a shared array, with its size in bytes.
fn array<T>(values: Vec<T>) -> (Arc<[T]>, usize) {
    let bytes = std::mem::size_of_val(values.as_slice());
    (values.into(), bytes)
}

/// Calls `f` with the first values of documents `0..docs` of `column`, [`CHUNK`] at a time.
fn each_chunk<T>(column: &Column<T>, docs: u32, mut f: impl FnMut(&[Option<T>]))
where
    T: PartialOrd + Copy + Debug + Send + Sync + 'static,
{
    let mut found = [None; CHUNK];
    let mut doc_ids = Vec::with_capacity(CHUNK);
    for start in (0..docs).step_by(CHUNK) {
        doc_ids.clear();
        doc_ids.extend(start..docs.min(start.saturating_add(CHUNK as u32)));
        let found = &mut found[..doc_ids.len()];
        found.fill(None);
        column.first_vals(&doc_ids, found);
        f(found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Kept compact or whole, every timestamp reads back as it was, one by one and as a run.
        #[test]
        fn timestamps_read_back_exactly(
            base in proptest::num::i64::ANY,
            offsets in proptest::collection::vec(0u64..(1 << 33), 1..50),
        ) {
            let values: Vec<i64> = offsets.iter().map(|o| base.saturating_add(*o as i64)).collect();
            let span = values.iter().max().unwrap().abs_diff(*values.iter().min().unwrap());
            let (kept, bytes) = Timestamps::of(values.clone());
            let compact = matches!(kept, Timestamps::Offsets { .. });
            proptest::prop_assert_eq!(compact, span <= u64::from(u32::MAX));
            proptest::prop_assert_eq!(bytes, values.len() * if compact { 4 } else { 8 });
            for (doc, ts) in values.iter().enumerate() {
                proptest::prop_assert_eq!(kept.at(doc), *ts);
            }
            let mut run = Vec::new();
            kept.run(1..values.len()).map_into(&mut run, |ts| ts);
            proptest::prop_assert_eq!(&run[..], &values[1..]);
        }
    }
}
