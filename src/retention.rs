//! The retention sweep: deletes events older than each product's `retention_days` from store
//! and index (in chunks, each with its tombstone), prunes installs not seen within retention,
//! then reclaims space — an index merge that really drops deleted documents, and a store file
//! rewrite when enough of the file is free. Scheduled by `jobs`; results go to the log and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::metrics::Metrics;
use crate::model::now_ms;
use crate::privacy::{DeleteError, Deleter, Tombstone};
use crate::products::Products;
use crate::search::Filter;
use crate::store::delete;
use crate::timespan::DAY_MS;

/// Events deleted per store transaction.
const CHUNK: usize = 20_000;

#[derive(Debug, Default, Clone, Serialize)]
pub struct SweepReport {
    pub events_deleted: u64,
    pub installs_pruned: u64,
    pub store_rewritten: bool,
    pub duration_ms: u64,
}

/// The retention service: what it deletes from, whose retention it applies, when it rewrites.
pub struct Retention {
    pub deleter: Deleter,
    pub products: Arc<Products>,
    pub metrics: Arc<Metrics>,
    /// Rewrite the store file after a sweep when at least this share of it is free.
    pub compact_free_ratio: f64,
}

impl Retention {
    /// One sweep over every product. Blocking; run it off the async runtime.
    pub fn sweep(&self) -> Result<SweepReport, DeleteError> {
        let started = Instant::now();
        let deleter = &self.deleter;
        let position = deleter.indexed_position(Duration::from_secs(60))?;
        let mut report = SweepReport::default();
        let now = now_ms();
        for product in self.products.all() {
            let cutoff = now - i64::from(product.retention_days) * DAY_MS;
            let filter = Filter {
                to_ms: Some(cutoff),
                ..Filter::default().with(crate::fields::EventField::Product, product.id.clone())
            };
            let mut seqs = deleter.search.positions(&filter)?;
            seqs.retain(|s| *s < position);
            for chunk in seqs.chunks(CHUNK) {
                report.events_deleted += delete_chunk(deleter, &filter, chunk)?;
                tracing::info!(product = %product.id, deleted = report.events_deleted, of = seqs.len(), "retention: deleting");
            }
            let product_id = product.id.clone();
            report.installs_pruned += deleter.writer.exclusive_blocking(move |store| {
                store.write(|txn| delete::prune_installs(txn, &product_id, cutoff))
            })?;
        }
        if report.events_deleted > 0 {
            deleter.search.purge()?;
            let ratio = self.compact_free_ratio;
            report.store_rewritten = deleter.writer.exclusive_blocking(move |store| {
                let free = store.free_ratio()?;
                if free >= ratio {
                    store.vacuum()?;
                    return Ok(true);
                }
                Ok(false)
            })?;
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        let metrics = &self.metrics;
        metrics.retention_runs.inc();
        metrics.retention_deleted.add(report.events_deleted);
        metrics
            .retention_installs_pruned
            .add(report.installs_pruned);
        tracing::info!(
            events_deleted = report.events_deleted,
            installs_pruned = report.installs_pruned,
            store_rewritten = report.store_rewritten,
            duration_ms = report.duration_ms,
            "retention sweep finished"
        );
        Ok(report)
    }
}

/// Deletes one chunk of positions (ascending) from the store with its tombstone, then from the
/// index.
fn delete_chunk(deleter: &Deleter, filter: &Filter, chunk: &[u64]) -> Result<u64, DeleteError> {
    let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
        return Ok(0);
    };
    let tombstone = Tombstone {
        filter: filter.clone(),
        from_seq: *first,
        below_seq: last + 1,
    };
    let bytes = tombstone.to_bytes()?;
    let seqs = chunk.to_vec();
    let (deleted, tombstone_id) = deleter.writer.exclusive_blocking(move |store| {
        store.write(|txn| {
            let deleted = delete::delete_events(txn, &store.recent_ids, &seqs)?;
            Ok((deleted.len() as u64, delete::add_tombstone(txn, &bytes)?))
        })
    })?;
    deleter.apply_tombstone(tombstone_id, &tombstone)?;
    Ok(deleted)
}
