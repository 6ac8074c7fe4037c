//! Metric history for the UI's charts: a sampler records the cumulative counters and gauges
//! every few seconds into a bounded ring buffer (24 hours); the UI turns them into rates.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use serde::Serialize;

use crate::model::now_ms;
use crate::timespan::MINUTE_MS;
use crate::AppState;

pub const INTERVAL: Duration = Duration::from_secs(10);
const KEEP: usize = 24 * 360;

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub time_ms: i64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rate_limited: u64,
    pub rejected: BTreeMap<&'static str, u64>,
    pub pii_scrubbed: u64,
    pub pii_rejected: u64,
    pub dropped_by_policy: u64,
    pub sampled_out: u64,
    pub writer_queue_depth: u64,
    pub index_lag: u64,
    pub store_size_bytes: u64,
    pub store_events: u64,
}

#[derive(Default)]
pub struct History {
    points: Mutex<VecDeque<Point>>,
}

impl History {
    /// Records the current figures of `state` as one point.
    pub fn sample(&self, state: &AppState) {
        let stats = state.metrics.snapshot(state.gauges());
        let point = Point {
            time_ms: now_ms(),
            accepted: stats.accepted,
            duplicates: stats.duplicates,
            rate_limited: stats.rate_limited,
            rejected: stats.rejected,
            pii_scrubbed: stats.pii.scrubbed,
            pii_rejected: stats.pii.rejected,
            dropped_by_policy: stats.dropped_by_policy,
            sampled_out: stats.sampled_out,
            writer_queue_depth: stats.store.writer_queue_depth,
            index_lag: stats.store.index_lag,
            store_size_bytes: stats.store.store_size_bytes,
            store_events: stats.store.store_events,
        };
        if let Ok(mut points) = self.points.lock() {
            if points.len() >= KEEP {
                points.pop_front();
            }
            points.push_back(point);
        }
    }

    /// The points of the last `minutes`, oldest first.
    pub fn since(&self, minutes: u64) -> Vec<Point> {
        let from = now_ms() - (minutes as i64) * MINUTE_MS;
        self.points
            .lock()
            .map(|p| p.iter().filter(|p| p.time_ms >= from).cloned().collect())
            .unwrap_or_default()
    }

    /// Events accepted per second over about the last minute.
    pub fn ingest_rate(&self, state: &AppState) -> f64 {
        let now = state.metrics.events_accepted.get();
        let points = match self.points.lock() {
            Ok(p) => p,
            Err(_) => return 0.0,
        };
        let since = now_ms() - MINUTE_MS;
        match points.iter().find(|p| p.time_ms >= since) {
            Some(first) => {
                let seconds = ((now_ms() - first.time_ms) as f64 / 1000.0).max(1.0);
                now.saturating_sub(first.accepted) as f64 / seconds
            }
            None => 0.0,
        }
    }
}

/// Samples every `INTERVAL` until the appliance is gone.
pub fn start_sampler(state: Weak<AppState>) {
    let spawned = std::thread::Builder::new()
        .name("metric-history".into())
        .spawn(move || loop {
            match state.upgrade() {
                Some(state) => state.history.sample(&state),
                None => return,
            }
            std::thread::sleep(INTERVAL);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metric history is off: cannot start its thread");
    }
}
