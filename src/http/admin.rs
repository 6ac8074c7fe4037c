//! Admin read endpoints of the core: one stored event (of the caller's products), and the
//! ingest counters as JSON (process-wide: all-products tokens only).

use actix_web::{web, HttpResponse};
use uuid::Uuid;

use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::http::openapi;
use crate::AppState;

/// One stored event, of the caller's products (either role).
#[utoipa::path(
    get,
    path = "/api/v1/events/{id}",
    summary = "One event",
    description = "One stored event of the token's products (either role).",
    tag = "events",
    params(("id" = uuid::Uuid, Path, description = "The event id")),
    responses(
        (status = 200, description = "The event.", body = crate::model::Event),
        openapi::BadParameter, openapi::TokenRequired, openapi::NotFound,
    ),
    security(("admin_token" = [])),
)]
pub async fn get_event(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id =
        Uuid::parse_str(&raw).map_err(|_| ApiError::invalid_parameter("id", "must be a UUID"))?;
    let st = state.clone();
    let event = blocking(move || Ok(st.store.event_by_id(id)?)).await?;
    let not_found = || format!("event {id}");
    let event = event.ok_or_else(|| ApiError::NotFound(not_found()))?;
    caller.check_product(&event.product, not_found)?;
    Ok(HttpResponse::Ok().json(event))
}

/// The ingest counters and store gauges (tokens of every product).
#[utoipa::path(
    get,
    path = "/api/v1/stats",
    summary = "Ingest counters and store figures",
    description = "Ingest counters (accepted, duplicates, rejected by code, PII, rate limited, dropped by policy, sampled out, overloaded) and store and index figures (tokens of every product).",
    tag = "operations",
    responses(
        (status = 200, description = "The counters and figures.", body = crate::metrics::StatsSnapshot),
        openapi::TokenRequired, openapi::Forbidden,
    ),
    security(("admin_token" = [])),
)]
pub async fn stats(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require_all_products()?;
    let st = state.clone();
    let gauges = blocking(move || Ok(st.gauges())).await?;
    Ok(HttpResponse::Ok().json(state.metrics.snapshot(gauges)))
}
