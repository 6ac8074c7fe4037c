//! The trace API: one trace's events and its waterfall (`GET /api/v1/traces/{trace_id}`), read
//! with either role; only the events of the caller's products (none: `not_found`). The waterfall itself is built in `crate::traces`.

use actix_web::{web, HttpResponse};

use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::traces::{self, TraceId};
use crate::AppState;

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
