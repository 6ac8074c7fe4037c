//! `POST /api/v1/admin/backup` (admin role): the server writes a consistent copy of its store
//! into a directory on its own filesystem while it keeps ingesting. The copy is made by the
//! process that holds the store open (redb admits one), inside one read transaction.
//!
//! Body: `{"dir": "/absolute/path"}`; the directory must be new or empty and writable by the
//! server. Answer: `200 {"dir", "manifest"}` once the copy and its manifest are on disk.

use std::path::PathBuf;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::store::backup::BackupError;
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// Absolute path of a new or empty directory on the server's filesystem.
    pub dir: PathBuf,
}

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::TargetNotEmpty(_) => ApiError::invalid_parameter("dir", e.to_string()),
            BackupError::Io { .. } => ApiError::invalid_parameter("dir", e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

pub async fn post_backup(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let request: BackupRequest = serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::InvalidBody(format!("expected {{\"dir\": \"/absolute/path\"}}: {e}"))
        }
        _ => ApiError::InvalidJson(e.to_string()),
    })?;
    let dir = request.dir;
    if !dir.is_absolute() {
        return Err(ApiError::invalid_parameter(
            "dir",
            "must be an absolute path on the server",
        ));
    }
    tracing::info!(caller = %caller.name, dir = %dir.display(), "backup started");
    let st = state.clone();
    let target = dir.clone();
    let manifest = blocking(move || Ok(st.store.backup_to(&target)?)).await?;
    tracing::info!(
        caller = %caller.name,
        dir = %dir.display(),
        events = manifest.events,
        next_seq = manifest.next_seq,
        bytes = manifest.store_bytes,
        "backup written"
    );
    Ok(HttpResponse::Ok().json(json!({ "dir": dir, "manifest": manifest })))
}
