//! The client metrics API: the metrics OTLP senders reported, per product, and one metric's
//! statistic per time bucket and attribute group (`series::Series`). Reads, for any admin or
//! viewer token, of the token's products only.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::http::openapi;
use crate::model::now_ms;
use crate::search::parse_time_param;
use crate::series::SeriesQuery;
use crate::timespan::{DAY_MS, HOUR_MS};
use crate::AppState;

/// Most attributes one query may group by.
const MAX_GROUP_BY: usize = 8;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NamesParams {
    /// One product (default: every product of the token).
    product: Option<String>,
}

/// The answer of [`names`].
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct MetricNames {
    metrics: Vec<crate::series::MetricSummary>,
}

/// `GET /api/v1/metrics/names?product=`: every metric of the product (or of all products) with
/// its kind, unit, description, series count, attribute keys, first and last time seen, and the
/// statistics it answers.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/names",
    summary = "Client metrics",
    description = "Every client metric of the token's products: kind, unit, description, series, attribute keys, first and last seen, and the statistics it answers (either role).",
    tag = "metrics",
    params(NamesParams),
    responses(
        (status = 200, description = "The metrics, of the token's products.", body = MetricNames),
        openapi::BadParameter, openapi::TokenRequired, openapi::NotFound,
    ),
    security(("admin_token" = [])),
)]
pub async fn names(
    caller: Caller,
    params: web::Query<NamesParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let scope = caller.scope_for(params.product.as_deref())?;
    let product = params.product.clone().filter(|p| !p.trim().is_empty());
    let st = state.clone();
    let metrics = blocking(move || {
        let mut metrics = st.series.names(product.as_deref())?;
        metrics.retain(|m| scope.allows(&m.product));
        Ok(metrics)
    })
    .await?;
    Ok(HttpResponse::Ok().json(MetricNames { metrics }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QueryParams {
    /// The product (required unless the token sees one product).
    product: Option<String>,
    /// The metric name (required).
    name: Option<String>,
    /// Start as in search: RFC 3339, a date, epoch ms, `now` or relative (default `-24h`).
    from: Option<String>,
    /// End, as `from` (default now).
    to: Option<String>,
    /// Bucket width, a duration such as `5m`, `1h` (default), `1d`.
    bucket: Option<String>,
    /// Attributes to group by, comma-separated (at most 8).
    group_by: Option<String>,
    /// The statistic: `increase`, `rate`, `value`, `sum`, `avg`, `min`, `max` or `pNN`, as the
    /// metric's kind answers (`/api/v1/metrics/names` lists them; default its first).
    stat: Option<String>,
}

/// `GET /api/v1/metrics/query?product=&name=&from=&to=&bucket=&group_by=a,b&stat=`: per group
/// of series (by the values of the `group_by` attributes), the statistic per bucket.
/// `from`/`to` as in search (default the last 24 h), `bucket` a duration (default `1h`).
#[utoipa::path(
    get,
    path = "/api/v1/metrics/query",
    summary = "A client metric's statistic over time",
    description = "One metric's statistic per time bucket and group of series (by the `group_by` attributes); a range needing too many buckets is refused (either role).",
    tag = "metrics",
    params(QueryParams),
    responses(
        (status = 200, description = "Per group, the statistic per bucket.", body = crate::series::QueryResult),
        openapi::BadParameter, openapi::TokenRequired, openapi::NotFound,
    ),
    security(("admin_token" = [])),
)]
pub async fn query(
    caller: Caller,
    params: web::Query<QueryParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let product = caller.one_product(params.product.as_deref(), state.products.ids())?;
    let name = params
        .name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::invalid_parameter("name", "is required (a metric name)"))?;
    let now = now_ms();
    let time = |name: &str, value: Option<&str>, default: i64| -> Result<i64, ApiError> {
        match value.filter(|v| !v.trim().is_empty()) {
            Some(v) => parse_time_param(v, now).map_err(|r| ApiError::invalid_parameter(name, r)),
            None => Ok(default),
        }
    };
    let from_ms = time("from", params.from.as_deref(), now - DAY_MS)?;
    let to_ms = time("to", params.to.as_deref(), now)?;
    let bucket_ms = match params.bucket.as_deref().map(str::trim) {
        None | Some("") => HOUR_MS,
        Some(text) => crate::http::stats::parse_bucket(text)?,
    };
    let group_by: Vec<String> = params
        .group_by
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    if group_by.len() > MAX_GROUP_BY {
        return Err(ApiError::invalid_parameter(
            "group_by",
            format!("at most {MAX_GROUP_BY} attributes"),
        ));
    }
    let request = SeriesQuery {
        product,
        name,
        from_ms,
        to_ms,
        bucket_ms,
        group_by,
        stat: params.stat.filter(|s| !s.trim().is_empty()),
    };
    let st = state.clone();
    let result = blocking(move || Ok(st.series.query(&request)?)).await?;
    Ok(HttpResponse::Ok().json(result))
}
