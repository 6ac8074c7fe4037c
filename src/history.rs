//! Metric history for the UI's charts: a sampler records the cumulative counters and gauges
//! every few seconds into a bounded ring buffer (24 hours); the UI turns them into rates.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::metrics::StatsSnapshot;
use crate::model::now_ms;
use crate::timespan::MINUTE_MS;

pub const INTERVAL: Duration = Duration::from_secs(10);
const KEEP: usize = 24 * 360;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// Records one snapshot of the figures as a point.
    pub fn record(&self, stats: StatsSnapshot) {
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

    /// Events accepted per second over about the last minute, given the count accepted so far.
    pub fn ingest_rate(&self, accepted_now: u64) -> f64 {
        let now = accepted_now;
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

/// The sampling thread; stopping it ends the thread at once.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Sampler {
    /// Records `sample()` into `history` now and every `INTERVAL` until stopped.
    pub fn start(
        history: Arc<History>,
        sample: impl Fn() -> StatsSnapshot + Send + 'static,
    ) -> std::io::Result<Sampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metric-history".into())
            .spawn(move || {
                while !stopped.load(Ordering::SeqCst) {
                    history.record(sample());
                    std::thread::park_timeout(INTERVAL);
                }
            })?;
        Ok(Sampler {
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
