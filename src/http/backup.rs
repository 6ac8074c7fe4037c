//! `POST /api/v1/admin/backup` (admin role, every product): the server writes a consistent copy
//! of its store into a directory below its backup directory (`server.backup_dir`, default
//! `DATA_DIR/backups`) while it keeps ingesting. The copy is made by the process that holds the
//! store open (redb admits one), inside one read transaction. Audited as `backup.create`.
//!
//! Body: `{"dir": "name"}` (below the backup directory) or `{"dir": "/absolute/path"}` (which
//! must lie below it); `..`, paths elsewhere and symbolic links leading out are refused with
//! `400 invalid_parameter` naming the problem. The directory must be new or empty. Answer:
//! `200 {"dir", "manifest"}` once the copy and its manifest are on disk.

use std::path::PathBuf;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::http::openapi;
use crate::store::audit::AuditEntry;
use crate::store::backup::{target_below, BackupError, BackupManifest};
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// A new or empty directory below the backup directory (relative to it, or absolute).
    #[schema(value_type = String)]
    pub dir: PathBuf,
}

/// The answer of [`post_backup`].
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BackupAnswer {
    /// The directory written.
    #[schema(value_type = String)]
    dir: PathBuf,
    manifest: BackupManifest,
}

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::TargetNotEmpty(_) | BackupError::OutsideBackupDir { .. } => {
                ApiError::invalid_parameter("dir", e.to_string())
            }
            BackupError::Io { .. } => ApiError::invalid_parameter("dir", e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Writes a consistent copy of the store below the backup directory.
#[utoipa::path(
    post,
    path = "/api/v1/admin/backup",
    summary = "Back up the store",
    tag = "operations",
    description = "Writes a consistent copy of the store into a new or empty directory below \
        `server.backup_dir` (admin role, every product); audited.",
    request_body = BackupRequest,
    responses(
        (status = 200, description = "The copy and its manifest are on disk.", body = BackupAnswer),
        openapi::BadBody, openapi::TokenRequired, openapi::Forbidden, openapi::Unavailable,
    ),
    security(("admin_token" = [])),
)]
pub async fn post_backup(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_global_admin()?;
    let request: BackupRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::json_body(e, "{\"dir\": \"name-below-backup-dir\"}"))?;
    let root = state.config.backup_dir();
    let st = state.clone();
    let actor = caller.name.clone();
    let (dir, manifest) = blocking(move || {
        let dir = target_below(&root, &request.dir)?;
        tracing::info!(caller = %actor, dir = %dir.display(), "backup started");
        let manifest = st.store.backup_to(&dir)?;
        Ok((dir, manifest))
    })
    .await?;
    tracing::info!(
        caller = %caller.name,
        dir = %dir.display(),
        events = manifest.events,
        next_seq = manifest.next_seq,
        bytes = manifest.store_bytes,
        "backup written"
    );
    let entry = AuditEntry::now(
        &caller.name,
        "backup.create",
        format!("backup:{}", dir.display()),
        Vec::new(),
        json!({ "events": manifest.events, "next_seq": manifest.next_seq, "bytes": manifest.store_bytes }),
    );
    state.writer.audit(entry).await?;
    Ok(HttpResponse::Ok().json(BackupAnswer { dir, manifest }))
}
