//! Data-subject endpoints: export (`GET`) and erasure (`DELETE`) of one install or user (admin,
//! audited, limited to the caller's products), the purge status and start, and the audit log.

use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::http::openapi;
use crate::privacy::{ErasureReport, PurgeStatus, SubjectKind};
use crate::store::audit::{AuditEntry, AuditQuery};
use crate::AppState;

fn subject(path: &(String, String)) -> Result<(SubjectKind, String), ApiError> {
    let kind = SubjectKind::parse(&path.0)
        .ok_or_else(|| ApiError::invalid_parameter("kind", "must be `install` or `user`"))?;
    let id = path.1.trim();
    if id.is_empty() || id.len() > 200 {
        return Err(ApiError::invalid_parameter(
            "id",
            "must be 1 to 200 characters",
        ));
    }
    Ok((kind, id.to_string()))
}

/// `GET /api/v1/subjects/{install|user}/{id}` (admin): every event of the subject in the
/// caller's products as NDJSON; audited as `subject.export`.
#[utoipa::path(
    get,
    path = "/api/v1/subjects/{kind}/{id}",
    summary = "Export a subject's events",
    tag = "privacy",
    description = "Every event of one install or user in the token's products, as NDJSON \
        (admin role; right of access); audited.",
    params(
        ("kind" = String, Path, description = "`install` or `user`", pattern = "^(install|user)s?$"),
        ("id" = String, Path, description = "The install or user id", min_length = 1, max_length = 200),
    ),
    responses(
        (status = 200, description = "One event per line.", content_type = "application/x-ndjson", body = String, headers(
            ("x-total-count" = u64, description = "How many events"),
        )),
        openapi::BadParameter, openapi::TokenRequired, openapi::Forbidden, openapi::NotReady,
    ),
    security(("admin_token" = [])),
)]
pub async fn export(
    caller: Caller,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let (kind, id) = subject(&path)?;
    let st = state.clone();
    let events =
        blocking(move || Ok(st.privacy.export(kind, &id, &caller.scope, &caller.name)?)).await?;
    let mut body = Vec::with_capacity(events.len() * 512);
    for event in &events {
        serde_json::to_writer(&mut body, event).map_err(|e| ApiError::Internal(e.to_string()))?;
        body.push(b'\n');
    }
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header(("x-total-count", events.len().to_string()))
        .body(body))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EraseParams {
    /// Wait for the purge (index merge and store rewrite) before answering.
    #[serde(default)]
    wait_purge: bool,
}

/// The answer to an erasure: its report and, with `?wait_purge=true`, how the wait ended.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EraseAnswer {
    #[serde(flatten)]
    report: ErasureReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    purge_wait: Option<PurgeWait>,
}

#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct PurgeWait {
    /// The purge was still running when the wait ended; it continues in the background.
    timed_out: bool,
    timeout_secs: u64,
}

/// `DELETE /api/v1/subjects/{install|user}/{id}` (admin).
#[utoipa::path(
    delete,
    path = "/api/v1/subjects/{kind}/{id}",
    summary = "Erase a subject",
    tag = "privacy",
    description = "Erases one install or user from the token's products (admin role; right to \
        erasure): events, install record, metric series and index documents; audited.",
    params(
        ("kind" = String, Path, description = "`install` or `user`", pattern = "^(install|user)s?$"),
        ("id" = String, Path, description = "The install or user id", min_length = 1, max_length = 200),
        EraseParams,
    ),
    responses(
        (status = 200, description = "What was removed.", body = EraseAnswer),
        openapi::BadParameter, openapi::TokenRequired, openapi::Forbidden, openapi::NotReady,
    ),
    security(("admin_token" = [])),
)]
pub async fn erase(
    caller: Caller,
    path: web::Path<(String, String)>,
    params: web::Query<EraseParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let (kind, id) = subject(&path)?;
    let st = state.clone();
    let wait = params.wait_purge;
    let timeout_secs = state.config.privacy.wait_purge_timeout_secs;
    let answer = blocking(move || {
        let mut report = st
            .privacy
            .erase(kind, &id, &caller.scope, &caller.name, wait)?;
        let mut purge_wait = None;
        if wait {
            let timeout = Duration::from_secs(timeout_secs);
            let (status, timed_out) = wait_until_done(|| st.privacy.purge.status(), timeout);
            report.purge = status;
            purge_wait = Some(PurgeWait {
                timed_out,
                timeout_secs,
            });
        }
        Ok(EraseAnswer { report, purge_wait })
    })
    .await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// Polls `status` until the urgent purge asked for has run (nothing is running or about to: a
/// later erasure's purge may be scheduled) or `timeout` has passed; the last status, and whether
/// the wait timed out.
fn wait_until_done(status: impl Fn() -> PurgeStatus, timeout: Duration) -> (PurgeStatus, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let current = status();
        if current.state != "running" {
            return (current, false);
        }
        if Instant::now() >= deadline {
            return (current, true);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `GET /api/v1/purge`: the state of the purge job (a process-wide job with the store's size:
/// tokens of every product).
#[utoipa::path(
    get,
    path = "/api/v1/purge",
    summary = "The purge job",
    description = "The purge job's state and last outcome (tokens of every product).",
    tag = "privacy",
    responses(
        (status = 200, description = "The purge job's state and last outcome.", body = crate::privacy::PurgeStatus),
        openapi::TokenRequired, openapi::Forbidden,
    ),
    security(("admin_token" = [])),
)]
pub async fn purge_status(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_all_products()?;
    Ok(HttpResponse::Ok().json(state.privacy.purge.status()))
}

/// `POST /api/v1/purge` (admin of every product): starts a purge; audited as `purge.start`.
#[utoipa::path(
    post,
    path = "/api/v1/purge",
    summary = "Start a purge",
    description = "Starts a purge (index merge and store rewrite after erasures) (admin role, every product); audited.",
    tag = "privacy",
    responses(
        (status = 202, description = "Started (or already running).", body = crate::privacy::PurgeStatus),
        openapi::TokenRequired, openapi::Forbidden, openapi::Unavailable,
    ),
    security(("admin_token" = [])),
)]
pub async fn start_purge(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_global_admin()?;
    let status = state.privacy.purge.request(true);
    let entry = AuditEntry::now(
        &caller.name,
        "purge.start",
        "store".into(),
        Vec::new(),
        json!({ "state": status.state }),
    );
    state.writer.audit(entry).await?;
    Ok(HttpResponse::Accepted().json(status))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only this action (`policy.create`, `subject.erase`, ...).
    action: Option<String>,
    /// Start as in search: RFC 3339, a date, epoch ms, `now` or relative.
    from: Option<String>,
    /// End, as `from`.
    to: Option<String>,
    /// Entries before this id: the previous page's `next_before`.
    before: Option<u64>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The answer of [`audit`].
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Newest first.
    entries: Vec<AuditEntry>,
    /// The `before` of the next page (none on the last).
    next_before: Option<u64>,
}

/// `GET /api/v1/audit` (admin): the audit log, newest first; a scoped token sees the entries
/// about its products only.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    summary = "The audit log",
    description = "The audit log, newest first, in pages (admin role; a scoped token sees the entries about its products only).",
    tag = "privacy",
    params(AuditParams),
    responses(
        (status = 200, description = "One page of the audit log.", body = AuditPage),
        openapi::BadParameter, openapi::TokenRequired, openapi::Forbidden,
    ),
    security(("admin_token" = [])),
)]
pub async fn audit(
    caller: Caller,
    params: web::Query<AuditParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let now = crate::model::now_ms();
    let time = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| {
                crate::search::parse_time_param(v, now)
                    .map_err(|reason| ApiError::invalid_parameter(name, reason))
            })
            .transpose()
    };
    if params.limit.is_some_and(|l| l == 0 || l > 1000) {
        return Err(ApiError::invalid_parameter(
            "limit",
            "must be between 1 and 1000",
        ));
    }
    let query = AuditQuery {
        action: params.action.clone(),
        from_ms: time("from", &params.from)?,
        to_ms: time("to", &params.to)?,
        before: params.before,
        limit: params.limit,
        scope: caller.scope.clone(),
    };
    let page_size = query.limit.unwrap_or(100);
    let st = state.clone();
    let entries = blocking(move || Ok(st.store.audit_entries(&query)?)).await?;
    let next_before = entries
        .last()
        .map(|e| e.id)
        .filter(|_| entries.len() == page_size);
    Ok(HttpResponse::Ok().json(AuditPage {
        entries,
        next_before,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: &'static str) -> PurgeStatus {
        PurgeStatus {
            state,
            due_at: None,
            last: None,
        }
    }

    #[test]
    fn the_purge_wait_ends_at_its_timeout() {
        let (last, timed_out) = wait_until_done(|| status("running"), Duration::ZERO);
        assert_eq!((last.state, timed_out), ("running", true));
        let (last, timed_out) = wait_until_done(|| status("idle"), Duration::from_secs(3600));
        assert_eq!((last.state, timed_out), ("idle", false));
        let polls = std::cell::Cell::new(0);
        let (_, timed_out) = wait_until_done(
            || {
                polls.set(polls.get() + 1);
                status(if polls.get() < 3 {
                    "running"
                } else {
                    "scheduled"
                })
            },
            Duration::from_secs(3600),
        );
        assert_eq!((polls.get(), timed_out), (3, false));
    }
}
