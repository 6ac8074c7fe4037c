//! `POST /api/v1/analytics/query`: the HTTP adapter of [`crate::analytics`] — reads the JSON
//! spec, picks the product within the caller's scope and runs the query off the async threads.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::analytics::{self, Context, Query};
use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::model::now_ms;
use crate::AppState;

#[derive(Deserialize)]
pub struct QueryBody {
    /// Required unless the caller sees one product.
    product: Option<String>,
    #[serde(flatten)]
    query: Query,
}

/// Runs one analytics query for any admin or viewer token, on a product it sees.
pub async fn query(
    caller: Caller,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body: QueryBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::json_body(e, "an analytics query (see the README)"))?;
    let product = caller.one_product(body.product.as_deref(), state.products.ids())?;
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
        Ok(analytics::run(&context, &body.query)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(answer))
}
