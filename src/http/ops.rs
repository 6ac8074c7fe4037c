//! Operations endpoints: liveness, readiness and Prometheus metrics.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::error::ApiError;
use crate::http::blocking;
use crate::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready when the store answers and the writer runs.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.writer.is_running() {
        return Err(ApiError::NotReady("the store writer has stopped".into()));
    }
    let st = state.clone();
    let events = blocking(move || Ok(st.store.event_count()?)).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready", "store": { "events": events } })))
}

pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let st = state.clone();
    let gauges = blocking(move || Ok(st.gauges())).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&gauges)))
}
