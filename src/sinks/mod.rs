//! Export sinks: each `[[sinks]]` entry streams every stored event to a destination (one file
//! per kind: `clickhouse.rs`). A sink is a commit subscriber with its own position in the
//! store's event sequence (a file under `DATA_DIR/sinks/`), its own thread that reads committed
//! events in batches from that position, delivers them, and moves the position only after the
//! destination confirmed; when the destination is down it retries with capped exponential
//! backoff and falls behind — ingest never waits for it (the writer's hint only wakes the
//! thread). Positions the store no longer holds when the sink reaches them (deleted by
//! retention or erasure first) are reported as skipped. Erasure and retention are carried to
//! the destination; an erasure the destination did not confirm is kept in a file and retried
//! until it is.

pub mod clickhouse;

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
use crate::store::subscribers::{CommitSubscriber, Committed};
use crate::store::Store;

/// The first wait after a failed delivery; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_INITIAL: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Skipped ranges kept for the status (the total is counted in full).
const SKIPPED_KEPT: usize = 20;
/// The window the delivery rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(60);

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
/// it is retried later).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectDelete {
    pub kind: SubjectKind,
    pub id: String,
    pub products: Vec<String>,
    pub received_until_ms: i64,
}

/// Where a sink delivers: one implementation per kind.
pub trait Destination: Send + Sync {
    /// Creates what the destination needs (database, table) when it is missing.
    fn prepare(&self) -> Result<(), SinkError>;
    /// Stores the events; `Ok` only when the destination confirmed all of them.
    fn deliver(&self, events: &[(u64, Event)]) -> Result<(), SinkError>;
    /// Deletes the subject's rows; `Ok` only when the destination finished the delete.
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
}

/// A sink's answer for one erasure.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SinkErasure {
    pub sink: String,
    pub confirmed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
}

/// One configured sink: its position, its thread's state, its destination.
pub struct Sink {
    name: &'static str,
    kind: SinkKind,
    store: Store,
    destination: Box<dyn Destination>,
    batch_size: usize,
    flush_interval: Duration,
    position_file: PathBuf,
    erasures_file: PathBuf,
    progress: Mutex<Progress>,
    /// Held while a batch is read and delivered, and while an erasure runs, so an erasure
    /// never races a batch holding the subject's events.
    delivery: Mutex<()>,
    pending_erasures: Mutex<Vec<SubjectDelete>>,
    woken: Mutex<bool>,
    wake: Condvar,
    stopping: AtomicBool,
}

impl Sink {
    /// The sink of `config` over `destination`, with its position and pending erasures read
    /// from `dir`.
    pub fn new(
        config: &SinkConfig,
        destination: Box<dyn Destination>,
        store: Store,
        dir: &Path,
    ) -> Result<Sink, SinkError> {
        std::fs::create_dir_all(dir).map_err(|e| state_error(dir, e))?;
        let position_file = dir.join(format!("{}.position", config.name));
        let erasures_file = dir.join(format!("{}.erasures.json", config.name));
        let position = read_state::<u64>(&position_file)?.unwrap_or(0);
        let pending = read_state::<Vec<SubjectDelete>>(&erasures_file)?.unwrap_or_default();
        Ok(Sink {
            // One leak per configured sink, at start: subscriber names are `&'static str`.
            name: Box::leak(config.name.clone().into_boxed_str()),
            kind: config.kind,
            store,
            destination,
            batch_size: config.batch_size,
            flush_interval: Duration::from_millis(config.flush_interval_ms),
            position_file,
            erasures_file,
            progress: Mutex::new(Progress {
                position,
                ..Progress::default()
            }),
            delivery: Mutex::new(()),
            pending_erasures: Mutex::new(pending),
            woken: Mutex::new(false),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
        })
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
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
                self.retry_erasures().and_then(|()| self.deliver_batch())
            } else {
                self.destination.prepare().map(|()| {
                    prepared = true;
                    tracing::info!(sink = self.name, "sink: destination ready");
                    Step::Delivered(0)
                })
            };
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
        let batch = self.store.events_from(position, self.batch_size)?;
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

enum Step {
    Idle,
    Delivered(usize),
}

impl CommitSubscriber for Sink {
    fn name(&self) -> &'static str {
        self.name
    }

    fn position(&self) -> Result<u64, StoreError> {
        Ok(self.progress().position)
    }

    /// Only wakes the thread: it reads the events back from the store itself.
    fn committed(&self, _events: &Committed) {
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
    /// Builds a sink per `[[sinks]]` entry, with its state under `data_dir/sinks`.
    pub fn open(
        configs: &[SinkConfig],
        store: &Store,
        data_dir: &Path,
    ) -> Result<Sinks, SinkError> {
        let dir = data_dir.join(SINKS_DIR);
        let mut sinks = Vec::new();
        for config in configs {
            let destination: Box<dyn Destination> = match config.kind {
                SinkKind::Clickhouse => Box::new(clickhouse::ClickHouse::new(config)?),
            };
            sinks.push(Arc::new(Sink::new(
                config,
                destination,
                store.clone(),
                &dir,
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
        let answers: Vec<SinkErasure> = self
            .sinks
            .iter()
            .map(|sink| sink.erase_held(delete))
            .collect();
        (erase_in_store(&answers), answers)
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
