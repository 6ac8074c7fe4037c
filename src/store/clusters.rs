//! The stored error clusters (one JSON row per cluster) and the clustering job's cursor: the
//! position of the first event not yet folded. Both are written in one transaction per pass.

use std::collections::HashMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use crate::clusters::Cluster;
use crate::error::StoreError;
use crate::store::subscribers::set_position;
use crate::store::Store;

/// Cluster id (fingerprint) → JSON `Cluster`.
pub const CLUSTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("clusters");
/// The clustering pass's position (see `subscribers`), under its original key.
pub const CURSOR: &str = "cluster_cursor";

impl Store {
    pub fn clusters(&self) -> Result<HashMap<String, Cluster>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(CLUSTERS)?;
        let mut out = HashMap::new();
        for row in table.iter()? {
            let (id, bytes) = row?;
            let mut cluster: Cluster = serde_json::from_slice(bytes.value())
                .map_err(|e| StoreError::Codec(e.to_string()))?;
            cluster.fill_missing_weights();
            out.insert(id.value().to_string(), cluster);
        }
        Ok(out)
    }

    /// Position of the first event the clustering job has not folded yet.
    pub fn cluster_cursor(&self) -> Result<u64, StoreError> {
        self.position(CURSOR)
    }
}

pub fn put_cluster(txn: &WriteTransaction, cluster: &Cluster) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(cluster).map_err(|e| StoreError::Codec(e.to_string()))?;
    txn.open_table(CLUSTERS)?
        .insert(cluster.id.as_str(), bytes.as_slice())?;
    Ok(())
}

pub fn delete_cluster(txn: &WriteTransaction, id: &str) -> Result<(), StoreError> {
    txn.open_table(CLUSTERS)?.remove(id)?;
    Ok(())
}

pub fn set_cluster_cursor(txn: &WriteTransaction, position: u64) -> Result<(), StoreError> {
    set_position(txn, CURSOR, position)
}
