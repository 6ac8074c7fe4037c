//! The durable store: one redb file, the source of truth. This module owns the table layout,
//! the codecs and the read side; `writer` owns the single writer thread (group commit), through
//! which every write goes; `blocks` the compressed event blocks.

pub mod audit;
pub mod backup;
pub mod blocks;
pub mod clusters;
pub mod delete;
pub mod ids;
pub mod policies;
pub mod subscribers;
pub mod vacuum;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;
use crate::model::Event;
use blocks::Block;

/// First position of a block → the zstd block of events at consecutive positions (see
/// `blocks`). Positions only grow; the index remembers the next one it expects.
pub const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Event id → position: persistent dedup and lookup by id (the ids of recent commits wait in
/// `ids::ID_JOURNAL` until they are folded in).
pub const EVENT_IDS: TableDefinition<u128, u64> = TableDefinition::new("event_ids");
/// `product \0 install_id` → encoded `InstallRecord`.
pub const INSTALLS: TableDefinition<&str, &[u8]> = TableDefinition::new("installs");
/// Small named counters (`next_seq`, `event_count`).
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_code: Option<String>,
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

/// The open store, shared by handlers (reads) and the writer thread (writes). The database
/// behind it can be swapped for a rewritten file (vacuum), so callers ask for it each time.
#[derive(Clone)]
pub struct Store {
    db: Arc<RwLock<Arc<Database>>>,
    path: PathBuf,
    /// Journaled ids not yet folded into `EVENT_IDS` (see `ids`).
    pub(crate) recent_ids: Arc<ids::RecentIds>,
}

pub const META_NEXT_SEQ: &str = "next_seq";
pub const META_EVENT_COUNT: &str = "event_count";

impl Store {
    /// Opens (creating if needed) the store in `data_dir`; a crash is repaired on open.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(STORE_FILE);
        vacuum::remove_leftovers(data_dir)?;
        let db = open_database(&path)?;
        let recent_ids = ids::RecentIds::load(&db.begin_read()?)?;
        Ok(Store {
            db: Arc::new(RwLock::new(Arc::new(db))),
            path,
            recent_ids: Arc::new(recent_ids),
        })
    }

    /// The current database (it changes only when the file is rewritten).
    pub fn database(&self) -> Arc<Database> {
        match self.db.read() {
            Ok(db) => db.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts a freshly opened database in place of the current one (after a rewrite).
    pub(crate) fn replace_database(&self, db: Database) {
        let mut current = match self.db.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = Arc::new(db);
    }

    pub fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.database().begin_read()?)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    pub fn event_count(&self) -> Result<u64, StoreError> {
        self.meta(META_EVENT_COUNT)
    }

    /// The position the next stored event will get.
    pub fn next_seq(&self) -> Result<u64, StoreError> {
        self.meta(META_NEXT_SEQ)
    }

    fn meta(&self, key: &str) -> Result<u64, StoreError> {
        let txn = self.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(key)?.map(|v| v.value()).unwrap_or(0))
    }

    pub fn event_by_id(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
        // The recent ids first: an id leaves them only after the fold that moved it into the
        // table has committed, so a transaction begun afterwards finds it there.
        let recent = self.recent_ids.get(id.as_u128());
        let txn = self.begin_read()?;
        let seq = match recent {
            Some(seq) => seq,
            None => match txn.open_table(EVENT_IDS)?.get(id.as_u128())? {
                Some(seq) => seq.value(),
                None => return Ok(None),
            },
        };
        Ok(events_at(&txn, &[seq])?.pop().map(|(_, e)| e))
    }

    /// The events at these positions, in the order asked; positions that hold nothing are skipped.
    pub fn events_at(&self, seqs: &[u64]) -> Result<Vec<(u64, Event)>, StoreError> {
        events_at(&self.begin_read()?, seqs)
    }

    /// Which of these ids are already stored (the pre-check before rate limiting).
    pub fn known_ids(&self, ids: &[Uuid]) -> Result<Vec<bool>, StoreError> {
        let recent: Vec<bool> = ids
            .iter()
            .map(|id| self.recent_ids.get(id.as_u128()).is_some())
            .collect();
        let txn = self.begin_read()?;
        let table = txn.open_table(EVENT_IDS)?;
        ids.iter()
            .zip(recent)
            .map(|(id, recent)| Ok(recent || table.get(id.as_u128())?.is_some()))
            .collect()
    }

    pub fn install(
        &self,
        product: &str,
        install_id: &str,
    ) -> Result<Option<InstallRecord>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(INSTALLS)?;
        let found = table.get(install_key(product, install_id).as_str())?;
        found.map(|v| decode_install(v.value())).transpose()
    }

    /// Every install record (for previews and retention).
    pub fn installs(&self) -> Result<Vec<InstallRecord>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(INSTALLS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, value) = row?;
            out.push(decode_install(value.value())?);
        }
        Ok(out)
    }

    /// Events with positions `>= from`, in order, at most `limit`.
    pub fn events_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Event)>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        let start = table
            .range(..=from)?
            .next_back()
            .transpose()?
            .map(|(k, _)| k.value())
            .unwrap_or(from);
        let mut out = Vec::new();
        for row in table.range(start..)? {
            let (_, bytes) = row?;
            let block = Block::decode(bytes.value())?;
            for (seq, json) in block.entries() {
                if seq >= from {
                    out.push((seq, decode_event(json)?));
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }
}

pub(crate) fn open_database(path: &Path) -> Result<Database, StoreError> {
    let db = Database::builder()
        .set_cache_size(256 * 1024 * 1024)
        .create(path)?;
    let txn = db.begin_write()?;
    txn.open_table(EVENTS)?;
    txn.open_table(EVENT_IDS)?;
    txn.open_table(ids::ID_JOURNAL)?;
    txn.open_table(INSTALLS)?;
    txn.open_table(META)?;
    txn.open_table(delete::INDEX_DELETES)?;
    txn.open_table(audit::AUDIT)?;
    txn.open_table(audit::KV)?;
    txn.open_table(policies::POLICIES)?;
    txn.open_table(clusters::CLUSTERS)?;
    txn.commit()?;
    Ok(db)
}

/// Reads events by position inside one transaction, decompressing each block once.
pub fn events_at(txn: &ReadTransaction, seqs: &[u64]) -> Result<Vec<(u64, Event)>, StoreError> {
    let table = txn.open_table(EVENTS)?;
    let mut cache: Option<(u64, Block)> = None;
    let mut out = Vec::with_capacity(seqs.len());
    for &seq in seqs {
        let cached = cache.as_ref().is_some_and(|(_, b)| b.json(seq).is_some());
        if !cached {
            let Some(row) = table.range(..=seq)?.next_back() else {
                continue;
            };
            let (key, bytes) = row?;
            cache = Some((key.value(), Block::decode(bytes.value())?));
        }
        if let Some(event) = cache
            .as_ref()
            .map(|(_, b)| b.event(seq))
            .transpose()?
            .flatten()
        {
            out.push((seq, event));
        }
    }
    Ok(out)
}

pub fn decode_install(bytes: &[u8]) -> Result<InstallRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Codec(e.to_string()))
}

/// The store is where the search index catches up from.
impl crate::search::EventSource for Store {
    fn events_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Event)>, String> {
        Store::events_from(self, from, limit).map_err(|e| e.to_string())
    }

    fn next_seq(&self) -> Result<u64, String> {
        Store::next_seq(self).map_err(|e| e.to_string())
    }
}
