//! Decoded columns for scans: per live segment, its timestamps, a string column's global ids and
//! a metric's values per document, decoded once from the fast columns into plain arrays and kept
//! within a memory budget (`[search] scan_cache_mb`). A scan then reads `timestamps[doc]` instead of unpacking
//! bits and translating ordinals for every document it meets, every time.
//!
//! Entries die with their segment (merged away, or all its events deleted) or with their
//! column's dictionary generation; beyond the budget the least recently scanned go first, and a
//! segment that does not fit is read from the fast columns as before.

use std::sync::{Arc, Mutex, PoisonError};

use rustc_hash::FxHashMap;
use tantivy::columnar::{Cardinality, Column, StrColumn};
use tantivy::index::SegmentId;
use tantivy::{DocId, Searcher};

use super::scan::{metric_value, NO_VALUE};

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

#[derive(Clone)]
enum Array {
    Timestamps(Arc<[i64]>),
    Ids(Arc<[u32]>),
    Metric(Arc<[f64]>),
}

impl Array {
    fn bytes(&self) -> usize {
        match self {
            Array::Timestamps(values) => values.len() * 8,
            Array::Ids(values) => values.len() * 4,
            Array::Metric(values) => values.len() * 8,
        }
    }
}

struct Entry {
    array: Array,
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
            state.bytes = state.entries.values().map(|e| e.array.bytes()).sum();
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
        let key = Key::Timestamps(segment);
        let array = self.get_or_decode(key, docs as usize * 8, || {
            let mut values = vec![0; docs as usize];
            for (n, chunk) in values.chunks_mut(CHUNK).enumerate() {
                column.values.get_range((n * CHUNK) as u64, chunk);
            }
            Array::Timestamps(values.into())
        })?;
        match array {
            Array::Timestamps(values) => Some(values),
            _ => None,
        }
    }

    /// A segment's global ids of `column` (named `name`, ids of dictionary `generation`, through
    /// the segment's ordinal → id `table`) by document, [`NO_VALUE`] where a document has none.
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
        let array = self.get_or_decode(key, docs as usize * 4, || {
            let ords = column.ords();
            let id = |ord: u64| table.get(ord as usize).copied().unwrap_or(NO_VALUE);
            let mut ids = Vec::with_capacity(docs as usize);
            if ords.get_cardinality() == Cardinality::Full {
                let mut chunk = vec![0u64; CHUNK];
                for start in (0..docs as usize).step_by(CHUNK) {
                    let chunk = &mut chunk[..CHUNK.min(docs as usize - start)];
                    ords.values.get_range(start as u64, chunk);
                    ids.extend(chunk.iter().map(|ord| id(*ord)));
                }
            } else {
                let mut found = vec![None; CHUNK];
                let doc_ids: Vec<DocId> = (0..docs).collect();
                for chunk in doc_ids.chunks(CHUNK) {
                    let found = &mut found[..chunk.len()];
                    found.fill(None);
                    ords.first_vals(chunk, found);
                    ids.extend(found.iter().map(|ord| ord.map_or(NO_VALUE, id)));
                }
            }
            Array::Ids(ids.into())
        })?;
        match array {
            Array::Ids(values) => Some(values),
            _ => None,
        }
    }

    /// A segment's values of the metric column `name` by document (NaN where a document has
    /// none), from its `integral` and `fractional` columns (integral first, as a scan reads).
    pub fn metric(
        &self,
        segment: SegmentId,
        name: &str,
        integral: Option<&Column<i64>>,
        fractional: Option<&Column<f64>>,
        docs: u32,
    ) -> Option<Arc<[f64]>> {
        let key = Key::Metric(segment, name.to_string());
        let array = self.get_or_decode(key, docs as usize * 8, || {
            let mut values = Vec::with_capacity(docs as usize);
            let doc_ids: Vec<DocId> = (0..docs).collect();
            let (mut whole, mut part) = (vec![None; CHUNK], vec![None; CHUNK]);
            for chunk in doc_ids.chunks(CHUNK) {
                let (whole, part) = (&mut whole[..chunk.len()], &mut part[..chunk.len()]);
                whole.fill(None);
                part.fill(None);
                if let Some(column) = integral {
                    column.first_vals(chunk, whole);
                }
                if let Some(column) = fractional {
                    column.first_vals(chunk, part);
                }
                values.extend(
                    whole
                        .iter()
                        .zip(part.iter())
                        .map(|(i, f)| metric_value(*i, *f)),
                );
            }
            Array::Metric(values.into())
        })?;
        match array {
            Array::Metric(values) => Some(values),
            _ => None,
        }
    }

    /// The array of `key`, decoded and kept (room made by dropping the least recently used)
    /// when missing; `None` when its `bytes` alone exceed the budget.
    fn get_or_decode(
        &self,
        key: Key,
        bytes: usize,
        decode: impl FnOnce() -> Array,
    ) -> Option<Array> {
        if bytes > self.budget_bytes {
            return None;
        }
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.clock += 1;
            let clock = state.clock;
            if let Some(entry) = state.entries.get_mut(&key) {
                entry.last_used = clock;
                return Some(entry.array.clone());
            }
        }
        // Decoded outside the lock: scans of other segments go on meanwhile.
        let array = decode();
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
                state.bytes -= entry.array.bytes();
            }
        }
        let clock = state.clock;
        if let Some(previous) = state.entries.insert(
            key,
            Entry {
                array: array.clone(),
                last_used: clock,
            },
        ) {
            state.bytes -= previous.array.bytes();
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
