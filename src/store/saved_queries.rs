//! The saved analytics queries: one redb row per query, written with its audit entry in the
//! same transaction (as policies are).

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use crate::analytics::saved::SavedQuery;
use crate::error::StoreError;
use crate::store::Store;

/// Saved query id → JSON `SavedQuery`.
pub const SAVED_QUERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("saved_queries");

impl Store {
    /// Every saved query, by id.
    pub fn saved_queries(&self) -> Result<Vec<SavedQuery>, StoreError> {
        let txn = self.begin_read()?;
        saved_queries_in(&txn.open_table(SAVED_QUERIES)?)
    }
}

/// Every saved query of a table, by id (inside a write, for the name check).
pub fn saved_queries_in(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<SavedQuery>, StoreError> {
    let mut out = Vec::new();
    for row in table.iter()? {
        let (_, bytes) = row?;
        out.push(
            serde_json::from_slice(bytes.value()).map_err(|e| StoreError::Codec(e.to_string()))?,
        );
    }
    Ok(out)
}

pub fn put_saved_query(txn: &WriteTransaction, saved: &SavedQuery) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(saved).map_err(|e| StoreError::Codec(e.to_string()))?;
    txn.open_table(SAVED_QUERIES)?
        .insert(saved.id.as_str(), bytes.as_slice())?;
    Ok(())
}

/// Whether a saved query was there to delete.
pub fn delete_saved_query(txn: &WriteTransaction, id: &str) -> Result<bool, StoreError> {
    Ok(txn.open_table(SAVED_QUERIES)?.remove(id)?.is_some())
}

/// Another saved query of `product` already named `name` (names are unique per product).
pub fn name_taken(
    txn: &WriteTransaction,
    product: &str,
    name: &str,
    except_id: &str,
) -> Result<bool, StoreError> {
    let table = txn.open_table(SAVED_QUERIES)?;
    Ok(saved_queries_in(&table)?
        .iter()
        .any(|s| s.product == product && s.name == name && s.id != except_id))
}
