//! `POST /api/v1/analytics/query`: the HTTP adapter of [`crate::analytics`] — reads the JSON
//! spec, picks the product within the caller's scope and runs the query off the async threads.

use crate::analytics::{self, Context, Query};
use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::http::openapi;
use crate::model::now_ms;
use crate::AppState;
use actix_web::{web, HttpResponse};

/// The body: the spec's members plus `product` (required unless the caller sees one product).
fn query_body(body: &[u8]) -> Result<(Option<String>, Query), ApiError> {
    let mut spec: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::json_body(e, "an analytics query (see the README)"))?;
    let product = match spec.remove("product") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(product)) => Some(product),
        Some(_) => return Err(ApiError::invalid_parameter("product", "must be a string")),
    };
    Ok((product, Query::from_json(spec.into())?))
}

/// The body as the API document describes it: the spec of the query's `kind`, and `product`.
/// Never built: [`query_body`] reads the body.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct QueryBody {
    /// Required unless the caller sees one product.
    product: Option<String>,
    #[serde(flatten)]
    query: Query,
}

/// Runs one analytics query for any admin or viewer token, on a product it sees.
#[utoipa::path(
    post,
    path = "/api/v1/analytics/query",
    summary = "Run an analytics query",
    tag = "analytics",
    description = "Runs one analytics query (`kind`: trend, distribution, funnel, \
        active_installs, retention, release_health) on one product the token sees (either role).",
    request_body = QueryBody,
    responses(
        (status = 200, description = "The answer of the query's kind.", body = crate::analytics::Answer),
        openapi::BadAnalytics, openapi::TokenRequired, openapi::NotFound, openapi::NotReady,
    ),
    security(("admin_token" = [])),
)]
pub async fn query(
    caller: Caller,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (product, query) = query_body(&body)?;
    let product = caller.one_product(product.as_deref(), state.products.ids())?;
    let min_group_installs = state
        .products
        .get(&product)
        .map(|p| p.min_group_installs)
        .ok_or_else(|| ApiError::NotFound(format!("product `{product}`")))?;
    let scope = caller.scope_for(Some(&product))?;
    let st = state.clone();
    let answer = blocking(move || {
        let context = Context {
            index: &st.search,
            product,
            scope,
            min_group_installs,
            now_ms: now_ms(),
        };
        Ok(analytics::run(&context, &query)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(answer))
}
