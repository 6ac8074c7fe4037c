//! Event search: a tantivy index derived from the store (redb stays the source of truth), the
//! indexer thread that keeps it current, and the search, count, oldest-matches, position, delete
//! and aggregation API over it.
//!
//! - [`schema`]: fields and the event → document mapping (nothing stored; `seq` maps hits back).
//! - [`query`]: the query language (grammar in its module docs) and filter compilation.
//! - [`indexer`]: open/recreate, commit payload, the indexer thread, purge, rebuild.
//! - [`collect`]: newest-first pages with cursor and exact totals; the oldest matches; position
//!   lists.
//! - [`aggregate`]: geo, time series by level, breakdowns.
//! - [`scan`]: the columnar scan analytics computes on (timestamps, weights, string ids, a metric).
//!
//! Threads: one indexer thread (owns the only `IndexWriter`), one tantivy indexing worker and
//! `SearchOptions::merge_threads` merge threads. Queries run on the caller's thread (use
//! `web::block` from handlers).
//!
//! What the caller must do:
//! - implement [`EventSource`] over the store and call [`SearchIndex::notify_committed`] after
//!   every store commit, in position order (it never blocks; dropped batches are re-read);
//! - map hits (`seq`) back to the store, skipping positions the store no longer has;
//! - for retention/erasure: delete from the store first, then [`SearchIndex::delete`] with
//!   `below_seq` = the store's `next_seq` at that moment, then (erasure) [`SearchIndex::purge`].
//!   A crash between the store delete and the index commit leaves index documents without
//!   store events: keep tombstones and re-issue their deletes after start (idempotent);
//! - never run [`rebuild`] on the directory of an open [`SearchIndex`].

mod aggregate;
mod collect;
mod decoded;
#[cfg(test)]
mod filter_tests;
mod indexer;
mod ordinals;
pub mod query;
mod scan;
mod schema;
#[cfg(test)]
mod tests;
mod timerange;
mod whole_segment;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tantivy::collector::Count;
use tantivy::query::{BooleanQuery, Occur, Query};
use tantivy::{Executor, Index, IndexReader, ReloadPolicy, Searcher};

pub use aggregate::{BreakdownRow, CountryCount, LevelCounts, RegionCount, TimeBucket};
pub use ordinals::Dictionary;
pub use query::parse_time_param;
pub use scan::{Fold, Rows, ScanColumn, Scanned, Stamps, NO_VALUE};

use crate::fields::{EventField, Use};
use crate::model::{now_ms, Event};
use crate::queue_budget::QueueBudget;
use crate::scope::Scope;
use crate::timespan::{bucket_count, bucket_start};
use indexer::{Command, Indexer};
use schema::{escape_json_key, exact_field, IndexFields};

/// Below this many matches a page is found in one pass over all of them; above, by widening
/// time windows from the newest end (tests always take the windowed path).
#[cfg(not(test))]
const FULL_SCAN_BELOW: u64 = 20_000;
#[cfg(test)]
const FULL_SCAN_BELOW: u64 = 1;

/// A page counts its matches exactly up to this many; past it, the total says "at least" (a
/// broad query over millions of events would otherwise spend most of its time counting).
pub const EXACT_TOTAL_UP_TO: u64 = 10_000;

/// The most hits one page returns.
pub const MAX_LIMIT: usize = 1000;
/// The most buckets one time series returns.
pub const MAX_BUCKETS: u64 = 10_000;
/// The most rows one breakdown returns.
pub const MAX_BREAKDOWN_ROWS: usize = 10_000;

/// Rows of an aggregation after k-anonymity folding, and how many groups were folded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Folded<T> {
    pub rows: Vec<T>,
    pub suppressed_groups: usize,
}

/// The store, as the indexer reads it.
pub trait EventSource: Send + Sync {
    /// Stored events with positions >= `from`, in order, at most `limit`.
    fn events_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Event)>, String>;
    /// The position the next stored event will get (everything below is stored or deleted).
    fn next_seq(&self) -> Result<u64, String>;
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A query-string error; `message` names the position too.
    #[error("invalid query: {message}")]
    Query { message: String, position: usize },
    /// A bad parameter (level, cursor, bucket, breakdown field).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("search index error: {0}")]
    Tantivy(String),
    #[error("event source error: {0}")]
    Source(String),
    #[error("search index i/o error: {0}")]
    Io(String),
    /// The indexer thread is stopped (after `close`).
    #[error("the search indexer is stopped")]
    Closed,
}

/// The index is a commit subscriber: its position is the one in its last commit's payload, and
/// it reads from the store whatever the writer's hand-offs did not bring it.
impl crate::store::subscribers::CommitSubscriber for SearchIndex {
    fn name(&self) -> &'static str {
        "search-index"
    }

    fn position(&self) -> Result<u64, crate::error::StoreError> {
        Ok(self.indexed_position())
    }

    fn committed(&self, events: &crate::store::subscribers::Committed) {
        self.notify_committed(events.to_vec());
    }
}

impl crate::error::ErrorCode for SearchError {
    fn error_code(&self) -> crate::error::Code {
        use crate::error::Code;
        match self {
            SearchError::Query { .. } => Code::InvalidQuery,
            SearchError::InvalidRequest(_) => Code::InvalidBody,
            SearchError::Closed => Code::NotReady,
            SearchError::Tantivy(_) | SearchError::Source(_) | SearchError::Io(_) => Code::Internal,
        }
    }

    fn message(&self) -> String {
        match self {
            SearchError::Query { message, position } => {
                format!("invalid query at position {position}: {message}")
            }
            SearchError::InvalidRequest(reason) => reason.clone(),
            SearchError::Closed => "the server is not ready: the search index is closed".into(),
            other => format!("internal error: {other}"),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            SearchError::Query { position, .. } => {
                Some(serde_json::json!({ "parameter": "q", "position": position }))
            }
            _ => None,
        }
    }
}

impl From<tantivy::TantivyError> for SearchError {
    fn from(err: tantivy::TantivyError) -> Self {
        SearchError::Tantivy(err.to_string())
    }
}

/// Indexer settings. `Default`: commit every second, 64 MB writer arena, 1 merge thread,
/// 1024 queued batches.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Longest time between an event reaching the indexer and being searchable (also the period
    /// of the store check that picks up dropped batches).
    pub commit_interval: Duration,
    /// Indexing arena of the single indexing worker (clamped to 15 MB ..= 4 GB). A segment is
    /// flushed when it fills up; memory use is about this plus merge buffers.
    pub writer_memory_bytes: usize,
    /// Background segment-merge threads.
    pub merge_threads: usize,
    /// Batches `notify_committed` may queue before it starts dropping them.
    pub queue_capacity: usize,
    /// Events those batches may hold in all before it starts dropping them (the queue's
    /// memory bound; dropped batches are read back from the store).
    pub queue_events: usize,
    /// Memory scans may keep decoded columns in (MiB; 0: none).
    pub scan_cache_mb: usize,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            commit_interval: Duration::from_secs(1),
            writer_memory_bytes: 64 * 1024 * 1024,
            merge_threads: 1,
            queue_capacity: 1024,
            queue_events: 50_000,
            scan_cache_mb: 1024,
        }
    }
}

/// Which events: field filters, a time range, a query string and a product scope, all ANDed.
///
/// Serialized (tombstones keep it) as one flat object: the fields by canonical name, then
/// `from_ms`, `to_ms`, `q` and, when the scope lists products, `products`. Older spellings of field names (`country`) and `null` values, as
/// written before the field catalogue, read back to the same filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Field filters: catalogue fields with [`Use::Filter`] → the exact value, except `level`:
    /// one level or a comma list ("error,fatal"). Empty values count as absent.
    pub fields: BTreeMap<EventField, String>,
    /// `[from_ms, to_ms)`.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// The query language (see [`query`]).
    pub q: Option<String>,
    /// Only events of these products (a token's scope); every product by default.
    pub scope: Scope,
    /// Only events with a value in at least one of these column fields (none: no condition).
    pub present: Vec<EventField>,
}

impl Filter {
    /// This filter, also limited to the products of `scope`.
    pub fn within(mut self, scope: Scope) -> Filter {
        self.scope = scope;
        self
    }

    /// This filter, also requiring `field` = `value`.
    pub fn with(mut self, field: EventField, value: impl Into<String>) -> Filter {
        self.fields.insert(field, value.into());
        self
    }

    /// The value filtered on for `field`, if any (empty strings count as absent).
    pub fn get(&self, field: EventField) -> Option<&str> {
        self.fields
            .get(&field)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The field filters that are set (non-empty).
    fn field_params(&self) -> impl Iterator<Item = (EventField, &str)> {
        self.fields
            .iter()
            .map(|(f, v)| (*f, v.as_str()))
            .filter(|(_, v)| !v.is_empty())
    }
}

impl Serialize for Filter {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.fields.len() + 3))?;
        for (field, value) in &self.fields {
            map.serialize_entry(field.name(), value)?;
        }
        map.serialize_entry("from_ms", &self.from_ms)?;
        map.serialize_entry("to_ms", &self.to_ms)?;
        map.serialize_entry("q", &self.q)?;
        if let Some(products) = self.scope.products() {
            map.serialize_entry("products", products)?;
        }
        if !self.present.is_empty() {
            let names: Vec<&str> = self.present.iter().map(|f| f.name()).collect();
            map.serialize_entry("present", &names)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FilterVisitor;
        impl<'de> serde::de::Visitor<'de> for FilterVisitor {
            type Value = Filter;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a search filter object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Filter, A::Error> {
                use serde::de::Error;
                let mut filter = Filter::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "from_ms" => filter.from_ms = map.next_value()?,
                        "to_ms" => filter.to_ms = map.next_value()?,
                        "q" => filter.q = map.next_value()?,
                        "products" => {
                            let products: Vec<String> = map.next_value()?;
                            filter.scope = Scope::only(products);
                        }
                        "present" => {
                            for name in map.next_value::<Vec<String>>()? {
                                let field = EventField::lookup(&name)
                                    .filter(|f| f.has(Use::Column))
                                    .ok_or_else(|| {
                                        A::Error::custom(format!("unknown column field `{name}`"))
                                    })?;
                                filter.present.push(field);
                            }
                        }
                        name => {
                            let Some(field) =
                                EventField::lookup(name).filter(|f| f.has(Use::Filter))
                            else {
                                return Err(A::Error::custom(format!(
                                    "unknown filter field `{name}`"
                                )));
                            };
                            let value: Option<String> = map.next_value()?;
                            if let Some(value) = value {
                                if filter.fields.insert(field, value).is_some() {
                                    return Err(A::Error::duplicate_field(field.name()));
                                }
                            }
                        }
                    }
                }
                Ok(filter)
            }
        }
        deserializer.deserialize_map(FilterVisitor)
    }
}

#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub filter: Filter,
    /// Capped at [`MAX_LIMIT`].
    pub limit: usize,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Count every match, however many; otherwise the count stops at [`EXACT_TOTAL_UP_TO`].
    pub exact_total: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hit {
    pub seq: u64,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SearchPage {
    /// Newest first: `(timestamp, seq)` descending.
    pub hits: Vec<Hit>,
    /// Every match of the filter (not only those after the cursor), or, when `total_exact` is
    /// false, a lower bound: [`EXACT_TOTAL_UP_TO`].
    pub total: u64,
    pub total_exact: bool,
    /// Present when more matches follow this page.
    pub next_cursor: Option<String>,
}

/// The oldest matches of a filter ([`SearchIndex::oldest`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OldestHits {
    /// Oldest first: `(timestamp, seq)` ascending.
    pub hits: Vec<Hit>,
    /// Every match, including those past the limit.
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexStats {
    pub docs: u64,
    pub segments: u64,
    pub size_bytes: u64,
    pub indexed_position: u64,
    /// Epoch ms of the last commit (0 = none since open).
    pub last_commit_ms: i64,
    /// Batches `notify_committed` dropped because the queue was full (indexed by catch-up).
    pub dropped_batches: u64,
    /// Committed events waiting in the indexer's queue.
    pub queued_events: u64,
    /// Memory held by decoded columns for scans.
    pub scan_cache_bytes: u64,
}

/// The smallest and largest timestamp in the index (deleted documents included), if any.
fn timestamp_bounds(searcher: &Searcher) -> Result<Option<(i64, i64)>, SearchError> {
    let mut bounds: Option<(i64, i64)> = None;
    for segment in searcher.segment_readers() {
        if segment.num_docs() == 0 {
            continue;
        }
        let column = segment.fast_fields().i64(schema::TIMESTAMP)?;
        let (lo, hi) = (column.min_value(), column.max_value());
        bounds = Some(match bounds {
            Some((a, b)) => (a.min(lo), b.max(hi)),
            None => (lo, hi),
        });
    }
    Ok(bounds)
}

fn encode_cursor(hit: (i64, u64)) -> String {
    format!("{}_{}", hit.0, hit.1)
}

fn decode_cursor(text: &str) -> Result<(i64, u64), SearchError> {
    let invalid = || SearchError::InvalidRequest(format!("invalid cursor \"{text}\""));
    let (ts, seq) = text.rsplit_once('_').ok_or_else(invalid)?;
    Ok((
        ts.parse().map_err(|_| invalid())?,
        seq.parse().map_err(|_| invalid())?,
    ))
}

/// State shared by the handle and the indexer thread.
pub(crate) struct Shared {
    index: Index,
    reader: IndexReader,
    fields: IndexFields,
    dir: PathBuf,
    /// Committed position, mirrored in `position_atomic` for lock-free reads.
    position: Mutex<u64>,
    position_changed: Condvar,
    position_atomic: AtomicU64,
    last_commit_ms: AtomicI64,
    dropped_batches: AtomicU64,
    /// Events in the indexer's queue (given back as the indexer takes each batch).
    queued: QueueBudget,
    /// Asks a running catch-up to stop early (close).
    stop: AtomicBool,
    /// The string columns' global ids, for analytics scans.
    ordinals: ordinals::GlobalOrdinals,
    /// Runs a scan's segments on both cores.
    scan_executor: Executor,
    /// Scanned columns decoded per document.
    decoded: decoded::Decoded,
}

impl Shared {
    fn publish(&self, position: u64) {
        self.position_atomic.store(position, Ordering::SeqCst);
        self.touch_commit_time();
        let mut guard = match self.position.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = position;
        self.position_changed.notify_all();
    }

    fn touch_commit_time(&self) {
        self.last_commit_ms.store(now_ms(), Ordering::Relaxed);
    }
}

struct Inner {
    shared: Arc<Shared>,
    commands: Mutex<Option<SyncSender<Command>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    fn close(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let sender = lock(&self.commands).take();
        if let Some(sender) = sender {
            let (reply, done) = sync_channel(1);
            if sender.send(Command::Close { reply }).is_ok() {
                let _ = done.recv();
            }
        }
        if let Some(handle) = lock(&self.thread).take() {
            if handle.join().is_err() {
                tracing::error!("the search indexer thread panicked");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The event index: cheap to clone (shared inside). Dropping the last clone closes it.
#[derive(Clone)]
pub struct SearchIndex {
    inner: Arc<Inner>,
}

impl SearchIndex {
    /// Opens/creates the index in `dir` (a directory of its own, e.g. DATA_DIR/index) and starts
    /// the indexer thread, which first catches up from `source` from the position in the last
    /// commit payload. Returns without waiting for catch-up. An index written with another schema
    /// version, or one that cannot be opened, is discarded and rebuilt from the store this way.
    pub fn open(
        dir: &Path,
        source: Arc<dyn EventSource>,
        options: SearchOptions,
    ) -> Result<SearchIndex, SearchError> {
        let (index, position) = indexer::open_or_create(dir)?;
        let writer = indexer::new_writer(&index, &options)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let (_, fields) = schema::build_schema();
        let shared = Arc::new(Shared {
            index,
            reader,
            fields,
            dir: dir.to_path_buf(),
            position: Mutex::new(position),
            position_changed: Condvar::new(),
            position_atomic: AtomicU64::new(position),
            last_commit_ms: AtomicI64::new(0),
            dropped_batches: AtomicU64::new(0),
            queued: QueueBudget::new(options.queue_events),
            stop: AtomicBool::new(false),
            ordinals: ordinals::GlobalOrdinals::default(),
            scan_executor: scan_executor(),
            decoded: decoded::Decoded::new(options.scan_cache_mb.saturating_mul(1 << 20)),
        });
        let (sender, receiver) = sync_channel(options.queue_capacity.max(1));
        let indexer = Indexer::new(shared.clone(), source, options, writer, position);
        let thread = std::thread::Builder::new()
            .name("search-indexer".to_string())
            .spawn(move || indexer.run(receiver))
            .map_err(|e| SearchError::Io(format!("cannot start the indexer thread: {e}")))?;
        Ok(SearchIndex {
            inner: Arc::new(Inner {
                shared,
                commands: Mutex::new(Some(sender)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Blocks until everything below `seq` is indexed and committed (true), or `timeout`
    /// passes (false).
    pub fn wait_indexed(&self, seq: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let shared = self.shared();
        let mut position = lock(&shared.position);
        while *position < seq {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            position = match shared.position_changed.wait_timeout(position, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    /// Non-blocking hand-off of events just committed to the store (call from the store writer
    /// after each commit, in position order). If the queue is full the batch is dropped; the
    /// indexer notices the gap (or its periodic store check does) and reads it from the store.
    pub fn notify_committed(&self, events: Vec<(u64, Arc<Event>)>) {
        if events.is_empty() {
            return;
        }
        let sender = lock(&self.inner.commands).clone();
        let Some(sender) = sender else {
            return;
        };
        let shared = self.shared();
        let count = events.len();
        let queued = shared.queued.try_take(count)
            && match sender.try_send(Command::Events(events)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    shared.queued.give_back(count);
                    false
                }
                Err(TrySendError::Disconnected(_)) => return,
            };
        if !queued {
            shared.dropped_batches.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("search indexer queue full; batch left to catch-up");
        }
    }

    /// Next position the index expects: every event below it that still exists in the store is
    /// indexed and committed.
    pub fn indexed_position(&self) -> u64 {
        self.shared().position_atomic.load(Ordering::SeqCst)
    }

    fn searcher(&self) -> Searcher {
        self.shared().reader.searcher()
    }

    fn compile(&self, searcher: &Searcher, filter: &Filter) -> Result<Box<dyn Query>, SearchError> {
        self.compile_with(searcher, filter, false)
    }

    /// [`Self::compile`]; with `time_checked_by_collector`, the time range only skips segments.
    fn compile_with(
        &self,
        searcher: &Searcher,
        filter: &Filter,
        time_checked_by_collector: bool,
    ) -> Result<Box<dyn Query>, SearchError> {
        let tokenizer = self
            .shared()
            .index
            .tokenizers()
            .get("default")
            .ok_or_else(|| SearchError::Tantivy("default tokenizer missing".to_string()))?;
        let mut context = query::QueryContext {
            fields: &self.shared().fields,
            searcher,
            tokenizer,
            now_ms: now_ms(),
            time_bounds: timestamp_bounds(searcher)?,
            time_checked_by_collector,
        };
        context.filter_query(filter)
    }

    /// One page of matches, newest first by `(timestamp, seq)`. The cursor is the last hit of
    /// the previous page; the next page holds what sorts strictly after it, so pages neither
    /// repeat nor skip events while new ones arrive.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchPage, SearchError> {
        let after = request.cursor.as_deref().map(decode_cursor).transpose()?;
        let limit = request.limit.min(MAX_LIMIT);
        let searcher = self.searcher();
        let query = self.compile(&searcher, &request.filter)?;
        let cap = if request.exact_total {
            u64::MAX
        } else {
            EXACT_TOTAL_UP_TO
        };
        let total = collect::count_up_to(&searcher, query.as_ref(), cap)?;
        let total_exact = total < cap;
        let top = collect::TopByTime { limit, after };
        let fruit = if total == 0 || limit == 0 {
            collect::TopFruit {
                total,
                remaining: 0,
                hits: Vec::new(),
            }
        } else if total_exact && total < FULL_SCAN_BELOW {
            searcher.search(query.as_ref(), &top)?
        } else {
            self.newest_first(&searcher, query.as_ref(), &top, total, &request.filter)?
        };
        let next_cursor = match fruit.hits.last() {
            Some(last) if fruit.remaining > fruit.hits.len() as u64 => Some(encode_cursor(*last)),
            _ => None,
        };
        Ok(SearchPage {
            hits: fruit
                .hits
                .iter()
                .map(|(timestamp, seq)| Hit {
                    seq: *seq,
                    timestamp: *timestamp,
                })
                .collect(),
            total,
            total_exact,
            next_cursor,
        })
    }

    /// The top of `top` without visiting every match: searches a window of time ending at the
    /// newest possible timestamp (sized from the match density to hold about two pages), and
    /// widens it 8-fold until it holds more than a page or covers the whole range.
    fn newest_first(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        top: &collect::TopByTime,
        total: u64,
        filter: &Filter,
    ) -> Result<collect::TopFruit, SearchError> {
        let Some((min_ts, max_ts)) = timestamp_bounds(searcher)? else {
            return Ok(searcher.search(query, top)?);
        };
        let mut upper = max_ts;
        if let Some(to) = filter.to_ms {
            upper = upper.min(to.saturating_sub(1));
        }
        if let Some((ts, _)) = top.after {
            upper = upper.min(ts);
        }
        let lower = filter.from_ms.map_or(min_ts, |from| from.max(min_ts));
        if upper < lower {
            return Ok(collect::TopFruit {
                total: 0,
                remaining: 0,
                hits: Vec::new(),
            });
        }
        let range = i128::from(upper) - i128::from(lower) + 1;
        let wanted = 2 * (top.limit as i128 + 1);
        let mut span = (range * wanted / i128::from(total.max(1))).max(1);
        loop {
            let window_start = i128::from(upper) - span + 1;
            if window_start <= i128::from(lower) {
                return Ok(searcher.search(query, top)?);
            }
            let window = BooleanQuery::new(vec![
                (Occur::Must, query.box_clone()),
                (
                    Occur::Must,
                    query::time_range_query(
                        &self.shared().fields,
                        i64::try_from(window_start).ok(),
                        upper.checked_add(1),
                        Some((min_ts, max_ts)),
                    ),
                ),
            ]);
            let fruit = searcher.search(&window, top)?;
            if fruit.remaining > top.limit as u64 {
                return Ok(fruit);
            }
            span = span.saturating_mul(8);
        }
    }

    /// Number of matching events.
    pub fn count(&self, filter: &Filter) -> Result<u64, SearchError> {
        let searcher = self.searcher();
        let query = self.compile(&searcher, filter)?;
        Ok(searcher.search(query.as_ref(), &Count)? as u64)
    }

    /// The `limit` oldest matches by `(timestamp, seq)`, oldest first, and how many match in
    /// all. It visits every match: for small sets such as the events of one trace, not for
    /// paging through a broad query.
    pub fn oldest(&self, filter: &Filter, limit: usize) -> Result<OldestHits, SearchError> {
        let searcher = self.searcher();
        let query = self.compile(&searcher, filter)?;
        let fruit = searcher.search(query.as_ref(), &collect::OldestByTime { limit })?;
        Ok(OldestHits {
            hits: fruit
                .hits
                .into_iter()
                .map(|(timestamp, seq)| Hit { seq, timestamp })
                .collect(),
            total: fruit.total,
        })
    }

    /// Positions of every matching event, ascending (for retention/erasure to find store keys).
    pub fn positions(&self, filter: &Filter) -> Result<Vec<u64>, SearchError> {
        let searcher = self.searcher();
        let query = self.compile(&searcher, filter)?;
        Ok(searcher.search(query.as_ref(), &collect::Positions)?)
    }

    fn send(&self, command: Command) -> Result<(), SearchError> {
        let sender = lock(&self.inner.commands).clone();
        match sender {
            Some(sender) => sender.send(command).map_err(|_| SearchError::Closed),
            None => Err(SearchError::Closed),
        }
    }

    /// Deletes matching documents with positions in `seqs` and commits (the payload keeps the
    /// position); returns how many were deleted. Blocking; runs on the indexer thread after
    /// everything queued before it. Idempotent.
    pub fn delete(&self, filter: &Filter, seqs: std::ops::Range<u64>) -> Result<u64, SearchError> {
        let searcher = self.searcher();
        let matching = self.compile(&searcher, filter)?;
        let query: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
            (Occur::Must, matching),
            (
                Occur::Must,
                query::seq_range_query(&self.shared().fields, seqs),
            ),
        ]));
        let (reply, result) = sync_channel(1);
        self.send(Command::Delete { query, reply })?;
        result.recv().map_err(|_| SearchError::Closed)?
    }

    /// Merges every segment holding deleted documents and garbage-collects unused files, so
    /// deleted (erased) values are gone from the bytes of the index directory. Blocking; can take
    /// a while on a large index (it rewrites the affected segments).
    pub fn purge(&self) -> Result<(), SearchError> {
        let (reply, result) = sync_channel(1);
        self.send(Command::Purge { reply })?;
        result.recv().map_err(|_| SearchError::Closed)?
    }

    /// Events, distinct installs and regions per country, sorted by events descending. Events
    /// without a country are not counted. Countries with fewer than `min_installs` distinct
    /// installs are folded into `other`, regions of fewer into their country's `other`.
    pub fn geo(
        &self,
        filter: &Filter,
        min_installs: u32,
    ) -> Result<Folded<CountryCount>, SearchError> {
        let searcher = self.searcher();
        let query = self.compile(&searcher, filter)?;
        let groups = searcher.search(
            query.as_ref(),
            &aggregate::GroupBy {
                column: EventField::CountryCode.name().to_string(),
                sub_column: Some(EventField::RegionCode.name().to_string()),
                install_column: EventField::InstallId.name().to_string(),
            },
        )?;
        let (groups, suppressed_groups) = aggregate::fold_small_groups(groups, min_installs, true);
        Ok(Folded {
            rows: aggregate::geo_rows(groups),
            suppressed_groups,
        })
    }

    /// Counts per bucket of `bucket_ms` (aligned to multiples of `bucket_ms` since the epoch)
    /// stacked by level, for every bucket overlapping `[from, to)` (zero buckets included).
    /// Without `from`/`to`, the range of the matching events is used.
    pub fn timeseries(
        &self,
        filter: &Filter,
        bucket_ms: i64,
    ) -> Result<Vec<TimeBucket>, SearchError> {
        if bucket_ms <= 0 {
            return Err(SearchError::InvalidRequest(format!(
                "bucket must be positive, got {bucket_ms} ms"
            )));
        }
        let too_many = |first: i64, last: i64| bucket_count(first, last, bucket_ms) > MAX_BUCKETS;
        let align = |t: i64| bucket_start(t, bucket_ms);
        if let (Some(from), Some(to)) = (filter.from_ms, filter.to_ms) {
            if to > from && too_many(align(from), align(to - 1)) {
                return Err(SearchError::InvalidRequest(format!(
                    "more than {MAX_BUCKETS} buckets of {bucket_ms} ms in the time range"
                )));
            }
        }
        let searcher = self.searcher();
        let query = self.compile(&searcher, filter)?;
        let counts = searcher.search(
            query.as_ref(),
            &aggregate::LevelSeries {
                bucket_ms,
                level_column: EventField::Level.name().to_string(),
            },
        )?;
        let first = match (filter.from_ms, counts.keys().next()) {
            (Some(from), _) => align(from),
            (None, Some(first)) => *first,
            (None, None) => return Ok(Vec::new()),
        };
        let last = match (filter.to_ms, counts.keys().next_back()) {
            (Some(to), _) => align(to.saturating_sub(1)),
            (None, Some(last)) => *last,
            (None, None) => return Ok(Vec::new()),
        };
        if last < first {
            return Ok(Vec::new());
        }
        if too_many(first, last) {
            return Err(SearchError::InvalidRequest(format!(
                "more than {MAX_BUCKETS} buckets of {bucket_ms} ms; use a larger bucket or a time range"
            )));
        }
        Ok(aggregate::series_rows(&counts, first, last, bucket_ms))
    }

    /// Events and distinct installs per value of `field` (a catalogue field with
    /// [`Use::Breakdown`], by name or alias, or a dimension as `dims.NAME` or `NAME`), sorted by
    /// events descending, at most `limit` rows. Events without a value are not counted. Values
    /// with fewer than `min_installs` distinct installs are folded into `other` (0 = none).
    pub fn breakdown(
        &self,
        filter: &Filter,
        field: &str,
        limit: usize,
        min_installs: u32,
    ) -> Result<Folded<BreakdownRow>, SearchError> {
        let searcher = self.searcher();
        let column = column_of(&searcher, field, Use::Breakdown)?;
        let query = self.compile(&searcher, filter)?;
        let groups = searcher.search(
            query.as_ref(),
            &aggregate::GroupBy {
                column,
                sub_column: None,
                install_column: EventField::InstallId.name().to_string(),
            },
        )?;
        let (groups, suppressed_groups) = aggregate::fold_small_groups(groups, min_installs, false);
        Ok(Folded {
            rows: aggregate::breakdown_rows(groups, limit.min(MAX_BREAKDOWN_ROWS)),
            suppressed_groups,
        })
    }

    /// Every matching event's timestamp, weight, the values of `columns` (fields with
    /// [`Use::Column`] by name or alias, or dimensions as `dims.NAME` or `NAME`) and of `metric`
    /// (a metric name), from the fast columns. For analytics; memory grows with the matches.
    pub fn scan(
        &self,
        filter: &Filter,
        columns: &[&str],
        metric: Option<&str>,
    ) -> Result<Scanned, SearchError> {
        let parts = self.fold(filter, columns, metric, Scanned::of)?;
        Ok(Scanned::concat(parts))
    }

    /// The rows [`Index::scan`] reads, folded on the scan's threads into copies of the fold
    /// `start` makes from the columns' dictionaries: one copy per thread that scanned, for the
    /// caller to merge (at least one).
    pub fn fold<F: Fold>(
        &self,
        filter: &Filter,
        columns: &[&str],
        metric: Option<&str>,
        start: impl FnOnce(&[Arc<Dictionary>]) -> F,
    ) -> Result<Vec<F>, SearchError> {
        let searcher = self.searcher();
        let mut dictionaries = Vec::with_capacity(columns.len());
        let mut sources = Vec::with_capacity(columns.len());
        for field in columns {
            let name = column_of(&searcher, field, Use::Column)?;
            let (dictionary, tables) = self.shared().ordinals.tables(&searcher, &name)?;
            sources.push(scan::Source {
                name,
                generation: dictionary.generation,
                tables,
            });
            dictionaries.push(dictionary);
        }
        let decoded = &self.shared().decoded;
        let generations: Vec<(&str, u64)> = sources
            .iter()
            .map(|s| (s.name.as_str(), s.generation))
            .collect();
        decoded.prune(&searcher, &generations);
        let metric = metric.map(|name| {
            let key = name.strip_prefix("metrics.").unwrap_or(name);
            format!("metrics.{}", escape_json_key(key))
        });
        let query = self.compile_with(&searcher, filter, true)?;
        let scan = scan::Scan {
            columns: sources,
            decoded,
            metric,
            from_ms: filter.from_ms.unwrap_or(i64::MIN),
            to_ms: filter.to_ms.unwrap_or(i64::MAX),
            start: start(&dictionaries),
            folds: Default::default(),
        };
        let weight = query.weight(tantivy::query::EnableScoring::disabled_from_searcher(
            &searcher,
        ))?;
        let executor = &self.shared().scan_executor;
        executor.map(
            |(ordinal, docs)| {
                let segment = searcher.segment_reader(ordinal);
                scan.collect_piece(weight.as_ref(), ordinal, segment, docs)
            },
            scan::pieces(&searcher, scan_threads()).into_iter(),
        )?;
        Ok(scan.into_folds())
    }

    /// `f` of each item, in order, on the scan threads (per-group work of an analytics answer,
    /// such as percentiles over millions of values).
    pub fn in_parallel<T: Send, R: Send>(
        &self,
        items: Vec<T>,
        f: impl Fn(T) -> R + Sync,
    ) -> Vec<R> {
        let done = self
            .shared()
            .scan_executor
            .map(|item| Ok(f(item)), items.into_iter());
        match done {
            Ok(done) => done,
            Err(_) => unreachable!("the work has no error to return"),
        }
    }

    /// Document count, segments, bytes on disk, position and last commit time.
    pub fn stats(&self) -> IndexStats {
        let searcher = self.searcher();
        let size_bytes = std::fs::read_dir(&self.shared().dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        IndexStats {
            docs: searcher.num_docs(),
            segments: searcher.segment_readers().len() as u64,
            size_bytes,
            indexed_position: self.indexed_position(),
            last_commit_ms: self.shared().last_commit_ms.load(Ordering::Relaxed),
            dropped_batches: self.shared().dropped_batches.load(Ordering::Relaxed),
            queued_events: self.shared().queued.queued() as u64,
            scan_cache_bytes: self.shared().decoded.bytes() as u64,
        }
    }

    /// Stops the indexer: commits what it has (payload = position) and joins the thread.
    /// Searching keeps working on the last commit; `delete`/`purge` then fail with `Closed`.
    pub fn close(&self) {
        self.inner.close();
    }
}

/// A thread per core, at most four.
fn scan_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// A pool with [`scan_threads`] threads for scans, or this thread alone.
fn scan_executor() -> Executor {
    let threads = scan_threads();
    if threads > 1 {
        if let Ok(executor) = Executor::multi_thread(threads, "scan-") {
            return executor;
        }
    }
    Executor::single_thread()
}

/// The fast column of `field`: a catalogue field with `usage` (by name or alias), or a
/// dimension as `dims.NAME` or `NAME` (a bare name must exist in the index).
fn column_of(searcher: &Searcher, field: &str, usage: Use) -> Result<String, SearchError> {
    match exact_field(field) {
        Some(f) if f.has(usage) => Ok(f.name().to_string()),
        Some(f) => Err(SearchError::InvalidRequest(format!(
            "cannot group by \"{f}\" (not kept as a column)"
        ))),
        None if !query::is_field_name(field) => Err(SearchError::InvalidRequest(format!(
            "cannot group by \"{field}\": not a field name"
        ))),
        None => {
            let key = field.strip_prefix("dims.").unwrap_or(field);
            let column = format!("dims.{}", escape_json_key(key));
            let mut exists = false;
            for segment in searcher.segment_readers() {
                if segment.fast_fields().str(&column)?.is_some() {
                    exists = true;
                    break;
                }
            }
            if !exists && (!field.starts_with("dims.") || key.is_empty()) {
                return Err(SearchError::InvalidRequest(format!(
                    "cannot group by \"{field}\": not an exact-match field or a dimension in the index"
                )));
            }
            Ok(column)
        }
    }
}

/// Rebuilds an index from scratch into `dir` (removing what was there), reporting
/// `(positions done, positions total)`; returns the number of documents indexed. No
/// [`SearchIndex`] may be open on `dir` meanwhile (the writer lock would refuse).
pub fn rebuild(
    dir: &Path,
    source: &dyn EventSource,
    options: &SearchOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, SearchError> {
    indexer::rebuild(dir, source, options, progress)
}
