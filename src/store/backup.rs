//! Backups of the store. `Store::backup_to` copies every table inside one redb read transaction
//! into a new redb file in an empty directory, with a `manifest.json`, while the writer keeps
//! committing (redb readers see one snapshot and never block the writer). `restore_into` checks
//! such a directory and puts its store into a data dir that no server has open.
//!
//! A backup directory is laid out like a data dir without the search index: `telemetry.redb`
//! plus `manifest.json`. The index is derived from the store and rebuilt from it on start, so it
//! is neither copied nor left behind by a restore.
//!
//! Backups the server writes on request go only below the configured backup directory:
//! `target_below` resolves a requested path and refuses `..`, paths elsewhere and symbolic
//! links that lead out of it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use redb::backends::FileBackend;
use redb::{
    Database, DatabaseError, Durability, Key, MultimapTableHandle, ReadOnlyDatabase,
    ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableHandle, Value,
};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
// The search index directory inside a data dir: derived data, never backed up or restored.
use crate::store::{Store, EVENTS, EVENT_IDS, INSTALLS, META, STORE_FILE};
use crate::INDEX_DIR;

/// The manifest written beside the copied store; its presence marks a finished backup.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Version of the backup layout; `restore` refuses newer ones.
pub const BACKUP_FORMAT: u32 = 1;

/// Entries copied per destination transaction, to keep a big copy's memory bounded.
const COPY_CHUNK: u64 = 50_000;

/// Every table of the store, copied by a backup and checked by a restore. **A table added to
/// the store is added here** (one entry); a backup fails, naming the table, when the store holds
/// a table this list lacks, so a forgotten table is never silently left out.
const TABLES: &[&dyn TableCopy] = &[
    &EVENTS,
    &EVENT_IDS,
    &crate::store::ids::ID_JOURNAL,
    &INSTALLS,
    &META,
    &crate::store::delete::INDEX_DELETES,
    &crate::store::audit::AUDIT,
    &crate::store::audit::KV,
    &crate::store::policies::POLICIES,
    &crate::store::saved_queries::SAVED_QUERIES,
    &crate::store::clusters::CLUSTERS,
    &crate::series::store::METRICS,
    &crate::series::store::SERIES_KEYS,
    &crate::series::store::SERIES,
    &crate::series::store::POINTS,
    &crate::series::store::STREAMS,
    &crate::series::store::INSTALL_SERIES,
    &crate::series::store::OUTBOX,
];

/// One table, by its typed definition: copy it between databases, count its rows.
trait TableCopy {
    fn table_name(&self) -> &str;
    fn copy(&self, src: &ReadTransaction, dst: &Database) -> Result<u64, BackupError>;
    fn rows(&self, txn: &ReadTransaction) -> Result<u64, BackupError>;
}

impl<K: Key + 'static, V: Value + 'static> TableCopy for TableDefinition<'static, K, V> {
    fn table_name(&self) -> &str {
        self.name()
    }

    /// Copies the rows in key order, in chunks of `COPY_CHUNK` rows per destination
    /// transaction (not fsynced; the caller ends with one durable commit).
    fn copy(&self, src: &ReadTransaction, dst: &Database) -> Result<u64, BackupError> {
        let table = src.open_table(*self)?;
        let mut rows = table.iter()?;
        let mut copied = 0u64;
        loop {
            let mut txn = dst.begin_write()?;
            txn.set_durability(Durability::None)?;
            let mut in_chunk = 0u64;
            {
                let mut out = txn.open_table(*self)?;
                while in_chunk < COPY_CHUNK {
                    let Some(row) = rows.next() else { break };
                    let (key, value) = row?;
                    out.insert(key.value(), value.value())?;
                    in_chunk += 1;
                }
            }
            txn.commit()?;
            copied += in_chunk;
            if in_chunk < COPY_CHUNK {
                return Ok(copied);
            }
        }
    }

    fn rows(&self, txn: &ReadTransaction) -> Result<u64, BackupError> {
        Ok(txn.open_table(*self)?.len()?)
    }
}

/// Rows per table name.
pub type TableCounts = BTreeMap<String, u64>;

/// What a backup holds, written to `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupManifest {
    pub format: u32,
    /// `telemetryd --version` of the server that wrote it.
    pub telemetryd_version: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Events in the copy.
    pub events: u64,
    /// The position the next event would have got when the copy was taken.
    pub next_seq: u64,
    /// Rows per table.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub tables: TableCounts,
    /// The store's named counters (the `meta` table) at the time of the copy.
    #[serde(default)]
    pub meta: BTreeMap<String, u64>,
    /// The store file in the backup directory.
    pub store_file: String,
    pub store_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("backup target {0} is not an empty directory: back up into a new or empty directory")]
    TargetNotEmpty(PathBuf),
    #[error("backup target {requested}: {reason}")]
    OutsideBackupDir { requested: PathBuf, reason: String },
    #[error(
        "the store has table `{0}`, which backups do not copy yet: add it to TABLES in src/store/backup.rs"
    )]
    UnknownTable(String),
    #[error("{dir} is not a usable telemetryd backup: {reason}")]
    InvalidBackup { dir: PathBuf, reason: String },
    #[error("no store at {0}")]
    NoStore(PathBuf),
    #[error("the store {0} is open by a running telemetryd: stop the server first")]
    StoreInUse(PathBuf),
    #[error(
        "the data dir {dir} is not empty (it holds {entries}): restore into an empty data dir, or pass --force to replace its store and index"
    )]
    DataDirNotEmpty { dir: PathBuf, entries: String },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let context = context.into();
    move |source| BackupError::Io { context, source }
}

macro_rules! redb_into_backup_error {
    ($($t:ty),*) => {$(
        impl From<$t> for BackupError {
            fn from(e: $t) -> Self {
                BackupError::Store(StoreError::from(e))
            }
        }
    )*};
}
redb_into_backup_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Where a backup requested at `requested` goes: a relative path is taken below `root` (the
/// configured backup directory, created if missing), an absolute one must lie below it. A `..`
/// component, a path elsewhere, `root` itself and a symbolic link that leads out of `root` are
/// refused with the reason. Returns the real path to write to.
pub fn target_below(root: &Path, requested: &Path) -> Result<PathBuf, BackupError> {
    let refuse = |reason: String| BackupError::OutsideBackupDir {
        requested: requested.to_path_buf(),
        reason,
    };
    if requested
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(refuse("must not contain `..`".into()));
    }
    std::fs::create_dir_all(root).map_err(io_error(format!(
        "cannot create the backup directory {}",
        root.display()
    )))?;
    let real_root = root.canonicalize().map_err(io_error(format!(
        "cannot resolve the backup directory {}",
        root.display()
    )))?;
    let outside = || {
        refuse(format!(
            "is not below the backup directory {} (server.backup_dir); name a directory inside it",
            real_root.display()
        ))
    };
    let target = if requested.is_absolute() {
        if !requested.starts_with(root) && !requested.starts_with(&real_root) {
            return Err(outside());
        }
        requested.to_path_buf()
    } else {
        real_root.join(requested)
    };
    // The deepest part that exists, resolved (links and all), plus the parts still to create.
    let mut existing = target.as_path();
    let mut missing = Vec::new();
    while std::fs::symlink_metadata(existing).is_err() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name.to_os_string());
                existing = parent;
            }
            _ => return Err(outside()),
        }
    }
    let mut real = existing
        .canonicalize()
        .map_err(io_error(format!("cannot resolve {}", existing.display())))?;
    real.extend(missing.iter().rev());
    if !real.starts_with(&real_root) {
        return Err(refuse(format!(
            "leads out of the backup directory {} through a symbolic link",
            real_root.display()
        )));
    }
    if real == real_root {
        return Err(refuse(
            "is the backup directory itself; name a directory inside it".into(),
        ));
    }
    Ok(real)
}

impl Store {
    /// Writes a consistent copy of the whole store, as of one instant, into `dir` (created if
    /// missing; must be empty), while the server keeps running.
    pub fn backup_to(&self, dir: &Path) -> Result<BackupManifest, BackupError> {
        // `database()` hands out the current database (a reference or a shared handle).
        let db = self.database();
        backup_database(std::borrow::Borrow::<Database>::borrow(&db), dir)
    }
}

/// Copies the store open in `source` into `dir` inside one read transaction.
pub fn backup_database(
    source: &impl ReadableDatabase,
    dir: &Path,
) -> Result<BackupManifest, BackupError> {
    prepare_empty_dir(dir)?;
    let partial = dir.join(format!("{STORE_FILE}.partial"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&partial)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => BackupError::TargetNotEmpty(dir.to_path_buf()),
            _ => BackupError::Io {
                context: format!("cannot create {}", partial.display()),
                source: e,
            },
        })?;
    let result = copy_into(source, file);
    let (tables, meta) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let store_path = dir.join(STORE_FILE);
    std::fs::rename(&partial, &store_path)
        .map_err(io_error(format!("cannot rename {}", partial.display())))?;
    let manifest = BackupManifest {
        format: BACKUP_FORMAT,
        telemetryd_version: crate::VERSION.to_string(),
        created_at: now_rfc3339(),
        events: meta
            .get("event_count")
            .or_else(|| tables.get(EVENTS.name()))
            .copied()
            .unwrap_or(0),
        next_seq: meta.get("next_seq").copied().unwrap_or(0),
        tables,
        meta,
        store_file: STORE_FILE.to_string(),
        store_bytes: std::fs::metadata(&store_path).map(|m| m.len()).unwrap_or(0),
    };
    write_manifest(dir, &manifest)?;
    sync_dir(dir);
    Ok(manifest)
}

fn copy_into(
    source: &impl ReadableDatabase,
    file: File,
) -> Result<(TableCounts, BTreeMap<String, u64>), BackupError> {
    let backend = FileBackend::new(file)?;
    let dst = Database::builder()
        .set_cache_size(64 * 1024 * 1024)
        .create_with_backend(backend)?;
    // One snapshot for every table: the copy is what the store held at this instant.
    let src = source.begin_read()?;
    check_every_table_is_listed(&src)?;
    let mut tables = TableCounts::new();
    for table in TABLES {
        tables.insert(table.table_name().to_string(), table.copy(&src, &dst)?);
    }
    let mut meta = BTreeMap::new();
    for row in src.open_table(META)?.iter()? {
        let (key, value) = row?;
        meta.insert(key.value().to_string(), value.value());
    }
    // Earlier chunks were committed without fsync; this empty commit makes all of them durable.
    let mut txn = dst.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.commit()?;
    Ok((tables, meta))
}

fn check_every_table_is_listed(src: &ReadTransaction) -> Result<(), BackupError> {
    for table in src.list_tables()? {
        if !TABLES.iter().any(|t| t.table_name() == table.name()) {
            return Err(BackupError::UnknownTable(table.name().to_string()));
        }
    }
    if let Some(table) = src.list_multimap_tables()?.next() {
        return Err(BackupError::UnknownTable(table.name().to_string()));
    }
    Ok(())
}

fn prepare_empty_dir(dir: &Path) -> Result<(), BackupError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::TargetNotEmpty(dir.to_path_buf()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .map_err(io_error(format!("cannot create {}", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(BackupError::TargetNotEmpty(dir.to_path_buf()))
        }
        Err(e) => Err(BackupError::Io {
            context: format!("cannot read {}", dir.display()),
            source: e,
        }),
    }
}

fn write_manifest(dir: &Path, manifest: &BackupManifest) -> Result<(), BackupError> {
    let text = serde_json::to_vec_pretty(manifest)
        .map_err(|e| BackupError::Store(StoreError::Codec(e.to_string())))?;
    let partial = dir.join(format!("{MANIFEST_FILE}.partial"));
    let mut file =
        File::create(&partial).map_err(io_error(format!("cannot create {}", partial.display())))?;
    file.write_all(&text)
        .and_then(|_| file.write_all(b"\n"))
        .and_then(|_| file.sync_all())
        .map_err(io_error(format!("cannot write {}", partial.display())))?;
    std::fs::rename(&partial, dir.join(MANIFEST_FILE))
        .map_err(io_error(format!("cannot rename {}", partial.display())))
}

/// Makes renames inside `dir` durable (best effort: not every platform can open a directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Reads and checks a backup directory: manifest present and readable, store opens, and its
/// row counts match the manifest.
pub fn verify_backup(dir: &Path) -> Result<BackupManifest, BackupError> {
    let invalid = |reason: String| BackupError::InvalidBackup {
        dir: dir.to_path_buf(),
        reason,
    };
    let text = std::fs::read(dir.join(MANIFEST_FILE))
        .map_err(|e| invalid(format!("cannot read {MANIFEST_FILE}: {e}")))?;
    let manifest: BackupManifest = serde_json::from_slice(&text)
        .map_err(|e| invalid(format!("{MANIFEST_FILE} is not a backup manifest: {e}")))?;
    if manifest.format > BACKUP_FORMAT {
        return Err(invalid(format!(
            "backup format {} is newer than this telemetryd understands ({BACKUP_FORMAT})",
            manifest.format
        )));
    }
    if manifest.store_file != STORE_FILE || manifest.store_file.contains('/') {
        return Err(invalid(format!(
            "unexpected store file `{}`",
            manifest.store_file
        )));
    }
    let db = ReadOnlyDatabase::open(dir.join(STORE_FILE))
        .map_err(|e| invalid(format!("{STORE_FILE} does not open: {e}")))?;
    let txn = db.begin_read()?;
    for table in TABLES {
        let name = table.table_name();
        // A backup taken before a table existed lacks it; the server creates it on start.
        let Some(expected) = manifest.tables.get(name) else {
            continue;
        };
        let rows = table
            .rows(&txn)
            .map_err(|e| invalid(format!("table `{name}`: {e}")))?;
        if rows != *expected {
            return Err(invalid(format!(
                "table `{name}` has {rows} rows, the manifest says {expected}"
            )));
        }
    }
    Ok(manifest)
}

/// Whether a running server (or any other writer) has the store in `data_dir` open. redb
/// locks the file of an open database; a second open is refused.
pub fn store_in_use(data_dir: &Path) -> Result<bool, BackupError> {
    let path = data_dir.join(STORE_FILE);
    if !path.exists() {
        return Ok(false);
    }
    match Database::builder().open_read_only(&path) {
        Ok(_) => Ok(false),
        Err(DatabaseError::DatabaseAlreadyOpen) => Ok(true),
        // Anything else (a crash left it needing repair, ...) is not a live server.
        Err(_) => Ok(false),
    }
}

/// Copies the store of a stopped server (`data_dir` not open by anyone) into `dir`.
pub fn backup_offline(data_dir: &Path, dir: &Path) -> Result<BackupManifest, BackupError> {
    let path = data_dir.join(STORE_FILE);
    if !path.is_file() {
        return Err(BackupError::NoStore(path));
    }
    let db = match Database::builder().open_read_only(&path) {
        Ok(db) => db,
        Err(DatabaseError::DatabaseAlreadyOpen) => return Err(BackupError::StoreInUse(path)),
        Err(e) => return Err(e.into()),
    };
    backup_database(&db, dir)
}

/// Puts the backup in `backup_dir` into `data_dir`. Refuses when a server has the data dir's
/// store open, and, unless `force`, when the data dir is not empty; with `force` the old store
/// and index are removed (other files such as `admin-token` stay). The search index is never
/// restored: the server rebuilds it from the store on start.
pub fn restore_into(
    backup_dir: &Path,
    data_dir: &Path,
    force: bool,
) -> Result<BackupManifest, BackupError> {
    let manifest = verify_backup(backup_dir)?;
    if store_in_use(data_dir)? {
        return Err(BackupError::StoreInUse(data_dir.join(STORE_FILE)));
    }
    let entries = dir_entries(data_dir)?;
    if !entries.is_empty() && !force {
        let mut shown: Vec<String> = entries.iter().take(5).cloned().collect();
        if entries.len() > shown.len() {
            shown.push(format!("and {} more", entries.len() - shown.len()));
        }
        return Err(BackupError::DataDirNotEmpty {
            dir: data_dir.to_path_buf(),
            entries: shown.join(", "),
        });
    }
    std::fs::create_dir_all(data_dir)
        .map_err(io_error(format!("cannot create {}", data_dir.display())))?;
    let index = data_dir.join(INDEX_DIR);
    if index.exists() {
        std::fs::remove_dir_all(&index)
            .map_err(io_error(format!("cannot remove {}", index.display())))?;
    }
    let target = data_dir.join(STORE_FILE);
    let staging = data_dir.join(format!("{STORE_FILE}.restoring"));
    std::fs::copy(backup_dir.join(STORE_FILE), &staging).map_err(io_error(format!(
        "cannot copy the store to {}",
        staging.display()
    )))?;
    File::open(&staging)
        .and_then(|f| f.sync_all())
        .map_err(io_error(format!("cannot sync {}", staging.display())))?;
    match_owner(data_dir, &staging);
    std::fs::rename(&staging, &target)
        .map_err(io_error(format!("cannot rename {}", staging.display())))?;
    sync_dir(data_dir);
    // The restored file opens and holds what the manifest says.
    let db = ReadOnlyDatabase::open(&target)?;
    let txn = db.begin_read()?;
    for table in TABLES {
        if let Some(expected) = manifest.tables.get(table.table_name()) {
            let rows = table.rows(&txn)?;
            if rows != *expected {
                return Err(BackupError::InvalidBackup {
                    dir: backup_dir.to_path_buf(),
                    reason: format!(
                        "the restored table `{}` has {rows} rows, the manifest says {expected}",
                        table.table_name()
                    ),
                });
            }
        }
    }
    Ok(manifest)
}

fn dir_entries(dir: &Path) -> Result<Vec<String>, BackupError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            Ok(names)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(BackupError::Io {
            context: format!("cannot read {}", dir.display()),
            source: e,
        }),
    }
}

/// A restore run as root into a service user's data dir leaves the store owned by that user.
#[cfg(unix)]
fn match_owner(dir: &Path, file: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = std::fs::metadata(dir) {
        let _ = std::os::unix::fs::chown(file, Some(meta.uid()), Some(meta.gid()));
    }
}

#[cfg(not(unix))]
fn match_owner(_dir: &Path, _file: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_targets_stay_below_the_backup_directory() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("backups");
        let reason = |requested: &Path| match target_below(&root, requested) {
            Err(BackupError::OutsideBackupDir { reason, .. }) => reason,
            other => panic!("{requested:?}: {other:?}"),
        };
        let real_root = {
            std::fs::create_dir_all(&root).unwrap();
            root.canonicalize().unwrap()
        };
        assert_eq!(
            target_below(&root, Path::new("nightly/1")).unwrap(),
            real_root.join("nightly/1")
        );
        assert_eq!(
            target_below(&root, &root.join("a")).unwrap(),
            real_root.join("a")
        );
        assert!(reason(Path::new("a/../../b")).contains("`..`"));
        assert!(reason(&work.path().join("b")).contains("not below"));
        assert!(reason(Path::new("/")).contains("not below"));
        assert!(reason(&root).contains("itself"));
        assert!(reason(Path::new("")).contains("itself"));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(work.path(), root.join("out")).unwrap();
            assert!(reason(Path::new("out/x")).contains("symbolic link"));
        }
    }

    #[test]
    fn backup_of_a_fresh_store_covers_every_table() {
        let data = tempfile::tempdir().unwrap();
        let store = Store::open(data.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("b1");
        let manifest = store.backup_to(&dir).unwrap();
        assert_eq!(manifest.events, 0);
        assert_eq!(manifest.tables.len(), TABLES.len());
        assert_eq!(verify_backup(&dir).unwrap(), manifest);
        // A second backup into the same, now non-empty, directory is refused.
        assert!(matches!(
            store.backup_to(&dir),
            Err(BackupError::TargetNotEmpty(_))
        ));
    }

    #[test]
    fn restore_refuses_a_live_store_and_a_non_empty_dir() {
        let data = tempfile::tempdir().unwrap();
        let store = Store::open(data.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let backup = out.path().join("b");
        store.backup_to(&backup).unwrap();
        assert!(store_in_use(data.path()).unwrap());
        assert!(matches!(
            restore_into(&backup, data.path(), true),
            Err(BackupError::StoreInUse(_))
        ));
        drop(store);
        assert!(!store_in_use(data.path()).unwrap());
        std::fs::create_dir_all(data.path().join(INDEX_DIR)).unwrap();
        assert!(matches!(
            restore_into(&backup, data.path(), false),
            Err(BackupError::DataDirNotEmpty { .. })
        ));
        restore_into(&backup, data.path(), true).unwrap();
        assert!(!data.path().join(INDEX_DIR).exists());
        let fresh = out.path().join("fresh");
        restore_into(&backup, &fresh, false).unwrap();
        assert!(Store::open(&fresh).is_ok());
    }

    #[test]
    fn a_table_missing_from_the_copy_list_fails_the_backup() {
        let data = tempfile::tempdir().unwrap();
        let store = Store::open(data.path()).unwrap();
        let extra: TableDefinition<u64, u64> = TableDefinition::new("not_in_the_list");
        let txn = store.database().begin_write().unwrap();
        txn.open_table(extra).unwrap();
        txn.commit().unwrap();
        let out = tempfile::tempdir().unwrap();
        let err = store.backup_to(&out.path().join("b")).unwrap_err();
        assert!(matches!(err, BackupError::UnknownTable(ref t) if t == "not_in_the_list"));
        assert!(!out.path().join("b").join(STORE_FILE).exists());
    }
}
