//! Saved analytics queries over HTTP: the list (of the products in the caller's scope, optionally
//! only those pinned to a product's dashboard), one query, and the admin writes — create, edit
//! (rename, change the spec, pin or unpin) and delete — each persisted with its audit entry.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::analytics::saved::{self, SavedDraft, SavedQuery};
use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::http::openapi;
use crate::model::now_ms;
use crate::store::audit::{self, AuditEntry};
use crate::store::saved_queries::{delete_saved_query, name_taken, put_saved_query};
use crate::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// One product (default: every product of the token).
    product: Option<String>,
    /// Only the queries pinned to the dashboard.
    pinned: Option<bool>,
}

/// `GET /api/v1/analytics/saved?product=&pinned=`: by product, then name.
#[utoipa::path(
    get,
    path = "/api/v1/analytics/saved",
    summary = "List saved analytics queries",
    description = "The saved queries of the token's products, by product then name (either role).",
    tag = "analytics",
    params(ListParams),
    responses(
        (status = 200, description = "The saved queries, by product, then name.", body = SavedList),
        openapi::BadParameter, openapi::TokenRequired, openapi::NotFound,
    ),
    security(("admin_token" = [])),
)]
pub async fn list(
    caller: Caller,
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let scope = caller.scope_for(params.product.as_deref())?;
    let mut queries: Vec<SavedQuery> = stored(&state)
        .await?
        .into_iter()
        .filter(|s| scope.allows(&s.product))
        .filter(|s| params.pinned.is_none_or(|pinned| s.pinned == pinned))
        .collect();
    queries.sort_by(|a, b| (&a.product, &a.name, &a.id).cmp(&(&b.product, &b.name, &b.id)));
    Ok(HttpResponse::Ok().json(SavedList { saved: queries }))
}

/// The answer of [`list`].
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SavedList {
    saved: Vec<SavedQuery>,
}

/// Every stored saved query (read on the blocking pool).
async fn stored(state: &web::Data<AppState>) -> Result<Vec<SavedQuery>, ApiError> {
    let st = state.clone();
    blocking(move || Ok(st.store.saved_queries()?)).await
}

/// The saved query `id` of a product in the caller's scope.
async fn find(
    state: &web::Data<AppState>,
    caller: &Caller,
    id: &str,
) -> Result<SavedQuery, ApiError> {
    let not_found = || format!("saved query {id}");
    let saved = stored(state)
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::NotFound(not_found()))?;
    caller.check_product(&saved.product, not_found)?;
    Ok(saved)
}

/// `GET /api/v1/analytics/saved/{id}`
#[utoipa::path(
    get,
    path = "/api/v1/analytics/saved/{id}",
    summary = "One saved analytics query",
    description = "One saved query of the token's products (either role).",
    tag = "analytics",
    params(("id" = String, Path, description = "The saved query's id")),
    responses(
        (status = 200, description = "The saved query.", body = SavedQuery),
        openapi::TokenRequired, openapi::NotFound,
    ),
    security(("admin_token" = [])),
)]
pub async fn get(
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(find(&state, &caller, &id).await?))
}

/// What an admin write does.
enum Write {
    Create(SavedQuery),
    Update(SavedQuery),
    Delete(SavedQuery),
}

/// Persists one change with its audit entry (`saved_query.create` / `.update` / `.delete`) in
/// one transaction; a name another query of the product has is a conflict.
async fn write(state: &AppState, caller: &Caller, change: Write) -> Result<(), ApiError> {
    let actor = caller.name.clone();
    state
        .writer
        .exclusive(move |store| {
            store.write(|txn| {
                let (action, saved, result) = match &change {
                    Write::Create(s) | Write::Update(s) => {
                        if name_taken(txn, &s.product, &s.name, &s.id)? {
                            return Ok(Err(ApiError::Conflict(format!(
                                "a saved query named `{}` already exists in product `{}`",
                                s.name, s.product
                            ))));
                        }
                        put_saved_query(txn, s)?;
                        let action = if matches!(change, Write::Create(_)) {
                            "saved_query.create"
                        } else {
                            "saved_query.update"
                        };
                        (action, s, json!({ "name": s.name, "pinned": s.pinned }))
                    }
                    Write::Delete(s) => {
                        if !delete_saved_query(txn, &s.id)? {
                            return Ok(Err(ApiError::NotFound(format!("saved query {}", s.id))));
                        }
                        ("saved_query.delete", s, json!({ "name": s.name }))
                    }
                };
                audit::append(
                    txn,
                    AuditEntry::now(
                        &actor,
                        action,
                        format!("saved_query:{}", saved.id),
                        vec![saved.product.clone()],
                        result,
                    ),
                )?;
                Ok(Ok(()))
            })
        })
        .await??;
    Ok(())
}

/// `POST /api/v1/analytics/saved` (admin): `{product, name, query, pinned}`.
#[utoipa::path(
    post,
    path = "/api/v1/analytics/saved",
    summary = "Save an analytics query",
    description = "Saves a query under a name unique in its product (admin role; `product` \
        required unless the token sees one product; `name` and `query` required); audited.",
    tag = "analytics",
    request_body = SavedDraft,
    responses(
        (status = 201, description = "The saved query.", body = SavedQuery, headers(
            ("Location" = String, description = "The saved query's URL"),
        )),
        openapi::BadAnalytics, openapi::TokenRequired, openapi::Forbidden, openapi::NotFound,
        openapi::Conflict,
    ),
    security(("admin_token" = [])),
)]
pub async fn create(
    caller: Caller,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let mut draft = SavedDraft::from_json(&body)?;
    let product = caller.one_product(draft.product.take().as_deref(), state.products.ids())?;
    if state.products.get(&product).is_none() {
        return Err(ApiError::NotFound(format!("product `{product}`")));
    }
    let saved = saved::create(draft, product, saved::new_id(), &caller.name, now_ms())?;
    write(&state, &caller, Write::Create(saved.clone())).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/analytics/saved/{}", saved.id),
        ))
        .json(saved))
}

/// `PATCH /api/v1/analytics/saved/{id}` (admin): any of `name`, `query`, `pinned`.
#[utoipa::path(
    patch,
    path = "/api/v1/analytics/saved/{id}",
    summary = "Edit a saved analytics query",
    description = "Renames it, changes its spec, or pins or unpins it (admin role; `product` may \
        not change); audited.",
    tag = "analytics",
    params(("id" = String, Path, description = "The saved query's id")),
    request_body = SavedDraft,
    responses(
        (status = 200, description = "The saved query.", body = SavedQuery),
        openapi::BadAnalytics, openapi::TokenRequired, openapi::Forbidden, openapi::NotFound,
        openapi::Conflict,
    ),
    security(("admin_token" = [])),
)]
pub async fn update(
    caller: Caller,
    id: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let draft = SavedDraft::from_json(&body)?;
    let edited = saved::edit(&find(&state, &caller, &id).await?, draft, now_ms())?;
    write(&state, &caller, Write::Update(edited.clone())).await?;
    Ok(HttpResponse::Ok().json(edited))
}

/// `DELETE /api/v1/analytics/saved/{id}` (admin)
#[utoipa::path(
    delete,
    path = "/api/v1/analytics/saved/{id}",
    summary = "Delete a saved analytics query",
    description = "Deletes it (admin role); audited.",
    tag = "analytics",
    params(("id" = String, Path, description = "The saved query's id")),
    responses(
        (status = 200, description = "Deleted.", body = crate::http::Deleted),
        openapi::TokenRequired, openapi::Forbidden, openapi::NotFound,
    ),
    security(("admin_token" = [])),
)]
pub async fn delete(
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let saved = find(&state, &caller, &id).await?;
    let id = saved.id.clone();
    write(&state, &caller, Write::Delete(saved)).await?;
    Ok(HttpResponse::Ok().json(crate::http::Deleted { deleted: id }))
}
