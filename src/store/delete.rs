//! Removing data from the store: events by position (rewriting their blocks, dropping their
//! dedup ids), install rows, and the tombstones that tell the search index what it still has to
//! delete (written in the same transaction, so a crash between store and index is repaired on
//! the next start). Callers run these inside `Writer::exclusive`.

use std::collections::BTreeMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use crate::error::StoreError;
use crate::model::Event;
use crate::store::blocks::{Block, BlockBuilder};
use crate::store::ids::{self, RecentIds};
use crate::store::{
    decode_event, decode_install, install_key, InstallRecord, Store, EVENTS, INSTALLS, META,
    META_EVENT_COUNT,
};

/// Tombstone id → what the search index must still delete (JSON, owned by the caller).
pub const INDEX_DELETES: TableDefinition<u64, &[u8]> = TableDefinition::new("index_deletes");

impl Store {
    /// Runs `f` in one durable write transaction. Call from the writer thread only.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.database();
        let mut txn = db.begin_write()?;
        txn.set_quick_repair(true);
        let out = f(&txn)?;
        txn.commit()?;
        Ok(out)
    }

    /// Index deletions recorded but not yet confirmed by the index.
    pub fn pending_index_deletes(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let txn = self.begin_read()?;
        let table = match txn.open_table(INDEX_DELETES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            let (id, bytes) = row?;
            out.push((id.value(), bytes.value().to_vec()));
        }
        Ok(out)
    }
}

/// Blocks read, rewritten (in parallel) and written back per round: bounds the memory a large
/// deletion holds.
const REWRITE_ROUND: usize = 1_024;

/// Deletes the events at these positions and their dedup ids; returns the deleted events with
/// their positions. Each block holding one is decompressed, rebuilt without it and compressed
/// again, on every core.
pub fn delete_events(
    txn: &WriteTransaction,
    recent_ids: &RecentIds,
    seqs: &[u64],
) -> Result<Vec<(u64, Event)>, StoreError> {
    let mut events = txn.open_table(EVENTS)?;
    // Group positions by the block that holds them.
    let mut by_block: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for &seq in seqs {
        let key = events
            .range(..=seq)?
            .next_back()
            .transpose()?
            .map(|(k, _)| k.value());
        if let Some(key) = key {
            by_block.entry(key).or_default().push(seq);
        }
    }
    let by_block: Vec<(u64, Vec<u64>)> = by_block.into_iter().collect();
    let mut deleted = Vec::new();
    for round in by_block.chunks(REWRITE_ROUND) {
        let mut jobs = Vec::with_capacity(round.len());
        for (key, doomed) in round {
            if let Some(bytes) = events.get(*key)? {
                jobs.push((*key, bytes.value().to_vec(), doomed.as_slice()));
            }
        }
        for rewritten in rewrite_blocks(&jobs)? {
            events.remove(rewritten.key)?;
            if let Some((first, bytes)) = rewritten.kept {
                events.insert(first, bytes.as_slice())?;
            }
            for (seq, event) in &rewritten.deleted {
                ids::forget(txn, recent_ids, event.id.as_u128(), *seq)?;
            }
            deleted.extend(rewritten.deleted);
        }
    }
    let mut meta = txn.open_table(META)?;
    let count = meta.get(META_EVENT_COUNT)?.map(|v| v.value()).unwrap_or(0);
    meta.insert(META_EVENT_COUNT, count.saturating_sub(deleted.len() as u64))?;
    Ok(deleted)
}

/// One block after a deletion: what is left of it (none when every event went) and the events
/// taken out.
struct Rewritten {
    key: u64,
    kept: Option<(u64, Vec<u8>)>,
    deleted: Vec<(u64, Event)>,
}

/// Rewrites `(block key, compressed block, positions to drop)` jobs, split across the cores.
fn rewrite_blocks(jobs: &[(u64, Vec<u8>, &[u64])]) -> Result<Vec<Rewritten>, StoreError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = jobs.len().div_ceil(cores).max(1);
    std::thread::scope(|scope| {
        let mut workers = Vec::new();
        for chunk in jobs.chunks(per_thread) {
            let worker = std::thread::Builder::new()
                .name("block-rewrite".into())
                .spawn_scoped(scope, move || {
                    chunk
                        .iter()
                        .map(|(key, bytes, doomed)| rewrite_block(*key, bytes, doomed))
                        .collect::<Result<Vec<_>, _>>()
                })?;
            workers.push(worker);
        }
        let mut out = Vec::with_capacity(jobs.len());
        for worker in workers {
            let rewritten = worker
                .join()
                .map_err(|_| StoreError::Codec("a block rewrite panicked".into()))??;
            out.extend(rewritten);
        }
        Ok(out)
    })
}

fn rewrite_block(key: u64, bytes: &[u8], doomed: &[u64]) -> Result<Rewritten, StoreError> {
    let block = Block::decode(bytes)?;
    let mut rebuilt = BlockBuilder::default();
    let mut deleted = Vec::new();
    for (seq, json) in block.entries() {
        if doomed.contains(&seq) {
            deleted.push((seq, decode_event(json)?));
        } else {
            rebuilt.push(seq, json);
        }
    }
    Ok(Rewritten {
        key,
        kept: rebuilt.finish()?,
        deleted,
    })
}

/// Deletes one install's registry row; returns whether there was one.
pub fn delete_install(
    txn: &WriteTransaction,
    product: &str,
    install_id: &str,
) -> Result<bool, StoreError> {
    let mut table = txn.open_table(INSTALLS)?;
    let removed = table
        .remove(install_key(product, install_id).as_str())?
        .is_some();
    Ok(removed)
}

/// Deletes the install rows not seen since `cutoff_ms` for `product`; returns how many.
pub fn prune_installs(
    txn: &WriteTransaction,
    product: &str,
    cutoff_ms: i64,
) -> Result<u64, StoreError> {
    let mut table = txn.open_table(INSTALLS)?;
    let prefix = format!("{product}\u{0}");
    let mut stale = Vec::new();
    for row in table.range(prefix.as_str()..)? {
        let (key, value) = row?;
        if !key.value().starts_with(&prefix) {
            break;
        }
        let record: InstallRecord = decode_install(value.value())?;
        if record.last_seen < cutoff_ms {
            stale.push(key.value().to_string());
        }
    }
    for key in &stale {
        table.remove(key.as_str())?;
    }
    Ok(stale.len() as u64)
}

/// Records what the index must delete; returns the tombstone's id.
pub fn add_tombstone(txn: &WriteTransaction, what: &[u8]) -> Result<u64, StoreError> {
    let mut table = txn.open_table(INDEX_DELETES)?;
    let id = table.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
    table.insert(id, what)?;
    Ok(id)
}

pub fn remove_tombstone(txn: &WriteTransaction, id: u64) -> Result<(), StoreError> {
    txn.open_table(INDEX_DELETES)?.remove(id)?;
    Ok(())
}
