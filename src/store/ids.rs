//! Event id → position, for dedup and lookup by id. Clients send random (UUIDv4) ids, and
//! inserting each one into the sorted `EVENT_IDS` table dirties a page per id: that was most of
//! a group commit's writing. So each group commit appends its ids, in position order, to a
//! journal (one row per commit, a sequential write) and keeps them in memory; the writer folds
//! the journal into `EVENT_IDS` in sorted chunks, a few thousand ids per commit, which rewrites
//! each page of the table about once per fold instead of once per id. A lookup asks the
//! in-memory recent ids first, then the table. The journal is read back into memory on open.

use std::sync::RwLock;

use foldhash::HashMap;
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use crate::error::StoreError;
use crate::store::EVENT_IDS;

/// First position of a group commit → its ids, 16 bytes each (big-endian), the id of position
/// `key + i` at `i`; an all-zero id marks an event deleted since.
pub const ID_JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("id_journal");

/// A fold starts once this many ids wait in the journal.
const FOLD_AT: usize = 500_000;
/// Ids folded per group commit: at least this many, and at least twice the ids the commit
/// added, so a fold always finishes before the next one is due.
const FOLD_CHUNK_MIN: usize = 4_000;

const ID_BYTES: usize = 16;

/// The ids journaled and not yet folded, with their positions. Changed only by the writer
/// thread, after the transaction that changes the journal has committed.
#[derive(Default)]
pub struct RecentIds {
    map: RwLock<HashMap<u128, u64>>,
}

impl RecentIds {
    /// Reads the journal of an opened store.
    pub fn load(txn: &redb::ReadTransaction) -> Result<RecentIds, StoreError> {
        let mut map = HashMap::default();
        for row in txn.open_table(ID_JOURNAL)?.iter()? {
            let (first, ids) = row?;
            for (seq, id) in journal_entries(first.value(), ids.value()) {
                map.insert(id, seq);
            }
        }
        Ok(RecentIds {
            map: RwLock::new(map),
        })
    }

    pub fn get(&self, id: u128) -> Option<u64> {
        self.read().get(&id).copied()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers ids the last commit journaled.
    pub fn insert_all(&self, entries: impl IntoIterator<Item = (u128, u64)>) {
        self.write().extend(entries);
    }

    fn remove(&self, id: u128) {
        self.write().remove(&id);
    }

    /// Forgets the ids below `position` once a fold has moved them into the table.
    fn forget_below(&self, position: u64) {
        self.write().retain(|_, seq| *seq >= position);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u128, u64>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u128, u64>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where an id is stored, if it is: the recent ids, then the table (for the writer thread;
/// readers ask the recent ids before they begin their transaction).
pub fn lookup(
    recent: &RecentIds,
    table: &impl ReadableTable<u128, u64>,
    id: u128,
) -> Result<Option<u64>, StoreError> {
    match recent.get(id) {
        Some(seq) => Ok(Some(seq)),
        None => Ok(table.get(id)?.map(|v| v.value())),
    }
}

/// Journals the ids of one commit's events, stored at `first..first + ids.len()`.
pub fn journal(txn: &WriteTransaction, first: u64, ids: &[u128]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut bytes = Vec::with_capacity(ids.len() * ID_BYTES);
    for id in ids {
        bytes.extend_from_slice(&id.to_be_bytes());
    }
    txn.open_table(ID_JOURNAL)?
        .insert(first, bytes.as_slice())?;
    Ok(())
}

/// Removes a deleted event's id from the table, the journal and the recent ids. The recent ids
/// change before the transaction commits: if it fails, the id is only forgotten early (a later
/// copy of the event would be stored, not lost).
pub fn forget(
    txn: &WriteTransaction,
    recent: &RecentIds,
    id: u128,
    seq: u64,
) -> Result<(), StoreError> {
    txn.open_table(EVENT_IDS)?.remove(id)?;
    if recent.get(id) != Some(seq) {
        return Ok(());
    }
    let mut journal = txn.open_table(ID_JOURNAL)?;
    let row = journal
        .range(..=seq)?
        .next_back()
        .transpose()?
        .map(|(first, ids)| (first.value(), ids.value().to_vec()));
    if let Some((first, mut ids)) = row {
        let at = (seq - first) as usize * ID_BYTES;
        if let Some(slot) = ids.get_mut(at..at + ID_BYTES) {
            slot.fill(0);
            journal.insert(first, ids.as_slice())?;
        }
    }
    recent.remove(id);
    Ok(())
}

fn journal_entries(first: u64, bytes: &[u8]) -> impl Iterator<Item = (u64, u128)> + '_ {
    bytes
        .chunks_exact(ID_BYTES)
        .enumerate()
        .filter_map(move |(i, chunk)| {
            let id = u128::from_be_bytes(chunk.try_into().ok()?);
            (id != 0).then_some((first + i as u64, id))
        })
}

/// The writer's fold in progress: the journaled ids below `upto`, sorted, moved into the table
/// a chunk per group commit; when all are in, the journal rows below `upto` go.
pub struct Folder {
    sorted: Vec<(u128, u64)>,
    done: usize,
    upto: u64,
    fold_at: usize,
    chunk_min: usize,
}

impl Default for Folder {
    fn default() -> Self {
        Folder::new(FOLD_AT, FOLD_CHUNK_MIN)
    }
}

impl Folder {
    fn new(fold_at: usize, chunk_min: usize) -> Folder {
        Folder {
            sorted: Vec::new(),
            done: 0,
            upto: 0,
            fold_at,
            chunk_min,
        }
    }

    /// Folds the next chunk inside the commit's transaction. Returns the position below which
    /// the recent ids can be forgotten once this transaction has committed.
    pub fn step(
        &mut self,
        txn: &WriteTransaction,
        recent: &RecentIds,
        next_seq: u64,
        added: usize,
    ) -> Result<Option<u64>, StoreError> {
        if self.done == self.sorted.len() {
            if recent.len() < self.fold_at {
                return Ok(None);
            }
            self.start(recent, next_seq);
        }
        let chunk = self.chunk_min.max(2 * added);
        let end = (self.done + chunk).min(self.sorted.len());
        let mut table: Table<u128, u64> = txn.open_table(EVENT_IDS)?;
        for &(id, seq) in &self.sorted[self.done..end] {
            // Skip ids deleted since the fold started.
            if recent.get(id) == Some(seq) {
                table.insert(id, seq)?;
            }
        }
        self.done = end;
        if self.done < self.sorted.len() {
            return Ok(None);
        }
        let mut journal = txn.open_table(ID_JOURNAL)?;
        journal.retain_in(..self.upto, |_, _| false)?;
        self.sorted = Vec::new();
        self.done = 0;
        Ok(Some(self.upto))
    }

    fn start(&mut self, recent: &RecentIds, next_seq: u64) {
        let mut sorted: Vec<(u128, u64)> = recent.read().iter().map(|(&i, &s)| (i, s)).collect();
        sorted.sort_unstable();
        self.sorted = sorted;
        self.done = 0;
        self.upto = next_seq;
    }

    /// After the commit that ended a fold.
    pub fn finished(recent: &RecentIds, upto: u64) {
        recent.forget_below(upto);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use redb::ReadableTableMetadata;

    /// One group commit as the writer does it: journal, fold step, commit, then memory.
    fn commit(store: &Store, folder: &mut Folder, first: u64, ids: &[u128]) {
        let db = store.database();
        let txn = db.begin_write().unwrap();
        journal(&txn, first, ids).unwrap();
        let folded = folder
            .step(&txn, &store.recent_ids, first, ids.len())
            .unwrap();
        txn.commit().unwrap();
        store
            .recent_ids
            .insert_all(ids.iter().copied().zip(first..));
        if let Some(position) = folded {
            Folder::finished(&store.recent_ids, position);
        }
    }

    fn find(store: &Store, id: u128) -> Option<u64> {
        let txn = store.begin_read().unwrap();
        lookup(&store.recent_ids, &txn.open_table(EVENT_IDS).unwrap(), id).unwrap()
    }

    fn rows(store: &Store) -> (u64, u64) {
        let txn = store.begin_read().unwrap();
        let journal = txn.open_table(ID_JOURNAL).unwrap().len().unwrap();
        let table = txn.open_table(EVENT_IDS).unwrap().len().unwrap();
        (journal, table)
    }

    #[test]
    fn ids_are_found_before_during_and_after_folds_and_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut folder = Folder::new(12, 4);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut all = Vec::new();
        let mut next = 0;
        for _ in 0..20 {
            let ids: Vec<u128> = (0..5).map(|_| rng.u128(1..)).collect();
            commit(&store, &mut folder, next, &ids);
            all.extend(ids.iter().copied().zip(next..));
            next += ids.len() as u64;
            for &(id, seq) in &all {
                assert_eq!(find(&store, id), Some(seq));
            }
        }
        let (journal, table) = rows(&store);
        assert!(table > 0, "some folds finished");
        assert!(journal < 20, "folded journal rows are gone: {journal}");
        assert_eq!(
            table + store.recent_ids.len() as u64,
            100,
            "every id in exactly one place"
        );

        drop(store);
        let store = Store::open(dir.path()).unwrap();
        for &(id, seq) in &all {
            assert_eq!(find(&store, id), Some(seq), "after reopen");
        }
        assert_eq!(find(&store, 12345), None);
    }

    #[test]
    fn forgotten_ids_are_gone_from_table_journal_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut folder = Folder::new(6, 100);
        commit(&store, &mut folder, 0, &[11, 12, 13, 14, 15, 16]);
        // The next commit folds the first six ids into the table.
        commit(&store, &mut folder, 6, &[21, 22]);
        assert_eq!(rows(&store), (1, 6));
        let db = store.database();
        let txn = db.begin_write().unwrap();
        forget(&txn, &store.recent_ids, 13, 2).unwrap();
        forget(&txn, &store.recent_ids, 22, 7).unwrap();
        txn.commit().unwrap();
        assert_eq!(find(&store, 13), None);
        assert_eq!(find(&store, 22), None);
        assert_eq!(find(&store, 21), Some(6));

        drop((db, store));
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(find(&store, 22), None, "zeroed in the journal");
        assert_eq!(find(&store, 13), None);
        assert_eq!(find(&store, 21), Some(6));
        assert_eq!(find(&store, 16), Some(5));
    }

    #[test]
    fn an_id_deleted_during_a_fold_is_not_folded_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut folder = Folder::new(4, 2);
        commit(&store, &mut folder, 0, &[1, 2, 3, 4]);
        // Starts the fold (two ids per step), then one of the ids waiting is deleted.
        commit(&store, &mut folder, 4, &[]);
        let db = store.database();
        let txn = db.begin_write().unwrap();
        forget(&txn, &store.recent_ids, 4, 3).unwrap();
        txn.commit().unwrap();
        commit(&store, &mut folder, 4, &[]);
        assert_eq!(find(&store, 4), None);
        assert_eq!(rows(&store), (0, 3));
    }
}
