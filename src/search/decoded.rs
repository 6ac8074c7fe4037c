//! Decoded columns for scans: per live segment, its timestamps, a string column's global ids and
//! a metric's values per document, decoded once from the fast columns into plain arrays and kept
//! within a memory budget (`[search] scan_cache_mb`). A scan then reads `timestamps[doc]` instead
//! of unpacking bits and translating ordinals for every document it meets, every time.
//!
//! Entries die with their segment (merged away, or all its events deleted) or with their
//! column's dictionary generation; beyond the budget the least recently scanned go first, and a
//! segment that does not fit is read from the fast columns as before.

use std::any::Any;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use rustc_hash::FxHashMap;
use tantivy::columnar::{Cardinality, Column, StrColumn};
use tantivy::index::SegmentId;
use tantivy::Searcher;

use super::scan::{global_id, metric_value};

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
    /// The decoded `Arc<[T]>`, of the type its key decodes to.
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
    ) -> Option<Arc<[i64]>> {
        if column.get_cardinality() != Cardinality::Full {
            return None;
        }
        self.get_or_decode(Key::Timestamps(segment), docs, || {
            let mut values = vec![0; docs as usize];
            for (n, chunk) in values.chunks_mut(CHUNK).enumerate() {
                column.values.get_range((n * CHUNK) as u64, chunk);
            }
            values
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
        self.get_or_decode(key, docs, || {
            let mut ids = Vec::with_capacity(docs as usize);
            each_chunk(column.ords(), docs, |ords| {
                ids.extend(ords.iter().map(|ord| global_id(table, *ord)));
            });
            ids
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
        self.get_or_decode(Key::Metric(segment, name.to_string()), docs, || {
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
            values
        })
    }

    /// The array of `key` (`docs` values of `T`), decoded and kept (room made by dropping the
    /// least recently used) when missing; `None` when it alone would exceed the budget.
    fn get_or_decode<T: Send + Sync + 'static>(
        &self,
        key: Key,
        docs: u32,
        decode: impl FnOnce() -> Vec<T>,
    ) -> Option<Arc<[T]>> {
        let bytes = docs as usize * std::mem::size_of::<T>();
        if bytes > self.budget_bytes {
            return None;
        }
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.clock += 1;
            let clock = state.clock;
            if let Some(entry) = state.entries.get_mut(&key) {
                entry.last_used = clock;
                return entry.array.downcast_ref::<Arc<[T]>>().cloned();
            }
        }
        // Decoded outside the lock: scans of other segments go on meanwhile.
        let array: Arc<[T]> = decode().into();
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
