//! Global ordinals: one id per distinct value of a string column across every segment, so a
//! scan reads small integers that mean the same in all segments and in every scan of the column.
//!
//! A segment's terms are sorted and numbered within the segment only. Per segment and column, a
//! table from the segment's term ordinal to the global id is built once, from the segment's
//! dictionary, and kept while the segment is live: analytics scans then never touch strings.
//! Ids are handed out in first-seen order and are stable, except that a column whose dictionary
//! holds far more values than its live segments (after retention or erasure dropped many) is
//! rebuilt from scratch under a new [`Dictionary::generation`]. A column of more than a million
//! values is not kept between scans, and all columns together keep at most about two million.

use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;
use tantivy::columnar::StrColumn;
use tantivy::index::SegmentId;
use tantivy::{Searcher, TantivyError};

/// Columns whose tables are kept; the least recently scanned beyond this are dropped.
const MAX_COLUMNS: usize = 64;
/// A dictionary is rebuilt when it holds more than twice its live segments' terms plus this.
const REBUILD_SLACK: usize = 10_000;
/// A column with more distinct values (a per-event id) is not kept between scans: its
/// dictionary serves the scan that built it and is then dropped.
const MAX_KEPT_VALUES: usize = 1 << 20;
/// The values kept over all columns; the least recently scanned columns go first beyond it.
const MAX_KEPT_TOTAL: usize = 1 << 21;

/// The values of one column by global id, as of one scan.
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    /// Ids of two scans of a column are comparable when their generations are equal.
    pub generation: u64,
    values: Vec<Arc<str>>,
}

impl Dictionary {
    /// A dictionary of `values` (ids in order), for tests of code that reads scans.
    #[cfg(test)]
    pub fn of(generation: u64, values: &[&str]) -> Dictionary {
        Dictionary {
            generation,
            values: values.iter().map(|v| Arc::from(*v)).collect(),
        }
    }

    pub fn value(&self, id: u32) -> Option<&str> {
        self.values.get(id as usize).map(|v| &**v)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Per segment of a searcher (by segment ordinal), its column and the column's term ordinal →
/// global id table, or `None` where the segment lacks the column.
pub type SegmentTables = Vec<Option<(StrColumn, Arc<[u32]>)>>;

/// The global ordinals of every scanned column of one index.
pub struct GlobalOrdinals {
    state: Mutex<State>,
    /// [`MAX_KEPT_VALUES`] and [`MAX_KEPT_TOTAL`] (smaller in tests).
    max_kept_values: usize,
    max_kept_total: usize,
}

impl Default for GlobalOrdinals {
    fn default() -> Self {
        GlobalOrdinals::with_limits(MAX_KEPT_VALUES, MAX_KEPT_TOTAL)
    }
}

#[derive(Default)]
struct State {
    columns: FxHashMap<String, ColumnOrdinals>,
    clock: u64,
    generations: u64,
}

struct ColumnOrdinals {
    dictionary: Arc<Dictionary>,
    ids: FxHashMap<Arc<str>, u32>,
    segments: FxHashMap<SegmentId, Arc<[u32]>>,
    last_used: u64,
}

impl ColumnOrdinals {
    fn new(generation: u64) -> ColumnOrdinals {
        ColumnOrdinals {
            dictionary: Arc::new(Dictionary {
                generation,
                values: Vec::new(),
            }),
            ids: FxHashMap::default(),
            segments: FxHashMap::default(),
            last_used: 0,
        }
    }

    /// The table of one segment's column: each term's global id, new terms added.
    fn table(&mut self, column: &StrColumn) -> tantivy::Result<Arc<[u32]>> {
        let mut table = Vec::with_capacity(column.num_terms());
        let mut stream = column
            .dictionary()
            .stream()
            .map_err(|e| TantivyError::InternalError(e.to_string()))?;
        while stream.advance() {
            let value = String::from_utf8_lossy(stream.key());
            let id = match self.ids.get(&*value) {
                Some(id) => *id,
                None => {
                    // Copied only when a scan still holds the dictionary as it was.
                    let dictionary = Arc::make_mut(&mut self.dictionary);
                    let id = u32::try_from(dictionary.values.len()).map_err(|_| {
                        TantivyError::InternalError("more than 2^32 distinct values".to_string())
                    })?;
                    let value: Arc<str> = Arc::from(value.as_ref());
                    dictionary.values.push(value.clone());
                    self.ids.insert(value, id);
                    id
                }
            };
            table.push(id);
        }
        Ok(table.into())
    }
}

impl GlobalOrdinals {
    /// Keeping columns of at most `max_kept_values` values, `max_kept_total` in all.
    pub fn with_limits(max_kept_values: usize, max_kept_total: usize) -> GlobalOrdinals {
        GlobalOrdinals {
            state: Mutex::default(),
            max_kept_values,
            max_kept_total,
        }
    }

    /// The tables of `column` for every segment of `searcher` and the dictionary their ids
    /// point into.
    pub fn tables(
        &self,
        searcher: &Searcher,
        column: &str,
    ) -> tantivy::Result<(Arc<Dictionary>, SegmentTables)> {
        let readers = searcher.segment_readers();
        let mut columns = Vec::with_capacity(readers.len());
        let mut live_terms = 0;
        for reader in readers {
            let found = reader.fast_fields().str(column)?;
            live_terms += found.as_ref().map_or(0, |c| c.num_terms());
            columns.push((reader.segment_id(), found));
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.clock += 1;
        let clock = state.clock;
        let stale = state
            .columns
            .get(column)
            .is_some_and(|c| c.dictionary.len() > 2 * live_terms + REBUILD_SLACK);
        if stale || !state.columns.contains_key(column) {
            state.generations += 1;
            let generation = state.generations;
            state
                .columns
                .insert(column.to_string(), ColumnOrdinals::new(generation));
        }
        let Some(entry) = state.columns.get_mut(column) else {
            return Err(TantivyError::InternalError(format!(
                "the global ordinals of {column} are missing"
            )));
        };
        entry.last_used = clock;
        entry
            .segments
            .retain(|id, _| columns.iter().any(|(live, _)| live == id));
        let mut tables = Vec::with_capacity(columns.len());
        for (segment, found) in &columns {
            let Some(found) = found else {
                tables.push(None);
                continue;
            };
            let table = match entry.segments.get(segment) {
                Some(table) => table.clone(),
                None => {
                    let table = entry.table(found)?;
                    entry.segments.insert(*segment, table.clone());
                    table
                }
            };
            tables.push(Some((found.clone(), table)));
        }
        let dictionary = entry.dictionary.clone();
        if dictionary.len() > self.max_kept_values {
            state.columns.remove(column);
        }
        // The least recently scanned other columns go while there are too many or too large.
        loop {
            let kept: usize = state.columns.values().map(|c| c.dictionary.len()).sum();
            let over = state.columns.len() > MAX_COLUMNS || kept > self.max_kept_total;
            let oldest = state
                .columns
                .iter()
                .filter(|(name, _)| name.as_str() != column)
                .min_by_key(|(_, c)| c.last_used)
                .map(|(name, _)| name.clone());
            match oldest {
                Some(oldest) if over => state.columns.remove(&oldest),
                _ => break,
            };
        }
        Ok((dictionary, tables))
    }
}
