//! The retention sweep: deletes events older than each product's `retention_days` from store
//! and index (in chunks, each with its tombstone), prunes installs not seen within retention,
//! then reclaims space — an index merge that really drops deleted documents, and a store file
//! rewrite when enough of the file is free. Scheduled by `jobs`; results go to the log and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::ApiError;
use crate::model::now_ms;
use crate::privacy::{apply_tombstone, Tombstone};
use crate::search::Filter;
use crate::store::delete;
use crate::AppState;

/// Events deleted per store transaction.
const CHUNK: usize = 20_000;

#[derive(Debug, Default, Clone, Serialize)]
pub struct SweepReport {
    pub events_deleted: u64,
    pub installs_pruned: u64,
    pub store_rewritten: bool,
    pub duration_ms: u64,
}

/// One sweep over every product. Blocking; run it off the async runtime.
pub fn sweep(state: &Arc<AppState>) -> Result<SweepReport, ApiError> {
    let started = Instant::now();
    let position = state.store.next_seq()?;
    if !state.search.wait_indexed(position, Duration::from_secs(60)) {
        return Err(ApiError::NotReady(
            "the search index is still catching up with the store".into(),
        ));
    }
    let mut report = SweepReport::default();
    let now = now_ms();
    for product in &state.ingest.products {
        let cutoff = now - i64::from(product.retention_days) * 86_400_000;
        let filter = Filter {
            to_ms: Some(cutoff),
            ..Filter::default().with(crate::fields::EventField::Product, product.id.clone())
        };
        let mut seqs = state.search.positions(&filter)?;
        seqs.retain(|s| *s < position);
        for chunk in seqs.chunks(CHUNK) {
            report.events_deleted += delete_chunk(state, &filter, chunk)?;
            tracing::info!(product = %product.id, deleted = report.events_deleted, of = seqs.len(), "retention: deleting");
        }
        let product_id = product.id.clone();
        report.installs_pruned += state.writer.exclusive_blocking(move |store| {
            store.write(|txn| delete::prune_installs(txn, &product_id, cutoff))
        })?;
    }
    if report.events_deleted > 0 {
        state.search.purge()?;
        let ratio = state.config.retention.compact_free_ratio;
        report.store_rewritten = state.writer.exclusive_blocking(move |store| {
            let free = store.free_ratio()?;
            if free >= ratio {
                store.vacuum()?;
                return Ok(true);
            }
            Ok(false)
        })?;
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    let metrics = &state.metrics;
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

/// Deletes one chunk of positions (ascending) from the store with its tombstone, then from the
/// index.
fn delete_chunk(state: &AppState, filter: &Filter, chunk: &[u64]) -> Result<u64, ApiError> {
    let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
        return Ok(0);
    };
    let tombstone = Tombstone {
        filter: filter.clone(),
        from_seq: *first,
        below_seq: last + 1,
    };
    let bytes = serde_json::to_vec(&tombstone).map_err(|e| ApiError::Internal(e.to_string()))?;
    let seqs = chunk.to_vec();
    let (deleted, tombstone_id) = state.writer.exclusive_blocking(move |store| {
        store.write(|txn| {
            let deleted = delete::delete_events(txn, &store.recent_ids, &seqs)?;
            Ok((deleted.len() as u64, delete::add_tombstone(txn, &bytes)?))
        })
    })?;
    apply_tombstone(state, tombstone_id, &tombstone)?;
    Ok(deleted)
}
