//! The error-clusters API: the list with filters and sorting, one cluster with recent sample
//! events (through search), admin status changes, the 14-day timeline — all limited to the
//! caller's products — a pass on demand (audited) and the alert log (all-products tokens only).

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clusters::alerts::{AlertLogEntry, AlertStats};
use crate::clusters::service::{ClusterView, DayCount, ListFilter, SeverityDay};
use crate::clusters::StatusRequest;
use crate::fields::EventField;
use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::http::openapi;
use crate::model::Event;
use crate::search::{Filter, SearchRequest};
use crate::store::audit::AuditEntry;
use crate::AppState;

const SAMPLES: usize = 10;

/// One page of the caller's clusters.
#[derive(Serialize, ToSchema)]
pub struct ClusterPage {
    clusters: Vec<ClusterView>,
    /// How many clusters match the filter.
    total: usize,
}

/// Error events per day by severity, oldest first.
#[derive(Serialize, ToSchema)]
pub struct SeverityTimeline {
    days: Vec<SeverityDay>,
}

/// One cluster and its newest events.
#[derive(Serialize, ToSchema)]
pub struct ClusterDetail {
    cluster: ClusterView,
    /// The 10 newest events of the cluster.
    samples: Vec<Event>,
}

/// One cluster's events per day, oldest first.
#[derive(Serialize, ToSchema)]
pub struct ClusterTimeline {
    days: Vec<DayCount>,
}

/// Recent webhook deliveries (newest first) and the delivery counters; empty and zero without
/// webhooks.
#[derive(Serialize, ToSchema)]
pub struct AlertLog {
    entries: Vec<AlertLogEntry>,
    stats: AlertStats,
}

/// `GET /api/v1/clusters`
#[utoipa::path(
    get,
    path = "/api/v1/clusters",
    summary = "List error clusters",
    description = "The error clusters of the token's products, filtered and sorted, in pages (either role).",
    tag = "clusters",
    params(ListFilter),
    responses(
        (status = 200, description = "One page of the token's products' clusters, and how many match.", body = ClusterPage),
        openapi::BadParameter, openapi::TokenRequired, openapi::NotFound,
    ),
    security(("admin_token" = [])),
)]
pub async fn list(
    caller: Caller,
    filter: web::Query<ListFilter>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut filter = filter.into_inner();
    filter.validate()?;
    filter.scope = caller.scope_for(filter.product.as_deref())?;
    let (clusters, total) = state.clusters.list(&filter);
    Ok(HttpResponse::Ok().json(ClusterPage { clusters, total }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TimelineParams {
    product: Option<String>,
    /// Days back (default 14).
    #[param(minimum = 1, maximum = 35)]
    days: Option<i64>,
}

/// `GET /api/v1/clusters/timeline`: events per day of the last 14 days, stacked by severity.
#[utoipa::path(
    get,
    path = "/api/v1/clusters/timeline",
    summary = "Error events per day by severity",
    description = "Error events per day, stacked by severity, of the token's products (either role).",
    tag = "clusters",
    params(TimelineParams),
    responses(
        (status = 200, description = "Days, oldest first.", body = SeverityTimeline),
        openapi::BadParameter, openapi::TokenRequired, openapi::NotFound,
    ),
    security(("admin_token" = [])),
)]
pub async fn timeline(
    caller: Caller,
    params: web::Query<TimelineParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let days = params.days.unwrap_or(14);
    if !(1..=35).contains(&days) {
        return Err(ApiError::invalid_parameter(
            "days",
            "must be between 1 and 35",
        ));
    }
    let scope = caller.scope_for(params.product.as_deref())?;
    Ok(HttpResponse::Ok().json(SeverityTimeline {
        days: state.clusters.timeline(&scope, days),
    }))
}

/// The cluster `id` of a product in the caller's scope.
fn view(state: &AppState, caller: &Caller, id: &str, days: i64) -> Result<ClusterView, ApiError> {
    let not_found = || format!("cluster {id}");
    let cluster = state
        .clusters
        .get(id)
        .ok_or_else(|| ApiError::NotFound(not_found()))?;
    caller.check_product(&cluster.product, not_found)?;
    let mut view = ClusterView::of(&cluster, days);
    view.distinguished_by = state.clusters.distinctions_of(&cluster);
    Ok(view)
}

/// `GET /api/v1/clusters/{id}`: the cluster with its 30-day daily counts and recent events.
#[utoipa::path(
    get,
    path = "/api/v1/clusters/{id}",
    summary = "One error cluster",
    description = "One cluster of the token's products with its 30-day daily counts and its newest events (either role).",
    tag = "clusters",
    params(("id" = String, Path, description = "The cluster id (its fingerprint)")),
    responses(
        (status = 200, description = "The cluster and its 10 newest events.", body = ClusterDetail),
        openapi::TokenRequired, openapi::NotFound, openapi::NotReady,
    ),
    security(("admin_token" = [])),
)]
pub async fn get(
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let cluster = view(&state, &caller, &id, 30)?;
    let st = state.clone();
    let fingerprint = cluster.id.clone();
    let samples = blocking(move || {
        let request = SearchRequest {
            filter: Filter::default().with(EventField::Fingerprint, fingerprint),
            limit: SAMPLES,
            cursor: None,
            exact_total: false,
        };
        let seqs: Vec<u64> = st
            .search
            .search(&request)?
            .hits
            .iter()
            .map(|h| h.seq)
            .collect();
        Ok(st
            .store
            .events_at(&seqs)?
            .into_iter()
            .map(|(_, e)| e)
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(HttpResponse::Ok().json(ClusterDetail { cluster, samples }))
}

/// `GET /api/v1/clusters/{id}/timeline`: events per day of the last 30 days.
#[utoipa::path(
    get,
    path = "/api/v1/clusters/{id}/timeline",
    summary = "A cluster's events per day",
    description = "One cluster's events per day of the last 30 days (either role).",
    tag = "clusters",
    params(("id" = String, Path, description = "The cluster id")),
    responses(
        (status = 200, description = "Days, oldest first.", body = ClusterTimeline),
        openapi::TokenRequired, openapi::NotFound,
    ),
    security(("admin_token" = [])),
)]
pub async fn cluster_timeline(
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ClusterTimeline {
        days: view(&state, &caller, &id, 30)?.daily,
    }))
}

/// `PATCH /api/v1/clusters/{id}` (admin): resolve (optionally in a version), ignore (with a
/// condition) or reopen.
#[utoipa::path(
    patch,
    path = "/api/v1/clusters/{id}",
    summary = "Change a cluster's status",
    description = "Resolves (optionally in a version), ignores (forever or until a time or more events or installs) or reopens a cluster (admin role); audited.",
    tag = "clusters",
    params(("id" = String, Path, description = "The cluster id")),
    request_body = crate::clusters::StatusRequest,
    responses(
        (status = 200, description = "The cluster after the change.", body = ClusterView),
        openapi::BadParameter, openapi::TokenRequired, openapi::Forbidden, openapi::NotFound,
    ),
    security(("admin_token" = [])),
)]
pub async fn patch(
    caller: Caller,
    id: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    view(&state, &caller, &id, 0)?;
    let request: StatusRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_parameter("body", e.to_string()))?;
    let st = state.clone();
    let id = id.into_inner();
    let mut updated =
        blocking(move || Ok(st.clusters.set_status(&id, request, &caller.name)?)).await?;
    if let Some(cluster) = state.clusters.get(&updated.id) {
        updated.distinguished_by = state.clusters.distinctions_of(&cluster);
    }
    Ok(HttpResponse::Ok().json(updated))
}

/// `POST /api/v1/clusters/run` (admin of every product: a pass spans every product): runs a
/// clustering pass now; audited as `clustering.run`.
#[utoipa::path(
    post,
    path = "/api/v1/clusters/run",
    summary = "Run a clustering pass now",
    description = "Runs a clustering pass now (admin role, every product: a pass spans every product); audited.",
    tag = "clusters",
    responses(
        (status = 200, description = "What the pass did.", body = crate::clusters::service::PassReport),
        openapi::TokenRequired, openapi::Forbidden, openapi::Unavailable,
    ),
    security(("admin_token" = [])),
)]
pub async fn run(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require_global_admin()?;
    let st = state.clone();
    let report = blocking(move || Ok(st.clusters.pass()?)).await?;
    let entry = AuditEntry::now(
        &caller.name,
        "clustering.run",
        "clusters".into(),
        Vec::new(),
        serde_json::json!(report),
    );
    state.writer.audit(entry).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// `GET /api/v1/alerts`: recent deliveries (newest first) and delivery counters, across every
/// product and webhook target: all-products tokens only.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    summary = "Alert deliveries",
    description = "Recent webhook deliveries, newest first, and delivery counters across every product and target (tokens of every product).",
    tag = "clusters",
    responses(
        (status = 200, description = "Deliveries and counters (empty without webhooks).", body = AlertLog),
        openapi::TokenRequired, openapi::Forbidden,
    ),
    security(("admin_token" = [])),
)]
pub async fn alerts(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require_all_products()?;
    let dispatcher = state.clusters.dispatcher.lock();
    let log = match dispatcher.as_ref().ok().and_then(|d| d.as_ref()) {
        Some(d) => AlertLog {
            entries: d.log(),
            stats: d.stats(),
        },
        None => AlertLog {
            entries: Vec::new(),
            stats: AlertStats::default(),
        },
    };
    Ok(HttpResponse::Ok().json(log))
}
