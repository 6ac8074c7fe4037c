//! Collection policies over HTTP: the client config endpoint (merged settings, ETag, 304), the
//! admin CRUD (validated, audited, applied to the cache at once) and the preview with its dry
//! run over stored events.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::fields::EventField;
use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::http::openapi;
use crate::model::{now_ms, Event};
use crate::policies::{
    self, ClientContext, ConfigQuery, InstallInfo, Policy, PolicyDraft, ValidationError,
};
use crate::search::Filter;
use crate::store::audit::{self, AuditEntry};
use crate::store::policies::{delete_policy, policy_exists, put_policy};
use crate::AppState;

const CACHE_CONTROL: &str = "private, max-age=60";
/// Events read from the store per step of the dry run.
const PREVIEW_CHUNK: usize = 5_000;

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::InvalidPolicy {
            field: e.field,
            reason: e.reason,
        }
    }
}

/// `GET /api/v1/config`: the merged collection settings for one client.
#[utoipa::path(
    get,
    path = "/api/v1/config",
    summary = "A client's collection settings",
    tag = "ingest",
    description = "The collection settings for one client: the product's defaults merged with \
        the policies that target it. Client fields by any name clients send them under. \
        Revalidate with `If-None-Match` (`304` when unchanged).",
    params(ConfigQuery),
    responses(
        (status = 200, description = "The merged settings.", body = crate::policies::MergedConfig, headers(
            ("ETag" = String, description = "The settings' version"),
            ("Cache-Control" = String),
        )),
        (status = 304, description = "Unchanged since the `If-None-Match` version."),
        openapi::BadProduct, openapi::IngestKeyRequired,
    ),
    security(("ingest_key" = []), ("install_token" = []), ()),
)]
pub async fn client_config(
    req: HttpRequest,
    query: web::Query<ConfigQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = crate::http::ingest::ingest_key(&req);
    if query.product.is_some() || key.is_some() {
        state.products.resolve(query.product.as_deref(), key)?;
    }
    let location = state
        .ingest
        .locate(crate::http::ingest::client_ip(&req, &state));
    let known = product_ids(&state);
    let context = query
        .into_inner()
        .into_context(&known, location.country_code, location.region_code)
        .map_err(|e| ApiError::invalid_parameter(&e.field, e.reason))?;
    let config = state.policies.client_config(&context, now_ms());
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| policies::if_none_match(h, config.etag()));
    let mut response = if matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, config.etag()))
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL));
    if matches {
        return Ok(response.finish());
    }
    Ok(response
        .content_type("application/json")
        .body(config.body().to_string()))
}

fn product_ids(state: &AppState) -> Vec<&str> {
    state.products.ids().collect()
}

fn sorted(mut policies: Vec<Policy>) -> Vec<Policy> {
    policies.sort_by(|a, b| (&a.product, b.priority, &a.id).cmp(&(&b.product, a.priority, &b.id)));
    policies
}

/// The answer of [`list`].
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PolicyList {
    /// By product, then priority (highest first), then id.
    policies: Vec<Policy>,
}

/// `GET /api/v1/policies?product=`: the policies of the products in the caller's scope.
#[utoipa::path(
    get,
    path = "/api/v1/policies",
    summary = "List collection policies",
    description = "The collection policies of the token's products (either role).",
    tag = "policies",
    params(ProductParam),
    responses(
        (status = 200, description = "The policies.", body = PolicyList),
        openapi::BadParameter, openapi::TokenRequired, openapi::NotFound,
    ),
    security(("admin_token" = [])),
)]
pub async fn list(
    caller: Caller,
    query: web::Query<ProductParam>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let scope = caller.scope_for(query.product.as_deref())?;
    let policies: Vec<Policy> = state
        .policies
        .policies()
        .into_iter()
        .filter(|p| scope.allows(&p.product))
        .collect();
    Ok(HttpResponse::Ok().json(PolicyList {
        policies: sorted(policies),
    }))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProductParam {
    /// One product (default: every product of the token).
    product: Option<String>,
}

/// The policy `id` of a product in the caller's scope.
fn find(state: &AppState, caller: &Caller, id: &str) -> Result<Policy, ApiError> {
    let not_found = || format!("policy {id}");
    let policy = state
        .policies
        .policies()
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::NotFound(not_found()))?;
    caller.check_product(&policy.product, not_found)?;
    Ok(policy)
}

/// `GET /api/v1/policies/{id}`
#[utoipa::path(
    get,
    path = "/api/v1/policies/{id}",
    summary = "One collection policy",
    description = "One collection policy of the token's products (either role).",
    tag = "policies",
    params(("id" = String, Path, description = "The policy id")),
    responses(
        (status = 200, description = "The policy.", body = Policy),
        openapi::TokenRequired, openapi::NotFound,
    ),
    security(("admin_token" = [])),
)]
pub async fn get(
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(find(&state, &caller, &id)?))
}

/// What an admin write does to the stored policies.
enum Write {
    Create(Policy),
    Replace(Policy),
    Delete(Policy),
}

/// Persists one change with its audit entry in one transaction and refreshes the cache from
/// the store in the same exclusive writer job, so caches are replaced in commit order: two
/// concurrent writes cannot leave the cache with the older one's policies.
async fn write(
    state: &web::Data<AppState>,
    caller: &Caller,
    change: Write,
) -> Result<(), ApiError> {
    let actor = caller.name.clone();
    let cache = state.policies.clone();
    state
        .writer
        .exclusive(move |store| {
            let written = store.write(|txn| {
                let (action, target, product, result) = match &change {
                    Write::Create(p) => {
                        if policy_exists(txn, &p.id)? {
                            return Ok(Err(ApiError::Conflict(format!(
                                "policy {} already exists",
                                p.id
                            ))));
                        }
                        put_policy(txn, p)?;
                        (
                            "policy.create",
                            p.id.clone(),
                            p.product.clone(),
                            json!({ "name": p.name, "product": p.product }),
                        )
                    }
                    Write::Replace(p) => {
                        put_policy(txn, p)?;
                        (
                            "policy.update",
                            p.id.clone(),
                            p.product.clone(),
                            json!({ "name": p.name, "enabled": p.enabled }),
                        )
                    }
                    Write::Delete(p) => {
                        if !delete_policy(txn, &p.id)? {
                            return Ok(Err(ApiError::NotFound(format!("policy {}", p.id))));
                        }
                        ("policy.delete", p.id.clone(), p.product.clone(), json!({}))
                    }
                };
                audit::append(
                    txn,
                    AuditEntry::now(
                        &actor,
                        action,
                        format!("policy:{target}"),
                        vec![product],
                        result,
                    ),
                )?;
                Ok(Ok(()))
            })?;
            if written.is_ok() {
                cache.replace(store.policies()?);
            }
            Ok(written)
        })
        .await??;
    Ok(())
}

/// The request body as a validated draft for a product in the caller's scope (another
/// product is `not_found`), for an admin.
fn admin_draft(caller: &Caller, body: &[u8], state: &AppState) -> Result<PolicyDraft, ApiError> {
    caller.require_admin()?;
    let draft = PolicyDraft::from_json(body)?;
    caller.scope_for(Some(&draft.product))?;
    policies::validate(&draft, &product_ids(state))?;
    Ok(draft)
}

/// `POST /api/v1/policies` (admin)
#[utoipa::path(
    post,
    path = "/api/v1/policies",
    summary = "Create a collection policy",
    tag = "policies",
    description = "Creates a policy (admin role, a product in the token's scope); audited.",
    request_body = PolicyDraft,
    responses(
        (status = 201, description = "The policy as stored.", body = Policy, headers(
            ("Location" = String, description = "The policy's URL"),
        )),
        openapi::BadPolicy, openapi::TokenRequired, openapi::Forbidden, openapi::NotFound,
        openapi::Conflict,
    ),
    security(("admin_token" = [])),
)]
pub async fn create(
    caller: Caller,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let draft = admin_draft(&caller, &body, &state)?;
    let policy = draft.into_policy(policies::new_policy_id(), now_ms());
    write(&state, &caller, Write::Create(policy.clone())).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/policies/{}", policy.id)))
        .json(policy))
}

/// `PUT /api/v1/policies/{id}` (admin)
#[utoipa::path(
    put,
    path = "/api/v1/policies/{id}",
    summary = "Replace a collection policy",
    tag = "policies",
    description = "Replaces a policy (admin role); audited.",
    params(("id" = String, Path, description = "The policy id")),
    request_body = PolicyDraft,
    responses(
        (status = 200, description = "The policy as stored.", body = Policy),
        openapi::BadPolicy, openapi::TokenRequired, openapi::Forbidden, openapi::NotFound,
    ),
    security(("admin_token" = [])),
)]
pub async fn replace(
    caller: Caller,
    id: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let draft = admin_draft(&caller, &body, &state)?;
    let existing = find(&state, &caller, &id)?;
    let policy = draft.into_update(&existing, now_ms())?;
    write(&state, &caller, Write::Replace(policy.clone())).await?;
    Ok(HttpResponse::Ok().json(policy))
}

/// `DELETE /api/v1/policies/{id}` (admin)
#[utoipa::path(
    delete,
    path = "/api/v1/policies/{id}",
    summary = "Delete a collection policy",
    tag = "policies",
    description = "Deletes a policy (admin role); audited.",
    params(("id" = String, Path, description = "The policy id")),
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
    let policy = find(&state, &caller, &id)?;
    let id = policy.id.clone();
    write(&state, &caller, Write::Delete(policy)).await?;
    Ok(HttpResponse::Ok().json(crate::http::Deleted { deleted: id }))
}

/// `POST /api/v1/policies/preview` (admin): how many recent installs a draft matches, and what
/// it would have done to the last 7 days of stored events.
#[utoipa::path(
    post,
    path = "/api/v1/policies/preview",
    summary = "Preview a policy draft",
    description = "How many recent installs a draft matches, and what it would have done to the last 7 days of stored events (admin role).",
    tag = "policies",
    request_body = PolicyDraft,
    responses(
        (status = 200, description = "The installs it matches and its dry run.", body = crate::policies::preview::PreviewReport),
        openapi::BadPolicy, openapi::TokenRequired, openapi::Forbidden, openapi::NotFound,
        openapi::NotReady,
    ),
    security(("admin_token" = [])),
)]
pub async fn preview(
    caller: Caller,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let draft = admin_draft(&caller, &body, &state)?;
    let now = now_ms();
    let draft_id = draft.id.clone().unwrap_or_else(|| "draft".to_string());
    let policy = draft.into_policy(draft_id, now);
    let st = state.clone();
    let report = blocking(move || {
        let product = policy.product.clone();
        let defaults = st
            .config
            .products
            .iter()
            .find(|p| p.id == product)
            .map(|p| p.collection.clone())
            .unwrap_or_default();
        let existing: Vec<Policy> = st
            .policies
            .policies()
            .into_iter()
            .filter(|p| p.id != policy.id)
            .collect();
        let installs: Vec<InstallInfo> = st
            .store
            .installs()?
            .into_iter()
            .filter(|i| {
                i.product == product && i.last_seen >= now - policies::preview::INSTALL_WINDOW_MS
            })
            .map(|i| InstallInfo {
                context: ClientContext::from_fields(
                    i.product.clone(),
                    Some(i.install_id.clone()),
                    |f| i.get(f),
                ),
                last_seen: i.last_seen,
            })
            .collect();
        let filter = Filter {
            from_ms: Some(now - policies::preview::EVENT_WINDOW_MS),
            ..Filter::default().with(EventField::Product, product.clone())
        };
        let positions = st.search.positions(&filter)?;
        let events = StoredEvents::new(&st.store, positions);
        Ok(policies::preview(
            &policy, &defaults, &existing, &installs, events, now,
        ))
    })
    .await?;
    Ok(HttpResponse::Ok().json(report))
}

/// Reads stored events by position lazily, a chunk at a time.
struct StoredEvents<'a> {
    store: &'a crate::store::Store,
    positions: Vec<u64>,
    next: usize,
    buffer: std::vec::IntoIter<(u64, Event)>,
}

impl<'a> StoredEvents<'a> {
    fn new(store: &'a crate::store::Store, positions: Vec<u64>) -> Self {
        StoredEvents {
            store,
            positions,
            next: 0,
            buffer: Vec::new().into_iter(),
        }
    }
}

impl Iterator for StoredEvents<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            if let Some((_, event)) = self.buffer.next() {
                return Some(event);
            }
            if self.next >= self.positions.len() {
                return None;
            }
            let end = (self.next + PREVIEW_CHUNK).min(self.positions.len());
            let chunk = &self.positions[self.next..end];
            self.next = end;
            match self.store.events_at(chunk) {
                Ok(events) => self.buffer = events.into_iter(),
                Err(e) => {
                    tracing::warn!(error = %e, "preview: reading stored events failed");
                    return None;
                }
            }
        }
    }
}
