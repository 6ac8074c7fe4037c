//! Rewriting the store file: a copy of the live data only, swapped in for the old file. redb
//! reuses freed pages but never wipes them, so this is what makes deleted events (erasure,
//! retention) physically leave the disk, and what gives free space back. Runs on the writer
//! thread (no write in progress); readers keep the old file until they finish.

use std::path::Path;

use crate::error::StoreError;
use crate::store::backup::backup_database;
use crate::store::{open_database, Store, STORE_FILE};

const VACUUM_DIR: &str = ".vacuum";

#[derive(Debug, Clone, Copy)]
pub struct VacuumReport {
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl Store {
    /// Copies every table into a new file and puts it in place of the current one. Call from
    /// the writer thread only.
    pub fn vacuum(&self) -> Result<VacuumReport, StoreError> {
        let data_dir = self.path.parent().unwrap_or(Path::new("."));
        let work = data_dir.join(VACUUM_DIR);
        remove_leftovers(data_dir)?;
        let bytes_before = self.file_size();
        backup_database(self.database().as_ref(), &work)
            .map_err(|e| StoreError::Redb(format!("vacuum copy: {e}")))?;
        // The rename is atomic: a crash leaves either the old file or the new one in place.
        std::fs::rename(work.join(STORE_FILE), &self.path)?;
        if let Ok(dir) = std::fs::File::open(data_dir) {
            let _ = dir.sync_all();
        }
        std::fs::remove_dir_all(&work)?;
        self.replace_database(open_database(&self.path)?);
        Ok(VacuumReport {
            bytes_before,
            bytes_after: self.file_size(),
        })
    }

    /// Share of the store file not holding live data, from redb's own accounting. Call from the
    /// writer thread (it opens a write transaction).
    pub fn free_ratio(&self) -> Result<f64, StoreError> {
        let db = self.database();
        let txn = db.begin_write()?;
        let stats = txn.stats()?;
        txn.abort()?;
        let size = self.file_size().max(1);
        let live = stats.stored_bytes() + stats.metadata_bytes();
        Ok(size.saturating_sub(live) as f64 / size as f64)
    }
}

/// A vacuum interrupted by a crash leaves its work dir behind; the old file is still whole.
pub fn remove_leftovers(data_dir: &Path) -> Result<(), StoreError> {
    let work = data_dir.join(VACUUM_DIR);
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    Ok(())
}
