//! Data-subject requests: erasure and export of everything about one install or user, across
//! store (events, install rows, an install's metric series), index and in-memory state, and
//! the purge that makes erased bytes physically gone (index merge + store file rewrite).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::clusters::service::{Clusters, ClustersError};
use crate::error::{Code, ErrorCode, StoreError};
use crate::ingest::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::model::{now_ms, Event};
use crate::products::Products;
use crate::scope::Scope;
use crate::search::{Filter, SearchError, SearchIndex};
use crate::sinks::{SinkErasure, Sinks, SubjectDelete};
use crate::store::audit::{self, AuditEntry};
use crate::store::delete;
use crate::store::writer::Writer;
use crate::store::Store;

/// How long an erasure waits for the index to hold everything stored before it.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErasureReport {
    pub subject: SubjectKind,
    pub events_removed: u64,
    pub installs_removed: u64,
    /// The install's metric series and their points (an install id attribute links them).
    pub series_removed: u64,
    pub series_points_removed: u64,
    pub index_documents_removed: u64,
    pub audit_id: u64,
    pub purge: PurgeStatus,
    /// Each export sink's answer: whether its destination confirmed the delete (an
    /// unconfirmed one is retried until it is).
    pub sinks: Vec<SinkErasure>,
}

/// Why a deletion (erasure, retention, pending tombstones) or an export could not be done.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("the server is not ready: the search index is still catching up with the store")]
    IndexBehind,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Clusters(#[from] ClustersError),
    #[error("internal error: tombstone: {0}")]
    Tombstone(String),
}

impl ErrorCode for DeleteError {
    fn error_code(&self) -> Code {
        match self {
            DeleteError::IndexBehind => Code::NotReady,
            DeleteError::Store(e) => e.error_code(),
            DeleteError::Search(e) => e.error_code(),
            DeleteError::Clusters(e) => e.error_code(),
            DeleteError::Tombstone(_) => Code::Internal,
        }
    }

    fn message(&self) -> String {
        match self {
            DeleteError::Store(e) => e.message(),
            DeleteError::Search(e) => e.message(),
            DeleteError::Clusters(e) => e.message(),
            other => other.to_string(),
        }
    }
}

/// Where a deletion has to reach: the store (through its writer) and the index.
#[derive(Clone)]
pub struct Deleter {
    pub store: Store,
    pub writer: Arc<Writer>,
    pub search: Arc<SearchIndex>,
}

impl Deleter {
    /// The position the store has reached, once the index holds everything below it.
    pub fn indexed_position(&self, timeout: Duration) -> Result<u64, DeleteError> {
        let position = self.store.next_seq()?;
        if !self.search.wait_indexed(position, timeout) {
            return Err(DeleteError::IndexBehind);
        }
        Ok(position)
    }

    /// Deletes from the index what a tombstone names, then forgets the tombstone.
    pub fn apply_tombstone(&self, id: u64, tombstone: &Tombstone) -> Result<u64, DeleteError> {
        let removed = self
            .search
            .delete(&tombstone.filter, tombstone.from_seq..tombstone.below_seq)?;
        self.writer.exclusive_blocking(move |store| {
            store.write(|txn| delete::remove_tombstone(txn, id))
        })?;
        Ok(removed)
    }

    /// Tombstones left by a crash between a store deletion and its index deletion; applied at
    /// start.
    pub fn apply_pending_tombstones(&self) -> Result<usize, DeleteError> {
        let pending = self.store.pending_index_deletes()?;
        for (id, bytes) in &pending {
            let tombstone: Tombstone =
                serde_json::from_slice(bytes).map_err(|e| DeleteError::Tombstone(e.to_string()))?;
            self.apply_tombstone(*id, &tombstone)?;
        }
        Ok(pending.len())
    }
}

impl Tombstone {
    pub fn to_bytes(&self) -> Result<Vec<u8>, DeleteError> {
        serde_json::to_vec(self).map_err(|e| DeleteError::Tombstone(e.to_string()))
    }
}

/// The data-subject service: export and erasure of one install or user, and the purge.
pub struct Privacy {
    deleter: Deleter,
    clusters: Arc<Clusters>,
    products: Arc<Products>,
    limiter: Arc<RateLimiter>,
    metrics: Arc<Metrics>,
    sinks: Arc<Sinks>,
    pub purge: Purge,
}

impl Privacy {
    pub fn new(
        deleter: Deleter,
        clusters: Arc<Clusters>,
        products: Arc<Products>,
        limiter: Arc<RateLimiter>,
        metrics: Arc<Metrics>,
        sinks: Arc<Sinks>,
        purge_interval: Duration,
    ) -> Privacy {
        let purge = Purge::new(deleter.clone(), metrics.clone(), purge_interval);
        Privacy {
            deleter,
            clusters,
            products,
            limiter,
            metrics,
            sinks,
            purge,
        }
    }

    /// Positions of every stored event of the subject in `scope`, once the index holds all of
    /// them.
    fn subject_positions(&self, filter: &Filter) -> Result<(Vec<u64>, u64), DeleteError> {
        let position = self.deleter.indexed_position(CATCH_UP_TIMEOUT)?;
        let mut seqs = self.deleter.search.positions(filter)?;
        seqs.retain(|s| *s < position);
        Ok((seqs, position))
    }

    /// Every stored event of the subject in the products of `scope` (right of access), oldest
    /// first; audited as `subject.export` (with a salted hash of the id, never the id). Blocking.
    pub fn export(
        &self,
        kind: SubjectKind,
        id: &str,
        scope: &Scope,
        actor: &str,
    ) -> Result<Vec<Event>, DeleteError> {
        let (seqs, _) = self.subject_positions(&kind.filter(id).within(scope.clone()))?;
        let events: Vec<Event> = self
            .deleter
            .store
            .events_at(&seqs)?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        let (subject, actor) = (id.to_string(), actor.to_string());
        let products = audit::scope_products(scope);
        let exported = events.len();
        self.deleter.writer.exclusive_blocking(move |store| {
            store.write(|txn| {
                let target = audit::subject_hash(txn, kind.as_str(), &subject)?;
                let result = serde_json::json!({ "events_exported": exported });
                let entry = AuditEntry::now(&actor, "subject.export", target, products, result);
                audit::append(txn, entry)
            })
        })?;
        Ok(events)
    }

    /// Erases the subject from store, index, clusters, install registry, rate-limit state and
    /// every export sink's destination in the products of `scope`, writes the audit entry (with
    /// a salted hash, never the id; it says which sinks confirmed), and asks for the purge:
    /// at once with `purge_now`, otherwise when the purge interval allows. Blocking.
    pub fn erase(
        &self,
        kind: SubjectKind,
        id: &str,
        scope: &Scope,
        actor: &str,
        purge_now: bool,
    ) -> Result<ErasureReport, DeleteError> {
        let started = Instant::now();
        let filter = kind.filter(id).within(scope.clone());
        let (seqs, position) = self.subject_positions(&filter)?;
        let found = started.elapsed();
        let tombstone = Tombstone {
            filter,
            from_seq: 0,
            below_seq: position,
        };
        // Nothing of the subject is in the index below `position`: no tombstone to write (it
        // would put the id on disk only to delete nothing).
        let tombstone_bytes = (!seqs.is_empty())
            .then(|| tombstone.to_bytes())
            .transpose()?;
        let products: Vec<String> = self
            .products
            .ids()
            .filter(|p| scope.allows(p))
            .map(str::to_string)
            .collect();
        let audited = audit::scope_products(scope);
        let series_scope = scope.clone();
        let subject = id.to_string();
        let actor = actor.to_string();
        let writer = &self.deleter.writer;
        let sink_delete = SubjectDelete {
            kind,
            id: id.to_string(),
            products: products.clone(),
            received_until_ms: now_ms(),
            points_below: None,
        };
        // The sinks' deletes go first, with their deliveries held until the store's erasure
        // is done, so no batch read before it reaches a destination after its delete.
        let (erased, sinks) = self.sinks.erase(&sink_delete, |sinks| {
            let sinks = serde_json::to_value(sinks).unwrap_or_default();
            self.clusters
                .erase_events(move || -> Result<_, DeleteError> {
                    Ok(writer.exclusive_blocking(move |store| {
                        store.write(|txn| {
                            let deleted = delete::delete_events(txn, &store.recent_ids, &seqs)?;
                            let mut installs = 0;
                            let mut series = crate::series::store::Erased::default();
                            if kind == SubjectKind::Install {
                                for product in &products {
                                    installs +=
                                        u64::from(delete::delete_install(txn, product, &subject)?);
                                }
                                series = crate::series::store::erase_install(
                                    txn,
                                    &subject,
                                    &series_scope,
                                )?;
                            }
                            let tombstone_id = tombstone_bytes
                                .as_deref()
                                .map(|bytes| delete::add_tombstone(txn, bytes))
                                .transpose()?;
                            let target = audit::subject_hash(txn, kind.as_str(), &subject)?;
                            let result = serde_json::json!({
                                "events_removed": deleted.len(),
                                "installs_removed": installs,
                                "series_removed": series.series,
                                "series_points_removed": series.points,
                                "sinks": sinks,
                            });
                            let entry =
                                AuditEntry::now(&actor, "subject.erase", target, audited, result);
                            let audit_id = audit::append(txn, entry)?;
                            crate::store::set_purge_wanted(txn, true)?;
                            Ok((deleted, (installs, series, tombstone_id, audit_id)))
                        })
                    })?)
                })
        });
        let (deleted, (installs_removed, series, tombstone_id, audit_id)) = erased?;
        let events_removed = deleted.len() as u64;
        let stored = started.elapsed();
        let index_documents_removed = match tombstone_id {
            Some(id) => self.deleter.apply_tombstone(id, &tombstone)?,
            None => 0,
        };
        // The subject's id is never logged.
        tracing::info!(
            subject = kind.as_str(),
            events_removed,
            series_points_removed = series.points,
            find_ms = found.as_millis() as u64,
            store_ms = (stored - found).as_millis() as u64,
            index_ms = (started.elapsed() - stored).as_millis() as u64,
            "subject erased"
        );
        if kind == SubjectKind::Install {
            for product in self.products.all().iter().filter(|p| scope.allows(&p.id)) {
                self.limiter.forget(product.index, id);
            }
        }
        self.metrics.erasures.inc();
        Ok(ErasureReport {
            subject: kind,
            events_removed,
            installs_removed,
            series_removed: series.series,
            series_points_removed: series.points,
            index_documents_removed,
            audit_id,
            purge: self.purge.request(purge_now),
            sinks,
        })
    }
}

/// The purge job: one at a time, and at most one start per interval, since each one merges the
/// whole index and rewrites the store file while ingest waits. Requests in between are folded
/// into the next run; an urgent request (`?wait_purge=true`, `POST /api/v1/purge`) runs it as
/// soon as the current run, if any, is over.
#[derive(Clone)]
pub struct Purge {
    inner: Arc<PurgeInner>,
}

struct PurgeInner {
    deleter: Deleter,
    metrics: Arc<Metrics>,
    interval: Duration,
    state: Mutex<PurgeState>,
    wake: Condvar,
}

#[derive(Default)]
struct PurgeState {
    /// The purge thread is alive (waiting for the interval, or purging).
    thread: bool,
    /// The server is stopping: a scheduled purge is left to the next start (the store says
    /// one is wanted).
    stopping: bool,
    purging: bool,
    /// A run is wanted (its requests came after the last run started).
    wanted: bool,
    urgent: bool,
    last_started: Option<Instant>,
    last: Option<PurgeOutcome>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PurgeOutcome {
    pub finished_at: i64,
    pub duration_ms: u64,
    pub error: Option<String>,
    pub store_bytes_before: u64,
    pub store_bytes_after: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PurgeStatus {
    /// `idle`, `scheduled` (waiting for the interval since the last start; see `due_at`) or
    /// `running`.
    pub state: &'static str,
    /// When a scheduled purge starts (epoch ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<i64>,
    pub last: Option<PurgeOutcome>,
}

impl Purge {
    pub fn new(deleter: Deleter, metrics: Arc<Metrics>, interval: Duration) -> Purge {
        Purge {
            inner: Arc::new(PurgeInner {
                deleter,
                metrics,
                interval,
                state: Mutex::new(PurgeState::default()),
                wake: Condvar::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, PurgeState> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn status(&self) -> PurgeStatus {
        let state = self.state();
        status_of(&state, self.inner.interval)
    }

    /// Ends the wait for a scheduled purge (the server is stopping); a running purge finishes.
    pub fn stop(&self) {
        self.state().stopping = true;
        self.inner.wake.notify_all();
    }

    /// Asks for a purge (`now`: as soon as no other runs, else when the interval allows) and
    /// says what it will do.
    pub fn request(&self, now: bool) -> PurgeStatus {
        let mut state = self.state();
        if state.stopping {
            return status_of(&state, self.inner.interval);
        }
        state.wanted = true;
        state.urgent |= now;
        if state.thread {
            self.inner.wake.notify_all();
        } else {
            state.thread = true;
            let inner = self.inner.clone();
            std::thread::spawn(move || purge_thread(&inner));
        }
        status_of(&state, self.inner.interval)
    }
}

fn status_of(state: &PurgeState, interval: Duration) -> PurgeStatus {
    let due = (state.wanted && !state.purging && !state.urgent)
        .then(|| due(state, interval))
        .flatten()
        .filter(|due| *due > Instant::now());
    PurgeStatus {
        state: if state.purging || (state.wanted && due.is_none()) {
            "running"
        } else if due.is_some() {
            "scheduled"
        } else {
            "idle"
        },
        due_at: due.map(|due| now_ms() + due.duration_since(Instant::now()).as_millis() as i64),
        last: state.last.clone(),
    }
}

/// When the next run may start: an interval after the last start.
fn due(state: &PurgeState, interval: Duration) -> Option<Instant> {
    state.last_started.map(|started| started + interval)
}

/// Runs purges while they are wanted, each when it is due (or at once when urgent), then ends.
fn purge_thread(inner: &PurgeInner) {
    let mut state = inner.state.lock().unwrap_or_else(|p| p.into_inner());
    while state.wanted && !state.stopping {
        let wait = due(&state, inner.interval)
            .map(|due| due.saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        if !state.urgent && !wait.is_zero() {
            state = inner
                .wake
                .wait_timeout(state, wait)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
            continue;
        }
        state.wanted = false;
        state.urgent = false;
        state.purging = true;
        state.last_started = Some(Instant::now());
        drop(state);
        let outcome = run_purge(&inner.deleter, &inner.metrics);
        state = inner.state.lock().unwrap_or_else(|p| p.into_inner());
        state.purging = false;
        state.last = Some(outcome);
    }
    state.thread = false;
}

/// Merges the index so deleted documents leave its files, then rewrites the store file so freed
/// pages (which may still hold deleted events) leave the disk. The store's "purge wanted" mark
/// is cleared as it starts (an erasure during the run sets it again) and set back if it fails.
pub fn run_purge(deleter: &Deleter, metrics: &Metrics) -> PurgeOutcome {
    let started = std::time::Instant::now();
    let before = deleter.store.file_size();
    let mark = |wanted: bool| {
        deleter.writer.exclusive_blocking(move |store| {
            store.write(|txn| crate::store::set_purge_wanted(txn, wanted))
        })
    };
    // How long the store rewrite held the writer (ingest waits meanwhile).
    let mut store_ms = 0;
    let result: Result<(), DeleteError> = (|| {
        mark(false)?;
        deleter.search.purge()?;
        let rewrite = std::time::Instant::now();
        deleter
            .writer
            .exclusive_blocking(|store| store.vacuum().map(|_| ()))?;
        store_ms = rewrite.elapsed().as_millis() as u64;
        Ok(())
    })();
    let outcome = PurgeOutcome {
        finished_at: now_ms(),
        duration_ms: started.elapsed().as_millis() as u64,
        error: result.err().map(|e| {
            if let Err(mark_error) = mark(true) {
                tracing::error!(error = %mark_error, "cannot keep the failed purge wanted");
            }
            e.message()
        }),
        store_bytes_before: before,
        store_bytes_after: deleter.store.file_size(),
    };
    match &outcome.error {
        None => tracing::info!(
            duration_ms = outcome.duration_ms,
            store_rewrite_ms = store_ms,
            bytes_before = before,
            bytes_after = outcome.store_bytes_after,
            "purge finished"
        ),
        Some(e) => tracing::error!(error = %e, "purge failed"),
    }
    metrics.purges.inc();
    outcome
}
