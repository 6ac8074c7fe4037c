//! The single store writer: one thread drains every batch waiting in its bounded channel into
//! one redb write transaction (group commit), commits it durably, and only then answers each
//! batch. Dedup by event id (journaled, see `ids`) and the install registry are updated in the
//! same transaction.
//! Every other store write (deletions, audit entries, the file rewrite) also runs on this
//! thread, as an exclusive job between two group commits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use redb::{ReadableTable, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::metrics::Metrics;
use crate::model::Event;
use crate::queue_budget::QueueBudget;
use crate::store::blocks::BlockBuilder;
use crate::store::ids::{self, Folder};
use crate::store::subscribers::Subscribers;
use crate::store::{
    decode_install, install_key, InstallRecord, Store, EVENTS, EVENT_IDS, INSTALLS, META,
    META_EVENT_COUNT, META_NEXT_SEQ,
};

/// Most events one transaction takes; the rest wait for the next one.
const MAX_GROUP_EVENTS: usize = 20_000;

/// Per event of a batch: `true` stored, `false` a duplicate of a stored id.
pub type WriteResult = Result<Vec<bool>, StoreError>;

/// An exclusive job: given the store, or the reason it may not write (a job that adds data
/// while the disk is under its free-space floor is given `DiskFull` and does not run).
type Job = Box<dyn FnOnce(Result<&Store, StoreError>) + Send>;

enum Command {
    Write {
        events: Vec<Arc<Event>>,
        reply: oneshot::Sender<WriteResult>,
    },
    Exclusive {
        job: Job,
        /// It adds data: refused while the disk is under its free-space floor, like event
        /// writes (deletions and admin changes still run there).
        adds_data: bool,
    },
    Stop,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full: the client should retry later.
    Full,
    /// The writer has stopped.
    Closed,
}

impl<T> From<mpsc::error::TrySendError<T>> for SubmitError {
    fn from(e: mpsc::error::TrySendError<T>) -> Self {
        match e {
            mpsc::error::TrySendError::Full(_) => SubmitError::Full,
            mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
        }
    }
}

/// The handle the rest of the appliance uses to write.
pub struct Writer {
    tx: mpsc::Sender<Command>,
    /// Events in queued batches, at most `max_queued_events` (given back as the thread takes
    /// them).
    queued: Arc<QueueBudget>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread. Its queue holds at most `capacity` commands and
    /// `max_queued_events` events of waiting batches. It refuses writes (`DiskFull`, nothing
    /// written) while the data dir's file system has less than `min_free_bytes` available (0 = no
    /// check): redb would otherwise hit the full disk mid-commit and refuse all work until
    /// reopened.
    pub fn start(
        store: Store,
        capacity: usize,
        max_queued_events: usize,
        min_free_bytes: u64,
        metrics: Arc<Metrics>,
        subscribers: Subscribers,
    ) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel(capacity);
        let queued = Arc::new(QueueBudget::new(max_queued_events));
        let thread_queued = queued.clone();
        let next_seq = store.next_seq()?;
        let room = Room {
            dir: store.path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            min_free_bytes,
        };
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                run(
                    store,
                    rx,
                    thread_queued,
                    next_seq,
                    room,
                    metrics,
                    subscribers,
                )
            })?;
        Ok(Writer {
            tx,
            queued,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Queues a batch without waiting; the receiver yields once the batch is durable.
    pub fn submit(
        &self,
        events: Vec<Arc<Event>>,
    ) -> Result<oneshot::Receiver<WriteResult>, SubmitError> {
        let count = events.len();
        if !self.queued.try_take(count) {
            return Err(SubmitError::Full);
        }
        let (reply, rx) = oneshot::channel();
        if let Err(e) = self.tx.try_send(Command::Write { events, reply }) {
            self.queued.give_back(count);
            return Err(e.into());
        }
        Ok(rx)
    }

    /// Runs `job` on the writer thread with no other write in progress, and returns its result.
    pub async fn exclusive<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (command, rx) = exclusive_command(job);
        self.tx
            .send(command)
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Like `exclusive`, for callers outside the async runtime.
    /// Appends one audit entry in its own transaction (for actions that write nothing else).
    pub async fn audit(&self, entry: crate::store::audit::AuditEntry) -> Result<u64, StoreError> {
        self.exclusive(move |store| store.write(|txn| crate::store::audit::append(txn, entry)))
            .await
    }

    pub fn exclusive_blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (command, rx) = exclusive_command(job);
        self.tx
            .blocking_send(command)
            .map_err(|_| StoreError::WriterGone)?;
        rx.blocking_recv().map_err(|_| StoreError::WriterGone)?
    }

    /// For ingest that is not events (metric points): like `exclusive_blocking`, but refuses
    /// at once when the queue is full (the caller answers `503 overloaded`) instead of waiting
    /// for room, and answers `DiskFull` without running the job while the disk is under its
    /// free-space floor, as event writes do.
    pub fn try_ingest_blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Result<T, StoreError>, SubmitError> {
        let (command, rx) = command_of(job, true);
        self.tx.try_send(command)?;
        Ok(rx
            .blocking_recv()
            .map_err(|_| StoreError::WriterGone)
            .and_then(|result| result))
    }

    pub fn queue_depth(&self) -> u64 {
        (self.tx.max_capacity() - self.tx.capacity()) as u64
    }

    pub fn queue_capacity(&self) -> u64 {
        self.tx.max_capacity() as u64
    }

    /// Events in the batches waiting for the writer.
    pub fn queued_events(&self) -> u64 {
        self.queued.queued() as u64
    }

    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Stops taking batches, lets the thread commit what is queued, and waits for it. Blocks:
    /// call it off the async runtime, after the HTTP server has stopped.
    pub fn close(&self) {
        let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        while let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(Command::Stop) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = thread.join();
    }
}

type JobResult<T> = oneshot::Receiver<Result<T, StoreError>>;

/// An exclusive job for the writer thread and the receiver of its result.
fn exclusive_command<T: Send + 'static>(
    job: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> (Command, JobResult<T>) {
    command_of(job, false)
}

fn command_of<T: Send + 'static>(
    job: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    adds_data: bool,
) -> (Command, JobResult<T>) {
    let (reply, rx) = oneshot::channel();
    let job: Job = Box::new(move |store| {
        let _ = reply.send(store.and_then(job));
    });
    (Command::Exclusive { job, adds_data }, rx)
}

struct Pending {
    events: Vec<Arc<Event>>,
    reply: oneshot::Sender<WriteResult>,
}

/// The free-space guard: the file system of `dir` must keep `min_free_bytes` available.
struct Room {
    dir: PathBuf,
    min_free_bytes: u64,
}

impl Room {
    fn check(&self) -> Result<(), StoreError> {
        if self.min_free_bytes == 0 {
            return Ok(());
        }
        match fs4::available_space(&self.dir) {
            Ok(free) if free < self.min_free_bytes => Err(StoreError::DiskFull),
            // Unknown (statvfs failed): let the write try.
            _ => Ok(()),
        }
    }
}

fn run(
    store: Store,
    mut rx: mpsc::Receiver<Command>,
    queued: Arc<QueueBudget>,
    mut next_seq: u64,
    room: Room,
    metrics: Arc<Metrics>,
    subscribers: Subscribers,
) {
    let mut group: Vec<Pending> = Vec::new();
    let mut folder = Folder::default();
    let mut after_group: Option<Command> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut queued_events = 0;
        let mut command = Some(first);
        // Gather every waiting write; stop at the first non-write command.
        while let Some(c) = command.take() {
            match c {
                Command::Write { events, reply } => {
                    queued.give_back(events.len());
                    queued_events += events.len();
                    group.push(Pending { events, reply });
                    if queued_events < MAX_GROUP_EVENTS {
                        command = rx.try_recv().ok();
                    }
                }
                other => after_group = Some(other),
            }
        }
        if !group.is_empty() {
            commit_and_answer(
                &store,
                &room,
                std::mem::take(&mut group),
                &mut next_seq,
                &mut folder,
                &metrics,
                &subscribers,
            );
        }
        match after_group.take() {
            Some(Command::Exclusive { job, adds_data }) => {
                let room_checked = if adds_data { room.check() } else { Ok(()) };
                job(room_checked.map(|()| &store));
                // A job may have rewritten the file; positions never move back.
                next_seq = next_seq.max(store.next_seq().unwrap_or(next_seq));
            }
            Some(Command::Stop) => rx.close(),
            _ => {}
        }
    }
}

fn commit_and_answer(
    store: &Store,
    room: &Room,
    group: Vec<Pending>,
    next_seq: &mut u64,
    folder: &mut Folder,
    metrics: &Metrics,
    subscribers: &Subscribers,
) {
    let started = Instant::now();
    let committed = room
        .check()
        .and_then(|()| commit_group(store, &group, *next_seq, folder));
    match committed {
        Ok((results, committed, new_next_seq)) => {
            *next_seq = new_next_seq;
            metrics.commits.inc();
            metrics.commit_latency.observe(started.elapsed());
            for (pending, result) in group.into_iter().zip(results) {
                let _ = pending.reply.send(Ok(result));
            }
            subscribers.notify(&committed);
        }
        Err(StoreError::DiskFull) => {
            tracing::warn!(
                batches = group.len(),
                "the data dir's disk is (nearly) full; batches answered 503 disk_full"
            );
            for pending in group {
                let _ = pending.reply.send(Err(StoreError::DiskFull));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, batches = group.len(), "store commit failed; batches answered 500");
            for pending in group {
                let _ = pending.reply.send(Err(StoreError::Redb(e.to_string())));
            }
        }
    }
}

type GroupOutcome = (Vec<Vec<bool>>, Vec<(u64, Arc<Event>)>, u64);

fn commit_group(
    store: &Store,
    group: &[Pending],
    first_seq: u64,
    folder: &mut Folder,
) -> Result<GroupOutcome, StoreError> {
    let db = store.database();
    let recent = &store.recent_ids;
    let mut txn = db.begin_write()?;
    txn.set_quick_repair(true);
    let mut next_seq = first_seq;
    let mut results = Vec::with_capacity(group.len());
    let mut committed = Vec::new();
    let mut journaled: Vec<u128> = Vec::new();
    let mut in_group: foldhash::HashSet<u128> = foldhash::HashSet::default();
    let mut installs: HashMap<String, InstallRecord> = HashMap::new();
    {
        let mut events = txn.open_table(EVENTS)?;
        let id_table = txn.open_table(EVENT_IDS)?;
        let mut block = BlockBuilder::default();
        for pending in group {
            let mut stored = Vec::with_capacity(pending.events.len());
            for event in &pending.events {
                let id = event.id.as_u128();
                if !in_group.insert(id) || ids::lookup(recent, &id_table, id)?.is_some() {
                    stored.push(false);
                    continue;
                }
                let seq = next_seq;
                next_seq += 1;
                block.push_event(seq, event)?;
                if block.is_full() {
                    if let Some((first, bytes)) = block.finish()? {
                        events.insert(first, bytes.as_slice())?;
                    }
                }
                journaled.push(id);
                note_install(&mut installs, event);
                committed.push((seq, event.clone()));
                stored.push(true);
            }
            results.push(stored);
        }
        if let Some((first, bytes)) = block.finish()? {
            events.insert(first, bytes.as_slice())?;
        }
    }
    ids::journal(&txn, first_seq, &journaled)?;
    let folded_below = folder.step(&txn, recent, first_seq, journaled.len())?;
    merge_installs(&txn, installs)?;
    {
        let mut meta = txn.open_table(META)?;
        let count = meta.get(META_EVENT_COUNT)?.map(|v| v.value()).unwrap_or(0);
        meta.insert(META_EVENT_COUNT, count + committed.len() as u64)?;
        meta.insert(META_NEXT_SEQ, next_seq)?;
    }
    txn.commit()?;
    recent.insert_all(journaled.into_iter().zip(first_seq..));
    if let Some(position) = folded_below {
        Folder::finished(recent, position);
    }
    Ok((results, committed, next_seq))
}

fn note_install(installs: &mut HashMap<String, InstallRecord>, event: &Event) {
    let Some(install_id) = &event.install_id else {
        return;
    };
    installs
        .entry(install_key(&event.product, install_id))
        .or_insert_with(|| InstallRecord::new(&event.product, install_id, event.timestamp))
        .note(event);
}

/// Folds this transaction's install updates into the stored rows.
fn merge_installs(
    txn: &WriteTransaction,
    installs: HashMap<String, InstallRecord>,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(INSTALLS)?;
    for (key, new) in installs {
        let stored = table
            .get(key.as_str())?
            .map(|v| decode_install(v.value()))
            .transpose()?;
        let merged = match stored {
            None => new,
            Some(old) => old.merge(new),
        };
        let bytes = serde_json::to_vec(&merged).map_err(|e| StoreError::Codec(e.to_string()))?;
        table.insert(key.as_str(), bytes.as_slice())?;
    }
    Ok(())
}
