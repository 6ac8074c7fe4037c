//! The clusters at run time: the in-memory map (loaded from the store at start, written back
//! after every change), the clustering pass over events stored since the persisted cursor,
//! admin status changes, erasure, the alert dispatcher, and the API views. One mutex orders
//! passes, admin changes and erasures, so none overwrites another; readers never take it: they
//! read the published snapshot, which each change replaces when it is persisted, so a read never
//! waits for a pass.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::Serialize;

use crate::clusters::ClusterError;
use crate::clusters::{
    evaluate_pending, fold, Cluster, Dispatcher, EscalationRules, IgnoreUntil, Status,
    StatusRequest,
};
use crate::error::{Code, ErrorCode, StoreError};
use crate::metrics::Metrics;
use crate::model::{now_ms, Event};
use crate::scope::Scope;
use crate::store::audit::{self, AuditEntry};
use crate::store::clusters::{delete_cluster, put_cluster, set_cluster_cursor};
use crate::store::writer::Writer;
use crate::store::Store;
use crate::timespan::{day_start, DAY_MS};

/// Events read from the store per step of a pass.
const PASS_CHUNK: usize = 20_000;

/// The clusters as readers see them: as of the last persisted change. Unchanged clusters are
/// shared between successive snapshots, so publishing a change copies only what it changed.
type Snapshot = Arc<HashMap<String, Arc<Cluster>>>;

pub struct Clusters {
    /// The working map, locked by passes, status changes and erasures for their whole run.
    map: Mutex<HashMap<String, Cluster>>,
    /// What reads see; the lock is held only to clone or swap the `Arc`.
    published: RwLock<Snapshot>,
    pub rules: EscalationRules,
    pub dispatcher: Mutex<Option<Dispatcher>>,
    store: Store,
    writer: Arc<Writer>,
    metrics: Arc<Metrics>,
}

/// What can go wrong with a cluster request or pass.
#[derive(Debug, thiserror::Error)]
pub enum ClustersError {
    #[error("cluster {0} not found")]
    NotFound(String),
    #[error("invalid parameter `{field}`: {source}")]
    InvalidStatus {
        field: &'static str,
        source: ClusterError,
    },
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter { name: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ErrorCode for ClustersError {
    fn error_code(&self) -> Code {
        match self {
            ClustersError::NotFound(_) => Code::NotFound,
            ClustersError::InvalidStatus { .. } | ClustersError::InvalidParameter { .. } => {
                Code::InvalidParameter
            }
            ClustersError::Store(e) => e.error_code(),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            ClustersError::InvalidStatus { field, .. } => {
                Some(serde_json::json!({ "parameter": field }))
            }
            ClustersError::InvalidParameter { name, .. } => {
                Some(serde_json::json!({ "parameter": name }))
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct PassReport {
    pub events: u64,
    pub clustered: u64,
    pub new_clusters: usize,
    pub changes: usize,
    pub cursor: u64,
    pub duration_ms: u64,
}

impl Clusters {
    pub fn load(
        store: Store,
        writer: Arc<Writer>,
        metrics: Arc<Metrics>,
        rules: EscalationRules,
        dispatcher: Dispatcher,
    ) -> Result<Clusters, StoreError> {
        let map = store.clusters()?;
        Ok(Clusters {
            published: RwLock::new(Arc::new(
                map.iter()
                    .map(|(id, c)| (id.clone(), Arc::new(c.clone())))
                    .collect(),
            )),
            map: Mutex::new(map),
            rules,
            dispatcher: Mutex::new(Some(dispatcher)),
            store,
            writer,
            metrics,
        })
    }

    /// Stops the alert dispatcher after it sent what it holds.
    pub fn close(&self) {
        if let Some(mut dispatcher) = self.dispatcher.lock().ok().and_then(|mut d| d.take()) {
            dispatcher.close();
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Cluster>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The clusters as of the last persisted change.
    fn snapshot(&self) -> Snapshot {
        self.published
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Publishes the clusters `ids` as they are in `map` (absent from `map`: removed), after
    /// they were persisted; the other clusters stay as published.
    fn publish<'a>(
        &self,
        map: &HashMap<String, Cluster>,
        ids: impl IntoIterator<Item = &'a String>,
    ) {
        let mut next: HashMap<String, Arc<Cluster>> = self.snapshot().as_ref().clone();
        for id in ids {
            match map.get(id) {
                Some(cluster) => next.insert(id.clone(), Arc::new(cluster.clone())),
                None => next.remove(id),
            };
        }
        *self
            .published
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);
    }

    /// After a failed write the map may be ahead of the store: the store wins (and is what
    /// readers see).
    fn reload(&self, map: &mut HashMap<String, Cluster>, store: &Store) {
        match store.clusters() {
            Ok(stored) => {
                let ids: Vec<String> = map.keys().chain(stored.keys()).cloned().collect();
                *map = stored;
                self.publish(map, &ids);
            }
            Err(e) => tracing::error!(error = %e, "reloading clusters failed"),
        }
    }

    /// Folds every event stored since the cursor, evaluates, persists clusters and cursor in
    /// one transaction, then sends the alerts. Blocking.
    pub fn pass(&self) -> Result<PassReport, ClustersError> {
        let started = std::time::Instant::now();
        let mut map = self.lock();
        let mut cursor = self.store.cluster_cursor()?;
        let end = self.store.next_seq()?;
        let mut report = PassReport::default();
        while cursor < end {
            let chunk = self.store.events_from(cursor, PASS_CHUNK)?;
            let Some((last, _)) = chunk.last() else { break };
            let next = last + 1;
            let summary = fold(&mut map, chunk.iter().map(|(_, e)| e));
            report.events += summary.events;
            report.clustered += summary.clustered;
            report.new_clusters += summary.new_clusters.len();
            cursor = next;
        }
        // Positions between the last event and `end` hold nothing (deleted): skip them too.
        cursor = cursor.max(end);
        let evaluation = evaluate_pending(&mut map, &self.rules, now_ms());
        report.changes = evaluation.changes.len();
        report.cursor = cursor;
        let changed: Vec<Cluster> = evaluation
            .evaluated
            .iter()
            .filter_map(|id| map.get(id).cloned())
            .collect();
        let persisted = self.writer.exclusive_blocking(move |store| {
            store.write(|txn| {
                for cluster in &changed {
                    put_cluster(txn, cluster)?;
                }
                set_cluster_cursor(txn, cursor)
            })
        });
        if let Err(e) = persisted {
            self.reload(&mut map, &self.store);
            return Err(e.into());
        }
        self.publish(&map, &evaluation.evaluated);
        if let Some(dispatcher) = self
            .dispatcher
            .lock()
            .ok()
            .as_ref()
            .and_then(|d| d.as_ref())
        {
            for (id, change) in &evaluation.changes {
                if let Some(cluster) = map.get(id) {
                    dispatcher.send(cluster, change);
                }
            }
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        self.metrics.clustering_runs.inc();
        self.metrics.clustering_events.add(report.clustered);
        Ok(report)
    }

    /// An admin's status change, persisted with its audit entry.
    pub fn set_status(
        &self,
        id: &str,
        request: StatusRequest,
        actor: &str,
    ) -> Result<ClusterView, ClustersError> {
        let mut map = self.lock();
        let cluster = map
            .get_mut(id)
            .ok_or_else(|| ClustersError::NotFound(id.to_string()))?;
        let before = cluster.status.as_str();
        cluster
            .set_status(request.clone(), now_ms())
            .map_err(|source| ClustersError::InvalidStatus {
                field: source.field(),
                source,
            })?;
        let updated = cluster.clone();
        let entry = AuditEntry::now(
            actor,
            "cluster.update",
            format!("cluster:{id}"),
            vec![updated.product.clone()],
            serde_json::json!({ "from": before, "to": updated.status.as_str(), "request": request }),
        );
        let saved = updated.clone();
        let persisted = self.writer.exclusive_blocking(move |store| {
            store.write(|txn| {
                put_cluster(txn, &saved)?;
                audit::append(txn, entry).map(|_| ())
            })
        });
        if let Err(e) = persisted {
            self.reload(&mut map, &self.store);
            return Err(e.into());
        }
        self.publish(&map, [&updated.id]);
        Ok(ClusterView::of(&updated, 30))
    }

    /// Runs `delete` (the store side of an erasure) with no pass in between, then takes the
    /// deleted events out of the clusters that had counted them (those below the cursor) and
    /// writes those clusters back; clusters left empty are deleted.
    /// `delete` returns the deleted events and anything else its caller wants back.
    pub fn erase_events<T, E: From<StoreError>>(
        &self,
        delete: impl FnOnce() -> Result<(Vec<(u64, Event)>, T), E>,
    ) -> Result<(Vec<(u64, Event)>, T), E> {
        let mut map = self.lock();
        let (deleted, extra) = delete()?;
        let cursor = self.store.cluster_cursor()?;
        let mut touched = std::collections::BTreeSet::new();
        for (_, event) in deleted.iter().filter(|(seq, _)| *seq < cursor) {
            let Some(id) = event.fingerprint.as_deref() else {
                continue;
            };
            if let Some(cluster) = map.get_mut(id) {
                cluster.remove(event);
                touched.insert(id.to_string());
            }
        }
        let mut keep = Vec::new();
        let mut gone = Vec::new();
        for id in touched {
            match map.get(&id) {
                Some(c) if c.count == 0 => gone.push(id),
                Some(c) => keep.push(c.clone()),
                None => {}
            }
        }
        for id in &gone {
            map.remove(id);
        }
        let published: Vec<String> = keep
            .iter()
            .map(|c| c.id.clone())
            .chain(gone.clone())
            .collect();
        let persisted = self.writer.exclusive_blocking(move |store| {
            store.write(|txn| {
                for cluster in &keep {
                    put_cluster(txn, cluster)?;
                }
                for id in &gone {
                    delete_cluster(txn, id)?;
                }
                Ok(())
            })
        });
        if let Err(e) = persisted {
            self.reload(&mut map, &self.store);
            return Err(e.into());
        }
        self.publish(&map, &published);
        Ok((deleted, extra))
    }

    pub fn get(&self, id: &str) -> Option<Cluster> {
        self.snapshot().get(id).map(|c| Cluster::clone(c))
    }

    /// Views of the clusters matching `filter`, sorted, one page; and the total.
    pub fn list(&self, filter: &ListFilter) -> (Vec<ClusterView>, usize) {
        let map = self.snapshot();
        let mut matching: Vec<&Cluster> = map
            .values()
            .map(Arc::as_ref)
            .filter(|c| filter.matches(c))
            .collect();
        match filter.sort.as_deref() {
            Some("count") => matching.sort_by(|a, b| {
                b.weighted_count
                    .total_cmp(&a.weighted_count)
                    .then(a.id.cmp(&b.id))
            }),
            Some("installs") => matching.sort_by(|a, b| {
                b.installs
                    .estimate()
                    .0
                    .cmp(&a.installs.estimate().0)
                    .then(a.id.cmp(&b.id))
            }),
            _ => matching.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.id.cmp(&b.id))),
        }
        let total = matching.len();
        let mut same_title: HashMap<(&str, &str), Vec<&Cluster>> = HashMap::new();
        for cluster in map.values() {
            same_title
                .entry((&cluster.product, &cluster.title))
                .or_default()
                .push(cluster);
        }
        let page = matching
            .into_iter()
            .skip(filter.offset.unwrap_or(0))
            .take(filter.limit.unwrap_or(50).clamp(1, 500))
            .map(|c| {
                let mut view = ClusterView::of(c, 14);
                view.distinguished_by = distinctions(c, &same_title[&(&*c.product, &*c.title)]);
                view
            })
            .collect();
        (page, total)
    }

    /// [`distinctions`] of a cluster among the clusters of its product with its title.
    pub fn distinctions_of(&self, cluster: &Cluster) -> Vec<Distinction> {
        let map = self.snapshot();
        let same_title: Vec<&Cluster> = map
            .values()
            .map(Arc::as_ref)
            .filter(|c| c.product == cluster.product && c.title == cluster.title)
            .collect();
        distinctions(cluster, &same_title)
    }

    /// Weighted events per day over the last `days` of the products in `scope`, stacked by
    /// severity (for the clusters timeline).
    pub fn timeline(&self, scope: &Scope, days: i64) -> Vec<SeverityDay> {
        let map = self.snapshot();
        let first = day_start(now_ms()) - (days - 1) * DAY_MS;
        let mut out: Vec<SeverityDay> = (0..days)
            .map(|i| SeverityDay {
                day_ms: first + i * DAY_MS,
                ..SeverityDay::default()
            })
            .collect();
        for cluster in map.values().filter(|c| scope.allows(&c.product)) {
            for (day, count) in cluster.weighted_daily.range(first..) {
                let slot = ((day - first) / DAY_MS) as usize;
                if let Some(day) = out.get_mut(slot) {
                    match cluster.severity {
                        crate::clusters::Severity::Warn => day.warn += count,
                        crate::clusters::Severity::Error => day.error += count,
                        crate::clusters::Severity::Fatal => day.fatal += count,
                    }
                }
            }
        }
        out
    }
}

/// The clustering pass is a commit subscriber: its position is the persisted cursor, and each
/// scheduled pass catches up from it, so it needs nothing from the writer's hand-offs.
impl crate::store::subscribers::CommitSubscriber for Clusters {
    fn name(&self) -> &'static str {
        "clusters"
    }

    fn position(&self) -> Result<u64, StoreError> {
        self.store.cluster_cursor()
    }

    fn committed(&self, _events: &crate::store::subscribers::Committed) {}
}

#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListFilter {
    pub product: Option<String>,
    /// `open`, `resolved`, `ignored` or `regressed`.
    pub status: Option<String>,
    /// `warn`, `error` or `fatal`.
    pub severity: Option<String>,
    pub platform: Option<String>,
    pub app_version: Option<String>,
    /// `last_seen` (default), `count` or `installs`.
    pub sort: Option<String>,
    /// Page size (default 50; 1 to 500, clamped).
    pub limit: Option<usize>,
    /// Clusters to skip.
    pub offset: Option<usize>,
    /// The products the caller may see (its token's scope, narrowed to `product`).
    #[serde(skip)]
    #[param(ignore)]
    pub scope: Scope,
}

impl ListFilter {
    fn matches(&self, c: &Cluster) -> bool {
        let eq = |want: &Option<String>, have: &str| {
            want.as_deref().is_none_or(|w| w.is_empty() || w == have)
        };
        self.scope.allows(&c.product)
            && eq(&self.product, &c.product)
            && eq(&self.status, c.status.as_str())
            && eq(&self.severity, c.severity.as_str())
            && self
                .platform
                .as_deref()
                .is_none_or(|p| p.is_empty() || c.platforms.contains_key(p))
            && self
                .app_version
                .as_deref()
                .is_none_or(|v| v.is_empty() || c.app_versions.contains_key(v))
    }

    pub fn validate(&self) -> Result<(), ClustersError> {
        let one_of =
            |name: &'static str, value: &Option<String>, allowed: &[&str]| match value.as_deref() {
                Some(v) if !v.is_empty() && !allowed.contains(&v) => {
                    Err(ClustersError::InvalidParameter {
                        name,
                        reason: format!("must be one of {}", allowed.join(", ")),
                    })
                }
                _ => Ok(()),
            };
        one_of(
            "status",
            &self.status,
            &["open", "resolved", "ignored", "regressed"],
        )?;
        one_of("severity", &self.severity, &["warn", "error", "fatal"])?;
        one_of("sort", &self.sort, &["last_seen", "count", "installs"])
    }
}

/// Weighted events of one day by severity.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct SeverityDay {
    pub day_ms: i64,
    pub warn: f64,
    pub error: f64,
    pub fatal: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DayCount {
    pub day_ms: i64,
    /// Weighted events.
    pub count: f64,
    /// Events stored.
    pub raw_count: u64,
}

/// One dimension that sets a cluster apart from others with its title, and its value there.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Distinction {
    /// `platform`, `channel`, `module`, `error_domain`, `error_code`, or `fingerprint` when
    /// none of those differ (a title cut short, say).
    pub field: &'static str,
    /// The cluster's value (null: the events had none).
    pub value: Option<String>,
}

/// What sets `cluster` apart from the other clusters in `same_title` (the clusters of its
/// product with its title, itself included): each fingerprint dimension whose value differs
/// among them, with the cluster's value. Empty when no other cluster has the title.
pub fn distinctions(cluster: &Cluster, same_title: &[&Cluster]) -> Vec<Distinction> {
    if same_title.iter().all(|c| c.id == cluster.id) {
        return Vec::new();
    }
    type Dimension = (&'static str, fn(&Cluster) -> Option<&str>);
    const DIMENSIONS: [Dimension; 5] = [
        ("platform", |c| c.platform.as_deref()),
        ("channel", |c| c.channel.as_deref()),
        ("module", |c| c.module.as_deref()),
        ("error_domain", |c| c.error_domain.as_deref()),
        ("error_code", |c| c.error_code.as_deref()),
    ];
    let differing: Vec<Distinction> = DIMENSIONS
        .iter()
        .filter(|(_, value)| same_title.iter().any(|c| value(c) != value(cluster)))
        .map(|(field, value)| Distinction {
            field,
            value: value(cluster).map(str::to_string),
        })
        .collect();
    if differing.is_empty() {
        return vec![Distinction {
            field: "fingerprint",
            value: Some(cluster.id.chars().take(8).collect()),
        }];
    }
    differing
}

/// A cluster as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    pub id: String,
    pub product: String,
    pub title: String,
    pub name: String,
    pub platform: Option<String>,
    pub channel: Option<String>,
    pub module: Option<String>,
    pub error_domain: Option<String>,
    pub error_code: Option<String>,
    pub severity: &'static str,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_in_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore: Option<IgnoreUntil>,
    pub status_changed_at: i64,
    pub escalating: bool,
    /// Weighted events: what the stored ones stand for (1 / sample rate each).
    pub count: f64,
    /// Events stored.
    pub raw_count: u64,
    /// Whether `count` is an estimate (some events were sampled).
    pub count_estimated: bool,
    pub installs: u64,
    pub installs_estimated: bool,
    pub app_versions: BTreeMap<String, u64>,
    pub platforms: BTreeMap<String, u64>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub last_event_id: Option<uuid::Uuid>,
    pub daily: Vec<DayCount>,
    /// What sets it apart from other clusters of its product with the same title (empty when
    /// its title is its own).
    pub distinguished_by: Vec<Distinction>,
}

impl ClusterView {
    /// The view with daily counts for the last `days` days (zeros included).
    pub fn of(c: &Cluster, days: i64) -> ClusterView {
        let (installs, exact) = c.installs.estimate();
        let first = day_start(now_ms()) - (days - 1) * DAY_MS;
        let daily = (0..days)
            .map(|i| {
                let day_ms = first + i * DAY_MS;
                DayCount {
                    day_ms,
                    count: c.weighted_daily.get(&day_ms).copied().unwrap_or(0.0),
                    raw_count: c.daily.get(&day_ms).copied().unwrap_or(0),
                }
            })
            .collect();
        let (resolved_in_version, ignore) = match &c.status {
            Status::Resolved { in_version } => (in_version.clone(), None),
            Status::Ignored { until } => (None, Some(until.clone())),
            _ => (None, None),
        };
        ClusterView {
            id: c.id.clone(),
            product: c.product.clone(),
            title: c.title.clone(),
            name: c.name.clone(),
            platform: c.platform.clone(),
            channel: c.channel.clone(),
            module: c.module.clone(),
            error_domain: c.error_domain.clone(),
            error_code: c.error_code.clone(),
            severity: c.severity.as_str(),
            status: c.status.as_str(),
            resolved_in_version,
            ignore,
            status_changed_at: c.status_changed_at,
            escalating: c.escalating,
            count: c.weighted_count,
            raw_count: c.count,
            count_estimated: c.is_estimated(),
            installs,
            installs_estimated: !exact,
            app_versions: c.app_versions.clone(),
            platforms: c.platforms.clone(),
            first_seen: c.first_seen,
            last_seen: c.last_seen,
            last_event_id: c.last_event_id,
            daily,
            distinguished_by: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clusters::fingerprint;
    use crate::clusters::fingerprint::tests::event;
    use crate::model::Level;

    fn cluster(edit: impl FnOnce(&mut Event)) -> Cluster {
        let mut e = event("recognition_failed", Level::Error, Some("timeout"), "x");
        edit(&mut e);
        Cluster::new(&e, &fingerprint(&e).unwrap())
    }

    #[test]
    fn distinctions_name_only_the_dimensions_that_differ() {
        let ios = cluster(|_| {});
        let android = cluster(|e| e.platform = Some("android".into()));
        let no_channel = cluster(|e| e.channel = None);
        let same_title = [&ios, &android, &no_channel];
        assert_eq!(ios.title, android.title);
        let fields = |c: &Cluster| -> Vec<(&'static str, Option<String>)> {
            distinctions(c, &same_title)
                .into_iter()
                .map(|d| (d.field, d.value))
                .collect()
        };
        assert_eq!(
            fields(&no_channel),
            [("platform", Some("ios".into())), ("channel", None)]
        );
        assert_eq!(
            fields(&android),
            [
                ("platform", Some("android".into())),
                ("channel", Some("keyboard".into()))
            ]
        );
        assert_eq!(distinctions(&ios, &[&ios]), []);
        // A title cut short can hide what differs: the fingerprint's start tells them apart.
        let mut twin = cluster(|_| {});
        twin.id = "0123456789abcdef0123456789abcdef".into();
        assert_eq!(
            distinctions(&twin, &[&ios, &twin]),
            [Distinction {
                field: "fingerprint",
                value: Some("01234567".into())
            }]
        );
    }
}
