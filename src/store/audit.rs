//! The audit log: every admin write (erasures, policy, cluster and saved-query changes) and every sensitive
//! admin read or operation (exports, backups, purges, clustering runs) with time, token name,
//! action, target, the products it concerned and result, in a redb table. Subject ids are
//! never written: erasures and subject exports record a salted hash of the id, with a salt kept
//! in the store. Client addresses are never written.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::scope::Scope;
use crate::store::Store;

/// Entry id (ascending) → JSON `AuditEntry`.
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Small named secrets and settings of the store itself (`audit_salt`).
pub const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    #[serde(default)]
    pub id: u64,
    pub time_ms: i64,
    /// The admin token's name.
    pub actor: String,
    /// `subject.erase`, `policy.create`, `cluster.update`, ...
    pub action: String,
    pub target: String,
    /// `ok` or `error`.
    pub outcome: String,
    #[serde(default)]
    pub result: serde_json::Value,
    /// The products the action concerned; empty = every product (a global operation, or an
    /// all-products token acting without a product filter).
    #[serde(default)]
    pub products: Vec<String>,
}

impl AuditEntry {
    /// An `ok` entry of `actor` doing `action` on `target` now, about `products` (empty: all).
    pub fn now(
        actor: &str,
        action: &str,
        target: String,
        products: Vec<String>,
        result: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            id: 0,
            time_ms: crate::model::now_ms(),
            actor: actor.to_string(),
            action: action.to_string(),
            target,
            outcome: "ok".into(),
            result,
            products,
        }
    }
}

/// The products of a scope, as an audit entry lists them (empty: every product).
pub fn scope_products(scope: &Scope) -> Vec<String> {
    scope
        .products()
        .map(|set| set.iter().cloned().collect())
        .unwrap_or_default()
}

/// Filters for reading the log, newest first.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Only entries with an id below this (the cursor of the previous page).
    pub before: Option<u64>,
    pub limit: Option<usize>,
    /// Only entries whose products all lie in this scope (a scoped token never sees entries
    /// about every product or about another product).
    #[serde(skip)]
    pub scope: Scope,
}

pub fn append(txn: &WriteTransaction, mut entry: AuditEntry) -> Result<u64, StoreError> {
    let mut table = txn.open_table(AUDIT)?;
    let id = table.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
    entry.id = id;
    let bytes = serde_json::to_vec(&entry).map_err(|e| StoreError::Codec(e.to_string()))?;
    table.insert(id, bytes.as_slice())?;
    Ok(id)
}

/// `kind:` plus a salted SHA-256 of a subject id, for the audit log.
pub fn subject_hash(txn: &WriteTransaction, kind: &str, id: &str) -> Result<String, StoreError> {
    let salt = audit_salt(txn)?;
    let mut hasher = Sha256::new();
    hasher.update(&salt);
    hasher.update(kind.as_bytes());
    hasher.update([0]);
    hasher.update(id.as_bytes());
    let digest = hasher.finalize();
    Ok(format!("{kind}:sha256:{}", crate::hash::hex(&digest[..16])))
}

fn audit_salt(txn: &WriteTransaction) -> Result<Vec<u8>, StoreError> {
    let mut kv = txn.open_table(KV)?;
    if let Some(salt) = kv.get("audit_salt")? {
        return Ok(salt.value().to_vec());
    }
    let salt: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| u.as_bytes().to_vec())
        .collect();
    kv.insert("audit_salt", salt.as_slice())?;
    Ok(salt)
}

impl Store {
    /// Audit entries matching `query`, newest first.
    pub fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.begin_read()?;
        let table = match txn.open_table(AUDIT) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let limit = query.limit.unwrap_or(100).clamp(1, 1000);
        let mut out = Vec::new();
        for row in table.range(..query.before.unwrap_or(u64::MAX))?.rev() {
            let (_, bytes) = row?;
            let entry: AuditEntry = serde_json::from_slice(bytes.value())
                .map_err(|e| StoreError::Codec(e.to_string()))?;
            if query.to_ms.is_some_and(|to| entry.time_ms >= to) {
                continue;
            }
            if query.from_ms.is_some_and(|from| entry.time_ms < from) {
                break;
            }
            if query
                .action
                .as_deref()
                .is_some_and(|a| !entry.action.starts_with(a))
                || !query
                    .scope
                    .covers(entry.products.iter().map(String::as_str))
            {
                continue;
            }
            out.push(entry);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}
