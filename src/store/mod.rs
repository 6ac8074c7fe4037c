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
pub mod saved_queries;
pub mod subscribers;
pub mod vacuum;
pub mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;
use crate::fields::{EventField, INSTALL};
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

/// What the store knows about one install: when it was seen, how many events it sent, and its
/// latest value of each catalogue field kept in the registry ([`Use::Install`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallRecord {
    pub product: String,
    pub install_id: String,
    pub first_seen: i64,
    pub last_seen: i64,
    /// Stored as members named like the fields (`"platform": "ios"`).
    #[serde(flatten)]
    pub context: BTreeMap<EventField, String>,
    pub events: u64,
}

impl InstallRecord {
    /// An install first seen at `timestamp`, with nothing counted yet: follow with `note`.
    pub fn new(product: &str, install_id: &str, timestamp: i64) -> InstallRecord {
        InstallRecord {
            product: product.to_string(),
            install_id: install_id.to_string(),
            first_seen: timestamp,
            last_seen: timestamp,
            context: BTreeMap::new(),
            events: 0,
        }
    }

    /// The install's latest value of `field`.
    pub fn get(&self, field: EventField) -> Option<&str> {
        self.context.get(&field).map(String::as_str)
    }

    /// Counts one event of this install; the newest event's values replace the context's (a
    /// value the event does not have is kept).
    pub fn note(&mut self, event: &Event) {
        self.events += 1;
        self.first_seen = self.first_seen.min(event.timestamp);
        if event.timestamp >= self.last_seen {
            self.last_seen = event.timestamp;
            for field in INSTALL {
                if let Some(value) = field.text(event) {
                    let slot = self.context.entry(field).or_default();
                    slot.clear();
                    slot.push_str(value);
                }
            }
        }
    }

    /// This stored record with `new` (the same install's updates since) folded in: counts add
    /// up, and the more recently seen record's values win.
    pub fn merge(self, new: InstallRecord) -> InstallRecord {
        let (mut context, older) = if new.last_seen >= self.last_seen {
            (new.context, self.context)
        } else {
            (self.context, new.context)
        };
        for (field, value) in older {
            context.entry(field).or_insert(value);
        }
        InstallRecord {
            product: new.product,
            install_id: new.install_id,
            first_seen: self.first_seen.min(new.first_seen),
            last_seen: self.last_seen.max(new.last_seen),
            context,
            events: self.events + new.events,
        }
    }
}

pub fn install_key(product: &str, install_id: &str) -> String {
    format!("{product}\u{0}{install_id}")
}

/// Appends the stored form of `event` (JSON) to `out`.
pub fn encode_event_into(event: &Event, out: &mut Vec<u8>) -> Result<(), StoreError> {
    serde_json::to_writer(out, event).map_err(|e| StoreError::Codec(e.to_string()))
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
/// 1 while an erasure's purge has not started yet, so a restart still runs it.
const META_PURGE_WANTED: &str = "purge_wanted";

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

    /// Whether an erasure asked for a purge that has not started yet.
    pub fn purge_wanted(&self) -> Result<bool, StoreError> {
        Ok(self.meta(META_PURGE_WANTED)? != 0)
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
    txn.open_table(saved_queries::SAVED_QUERIES)?;
    txn.open_table(clusters::CLUSTERS)?;
    crate::series::store::create_tables(&txn)?;
    txn.commit()?;
    Ok(db)
}

/// Records, in the caller's transaction, that a purge is wanted (an erasure) or has started.
pub fn set_purge_wanted(txn: &redb::WriteTransaction, wanted: bool) -> Result<(), StoreError> {
    txn.open_table(META)?
        .insert(META_PURGE_WANTED, u64::from(wanted))?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_records_keep_their_stored_shape() {
        let stored = r#"{"product":"app","install_id":"i1","first_seen":5,"last_seen":9,
            "platform":"ios","app_version":"1.2.0","release_channel":"beta","country_code":"US",
            "channel":"keyboard","region_code":"US-WA","events":3}"#;
        let record = decode_install(stored.as_bytes()).unwrap();
        assert_eq!(record.get(EventField::Platform), Some("ios"));
        assert_eq!(record.get(EventField::RegionCode), Some("US-WA"));
        assert_eq!(
            (record.first_seen, record.last_seen, record.events),
            (5, 9, 3)
        );
        let written: serde_json::Value = serde_json::to_value(&record).unwrap();
        let before: serde_json::Value = serde_json::from_str(stored).unwrap();
        assert_eq!(written, before);
    }

    #[test]
    fn the_newest_event_and_record_win() {
        let event = |ts: i64, platform: Option<&str>, country: &str| Event {
            timestamp: ts,
            install_id: Some("i1".into()),
            platform: platform.map(str::to_string),
            country_code: Some(country.into()),
            ..Event::new("app", "started")
        };
        let mut record = InstallRecord::new("app", "i1", 20);
        for e in [
            event(20, Some("ios"), "US"),
            event(10, Some("android"), "DE"),
            event(30, None, "FR"),
        ] {
            record.note(&e);
        }
        assert_eq!(
            (record.first_seen, record.last_seen, record.events),
            (10, 30, 3)
        );
        // The newest event had no platform: the last known one stays.
        assert_eq!(record.get(EventField::Platform), Some("ios"));
        assert_eq!(record.get(EventField::CountryCode), Some("FR"));
        assert_eq!(record.get(EventField::AppVersion), None);

        let mut stored = InstallRecord::new("app", "i1", 5);
        stored.note(&Event {
            app_version: Some("1.0".into()),
            ..event(5, Some("web"), "JP")
        });
        let merged = stored.clone().merge(record.clone());
        assert_eq!(
            (merged.first_seen, merged.last_seen, merged.events),
            (5, 30, 4)
        );
        assert_eq!(merged.get(EventField::Platform), Some("ios"));
        assert_eq!(merged.get(EventField::AppVersion), Some("1.0"));
        // Updates older than the stored record only fill in what it lacks.
        let merged = record.merge(stored);
        assert_eq!(merged.get(EventField::Platform), Some("ios"));
        assert_eq!(merged.get(EventField::CountryCode), Some("FR"));
        assert_eq!(merged.get(EventField::AppVersion), Some("1.0"));
    }
}
