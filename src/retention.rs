//! The retention sweep: deletes events older than each product's `retention_days` from store
//! and index (in chunks, each with its tombstone), prunes installs not seen within retention,
//! deletes metric series points older than retention (and series not seen within it, and
//! cumulative stream states idle for `STREAM_IDLE_MS`), then reclaims space — an index merge that really drops deleted documents, and a store file
//! rewrite when enough of the file is free. Scheduled by `jobs`; results go to the log and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::metrics::Metrics;
use crate::model::now_ms;
use crate::privacy::{DeleteError, Deleter, Tombstone};
use crate::products::Products;
use crate::search::Filter;
use crate::series::store as series_store;
use crate::store::delete;
use crate::timespan::DAY_MS;

/// Events deleted per store transaction.
const CHUNK: usize = 20_000;
/// Metric series swept per store transaction.
const SERIES_CHUNK: usize = 2_000;
/// A cumulative stream not reported for this long is taken as ended and its state pruned (or
/// after the product's retention, when shorter).
pub const STREAM_IDLE_MS: i64 = 2 * DAY_MS;

#[derive(Debug, Default, Clone, Serialize)]
pub struct SweepReport {
    pub events_deleted: u64,
    pub installs_pruned: u64,
    pub series_points_deleted: u64,
    pub series_deleted: u64,
    pub series_streams_pruned: u64,
    /// Partitions the export sinks' destinations dropped.
    pub sink_partitions_dropped: u64,
    pub store_rewritten: bool,
    pub duration_ms: u64,
}

/// The retention service: what it deletes from, whose retention it applies, when it rewrites.
pub struct Retention {
    pub deleter: Deleter,
    pub products: Arc<Products>,
    pub metrics: Arc<Metrics>,
    /// Export sinks, whose destinations drop what is past retention too.
    pub sinks: Arc<crate::sinks::Sinks>,
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
            let idle_cutoff = now - STREAM_IDLE_MS.min(i64::from(product.retention_days) * DAY_MS);
            sweep_series(deleter, &product.id, cutoff, idle_cutoff, &mut report)?;
        }
        let cutoffs: Vec<(String, i64)> = self
            .products
            .all()
            .iter()
            .map(|p| (p.id.clone(), now - i64::from(p.retention_days) * DAY_MS))
            .collect();
        report.sink_partitions_dropped = self.sinks.apply_retention(&cutoffs);
        if report.events_deleted > 0 {
            deleter.search.purge()?;
        }
        if report.events_deleted > 0 || report.series_points_deleted > 0 {
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
        metrics
            .retention_series_points_deleted
            .add(report.series_points_deleted);
        tracing::info!(
            events_deleted = report.events_deleted,
            installs_pruned = report.installs_pruned,
            series_points_deleted = report.series_points_deleted,
            series_deleted = report.series_deleted,
            series_streams_pruned = report.series_streams_pruned,
            sink_partitions_dropped = report.sink_partitions_dropped,
            store_rewritten = report.store_rewritten,
            duration_ms = report.duration_ms,
            "retention sweep finished"
        );
        Ok(report)
    }
}

/// Retention for one product's metric series, `SERIES_CHUNK` series per store transaction.
fn sweep_series(
    deleter: &Deleter,
    product: &str,
    cutoff_ms: i64,
    idle_cutoff_ms: i64,
    report: &mut SweepReport,
) -> Result<(), DeleteError> {
    let idle_cutoff_ns = u64::try_from(idle_cutoff_ms).unwrap_or(0) * 1_000_000;
    let mut after: Option<String> = None;
    loop {
        let product = product.to_string();
        let from = after.take();
        let step = deleter.writer.exclusive_blocking(move |store| {
            store.write(|txn| {
                series_store::sweep(
                    txn,
                    &product,
                    cutoff_ms,
                    idle_cutoff_ns,
                    from.as_deref(),
                    SERIES_CHUNK,
                )
            })
        })?;
        report.series_points_deleted += step.points_deleted;
        report.series_deleted += step.series_deleted;
        report.series_streams_pruned += step.streams_pruned;
        match step.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
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
