//! The small aggregation endpoints behind the UI's overview and metrics pages: who is signed in
//! (with the products the token sees, for the UI's product picker), the overview cards, events
//! over time, breakdowns by a field (all from the index's fast fields, limited to the caller's
//! products), and the recorded metric history (process-wide: all-products tokens only).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::fields::EventField;
use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::http::search::FilterParams;
use crate::search::Filter;
use crate::timespan::{parse_duration_ms, DAY_MS};
use crate::AppState;

/// `GET /api/v1/whoami`: the token's name, role, and the configured products it sees (the UI's
/// product picker lists these); `all_products` says whether its scope is every product.
pub async fn whoami(caller: Caller, state: web::Data<AppState>) -> HttpResponse {
    let products: Vec<_> = state
        .config
        .products
        .iter()
        .filter(|p| caller.scope.allows(&p.id))
        .map(|p| json!({ "id": p.id, "name": p.name.as_deref().unwrap_or(&p.id) }))
        .collect();
    HttpResponse::Ok().json(json!({
        "name": caller.name,
        "role": caller.role.as_str(),
        "all_products": caller.scope.is_all(),
        "products": products,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductParam {
    product: Option<String>,
}

/// `GET /api/v1/stats/overview`: the figures of the overview's cards. The event figures are
/// weighted by sampling (`raw_*` are the stored counts) and count
/// the caller's products (or the one asked for); the process-wide ones (ingest rate, rejections,
/// store size, index lag) cannot be split by product and are `null` for a scoped token.
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
        let mut body = json!({
            "events_24h": events_24h,
            "raw_events_24h": raw_events_24h,
            "errors_24h": errors_24h,
            "raw_errors_24h": raw_errors_24h,
            "active_installs_24h": installs,
            "ingest_rate_per_s": null,
            "rejected_total": null,
            "pii_blocked_total": null,
            "store_events": null,
            "index_lag": null,
        });
        if process_wide {
            let stats = st.metrics.snapshot(st.gauges());
            body["ingest_rate_per_s"] =
                json!(st.history.ingest_rate(st.metrics.events_accepted.get()));
            body["rejected_total"] = json!(stats.rejected_total);
            body["pii_blocked_total"] = json!(stats.pii.rejected + stats.pii.scrubbed);
            body["store_events"] = json!(stats.store.store_events);
            body["index_lag"] = json!(stats.store.index_lag);
        }
        Ok(body)
    })
    .await?;
    Ok(HttpResponse::Ok().json(body))
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

/// `GET /api/v1/stats/timeseries`: events per bucket, stacked by level.
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
    Ok(HttpResponse::Ok().json(json!({ "bucket_ms": bucket_ms, "buckets": buckets })))
}

/// `GET /api/v1/stats/breakdown?field=`: events and installs by the values of one field.
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
    Ok(HttpResponse::Ok().json(json!({
        "field": field,
        "rows": breakdown.rows,
        "suppressed_groups": breakdown.suppressed_groups,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    minutes: Option<u64>,
}

/// `GET /api/v1/stats/history?minutes=60`: sampled counters and gauges, oldest first
/// (process-wide figures: all-products tokens only).
pub async fn history(
    caller: Caller,
    params: web::Query<HistoryParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_all_products()?;
    let minutes = params.minutes.unwrap_or(60).clamp(1, 24 * 60);
    Ok(HttpResponse::Ok().json(json!({
        "interval_ms": crate::history::INTERVAL.as_millis() as u64,
        "points": state.history.since(minutes),
    })))
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
