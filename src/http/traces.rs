//! The trace API: one trace's events and its waterfall (`GET /api/v1/traces/{trace_id}`), read
//! with either role; only the events of the caller's products (none: `not_found`). The waterfall itself is built in `crate::traces`.

use actix_web::{web, HttpResponse};

use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::http::openapi;
use crate::traces::{self, TraceId};
use crate::AppState;

/// One trace's events of the caller's products, as a waterfall (either role).
#[utoipa::path(
    get,
    path = "/api/v1/traces/{trace_id}",
    summary = "One trace",
    description = "One trace's events of the token's products, in tree order with depths and offsets for a waterfall (either role).",
    tag = "events",
    params(("trace_id" = String, Path, description = "The W3C trace id: 32 hex digits, not all zero")),
    responses(
        (status = 200, description = "The trace.", body = crate::traces::Trace),
        openapi::BadParameter, openapi::TokenRequired, openapi::NotFound,
    ),
    security(("admin_token" = [])),
)]
pub async fn get_trace(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = TraceId::parse(&path.into_inner())?;
    let st = state.clone();
    let trace =
        blocking(move || Ok(traces::load(&st.search, &st.store, &id, &caller.scope)?)).await?;
    Ok(HttpResponse::Ok().json(trace))
}
