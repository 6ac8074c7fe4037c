//! Error clusters: the fingerprint computed at ingest, message normalisation, the cluster state
//! folded by the clustering job, severity/escalation/regression/ignore rules, and webhook
//! alerts. Pure logic: storage, scheduling and HTTP live elsewhere.
//!
//! How the pieces are meant to be used:
//! - **Ingest**: `event.fingerprint = fingerprint(&event)` for every event (it is `None` below
//!   `warn` without an error object). This is the only per-event regex work.
//! - **Clustering job**: load the clusters, [`fold`] the events stored since the cursor (or call
//!   `Cluster::new` + `Cluster::add` yourself), then [`evaluate_pending`] at `now` (or
//!   `Cluster::evaluate` on each touched cluster and each `needs_evaluation(now)` one), persist
//!   the evaluated clusters and the cursor in one write transaction, then hand each change to
//!   `Dispatcher::send`.
//! - **Admin API**: `Cluster::set_status(StatusRequest, now)`; serialise `Cluster` as is.

pub mod alerts;
pub mod cluster;
pub mod dispatcher;
pub mod escalation;
pub mod fingerprint;
pub mod installs;
pub mod normalize;
pub mod service;

#[cfg(test)]
mod cluster_tests;

pub use alerts::{
    cluster_url, payload, signature, verify_signature, AlertLogEntry, AlertStats, Outcome,
    WebhookTarget, EVENT_HEADER, SIGNATURE_HEADER,
};
pub use cluster::{
    evaluate_pending, fold, Change, Cluster, ClusterError, Evaluation, FoldSummary, IgnoreUntil,
    PendingRegression, Severity, Status, StatusKind, StatusRequest,
};
pub use dispatcher::{Dispatcher, DispatcherConfig};
pub use escalation::EscalationRules;
pub use fingerprint::{fingerprint, is_clusterable, stable_hash64, title};
pub use installs::{Hll, InstallCounter, RecentInstalls};
pub use normalize::normalize_message;
