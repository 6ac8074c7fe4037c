//! The stored collection policies: one redb row per policy, written with its audit entry in
//! the same transaction. The in-memory `PolicyCache` is rebuilt from here after each write.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use crate::error::StoreError;
use crate::policies::Policy;
use crate::store::Store;

/// Policy id → JSON `Policy`.
pub const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("policies");

impl Store {
    pub fn policies(&self) -> Result<Vec<Policy>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(POLICIES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, bytes) = row?;
            out.push(
                serde_json::from_slice(bytes.value())
                    .map_err(|e| StoreError::Codec(e.to_string()))?,
            );
        }
        Ok(out)
    }
}

pub fn put_policy(txn: &WriteTransaction, policy: &Policy) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(policy).map_err(|e| StoreError::Codec(e.to_string()))?;
    txn.open_table(POLICIES)?
        .insert(policy.id.as_str(), bytes.as_slice())?;
    Ok(())
}

/// Whether a policy was there to delete.
pub fn delete_policy(txn: &WriteTransaction, id: &str) -> Result<bool, StoreError> {
    Ok(txn.open_table(POLICIES)?.remove(id)?.is_some())
}

pub fn policy_exists(txn: &WriteTransaction, id: &str) -> Result<bool, StoreError> {
    Ok(txn.open_table(POLICIES)?.get(id)?.is_some())
}
