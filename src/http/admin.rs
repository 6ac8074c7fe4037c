//! Admin read endpoints of the core: one stored event (of the caller's products), and the
//! ingest counters as JSON (process-wide: all-products tokens only).

use actix_web::{web, HttpResponse};
use uuid::Uuid;

use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::AppState;

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

pub async fn stats(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require_all_products()?;
    let st = state.clone();
    let gauges = blocking(move || Ok(st.gauges())).await?;
    Ok(HttpResponse::Ok().json(state.metrics.snapshot(gauges)))
}
