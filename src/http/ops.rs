//! Operations endpoints: liveness, readiness and Prometheus metrics (behind `[metrics]
//! token_hash` when set; on the separate `[metrics] listen` address instead of the main one
//! when that is set).

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::http::auth::MetricsReader;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::http::openapi;
use crate::AppState;

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    summary = "Liveness",
    description = "Liveness: the process answers.",
    tag = "operations",
    responses((status = 200, description = "Alive.", body = Health)),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// The answer of [`healthz`].
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    status: &'static str,
}

/// The answer of [`readyz`].
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready`.
    status: &'static str,
    store: StoreReadiness,
    index: IndexReadiness,
    subscribers: Vec<crate::store::subscribers::SubscriberLag>,
    sinks: Vec<crate::sinks::SinkStatus>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StoreReadiness {
    events: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IndexReadiness {
    documents: u64,
    /// Stored events not yet searchable.
    lag_events: u64,
}

/// Ready when the store answers, the index is open and the writer runs; the body says how far
/// the index is behind the store.
#[utoipa::path(
    get,
    path = "/readyz",
    summary = "Readiness",
    description = "Readiness: the store answers, the index is open and the writer runs; says how far the index, the commit subscribers and the export sinks are behind.",
    tag = "operations",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        openapi::NotReady,
    ),
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.writer.is_running() {
        return Err(ApiError::NotReady("the store writer has stopped".into()));
    }
    let st = state.clone();
    let gauges = blocking(move || Ok(st.gauges())).await?;
    Ok(HttpResponse::Ok().json(Readiness {
        status: "ready",
        store: StoreReadiness {
            events: gauges.store_events,
        },
        index: IndexReadiness {
            documents: gauges.index_docs,
            lag_events: gauges.index_lag,
        },
        subscribers: gauges.subscribers,
        sinks: gauges.sinks,
    }))
}

/// `/metrics` on the main listener: `not_found` when `[metrics] listen` serves it elsewhere.
#[utoipa::path(
    get,
    path = "/metrics",
    summary = "Prometheus metrics",
    tag = "operations",
    description = "Prometheus metrics (text exposition format 0.0.4). Needs the metrics token \
        when `[metrics] token_hash` is set; `404` here when `[metrics] listen` serves them on \
        another address (same path).",
    responses(
        (status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4", body = String),
        openapi::TokenRequired, openapi::NotFound,
    ),
    security(("metrics_token" = []), ()),
)]
pub async fn metrics(
    reader: MetricsReader,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if state.metrics_address.is_some() {
        return Err(ApiError::NotFound(
            "/metrics on this address (it is served on metrics.listen)".into(),
        ));
    }
    prometheus(reader, state).await
}

/// `/metrics` in the Prometheus text format.
pub async fn prometheus(
    _reader: MetricsReader,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let st = state.clone();
    let gauges = blocking(move || Ok(st.gauges())).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&gauges)))
}
