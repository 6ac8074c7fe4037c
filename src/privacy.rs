//! Data-subject requests: erasure and export of everything about one install or user, across
//! store, index and in-memory state, and the purge that makes erased bytes physically gone
//! (index merge + store file rewrite).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::model::{now_ms, Event};
use crate::search::Filter;
use crate::store::audit::{self, AuditEntry};
use crate::store::delete;
use crate::AppState;

/// How long an erasure waits for the index to hold everything stored before it.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Install,
    User,
}

impl SubjectKind {
    pub fn parse(text: &str) -> Option<SubjectKind> {
        match text {
            "install" | "installs" => Some(SubjectKind::Install),
            "user" | "users" => Some(SubjectKind::User),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Install => "install",
            SubjectKind::User => "user",
        }
    }

    pub fn filter(self, id: &str) -> Filter {
        use crate::fields::EventField;
        match self {
            SubjectKind::Install => Filter::default().with(EventField::InstallId, id),
            SubjectKind::User => Filter::default().with(EventField::UserId, id),
        }
    }
}

/// What the index must still delete: recorded in the store with the deletion itself.
#[derive(Debug, Serialize, Deserialize)]
pub struct Tombstone {
    pub filter: Filter,
    /// Index documents with positions in `[from_seq, below_seq)` matching `filter` go.
    #[serde(default)]
    pub from_seq: u64,
    pub below_seq: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErasureReport {
    pub subject: SubjectKind,
    pub events_removed: u64,
    pub installs_removed: u64,
    pub index_documents_removed: u64,
    pub audit_id: u64,
    pub purge: PurgeStatus,
}

/// Positions of every stored event of the subject, once the index holds all of them.
fn subject_positions(
    state: &AppState,
    kind: SubjectKind,
    id: &str,
) -> Result<(Vec<u64>, u64), ApiError> {
    let position = state.store.next_seq()?;
    if !state.search.wait_indexed(position, CATCH_UP_TIMEOUT) {
        return Err(ApiError::NotReady(
            "the search index is still catching up with the store".into(),
        ));
    }
    let mut seqs = state.search.positions(&kind.filter(id))?;
    seqs.retain(|s| *s < position);
    Ok((seqs, position))
}

/// Every stored event of the subject (right of access), oldest first.
pub fn export(state: &AppState, kind: SubjectKind, id: &str) -> Result<Vec<Event>, ApiError> {
    let (seqs, _) = subject_positions(state, kind, id)?;
    Ok(state
        .store
        .events_at(&seqs)?
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

/// Erases the subject from store, index, install registry and rate-limit state, writes the audit
/// entry (with a salted hash, never the id), and starts the purge. Blocking.
pub fn erase(
    state: &Arc<AppState>,
    kind: SubjectKind,
    id: &str,
    actor: &str,
) -> Result<ErasureReport, ApiError> {
    let started = Instant::now();
    let (seqs, position) = subject_positions(state, kind, id)?;
    let found = started.elapsed();
    let tombstone = Tombstone {
        filter: kind.filter(id),
        from_seq: 0,
        below_seq: position,
    };
    let tombstone_bytes =
        serde_json::to_vec(&tombstone).map_err(|e| ApiError::Internal(e.to_string()))?;
    let products: Vec<String> = state.ingest.products.iter().map(|p| p.id.clone()).collect();
    let subject = id.to_string();
    let actor = actor.to_string();
    let (deleted, (installs_removed, tombstone_id, audit_id)) = state.clusters.erase_events(state, move || {
        Ok(state.writer.exclusive_blocking(move |store| {
            store.write(|txn| {
                let deleted = delete::delete_events(txn, &store.recent_ids, &seqs)?;
                let mut installs = 0;
                if kind == SubjectKind::Install {
                    for product in &products {
                        installs += u64::from(delete::delete_install(txn, product, &subject)?);
                    }
                }
                let tombstone_id = delete::add_tombstone(txn, &tombstone_bytes)?;
                let target = audit::subject_hash(txn, kind.as_str(), &subject)?;
                let entry = AuditEntry {
                    id: 0,
                    time_ms: now_ms(),
                    actor,
                    action: "subject.erase".into(),
                    target,
                    outcome: "ok".into(),
                    result: serde_json::json!({ "events_removed": deleted.len(), "installs_removed": installs }),
                };
                let audit_id = audit::append(txn, entry)?;
                Ok((deleted, (installs, tombstone_id, audit_id)))
            })
        })?)
    })?;
    let events_removed = deleted.len() as u64;
    let stored = started.elapsed();
    let index_documents_removed = apply_tombstone(state, tombstone_id, &tombstone)?;
    // The subject's id is never logged.
    tracing::info!(
        subject = kind.as_str(),
        events_removed,
        find_ms = found.as_millis() as u64,
        store_ms = (stored - found).as_millis() as u64,
        index_ms = (started.elapsed() - stored).as_millis() as u64,
        "subject erased"
    );
    if kind == SubjectKind::Install {
        for product in &state.ingest.products {
            state.ingest.limiter.forget(product.index, id);
        }
    }
    state.metrics.erasures.inc();
    Ok(ErasureReport {
        subject: kind,
        events_removed,
        installs_removed,
        index_documents_removed,
        audit_id,
        purge: state.purge.request(state),
    })
}

/// Deletes from the index what a tombstone names, then forgets the tombstone.
pub fn apply_tombstone(state: &AppState, id: u64, tombstone: &Tombstone) -> Result<u64, ApiError> {
    let removed = state
        .search
        .delete(&tombstone.filter, tombstone.from_seq..tombstone.below_seq)?;
    state
        .writer
        .exclusive_blocking(move |store| store.write(|txn| delete::remove_tombstone(txn, id)))?;
    Ok(removed)
}

/// Tombstones left by a crash between a store deletion and its index deletion; applied at start.
pub fn apply_pending_tombstones(state: &AppState) -> Result<usize, ApiError> {
    let pending = state.store.pending_index_deletes()?;
    for (id, bytes) in &pending {
        let tombstone: Tombstone =
            serde_json::from_slice(bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
        apply_tombstone(state, *id, &tombstone)?;
    }
    Ok(pending.len())
}

/// The purge job: one at a time; a request while it runs makes it run once more afterwards.
#[derive(Default)]
pub struct Purge {
    running: AtomicBool,
    again: AtomicBool,
    last: Mutex<Option<PurgeOutcome>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PurgeOutcome {
    pub finished_at: i64,
    pub duration_ms: u64,
    pub error: Option<String>,
    pub store_bytes_before: u64,
    pub store_bytes_after: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PurgeStatus {
    pub state: &'static str,
    pub last: Option<PurgeOutcome>,
}

impl Purge {
    pub fn status(&self) -> PurgeStatus {
        let running = self.running.load(Ordering::SeqCst) || self.again.load(Ordering::SeqCst);
        PurgeStatus {
            state: if running { "running" } else { "idle" },
            last: self.last.lock().ok().and_then(|l| l.clone()),
        }
    }

    /// Starts a purge in the background (or queues one more run) and says so.
    pub fn request(&self, state: &Arc<AppState>) -> PurgeStatus {
        self.again.store(true, Ordering::SeqCst);
        if !self.running.swap(true, Ordering::SeqCst) {
            let state = state.clone();
            std::thread::spawn(move || {
                while state.purge.again.swap(false, Ordering::SeqCst) {
                    let outcome = run_purge(&state);
                    if let Ok(mut last) = state.purge.last.lock() {
                        *last = Some(outcome);
                    }
                }
                state.purge.running.store(false, Ordering::SeqCst);
            });
        }
        self.status()
    }
}

/// Merges the index so deleted documents leave its files, then rewrites the store file so freed
/// pages (which may still hold deleted events) leave the disk.
pub fn run_purge(state: &AppState) -> PurgeOutcome {
    let started = std::time::Instant::now();
    let before = state.store.file_size();
    let result: Result<(), ApiError> = (|| {
        state.search.purge()?;
        state
            .writer
            .exclusive_blocking(|store| store.vacuum().map(|_| ()))?;
        Ok(())
    })();
    let outcome = PurgeOutcome {
        finished_at: now_ms(),
        duration_ms: started.elapsed().as_millis() as u64,
        error: result.err().map(|e| e.to_string()),
        store_bytes_before: before,
        store_bytes_after: state.store.file_size(),
    };
    match &outcome.error {
        None => tracing::info!(
            duration_ms = outcome.duration_ms,
            bytes_before = before,
            bytes_after = outcome.store_bytes_after,
            "purge finished"
        ),
        Some(e) => tracing::error!(error = %e, "purge failed"),
    }
    state.metrics.purges.inc();
    outcome
}
