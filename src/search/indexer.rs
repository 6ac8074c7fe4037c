//! The index on disk and its single writer: opening (or discarding and recreating) the index,
//! the commit payload that records the next position to index, the indexer thread (batches
//! from the store writer, catch-up from the store, periodic commits, deletes, purge) and the
//! rebuild from scratch.
//!
//! Invariant: every document in a commit has `seq <` the commit's payload position, and every
//! event below that position that the store still holds is in the commit (or was deleted through
//! [`super::SearchIndex::delete`]). Documents added after the last commit are lost on a crash and
//! re-read from the store on the next start, so the index never holds duplicates.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tantivy::collector::Count;
use tantivy::indexer::{IndexWriterOptions, LogMergePolicy, NoMergePolicy};
use tantivy::query::Query;
use tantivy::{Index, IndexSettings, IndexWriter};

use super::schema::{build_schema, IndexFields, SCHEMA_VERSION};
use super::{EventSource, SearchError, SearchOptions, Shared};
use crate::model::Event;

/// Events read from the store per `events_from` call during catch-up and rebuild.
const CATCH_UP_CHUNK: usize = 5_000;
/// Tantivy's bounds for the per-thread indexing arena.
const MIN_WRITER_MEMORY: usize = 15_000_000;
const MAX_WRITER_MEMORY: usize = 4_000_000_000;
/// During a rebuild, commit (and record progress) at least this often.
const REBUILD_COMMIT_EVERY: Duration = Duration::from_secs(30);

/// What the index's commit payload holds.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    /// Schema version the index was written with.
    schema: u32,
    /// Next position to index: every stored event below it is in this commit.
    next_seq: u64,
}

fn payload_json(next_seq: u64) -> String {
    let payload = Payload {
        schema: SCHEMA_VERSION,
        next_seq,
    };
    serde_json::to_string(&payload)
        .unwrap_or_else(|_| format!("{{\"schema\":{SCHEMA_VERSION},\"next_seq\":{next_seq}}}"))
}

fn io_error(context: &str, path: &Path, err: std::io::Error) -> SearchError {
    SearchError::Io(format!("{context} {}: {err}", path.display()))
}

/// Removes everything inside `dir` (not `dir` itself).
fn clear_dir(dir: &Path) -> Result<(), SearchError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("cannot list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("cannot list", dir, e))?;
        let path = entry.path();
        let result = if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.map_err(|e| io_error("cannot remove", &path, e))?;
    }
    Ok(())
}

fn create_index(dir: &Path) -> Result<Index, SearchError> {
    let (schema, _) = build_schema();
    let settings = IndexSettings {
        // Nothing is stored, so no thread for doc-store compression.
        docstore_compress_dedicated_thread: false,
        ..IndexSettings::default()
    };
    Ok(Index::builder()
        .schema(schema)
        .settings(settings)
        .create_in_dir(dir)?)
}

/// Opens the index in `dir`, or creates it. An index with another schema, a missing or foreign
/// payload, or one tantivy cannot open is discarded (it is derived data) and recreated empty.
/// Returns the index and the position to continue from.
pub(crate) fn open_or_create(dir: &Path) -> Result<(Index, u64), SearchError> {
    std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
    if dir.join("meta.json").exists() {
        match check_existing(dir) {
            Ok(found) => return Ok(found),
            Err(reason) => {
                tracing::warn!(dir = %dir.display(), %reason, "discarding the search index; it is rebuilt from the store");
                clear_dir(dir)?;
            }
        }
    }
    Ok((create_index(dir)?, 0))
}

fn check_existing(dir: &Path) -> Result<(Index, u64), String> {
    let index = Index::open_in_dir(dir).map_err(|e| format!("cannot open: {e}"))?;
    let (expected, _) = build_schema();
    let same_schema =
        serde_json::to_string(&index.schema()).ok() == serde_json::to_string(&expected).ok();
    if !same_schema {
        return Err("schema changed".to_string());
    }
    let metas = index
        .load_metas()
        .map_err(|e| format!("cannot read meta.json: {e}"))?;
    match metas.payload.as_deref() {
        Some(text) => match serde_json::from_str::<Payload>(text) {
            Ok(p) if p.schema == SCHEMA_VERSION => Ok((index, p.next_seq)),
            Ok(p) => Err(format!("schema version {} != {SCHEMA_VERSION}", p.schema)),
            Err(e) => Err(format!("unreadable commit payload: {e}")),
        },
        None if metas.segments.is_empty() => Ok((index, 0)),
        None => Err("no commit payload".to_string()),
    }
}

pub(crate) fn merge_policy() -> LogMergePolicy {
    let mut policy = LogMergePolicy::default();
    // Segments with many deleted docs get rewritten by normal merges.
    policy.set_del_docs_ratio_before_merge(0.2);
    policy
}

pub(crate) fn new_writer(
    index: &Index,
    options: &SearchOptions,
) -> Result<IndexWriter, SearchError> {
    let writer_options = IndexWriterOptions::builder()
        .memory_budget_per_thread(
            options
                .writer_memory_bytes
                .clamp(MIN_WRITER_MEMORY, MAX_WRITER_MEMORY),
        )
        .num_worker_threads(1)
        .num_merge_threads(options.merge_threads.max(1))
        .build();
    let writer: IndexWriter = index.writer_with_options(writer_options)?;
    writer.set_merge_policy(Box::new(merge_policy()));
    Ok(writer)
}

fn commit_with_payload(writer: &mut IndexWriter, next_seq: u64) -> Result<(), SearchError> {
    let mut prepared = writer.prepare_commit()?;
    prepared.set_payload(&payload_json(next_seq));
    prepared.commit()?;
    Ok(())
}

/// A request to the indexer thread.
pub(crate) enum Command {
    Events(Vec<(u64, Arc<Event>)>),
    Delete {
        query: Box<dyn Query>,
        reply: SyncSender<Result<u64, SearchError>>,
    },
    Purge {
        reply: SyncSender<Result<(), SearchError>>,
    },
    Close {
        reply: SyncSender<()>,
    },
}

/// The indexer thread's state. It owns the only `IndexWriter`.
pub(crate) struct Indexer {
    shared: Arc<Shared>,
    source: Arc<dyn EventSource>,
    options: SearchOptions,
    /// `None` only while being replaced.
    writer: Option<IndexWriter>,
    /// Next position to index: everything below is in the writer (committed or not) or absent
    /// from the store.
    next: u64,
    /// Position in the last commit.
    committed: u64,
    /// Documents or deletes added since the last commit.
    dirty: bool,
    last_commit: Instant,
    last_check: Instant,
}

impl Indexer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        source: Arc<dyn EventSource>,
        options: SearchOptions,
        writer: IndexWriter,
        position: u64,
    ) -> Indexer {
        Indexer {
            shared,
            source,
            options,
            writer: Some(writer),
            next: position,
            committed: position,
            dirty: false,
            last_commit: Instant::now(),
            last_check: Instant::now(),
        }
    }

    fn interval(&self) -> Duration {
        self.options.commit_interval.max(Duration::from_millis(1))
    }

    fn uncommitted(&self) -> bool {
        self.dirty || self.next != self.committed
    }

    fn writer(&mut self) -> Result<&mut IndexWriter, SearchError> {
        if self.writer.is_none() {
            self.writer = Some(new_writer(&self.shared.index, &self.options)?);
        }
        self.writer
            .as_mut()
            .ok_or_else(|| SearchError::Tantivy("index writer unavailable".to_string()))
    }

    pub(crate) fn run(mut self, commands: Receiver<Command>) {
        self.step(|this| this.catch_up());
        loop {
            let deadline = if self.uncommitted() {
                self.last_commit + self.interval()
            } else {
                self.last_check + self.interval()
            };
            let received =
                commands.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            let idle = matches!(received, Err(RecvTimeoutError::Timeout));
            match received {
                Ok(Command::Events(batch)) => {
                    self.shared.queued.give_back(batch.len());
                    self.step(|this| this.index_batch(batch))
                }
                Ok(Command::Delete { query, reply }) => {
                    let result = self.delete(query);
                    if result.is_err() {
                        self.recover();
                    }
                    let _ = reply.send(result);
                }
                Ok(Command::Purge { reply }) => {
                    let result = self.purge();
                    if result.is_err() {
                        self.recover();
                    }
                    let _ = reply.send(result);
                }
                Ok(Command::Close { reply }) => {
                    self.shutdown();
                    let _ = reply.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.shutdown();
                    return;
                }
            }
            // The store check runs only when no batch came for a while: under load the events
            // the store is ahead by are still in the queue, and reading them back would double
            // the work. A gap in the batches (one dropped) is caught up where it is noticed.
            if idle && self.last_check.elapsed() >= self.interval() {
                self.last_check = Instant::now();
                self.step(|this| this.catch_up());
            }
            if self.uncommitted() && self.last_commit.elapsed() >= self.interval() {
                self.step(|this| this.commit());
            }
        }
    }

    /// Runs one unit of work; on failure logs it and rolls back to the last commit (whatever was
    /// lost is read again from the store).
    fn step(&mut self, work: impl FnOnce(&mut Self) -> Result<(), SearchError>) {
        if let Err(err) = work(self) {
            tracing::error!(error = %err, position = self.committed, "search indexer error; rolling back to the last commit");
            self.recover();
        }
    }

    fn recover(&mut self) {
        let rolled_back = match self.writer.as_mut() {
            Some(writer) => writer.rollback().is_ok(),
            None => false,
        };
        if !rolled_back {
            // Replace the writer (dropping it releases the lock), lazily recreated on next use.
            self.writer = None;
        }
        self.next = self.committed;
        self.dirty = false;
        // Retry through catch-up only after an interval, not in a hot loop.
        self.last_check = Instant::now();
        self.last_commit = Instant::now();
    }

    fn shutdown(&mut self) {
        if self.uncommitted() {
            self.step(|this| this.commit());
        }
        // Dropping the writer stops its threads; running merges are abandoned (their files are
        // garbage-collected on the next start).
        self.writer = None;
    }

    fn add(&mut self, seq: u64, event: &Event) -> Result<(), SearchError> {
        let document = self.shared.fields.document(seq, event);
        self.writer()?.add_document(document)?;
        self.next = seq + 1;
        self.dirty = true;
        Ok(())
    }

    fn index_batch(&mut self, batch: Vec<(u64, Arc<Event>)>) -> Result<(), SearchError> {
        for (seq, event) in batch {
            if seq < self.next {
                continue; // already read from the store by a catch-up
            }
            if seq > self.next {
                // Dropped batches (or positions freed by deletes): read them from the store.
                self.catch_up()?;
                if seq < self.next {
                    continue;
                }
                if seq > self.next {
                    // The store did not reach `seq` yet (should not happen: batches are notified
                    // after their commit). Leave the rest to the periodic catch-up.
                    return Ok(());
                }
            }
            self.add(seq, &event)?;
        }
        if self.last_commit.elapsed() >= self.interval() {
            self.commit()?;
        }
        Ok(())
    }

    /// Indexes everything the store holds from `next` on, committing every interval.
    fn catch_up(&mut self) -> Result<(), SearchError> {
        let target = self.source.next_seq().map_err(SearchError::Source)?;
        while self.next < target {
            if self.shared.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let events = self
                .source
                .events_from(self.next, CATCH_UP_CHUNK)
                .map_err(SearchError::Source)?;
            let before = self.next;
            for (seq, event) in &events {
                if *seq >= self.next {
                    self.add(*seq, event)?;
                }
            }
            if events.is_empty() || self.next == before {
                // Nothing stored between `next` and `target` (deleted): skip the gap.
                self.next = self.next.max(target);
            }
            if self.last_commit.elapsed() >= self.interval() {
                self.commit()?;
            }
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), SearchError> {
        let next = self.next;
        commit_with_payload(self.writer()?, next)?;
        self.committed = next;
        self.dirty = false;
        self.last_commit = Instant::now();
        self.shared.reader.reload()?;
        self.shared.publish(next);
        Ok(())
    }

    fn delete(&mut self, query: Box<dyn Query>) -> Result<u64, SearchError> {
        // Commit pending documents first so the count sees them and they get deleted too.
        if self.uncommitted() {
            self.commit()?;
        }
        let searcher = self.shared.reader.searcher();
        let count = searcher.search(query.as_ref(), &Count)? as u64;
        if count > 0 {
            self.writer()?.delete_query(query)?;
            self.dirty = true;
            self.commit()?;
        }
        Ok(count)
    }

    fn purge(&mut self) -> Result<(), SearchError> {
        if self.uncommitted() {
            self.commit()?;
        }
        // Let running merges finish (they may hold segments with deletes), then merge every
        // segment that has deleted documents with automatic merges off.
        if let Some(writer) = self.writer.take() {
            writer.wait_merging_threads()?;
        }
        let mut writer = new_writer(&self.shared.index, &self.options)?;
        writer.set_merge_policy(Box::new(NoMergePolicy));
        let with_deletes: Vec<_> = self
            .shared
            .index
            .searchable_segment_metas()?
            .into_iter()
            .filter(|meta| meta.has_deletes())
            .map(|meta| meta.id())
            .collect();
        if !with_deletes.is_empty() {
            writer.merge(&with_deletes).wait()?;
        }
        self.shared.reader.reload()?;
        writer.garbage_collect_files().wait()?;
        writer.set_merge_policy(Box::new(merge_policy()));
        self.writer = Some(writer);
        self.shared.touch_commit_time();
        Ok(())
    }
}

/// Builds a fresh index in `dir` from every event of `source`; see [`super::rebuild`].
pub(crate) fn rebuild(
    dir: &Path,
    source: &dyn EventSource,
    options: &SearchOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, SearchError> {
    std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
    clear_dir(dir)?;
    let index = create_index(dir)?;
    let (_, fields): (_, IndexFields) = build_schema();
    let mut writer = new_writer(&index, options)?;
    let target = source.next_seq().map_err(SearchError::Source)?;
    progress(0, target);
    let mut next = 0u64;
    let mut docs = 0u64;
    let mut last_commit = Instant::now();
    while next < target {
        let events = source
            .events_from(next, CATCH_UP_CHUNK)
            .map_err(SearchError::Source)?;
        let before = next;
        for (seq, event) in &events {
            if *seq >= next {
                writer.add_document(fields.document(*seq, event))?;
                docs += 1;
                next = seq + 1;
            }
        }
        if events.is_empty() || next == before {
            next = target;
        }
        progress(next.min(target), target);
        if last_commit.elapsed() >= REBUILD_COMMIT_EVERY {
            commit_with_payload(&mut writer, next)?;
            last_commit = Instant::now();
        }
    }
    commit_with_payload(&mut writer, next)?;
    writer.wait_merging_threads()?;
    Ok(docs)
}
