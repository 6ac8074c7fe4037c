//! Export sinks: each `[[sinks]]` entry streams every stored event to a destination (one file per
//! kind: `clickhouse.rs`). A sink is a commit subscriber with its own position in the store's event
//! sequence (a file under `DATA_DIR/sinks/`), its own thread that reads committed events in batches
//! from that position, delivers them, and moves the position only after the destination confirmed;
//! when the destination is down it retries with capped exponential backoff and falls behind —
//! ingest never waits for it. The writer hands each committed batch to the sink in memory (up to
//! two batches' worth) and wakes the thread: a sink that keeps up delivers from there instead of
//! reading and decoding the events back from the store, which it falls back to for the rest.
//! Positions the store no longer holds when the sink reaches them (deleted by retention or erasure
//! first) are reported as skipped. Erasure and retention are carried to the destination; an erasure
//! the destination did not confirm is kept in a file and retried until it is. OTLP metric points go
//! too, to their own table: a sink first copies every stored point, then follows the store's points
//! outbox (every point write, in order) from the position it copied at; the outbox is pruned below
//! the lowest position any sink still needs.

pub mod clickhouse;
mod row_binary;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, SinkConfig, SinkKind};
use crate::error::StoreError;
use crate::model::{now_ms, Event};
use crate::privacy::SubjectKind;
use crate::series::store::{self as series_store, PointRecord};
use crate::store::subscribers::{CommitSubscriber, Committed};
use crate::store::writer::Writer;
use crate::store::Store;

/// The first wait after a failed delivery; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_INITIAL: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Skipped ranges kept for the status (the total is counted in full).
const SKIPPED_KEPT: usize = 20;
/// The window the delivery rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// The points outbox is pruned when the sinks moved this far past the last prune, or after
/// [`OUTBOX_PRUNE_INTERVAL`].
const OUTBOX_PRUNE_STEP: u64 = 100_000;
const OUTBOX_PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// The sinks directory inside the data dir.
pub const SINKS_DIR: &str = "sinks";

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination could not be reached or did not answer in time.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The destination answered with an error.
    #[error("rejected (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// The destination lacks something the sink does not create (a cluster's tables).
    #[error("not ready: {0}")]
    NotReady(String),
    /// The destination accepted a delete but did not finish it in time.
    #[error("not confirmed: {0}")]
    Unconfirmed(String),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sink state file {path}: {message}")]
    State { path: PathBuf, message: String },
}

/// The rows of one subject to delete at a destination: those of `kind` = `id` in `products`,
/// received up to `received_until_ms` (so events sent after the erasure are not touched when
/// it is retried later), and, for an install, its metric points of versions below
/// `points_below` (the outbox position at the erasure; set by the sinks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectDelete {
    pub kind: SubjectKind,
    pub id: String,
    pub products: Vec<String>,
    pub received_until_ms: i64,
    #[serde(default)]
    pub points_below: Option<u64>,
}

/// Where a sink delivers: one implementation per kind.
pub trait Destination: Send + Sync {
    /// Creates what the destination needs (database, table) when it is missing.
    fn prepare(&self) -> Result<(), SinkError>;
    /// Stores the events; `Ok` only when the destination confirmed all of them.
    fn deliver(&self, events: &[(u64, Arc<Event>)]) -> Result<(), SinkError>;
    /// Stores metric points; a point delivered again with a higher version replaces the
    /// earlier row. `Ok` only when the destination confirmed all of them.
    fn deliver_points(&self, points: &[PointRecord]) -> Result<(), SinkError>;
    /// Deletes the subject's rows (events, and metric points when `points_below` is set);
    /// `Ok` only when the destination finished the delete.
    fn delete_subject(&self, delete: &SubjectDelete) -> Result<(), SinkError>;
    /// Deletes what is older than each product's retention (`(product, cutoff_ms)`); says how
    /// many units (partitions) it dropped.
    fn apply_retention(&self, cutoffs: &[(String, i64)]) -> Result<u64, SinkError>;
}

/// Positions the sink found deleted from the store when it reached them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SkippedRange {
    /// `[from, below)`.
    pub from: u64,
    pub below: u64,
    pub noticed_at: i64,
}

/// What `/api/v1/stats`, `/readyz`, `/metrics` and `telemetryd sink status` show of a sink.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SinkStatus {
    pub name: String,
    pub kind: &'static str,
    /// The first position not yet delivered.
    pub position: u64,
    pub lag_events: u64,
    /// How long ago the oldest undelivered event was received (0 when caught up).
    pub lag_seconds: f64,
    pub delivered_total: u64,
    /// Events delivered per second over the last minute.
    pub delivered_per_second: f64,
    pub last_delivery_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub failures_total: u64,
    pub skipped_total: u64,
    pub skipped: Vec<SkippedRange>,
    /// Subject deletes not yet confirmed by the destination (retried).
    pub pending_erasures: usize,
    /// The metric points outbox position delivered up to.
    pub points_position: u64,
    /// Point writes not delivered yet (outbox entries, plus the copy when one runs).
    pub points_lag: u64,
    /// True while the sink copies every stored point (its first start, or after it fell
    /// below the outbox's floor).
    pub points_copying: bool,
    pub points_delivered_total: u64,
}

/// A sink's answer for one erasure.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SinkErasure {
    pub sink: String,
    pub confirmed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Committed events not yet delivered, as the writer handed them over, in position order.
/// Bounded: a batch that does not fit is left to the store, and so is anything after a gap.
struct Handed {
    events: VecDeque<(u64, Arc<Event>)>,
    limit: usize,
}

impl Handed {
    fn new(limit: usize) -> Handed {
        Handed {
            events: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    fn push(&mut self, committed: &Committed) {
        if self.events.len() + committed.len() <= self.limit {
            self.events.extend(committed.iter().cloned());
        }
    }

    /// Up to `most` events from `position` on, if the first of them is here; the run stops at
    /// a gap. Events below `position` (read from the store meanwhile) are dropped.
    fn take_from(&mut self, position: u64, most: usize) -> Option<Vec<(u64, Arc<Event>)>> {
        while self.events.front().is_some_and(|(seq, _)| *seq < position) {
            self.events.pop_front();
        }
        let mut run = Vec::new();
        let mut expected = position;
        while run.len() < most && self.events.front().is_some_and(|(seq, _)| *seq == expected) {
            run.extend(self.events.pop_front());
            expected += 1;
        }
        (!run.is_empty()).then_some(run)
    }
}

#[derive(Default)]
struct Progress {
    position: u64,
    delivered_total: u64,
    recent: VecDeque<(Instant, u64)>,
    last_delivery_at: Option<i64>,
    last_error: Option<String>,
    last_error_at: Option<i64>,
    failures_total: u64,
    skipped_total: u64,
    skipped: VecDeque<SkippedRange>,
    points_delivered_total: u64,
}

/// Where a sink is in the metric points: copying every stored point (after the point key
/// `after`), then following the outbox from `resume_at`; or following it from `position`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PointsCursor {
    Copying {
        resume_at: u64,
        after: Option<(u64, i64)>,
    },
    Following {
        position: u64,
    },
}

impl PointsCursor {
    /// The lowest outbox position the sink still needs.
    fn needs(self) -> u64 {
        match self {
            PointsCursor::Copying { resume_at, .. } => resume_at,
            PointsCursor::Following { position } => position,
        }
    }
}

/// The points outbox as the sinks share it: the position each still needs, and pruning below
/// the lowest of them (through the store writer).
struct Outbox {
    writer: Arc<Writer>,
    needed: Mutex<Vec<u64>>,
    pruned: Mutex<(u64, Instant)>,
}

impl Outbox {
    fn note(&self, sink: usize, needs: u64) {
        if let Some(slot) = self
            .needed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(sink)
        {
            *slot = needs;
        }
    }

    /// Prunes below the lowest needed position when it moved far enough or long enough ago.
    fn prune(&self) -> Result<(), SinkError> {
        let Some(low) = self
            .needed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .min()
        else {
            return Ok(());
        };
        let (below, at) = *self.pruned.lock().unwrap_or_else(|p| p.into_inner());
        if low <= below || (low - below < OUTBOX_PRUNE_STEP && at.elapsed() < OUTBOX_PRUNE_INTERVAL)
        {
            return Ok(());
        }
        self.writer.exclusive_blocking(move |store| {
            store.write(|txn| series_store::prune_outbox(txn, low))
        })?;
        *self.pruned.lock().unwrap_or_else(|p| p.into_inner()) = (low, Instant::now());
        Ok(())
    }
}

/// One configured sink: its position, its thread's state, its destination.
pub struct Sink {
    name: &'static str,
    /// Its place in the outbox's `needed`.
    index: usize,
    kind: SinkKind,
    store: Store,
    destination: Box<dyn Destination>,
    batch_size: usize,
    flush_interval: Duration,
    position_file: PathBuf,
    erasures_file: PathBuf,
    points_file: PathBuf,
    progress: Mutex<Progress>,
    points: Mutex<PointsCursor>,
    outbox: Arc<Outbox>,
    /// Held while a batch is read and delivered, and while an erasure runs, so an erasure
    /// never races a batch holding the subject's events.
    delivery: Mutex<()>,
    pending_erasures: Mutex<Vec<SubjectDelete>>,
    handed: Mutex<Handed>,
    woken: Mutex<bool>,
    wake: Condvar,
    stopping: AtomicBool,
}

impl Sink {
    /// The sink of `config` over `destination`, with its positions and pending erasures read
    /// from `dir`. A sink without a points position, or one below the outbox's floor (points
    /// were written while it was not configured), starts by copying every stored point.
    fn new(
        config: &SinkConfig,
        destination: Box<dyn Destination>,
        store: Store,
        dir: &Path,
        (index, outbox): (usize, Arc<Outbox>),
    ) -> Result<Sink, SinkError> {
        let position_file = dir.join(format!("{}.position", config.name));
        let erasures_file = dir.join(format!("{}.erasures.json", config.name));
        let points_file = dir.join(format!("{}.points.json", config.name));
        let position = read_state::<u64>(&position_file)?.unwrap_or(0);
        let pending = read_state::<Vec<SubjectDelete>>(&erasures_file)?.unwrap_or_default();
        let (floor, next) = series_store::outbox_bounds(&store.begin_read()?)?;
        let points = match read_state::<PointsCursor>(&points_file)? {
            Some(cursor) if cursor.needs() >= floor => cursor,
            stale => {
                if stale.is_some() {
                    tracing::warn!(sink = %config.name, "sink: metric points were written while the sink was not configured; copying every stored point again");
                }
                let fresh = PointsCursor::Copying {
                    resume_at: next,
                    after: None,
                };
                write_state(&points_file, &fresh)?;
                fresh
            }
        };
        outbox.note(index, points.needs());
        Ok(Sink {
            // One leak per configured sink, at start: subscriber names are `&'static str`.
            name: Box::leak(config.name.clone().into_boxed_str()),
            index,
            kind: config.kind,
            store,
            destination,
            batch_size: config.batch_size,
            flush_interval: Duration::from_millis(config.flush_interval_ms),
            position_file,
            erasures_file,
            points_file,
            progress: Mutex::new(Progress {
                position,
                ..Progress::default()
            }),
            points: Mutex::new(points),
            outbox,
            delivery: Mutex::new(()),
            pending_erasures: Mutex::new(pending),
            handed: Mutex::new(Handed::new(config.batch_size.saturating_mul(2))),
            woken: Mutex::new(false),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
        })
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handed(&self) -> MutexGuard<'_, Handed> {
        self.handed.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn name(&self) -> &str {
        self.name
    }

    /// Its status, with the lag behind `next_seq`.
    pub fn status(&self, next_seq: u64) -> SinkStatus {
        let pending_erasures = self
            .pending_erasures
            .lock()
            .map(|p| p.len())
            .unwrap_or_default();
        let position = self.progress().position;
        let lag_events = next_seq.saturating_sub(position);
        let lag_seconds = if lag_events == 0 {
            0.0
        } else {
            // The oldest event not delivered yet (one block read per status).
            match self.store.events_from(position, 1) {
                Ok(first) => first.first().map_or(0.0, |(_, e)| {
                    (now_ms() - e.received_at).max(0) as f64 / 1000.0
                }),
                Err(_) => 0.0,
            }
        };
        let mut progress = self.progress();
        let window_start = Instant::now().checked_sub(RATE_WINDOW);
        while let (Some((at, _)), Some(start)) = (progress.recent.front(), window_start) {
            if *at >= start {
                break;
            }
            progress.recent.pop_front();
        }
        let in_window: u64 = progress.recent.iter().map(|(_, n)| n).sum();
        let points = *self.points.lock().unwrap_or_else(|p| p.into_inner());
        let outbox_next = self
            .store
            .begin_read()
            .and_then(|txn| series_store::outbox_bounds(&txn))
            .map_or(0, |(_, next)| next);
        SinkStatus {
            name: self.name.to_string(),
            kind: match self.kind {
                SinkKind::Clickhouse => "clickhouse",
            },
            position,
            lag_events,
            lag_seconds,
            delivered_total: progress.delivered_total,
            delivered_per_second: in_window as f64 / RATE_WINDOW.as_secs_f64(),
            last_delivery_at: progress.last_delivery_at,
            last_error: progress.last_error.clone(),
            last_error_at: progress.last_error_at,
            failures_total: progress.failures_total,
            skipped_total: progress.skipped_total,
            skipped: progress.skipped.iter().cloned().collect(),
            pending_erasures,
            points_position: points.needs(),
            points_lag: outbox_next.saturating_sub(points.needs()),
            points_copying: matches!(points, PointsCursor::Copying { .. }),
            points_delivered_total: progress.points_delivered_total,
        }
    }

    fn note_error(&self, error: &SinkError) {
        let mut progress = self.progress();
        progress.last_error = Some(error.to_string());
        progress.last_error_at = Some(now_ms());
        progress.failures_total += 1;
    }

    /// Waits up to `timeout`, or until woken by a commit or the stop; says whether to go on.
    fn wait(&self, timeout: Duration) -> bool {
        let woken = self.woken.lock().unwrap_or_else(|p| p.into_inner());
        let (mut woken, _) = self
            .wake
            .wait_timeout_while(woken, timeout, |w| {
                !*w && !self.stopping.load(Ordering::SeqCst)
            })
            .unwrap_or_else(|p| p.into_inner());
        *woken = false;
        !self.stopping.load(Ordering::SeqCst)
    }

    /// Sleeps `duration` unless stopped (commits do not cut it short); says whether to go on.
    fn pause(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        loop {
            let now = Instant::now();
            if self.stopping.load(Ordering::SeqCst) || now >= deadline {
                return !self.stopping.load(Ordering::SeqCst);
            }
            self.wait(deadline - now);
        }
    }

    /// The thread: prepare the destination, then retry pending erasures and deliver batches
    /// until stopped.
    fn run(self: Arc<Self>) {
        let mut backoff = BACKOFF_INITIAL;
        let mut prepared = false;
        while !self.stopping.load(Ordering::SeqCst) {
            let step = if prepared {
                self.retry_erasures()
                    .and_then(|()| self.deliver_batch())
                    .and_then(|events| Ok(events.and(self.deliver_points()?)))
            } else {
                self.destination.prepare().map(|()| {
                    prepared = true;
                    tracing::info!(sink = self.name, "sink: destination ready");
                    Step::Delivered(0)
                })
            };
            if let Err(error) = self.outbox.prune() {
                tracing::warn!(sink = self.name, error = %error, "sink: cannot prune the metric points outbox");
            }
            let go_on = match step {
                Ok(Step::Idle) => {
                    backoff = BACKOFF_INITIAL;
                    self.wait(self.flush_interval)
                }
                Ok(Step::Delivered(n)) if n < self.batch_size => {
                    backoff = BACKOFF_INITIAL;
                    self.pause(self.flush_interval)
                }
                Ok(Step::Delivered(_)) => true,
                Err(error) => {
                    tracing::warn!(sink = self.name, error = %error, retry_in_ms = backoff.as_millis() as u64, "sink: delivery failed");
                    self.note_error(&error);
                    let wait = backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    self.pause(wait)
                }
            };
            if !go_on {
                break;
            }
        }
    }

    /// Reads the next batch from the position and delivers it.
    fn deliver_batch(&self) -> Result<Step, SinkError> {
        let _delivering = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let position = self.progress().position;
        let handed = self.handed().take_from(position, self.batch_size);
        let batch = match handed {
            Some(batch) => batch,
            None => self
                .store
                .events_from(position, self.batch_size)?
                .into_iter()
                .map(|(seq, event)| (seq, Arc::new(event)))
                .collect(),
        };
        let Some((first, _)) = batch.first() else {
            let next = self.store.next_seq()?;
            if next > position {
                // Everything from the position on was deleted before it was delivered.
                self.skip(position, next)?;
            }
            return Ok(Step::Idle);
        };
        let mut expected = position;
        let mut gaps = Vec::new();
        for (seq, _) in &batch {
            if *seq > expected {
                gaps.push((expected, *seq));
            }
            expected = seq + 1;
        }
        debug_assert!(*first >= position);
        self.destination.deliver(&batch)?;
        for (from, below) in gaps {
            self.record_skip(from, below);
        }
        let below = expected;
        write_state(&self.position_file, &below)?;
        let mut progress = self.progress();
        progress.position = below;
        progress.delivered_total += batch.len() as u64;
        progress
            .recent
            .push_back((Instant::now(), batch.len() as u64));
        progress.last_delivery_at = Some(now_ms());
        progress.last_error = None;
        Ok(Step::Delivered(batch.len()))
    }

    /// Delivers the next metric points: a chunk of the copy of every stored point while it
    /// runs, else the next outbox entries.
    fn deliver_points(&self) -> Result<Step, SinkError> {
        let _delivering = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let cursor = *self.points.lock().unwrap_or_else(|p| p.into_inner());
        // Whether the read was full, so more may follow at once.
        let (records, next, full) = match cursor {
            PointsCursor::Copying { resume_at, after } => {
                let (records, last) =
                    series_store::stored_points(&self.store, after, self.batch_size)?;
                let full = last.is_some();
                let next = match last {
                    Some(after) => PointsCursor::Copying {
                        resume_at,
                        after: Some(after),
                    },
                    None => {
                        tracing::info!(
                            sink = self.name,
                            "sink: every stored metric point copied; following the outbox"
                        );
                        PointsCursor::Following {
                            position: resume_at,
                        }
                    }
                };
                (records, next, full)
            }
            PointsCursor::Following { position } => {
                let (records, below) =
                    series_store::outbox_points(&self.store, position, self.batch_size)?;
                let full = below - position == self.batch_size as u64;
                (records, PointsCursor::Following { position: below }, full)
            }
        };
        if next == cursor {
            return Ok(Step::Idle);
        }
        if !records.is_empty() {
            self.destination.deliver_points(&records)?;
        }
        write_state(&self.points_file, &next)?;
        *self.points.lock().unwrap_or_else(|p| p.into_inner()) = next;
        self.outbox.note(self.index, next.needs());
        self.progress().points_delivered_total += records.len() as u64;
        Ok(Step::Delivered(if full {
            self.batch_size
        } else {
            records.len()
        }))
    }

    /// Moves the position over `[from, below)`, which the store no longer holds.
    fn skip(&self, from: u64, below: u64) -> Result<(), SinkError> {
        write_state(&self.position_file, &below)?;
        self.record_skip(from, below);
        self.progress().position = below;
        Ok(())
    }

    fn record_skip(&self, from: u64, below: u64) {
        tracing::warn!(
            sink = self.name,
            from,
            below,
            events = below - from,
            "sink: positions deleted from the store (retention or erasure) before delivery were skipped"
        );
        let mut progress = self.progress();
        progress.skipped_total += below - from;
        progress.skipped.push_back(SkippedRange {
            from,
            below,
            noticed_at: now_ms(),
        });
        while progress.skipped.len() > SKIPPED_KEPT {
            progress.skipped.pop_front();
        }
    }

    /// Issues the subject's delete at the destination and waits for its confirmation; an
    /// unconfirmed delete is kept and retried by the thread. The caller holds `delivery`.
    fn erase_held(&self, delete: &SubjectDelete) -> SinkErasure {
        let result = self.destination.delete_subject(delete);
        let error = match result {
            Ok(()) => None,
            Err(error) => {
                tracing::warn!(sink = self.name, error = %error, "sink: subject delete not confirmed; it is kept and retried");
                self.note_error(&error);
                let mut pending = self
                    .pending_erasures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                pending.push(delete.clone());
                if let Err(e) = write_state(&self.erasures_file, &*pending) {
                    tracing::error!(sink = self.name, error = %e, "sink: cannot persist a pending subject delete");
                }
                Some(error.to_string())
            }
        };
        SinkErasure {
            sink: self.name.to_string(),
            confirmed: error.is_none(),
            error,
        }
    }

    /// Retries the subject deletes not yet confirmed, oldest first.
    fn retry_erasures(&self) -> Result<(), SinkError> {
        loop {
            let next = {
                let pending = self
                    .pending_erasures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                match pending.first() {
                    Some(delete) => delete.clone(),
                    None => return Ok(()),
                }
            };
            self.destination.delete_subject(&next)?;
            let mut pending = self
                .pending_erasures
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            pending.retain(|d| d != &next);
            write_state(&self.erasures_file, &*pending)?;
            tracing::info!(sink = self.name, "sink: pending subject delete confirmed");
        }
    }
}

#[derive(Clone, Copy)]
enum Step {
    Idle,
    Delivered(usize),
}

impl Step {
    /// Two steps of one round together: the larger delivery decides how soon the next round.
    fn and(self, other: Step) -> Step {
        match (self, other) {
            (Step::Idle, other) => other,
            (this, Step::Idle) => this,
            (Step::Delivered(a), Step::Delivered(b)) => Step::Delivered(a.max(b)),
        }
    }
}

impl CommitSubscriber for Sink {
    fn name(&self) -> &'static str {
        self.name
    }

    fn position(&self) -> Result<u64, StoreError> {
        Ok(self.progress().position)
    }

    /// Hands the events over and wakes the thread.
    fn committed(&self, events: &Committed) {
        self.handed().push(events);
        if let Ok(mut woken) = self.woken.try_lock() {
            *woken = true;
        }
        self.wake.notify_one();
    }
}

/// The configured sinks and their threads.
#[derive(Default)]
pub struct Sinks {
    sinks: Vec<Arc<Sink>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Sinks {
    /// Builds a sink per `[[sinks]]` entry, with its state under `data_dir/sinks`. Without
    /// sinks, the points outbox is closed (see `series::store::close_outbox`).
    /// `retention` is each product's `retention_days` (a destination's TTL).
    pub fn open(
        configs: &[SinkConfig],
        retention: &[(String, u32)],
        store: &Store,
        writer: &Arc<Writer>,
        data_dir: &Path,
    ) -> Result<Sinks, SinkError> {
        if configs.is_empty() {
            // At start, before ingest (so directly, not through the writer).
            store.write(series_store::close_outbox)?;
        }
        let dir = data_dir.join(SINKS_DIR);
        if !configs.is_empty() {
            std::fs::create_dir_all(&dir).map_err(|e| state_error(&dir, e))?;
        }
        let outbox = Arc::new(Outbox {
            writer: writer.clone(),
            needed: Mutex::new(vec![0; configs.len()]),
            pruned: Mutex::new((0, Instant::now())),
        });
        let mut sinks = Vec::new();
        for (index, config) in configs.iter().enumerate() {
            let destination: Box<dyn Destination> = match config.kind {
                SinkKind::Clickhouse => {
                    Box::new(clickhouse::ClickHouse::new(config, retention, &dir)?)
                }
            };
            sinks.push(Arc::new(Sink::new(
                config,
                destination,
                store.clone(),
                &dir,
                (index, outbox.clone()),
            )?));
        }
        Ok(Sinks {
            sinks,
            threads: Mutex::new(Vec::new()),
        })
    }

    pub fn all(&self) -> &[Arc<Sink>] {
        &self.sinks
    }

    /// Starts one thread per sink.
    pub fn start(&self) -> std::io::Result<()> {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        for sink in &self.sinks {
            let running = sink.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("sink-{}", sink.name))
                    .spawn(move || running.run())?,
            );
        }
        Ok(())
    }

    /// Stops the threads (a delivery in flight finishes; its position is kept or not, and the
    /// batch is delivered again on the next start: the destination keeps one row per event).
    pub fn stop(&self) {
        for sink in &self.sinks {
            sink.stopping.store(true, Ordering::SeqCst);
            sink.wake.notify_all();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }

    pub fn statuses(&self, next_seq: u64) -> Vec<SinkStatus> {
        self.sinks.iter().map(|s| s.status(next_seq)).collect()
    }

    /// Runs `erase_in_store` while no sink delivers, after asking every sink's destination to
    /// delete the subject; `erase_in_store` gets each sink's answer (for the audit entry).
    /// Holding the deliveries means no batch read before the store erasure reaches a
    /// destination after its delete.
    pub fn erase<T>(
        &self,
        delete: &SubjectDelete,
        erase_in_store: impl FnOnce(&[SinkErasure]) -> T,
    ) -> (T, Vec<SinkErasure>) {
        let _held: Vec<_> = self
            .sinks
            .iter()
            .map(|s| s.delivery.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let mut delete = delete.clone();
        if delete.kind == SubjectKind::Install && !self.sinks.is_empty() {
            // Points read from here on are read after the store's erasure: they are not its.
            delete.points_below = self
                .sinks
                .first()
                .and_then(|s| s.store.begin_read().ok())
                .and_then(|txn| series_store::outbox_bounds(&txn).ok())
                .map(|(_, next)| next);
        }
        let answers: Vec<SinkErasure> = self
            .sinks
            .iter()
            .map(|sink| sink.erase_held(&delete))
            .collect();
        let erased = erase_in_store(&answers);
        // Events handed over before the store's erasure may be the subject's: from here on
        // they are read from the store, which no longer holds them.
        for sink in &self.sinks {
            sink.handed().events.clear();
        }
        (erased, answers)
    }

    /// Carries the retention to every destination; errors are logged and shown in the sink's
    /// status, not returned (the store's sweep goes on). Says how many partitions were dropped.
    pub fn apply_retention(&self, cutoffs: &[(String, i64)]) -> u64 {
        let mut dropped = 0;
        for sink in &self.sinks {
            match sink.destination.apply_retention(cutoffs) {
                Ok(n) => {
                    dropped += n;
                    if n > 0 {
                        tracing::info!(
                            sink = sink.name,
                            partitions = n,
                            "sink: retention dropped partitions"
                        );
                    }
                }
                Err(error) => {
                    tracing::warn!(sink = sink.name, error = %error, "sink: retention failed; retried on the next sweep");
                    sink.note_error(&error);
                }
            }
        }
        dropped
    }
}

impl Drop for Sinks {
    fn drop(&mut self) {
        self.stop();
    }
}

fn state_error(path: &Path, e: impl std::fmt::Display) -> SinkError {
    SinkError::State {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn read_state<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, SinkError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| state_error(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(state_error(path, e)),
    }
}

/// Writes `value` as JSON durably: a temporary file, fsync, rename.
fn write_state<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), SinkError> {
    use std::io::Write;
    let bytes = serde_json::to_vec(value).map_err(|e| state_error(path, e))?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| state_error(&tmp, e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| state_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| state_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(seqs: std::ops::Range<u64>) -> Vec<(u64, Arc<Event>)> {
        seqs.map(|seq| (seq, Arc::new(Event::new("app", "started"))))
            .collect()
    }

    fn seqs(run: Option<Vec<(u64, Arc<Event>)>>) -> Option<Vec<u64>> {
        run.map(|run| run.into_iter().map(|(seq, _)| seq).collect())
    }

    #[test]
    fn handed_events_are_taken_in_order_up_to_a_batch() {
        let mut handed = Handed::new(100);
        handed.push(&committed(10..15));
        handed.push(&committed(15..20));
        assert_eq!(seqs(handed.take_from(10, 3)), Some(vec![10, 11, 12]));
        assert_eq!(seqs(handed.take_from(13, 100)), Some((13..20).collect()));
        assert_eq!(seqs(handed.take_from(20, 100)), None);
    }

    #[test]
    fn what_is_not_handed_over_is_left_to_the_store() {
        let mut handed = Handed::new(10);
        handed.push(&committed(0..8));
        // Over the limit: dropped, so positions 8..12 are missing.
        handed.push(&committed(8..12));
        assert_eq!(seqs(handed.take_from(0, 100)), Some((0..8).collect()));
        handed.push(&committed(12..14));
        // The position is not here: the sink reads from the store.
        assert_eq!(seqs(handed.take_from(8, 100)), None);
        // After the store read moved the position on, what is below it is dropped.
        assert_eq!(seqs(handed.take_from(13, 100)), Some(vec![13]));
        // A gap inside what was handed over ends the run.
        handed.push(&committed(20..22));
        handed.push(&committed(23..24));
        assert_eq!(seqs(handed.take_from(20, 100)), Some(vec![20, 21]));
        assert_eq!(seqs(handed.take_from(22, 100)), None);
        assert_eq!(seqs(handed.take_from(23, 100)), Some(vec![23]));
    }
}
