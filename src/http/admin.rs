//! Admin read endpoints of the core: one stored event, and the ingest counters as JSON.

use actix_web::{web, HttpResponse};
use uuid::Uuid;

use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::AppState;

pub async fn get_event(
    _caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id =
        Uuid::parse_str(&raw).map_err(|_| ApiError::invalid_parameter("id", "must be a UUID"))?;
    let st = state.clone();
    let event = blocking(move || Ok(st.store.event_by_id(id)?)).await?;
    match event {
        Some(event) => Ok(HttpResponse::Ok().json(event)),
        None => Err(ApiError::NotFound(format!("event {id}"))),
    }
}

pub async fn stats(_caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let st = state.clone();
    let gauges = blocking(move || Ok(st.gauges())).await?;
    Ok(HttpResponse::Ok().json(state.metrics.snapshot(gauges)))
}
