//! The durable store: one redb file, the source of truth. This module owns the table layout,
//! the codecs and the read side; `writer` owns the single writer thread (group commit).

pub mod backup;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;
use crate::model::Event;

/// Position (sequence number) → encoded event. Positions only grow; the index remembers the last
/// one it holds.
pub const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Event id → position: persistent dedup and lookup by id.
pub const EVENT_IDS: TableDefinition<u128, u64> = TableDefinition::new("event_ids");
/// `product \0 install_id` → encoded `InstallRecord`.
pub const INSTALLS: TableDefinition<&str, &[u8]> = TableDefinition::new("installs");
/// Small named counters (`next_seq`).
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub const STORE_FILE: &str = "telemetry.redb";

/// What the store knows about one install.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallRecord {
    pub product: String,
    pub install_id: String,
    pub first_seen: i64,
    pub last_seen: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    pub events: u64,
}

pub fn install_key(product: &str, install_id: &str) -> String {
    format!("{product}\u{0}{install_id}")
}

pub fn encode_event(event: &Event) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(event).map_err(|e| StoreError::Codec(e.to_string()))
}

pub fn decode_event(bytes: &[u8]) -> Result<Event, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Codec(e.to_string()))
}

/// The open store, shared by handlers (reads) and the writer thread (writes).
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir`; a crash is repaired on open.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(STORE_FILE);
        let db = Database::builder()
            .set_cache_size(256 * 1024 * 1024)
            .create(&path)?;
        let txn = db.begin_write()?;
        txn.open_table(EVENTS)?;
        txn.open_table(EVENT_IDS)?;
        txn.open_table(INSTALLS)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Store {
            db: Arc::new(db),
            path,
        })
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    pub fn event_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(EVENTS)?.len()?)
    }

    /// The position the next stored event will get.
    pub fn next_seq(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get("next_seq")?.map(|v| v.value()).unwrap_or(0))
    }

    pub fn event_by_id(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
        let txn = self.db.begin_read()?;
        let ids = txn.open_table(EVENT_IDS)?;
        let Some(seq) = ids.get(id.as_u128())?.map(|v| v.value()) else {
            return Ok(None);
        };
        let events = txn.open_table(EVENTS)?;
        let found = events.get(seq)?;
        found.map(|bytes| decode_event(bytes.value())).transpose()
    }

    /// Which of these ids are already stored (the pre-check before rate limiting).
    pub fn known_ids(&self, ids: &[Uuid]) -> Result<Vec<bool>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENT_IDS)?;
        ids.iter()
            .map(|id| Ok(table.get(id.as_u128())?.is_some()))
            .collect()
    }

    pub fn install(
        &self,
        product: &str,
        install_id: &str,
    ) -> Result<Option<InstallRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INSTALLS)?;
        let found = table.get(install_key(product, install_id).as_str())?;
        found
            .map(|v| {
                serde_json::from_slice(v.value()).map_err(|e| StoreError::Codec(e.to_string()))
            })
            .transpose()
    }

    /// Events with positions in `[from, to)`, in order, at most `limit`.
    pub fn events_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Event)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        let mut out = Vec::with_capacity(limit.min(10_000));
        for entry in table.range(from..)?.take(limit) {
            let (seq, bytes) = entry?;
            out.push((seq.value(), decode_event(bytes.value())?));
        }
        Ok(out)
    }
}
