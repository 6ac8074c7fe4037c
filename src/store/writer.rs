//! The single store writer: one thread drains every batch waiting in its bounded channel into
//! one redb write transaction (group commit), commits it durably, and only then answers each
//! batch. Dedup by event id and the install registry are updated in the same transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use redb::{ReadableTable, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::metrics::Metrics;
use crate::model::Event;
use crate::store::{
    encode_event, install_key, InstallRecord, Store, EVENTS, EVENT_IDS, INSTALLS, META,
};

/// Most events one transaction takes; the rest wait for the next one.
const MAX_GROUP_EVENTS: usize = 20_000;

/// Per event of a batch: `true` stored, `false` a duplicate of a stored id.
pub type WriteResult = Result<Vec<bool>, StoreError>;

/// Events just made durable, with their positions, for whoever derives data from the store.
pub type CommitListener = Box<dyn FnMut(Vec<(u64, Arc<Event>)>) + Send>;

struct WriteRequest {
    events: Vec<Arc<Event>>,
    reply: oneshot::Sender<WriteResult>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full: the client should retry later.
    Full,
    /// The writer has stopped.
    Closed,
}

/// The handle ingest uses to hand batches to the writer thread.
pub struct Writer {
    tx: mpsc::Sender<WriteRequest>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub fn start(
        store: Store,
        capacity: usize,
        metrics: Arc<Metrics>,
        listener: CommitListener,
    ) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel(capacity);
        let next_seq = store.next_seq()?;
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(store, rx, next_seq, metrics, listener))?;
        Ok(Writer {
            tx,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Queues a batch without waiting; the receiver yields once the batch is durable.
    pub fn submit(
        &self,
        events: Vec<Arc<Event>>,
    ) -> Result<oneshot::Receiver<WriteResult>, SubmitError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(WriteRequest { events, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SubmitError::Full,
                mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
            })?;
        Ok(rx)
    }

    pub fn queue_depth(&self) -> u64 {
        (self.tx.max_capacity() - self.tx.capacity()) as u64
    }

    pub fn queue_capacity(&self) -> u64 {
        self.tx.max_capacity() as u64
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
        loop {
            let (reply, _) = oneshot::channel();
            match self.tx.try_send(WriteRequest {
                events: Vec::new(),
                reply,
            }) {
                Err(mpsc::error::TrySendError::Full(_)) => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                _ => break,
            }
        }
        let _ = thread.join();
    }
}

fn run(
    store: Store,
    mut rx: mpsc::Receiver<WriteRequest>,
    mut next_seq: u64,
    metrics: Arc<Metrics>,
    mut listener: CommitListener,
) {
    while let Some(first) = rx.blocking_recv() {
        if first.events.is_empty() {
            // An empty request is the stop signal sent by `close`; drain what is left first.
            rx.close();
            let _ = first.reply.send(Ok(Vec::new()));
            continue;
        }
        let mut group = vec![first];
        let mut queued_events = group[0].events.len();
        while queued_events < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(request) => {
                    queued_events += request.events.len();
                    group.push(request);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        match commit_group(&store, &group, next_seq) {
            Ok((results, committed, new_next_seq)) => {
                next_seq = new_next_seq;
                metrics.commits.inc();
                metrics.commit_latency.observe(started.elapsed());
                for (request, result) in group.into_iter().zip(results) {
                    let _ = request.reply.send(Ok(result));
                }
                if !committed.is_empty() {
                    listener(committed);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batches = group.len(), "store commit failed; batches answered 500");
                for request in group {
                    let _ = request.reply.send(Err(StoreError::Redb(e.to_string())));
                }
            }
        }
    }
}

type GroupOutcome = (Vec<Vec<bool>>, Vec<(u64, Arc<Event>)>, u64);

fn commit_group(
    store: &Store,
    group: &[WriteRequest],
    mut next_seq: u64,
) -> Result<GroupOutcome, StoreError> {
    let mut txn = store.database().begin_write()?;
    txn.set_quick_repair(true);
    let mut results = Vec::with_capacity(group.len());
    let mut committed = Vec::new();
    let mut installs: HashMap<String, InstallRecord> = HashMap::new();
    {
        let mut events = txn.open_table(EVENTS)?;
        let mut ids = txn.open_table(EVENT_IDS)?;
        for request in group {
            let mut stored = Vec::with_capacity(request.events.len());
            for event in &request.events {
                let id = event.id.as_u128();
                if ids.get(id)?.is_some() {
                    stored.push(false);
                    continue;
                }
                let seq = next_seq;
                next_seq += 1;
                events.insert(seq, encode_event(event)?.as_slice())?;
                ids.insert(id, seq)?;
                note_install(&mut installs, event);
                committed.push((seq, event.clone()));
                stored.push(true);
            }
            results.push(stored);
        }
    }
    merge_installs(&txn, installs)?;
    txn.open_table(META)?.insert("next_seq", next_seq)?;
    txn.commit()?;
    Ok((results, committed, next_seq))
}

fn note_install(installs: &mut HashMap<String, InstallRecord>, event: &Event) {
    let Some(install_id) = &event.install_id else {
        return;
    };
    let record = installs
        .entry(install_key(&event.product, install_id))
        .or_insert_with(|| InstallRecord {
            product: event.product.clone(),
            install_id: install_id.clone(),
            first_seen: event.timestamp,
            last_seen: event.timestamp,
            platform: None,
            app_version: None,
            release_channel: None,
            country_code: None,
            events: 0,
        });
    record.events += 1;
    record.first_seen = record.first_seen.min(event.timestamp);
    if event.timestamp >= record.last_seen {
        record.last_seen = event.timestamp;
        let update = |slot: &mut Option<String>, value: &Option<String>| {
            if value.is_some() {
                slot.clone_from(value);
            }
        };
        update(&mut record.platform, &event.platform);
        update(&mut record.app_version, &event.app_version);
        update(&mut record.release_channel, &event.release_channel);
        update(&mut record.country_code, &event.country_code);
    }
}

/// Folds this transaction's install updates into the stored rows.
fn merge_installs(
    txn: &WriteTransaction,
    installs: HashMap<String, InstallRecord>,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(INSTALLS)?;
    for (key, new) in installs {
        let stored: Option<InstallRecord> = table
            .get(key.as_str())?
            .and_then(|v| serde_json::from_slice(v.value()).ok());
        let merged = match stored {
            None => new,
            Some(old) => {
                let newer = new.last_seen >= old.last_seen;
                let pick =
                    |a: Option<String>, b: Option<String>| if newer { a.or(b) } else { b.or(a) };
                InstallRecord {
                    first_seen: old.first_seen.min(new.first_seen),
                    last_seen: old.last_seen.max(new.last_seen),
                    events: old.events + new.events,
                    platform: pick(new.platform, old.platform),
                    app_version: pick(new.app_version, old.app_version),
                    release_channel: pick(new.release_channel, old.release_channel),
                    country_code: pick(new.country_code, old.country_code),
                    product: new.product,
                    install_id: new.install_id,
                }
            }
        };
        let bytes = serde_json::to_vec(&merged).map_err(|e| StoreError::Codec(e.to_string()))?;
        table.insert(key.as_str(), bytes.as_slice())?;
    }
    Ok(())
}
