//! The small aggregation endpoints behind the UI's overview and metrics pages: who is signed in
//! (with the products the token sees, for the UI's product picker), the overview cards, events
//! over time, breakdowns by a field (all from the index's fast fields, limited to the caller's
//! products), and the recorded metric history (process-wide: all-products tokens only).

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::fields::EventField;
use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::http::openapi;
use crate::http::search::FilterParams;
use crate::search::Filter;
use crate::timespan::{parse_duration_ms, DAY_MS};
use crate::AppState;

/// `GET /api/v1/whoami`: the token's name, role, and the configured products it sees (the UI's
/// product picker lists these); `all_products` says whether its scope is every product.
#[utoipa::path(
    get,
    path = "/api/v1/whoami",
    summary = "The signed-in token",
    description = "The token's name, role, whether it sees every product, and the configured products it sees.",
    tag = "operations",
    responses(
        (status = 200, description = "The token.", body = Whoami),
        openapi::TokenRequired,
    ),
    security(("admin_token" = [])),
)]
pub async fn whoami(caller: Caller, state: web::Data<AppState>) -> HttpResponse {
    let products = state
        .config
        .products
        .iter()
        .filter(|p| caller.scope.allows(&p.id))
        .map(|p| ProductName {
            id: p.id.clone(),
            name: p.name.clone().unwrap_or_else(|| p.id.clone()),
        })
        .collect();
    HttpResponse::Ok().json(Whoami {
        name: caller.name,
        role: caller.role.as_str(),
        all_products: caller.scope.is_all(),
        products,
    })
}

/// The answer of [`whoami`].
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Whoami {
    name: String,
    /// `viewer` or `admin`.
    role: &'static str,
    all_products: bool,
    products: Vec<ProductName>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ProductName {
    id: String,
    name: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProductParam {
    /// One product (default: every product of the token).
    product: Option<String>,
}

/// `GET /api/v1/stats/overview`: the figures of the overview's cards. The event figures are
/// weighted by sampling (`raw_*` are the stored counts) and count
/// the caller's products (or the one asked for); the process-wide ones (ingest rate, rejections,
/// store size, index lag) cannot be split by product and are `null` for a scoped token.
#[utoipa::path(
    get,
    path = "/api/v1/stats/overview",
    summary = "The overview's figures",
    description = "The overview cards' figures for the token's products (or one): the event figures weighted by sampling beside the stored `raw_*` counts; the process-wide ones are `null` for a scoped token (either role).",
    tag = "stats",
    params(ProductParam),
    responses(
        (status = 200, description = "The figures.", body = Overview),
        openapi::BadParameter, openapi::TokenRequired, openapi::NotFound, openapi::NotReady,
    ),
    security(("admin_token" = [])),
)]
pub async fn overview(
    caller: Caller,
    params: web::Query<ProductParam>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let scope = caller.scope_for(params.product.as_deref())?;
    let process_wide = caller.scope.is_all();
    let st = state.clone();
    let body = blocking(move || {
        let day = Filter {
            from_ms: Some(crate::model::now_ms() - DAY_MS),
            ..Filter::default()
        }
        .within(scope);
        let errors = day.clone().with(EventField::Level, "error,fatal");
        // Per product: weighted events, stored events and distinct installs.
        let per_product = |filter: &Filter| -> Result<(u64, u64, u64), ApiError> {
            let rows = st
                .search
                .breakdown(filter, EventField::Product.name(), 1000, 0)?
                .rows;
            Ok(rows.iter().fold((0, 0, 0), |(e, r, i), row| {
                (e + row.events, r + row.raw_events, i + row.installs)
            }))
        };
        let (events_24h, raw_events_24h, installs) = per_product(&day)?;
        let (errors_24h, raw_errors_24h, _) = per_product(&errors)?;
        let mut body = Overview {
            events_24h,
            raw_events_24h,
            errors_24h,
            raw_errors_24h,
            active_installs_24h: installs,
            ingest_rate_per_s: None,
            rejected_total: None,
            pii_blocked_total: None,
            store_events: None,
            index_lag: None,
        };
        if process_wide {
            let stats = st.metrics.snapshot(st.gauges());
            body.ingest_rate_per_s = Some(st.history.ingest_rate(st.metrics.events_accepted.get()));
            body.rejected_total = Some(stats.rejected_total);
            body.pii_blocked_total = Some(stats.pii.rejected + stats.pii.scrubbed);
            body.store_events = Some(stats.store.store_events);
            body.index_lag = Some(stats.store.index_lag);
        }
        Ok(body)
    })
    .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// The answer of [`overview`]: the last 24 hours of the caller's products (or the one asked
/// for), weighted by sampling beside the stored `raw_*` counts; the process-wide figures are
/// `null` for a scoped token.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Overview {
    events_24h: u64,
    raw_events_24h: u64,
    errors_24h: u64,
    raw_errors_24h: u64,
    active_installs_24h: u64,
    ingest_rate_per_s: Option<f64>,
    rejected_total: Option<u64>,
    pii_blocked_total: Option<u64>,
    store_events: Option<u64>,
    index_lag: Option<u64>,
}

/// A bucket length (`1h`, `15m`, `1d`, `30s`, any [`crate::timespan`] duration) → milliseconds;
/// zero is no bucket.
pub(crate) fn parse_bucket(text: &str) -> Result<i64, ApiError> {
    parse_duration_ms(text.trim())
        .ok()
        .filter(|ms| *ms > 0)
        .ok_or_else(|| {
            ApiError::invalid_parameter("bucket", "must be a duration such as 5m, 1h or 1d")
        })
}

/// The answer of [`timeseries`].
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Timeseries {
    bucket_ms: i64,
    buckets: Vec<crate::search::TimeBucket>,
}

/// `GET /api/v1/stats/timeseries`: events per bucket, stacked by level.
#[utoipa::path(
    get,
    path = "/api/v1/stats/timeseries",
    summary = "Events over time by level",
    description = "Events per time bucket, weighted by sampling and stacked by level (either role).",
    tag = "stats",
    params(FilterParams),
    responses(
        (status = 200, description = "Events per bucket (default the last 24 h).", body = Timeseries),
        openapi::BadSearch, openapi::TokenRequired, openapi::NotFound, openapi::NotReady,
    ),
    security(("admin_token" = [])),
)]
pub async fn timeseries(
    caller: Caller,
    params: web::Query<FilterParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let bucket_ms = parse_bucket(params.bucket.as_deref().unwrap_or("1h"))?;
    let mut filter = params.to_filter(&caller)?;
    if filter.from_ms.is_none() {
        filter.from_ms = Some(crate::model::now_ms() - DAY_MS);
    }
    let st = state.clone();
    let buckets = blocking(move || {
        st.search
            .timeseries(&filter, bucket_ms)
            .map_err(|e| ApiError::invalid_parameter("bucket", e.to_string()))
    })
    .await?;
    Ok(HttpResponse::Ok().json(Timeseries { bucket_ms, buckets }))
}

/// The answer of [`breakdown`].
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Breakdown {
    /// The field's canonical name.
    field: String,
    rows: Vec<crate::search::BreakdownRow>,
    /// Groups under the products' `min_group_installs`, folded away.
    suppressed_groups: usize,
}

/// `GET /api/v1/stats/breakdown?field=`: events and installs by the values of one field.
#[utoipa::path(
    get,
    path = "/api/v1/stats/breakdown",
    summary = "Events by the values of a field",
    description = "Events (weighted by sampling) and installs by the values of one field (`field`, required); groups under `min_group_installs` are folded into `other` (either role).",
    tag = "stats",
    params(FilterParams),
    responses(
        (status = 200, description = "Rows by events, descending.", body = Breakdown),
        openapi::BadSearch, openapi::TokenRequired, openapi::NotFound, openapi::NotReady,
    ),
    security(("admin_token" = [])),
)]
pub async fn breakdown(
    caller: Caller,
    params: web::Query<FilterParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let field = params
        .field
        .clone()
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::invalid_parameter("field", "is required, e.g. field=platform"))?;
    let limit = params.limit.unwrap_or(10).clamp(1, 1000);
    let filter = params.to_filter(&caller)?;
    // A catalogue field answers under its canonical name (`country` → `country_code`).
    let field = EventField::lookup(&field).map_or(field, |f| f.name().to_string());
    let min_installs = state.products.min_group_installs(&filter.scope);
    let st = state.clone();
    let name = field.clone();
    let breakdown = blocking(move || {
        st.search
            .breakdown(&filter, &name, limit, min_installs)
            .map_err(|e| ApiError::invalid_parameter("field", e.to_string()))
    })
    .await?;
    Ok(HttpResponse::Ok().json(Breakdown {
        field,
        rows: breakdown.rows,
        suppressed_groups: breakdown.suppressed_groups,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// How far back (default 60; 1 to 1440, clamped).
    #[param(minimum = 1, maximum = 1440)]
    minutes: Option<u64>,
}

/// The answer of [`history`].
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct History {
    interval_ms: u64,
    points: Vec<crate::history::Point>,
}

/// `GET /api/v1/stats/history?minutes=60`: sampled counters and gauges, oldest first
/// (process-wide figures: all-products tokens only).
#[utoipa::path(
    get,
    path = "/api/v1/stats/history",
    summary = "Sampled counter history",
    description = "Sampled counters and gauges of the last minutes, oldest first (tokens of every product).",
    tag = "stats",
    params(HistoryParams),
    responses(
        (status = 200, description = "Points, oldest first.", body = History),
        openapi::BadParameter, openapi::TokenRequired, openapi::Forbidden,
    ),
    security(("admin_token" = [])),
)]
pub async fn history(
    caller: Caller,
    params: web::Query<HistoryParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_all_products()?;
    let minutes = params.minutes.unwrap_or(60).clamp(1, 24 * 60);
    Ok(HttpResponse::Ok().json(History {
        interval_ms: crate::history::INTERVAL.as_millis() as u64,
        points: state.history.since(minutes),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timespan::{HOUR_MS, MINUTE_MS};

    #[test]
    fn buckets() {
        assert_eq!(parse_bucket("1h").unwrap(), HOUR_MS);
        assert_eq!(parse_bucket("15m").unwrap(), 15 * MINUTE_MS);
        assert_eq!(parse_bucket(" 2d ").unwrap(), 2 * DAY_MS);
        assert_eq!(parse_bucket("1w").unwrap(), 7 * DAY_MS);
        assert_eq!(parse_bucket("500ms").unwrap(), 500);
        for bad in ["", "h", "0h", "5y", "-1h", "99999999999999d"] {
            assert!(parse_bucket(bad).is_err(), "{bad}");
        }
    }
}
