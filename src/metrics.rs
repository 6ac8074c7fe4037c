//! Process counters and histograms, and their Prometheus text exposition. Counters are atomics
//! touched on the hot path; gauges that live elsewhere (queue depth, store size) are passed in
//! at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::error::{AdjustReason, RejectCode};
use crate::policies::{DecisionCounts, DropReason};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of histogram buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub events_accepted: Counter,
    pub duplicates: Counter,
    rejected: [Counter; RejectCode::ALL.len()],
    pub pii_scrubbed: Counter,
    pub pii_rejected: Counter,
    pub pii_fields_dropped: Counter,
    pub requests_overloaded: Counter,
    pub commits: Counter,
    pub commit_latency: Histogram,
    pub erasures: Counter,
    pub clustering_runs: Counter,
    pub clustering_events: Counter,
    pub sampled_out: Counter,
    dropped_by_policy: [Counter; DropReason::ALL.len()],
    pub purges: Counter,
    pub retention_runs: Counter,
    pub retention_deleted: Counter,
    pub retention_installs_pruned: Counter,
    pub retention_series_points_deleted: Counter,
    /// OTLP metric data points accepted, rejected, and points written to series.
    pub series_points_accepted: Counter,
    pub series_points_rejected: Counter,
    pub series_points_stored: Counter,
    requests: RwLock<BTreeMap<(String, u16), Histogram>>,
    /// Fields of accepted events dropped or changed, by product and reason.
    adjusted: Mutex<BTreeMap<String, [u64; AdjustReason::ALL.len()]>>,
    /// Events clients report having dropped before sending (Sentry's client reports), by
    /// (reason, category); the format bounds both to known values.
    client_discarded: Mutex<BTreeMap<(String, String), u64>>,
}

/// Figures read at scrape time from the parts that own them.
#[derive(Debug, Default, Clone, Serialize, utoipa::ToSchema)]
pub struct Gauges {
    pub writer_queue_depth: u64,
    pub writer_queue_capacity: u64,
    /// Events in the batches waiting for the store writer.
    pub writer_queue_events: u64,
    pub store_events: u64,
    pub store_size_bytes: u64,
    pub index_docs: u64,
    pub index_size_bytes: u64,
    /// Stored events not yet searchable.
    pub index_lag: u64,
    /// Committed events waiting in memory for the indexer.
    pub index_queue_events: u64,
    pub scan_cache_bytes: u64,
    /// Webhook deliveries (cumulative, from the alert dispatcher).
    pub alerts: crate::clusters::AlertStats,
    /// Each commit subscriber's position and lag behind the store.
    pub subscribers: Vec<crate::store::subscribers::SubscriberLag>,
    /// Each export sink's position, lag, deliveries and errors.
    pub sinks: Vec<crate::sinks::SinkStatus>,
}

/// The ingest counters as JSON (`GET /api/v1/stats`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsSnapshot {
    pub accepted: u64,
    pub duplicates: u64,
    pub rate_limited: u64,
    pub rejected: BTreeMap<&'static str, u64>,
    pub rejected_total: u64,
    pub pii: PiiSnapshot,
    pub overloaded: u64,
    pub dropped_by_policy: u64,
    pub dropped_by_policy_reasons: BTreeMap<&'static str, u64>,
    pub sampled_out: u64,
    pub commits: u64,
    pub store: Gauges,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PiiSnapshot {
    pub scrubbed: u64,
    pub rejected: u64,
    pub fields_dropped: u64,
}

impl Metrics {
    pub fn reject(&self, code: RejectCode) {
        self.rejected[code.index()].inc();
    }

    /// Counts what collection policies dropped and sampled out in one batch.
    pub fn record_policy(&self, counts: &DecisionCounts) {
        self.sampled_out.add(counts.sampled_out);
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            if let Some(n) = counts.dropped_by_reason.get(reason.as_str()) {
                self.dropped_by_policy[i].add(*n);
            }
        }
    }

    /// Counts one request's dropped or changed fields (by [`AdjustReason::index`]).
    pub fn record_adjusted(&self, product: &str, by_reason: &[u64; AdjustReason::ALL.len()]) {
        if by_reason.iter().all(|n| *n == 0) {
            return;
        }
        if let Ok(mut map) = self.adjusted.lock() {
            let counts = match map.get_mut(product) {
                Some(counts) => counts,
                None => map.entry(product.to_string()).or_default(),
            };
            for (count, n) in counts.iter_mut().zip(by_reason) {
                *count += n;
            }
        }
    }

    /// Counts what a client reported having dropped before sending.
    pub fn record_client_discarded(&self, reports: &[crate::ingest::formats::ClientDiscarded]) {
        if reports.is_empty() {
            return;
        }
        if let Ok(mut map) = self.client_discarded.lock() {
            for report in reports {
                let key = (report.reason.clone(), report.category.clone());
                *map.entry(key).or_default() += report.quantity;
            }
        }
    }

    pub fn dropped_by_policy(&self) -> u64 {
        self.dropped_by_policy.iter().map(Counter::get).sum()
    }

    pub fn rejected(&self, code: RejectCode) -> u64 {
        self.rejected[code.index()].get()
    }

    /// Records one HTTP request by route pattern and status.
    pub fn observe_request(&self, route: &str, status: u16, elapsed: Duration) {
        let key = (route.to_string(), status);
        if let Ok(map) = self.requests.read() {
            if let Some(h) = map.get(&key) {
                h.observe(elapsed);
                return;
            }
        }
        if let Ok(mut map) = self.requests.write() {
            map.entry(key).or_default().observe(elapsed);
        }
    }

    pub fn snapshot(&self, gauges: Gauges) -> StatsSnapshot {
        let rejected: BTreeMap<_, _> = RejectCode::ALL
            .iter()
            .map(|c| (c.as_str(), self.rejected(*c)))
            .collect();
        StatsSnapshot {
            accepted: self.events_accepted.get(),
            duplicates: self.duplicates.get(),
            rate_limited: self.rejected(RejectCode::RateLimited),
            rejected_total: rejected.values().sum(),
            rejected,
            pii: PiiSnapshot {
                scrubbed: self.pii_scrubbed.get(),
                rejected: self.pii_rejected.get(),
                fields_dropped: self.pii_fields_dropped.get(),
            },
            overloaded: self.requests_overloaded.get(),
            dropped_by_policy: self.dropped_by_policy(),
            dropped_by_policy_reasons: DropReason::ALL
                .iter()
                .zip(&self.dropped_by_policy)
                .map(|(r, c)| (r.as_str(), c.get()))
                .collect(),
            sampled_out: self.sampled_out.get(),
            commits: self.commits.get(),
            store: gauges,
        }
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8192);
        let counters = [
            (
                "events_accepted_total",
                "Events stored.",
                self.events_accepted.get(),
            ),
            (
                "events_duplicate_total",
                "Events not stored because their id was already stored.",
                self.duplicates.get(),
            ),
            (
                "events_rate_limited_total",
                "Events rejected by the per-install rate limit.",
                self.rejected(RejectCode::RateLimited),
            ),
            (
                "pii_scrubbed_total",
                "Events whose free text had PII replaced by placeholders.",
                self.pii_scrubbed.get(),
            ),
            (
                "pii_rejected_total",
                "Events rejected because a field carried PII.",
                self.pii_rejected.get(),
            ),
            (
                "pii_fields_dropped_total",
                "Fields dropped because they carried PII.",
                self.pii_fields_dropped.get(),
            ),
            (
                "requests_overloaded_total",
                "Ingest requests answered 503 because the writer queue was full.",
                self.requests_overloaded.get(),
            ),
            (
                "store_commits_total",
                "Store write transactions committed.",
                self.commits.get(),
            ),
            ("erasures_total", "Subjects erased.", self.erasures.get()),
            (
                "events_dropped_by_policy_total",
                "Events dropped because a collection policy disables them.",
                self.dropped_by_policy(),
            ),
            (
                "events_sampled_out_total",
                "Events removed by server-side sampling.",
                self.sampled_out.get(),
            ),
            (
                "purges_total",
                "Purges run (index merge and store rewrite).",
                self.purges.get(),
            ),
            (
                "retention_runs_total",
                "Retention sweeps finished.",
                self.retention_runs.get(),
            ),
            (
                "retention_deleted_events_total",
                "Events deleted by retention.",
                self.retention_deleted.get(),
            ),
            (
                "retention_pruned_installs_total",
                "Install rows pruned by retention.",
                self.retention_installs_pruned.get(),
            ),
            (
                "retention_deleted_series_points_total",
                "Metric series points deleted by retention.",
                self.retention_series_points_deleted.get(),
            ),
            (
                "otlp_metric_points_accepted_total",
                "OTLP metric data points accepted.",
                self.series_points_accepted.get(),
            ),
            (
                "otlp_metric_points_rejected_total",
                "OTLP metric data points rejected.",
                self.series_points_rejected.get(),
            ),
            (
                "series_points_written_total",
                "Points written to metric series (cumulative reports that added nothing write none).",
                self.series_points_stored.get(),
            ),
        ];
        let gauge_values = [
            (
                "writer_queue_depth",
                "Batches waiting for the store writer.",
                gauges.writer_queue_depth,
            ),
            (
                "writer_queue_capacity",
                "Batches the writer queue holds before ingest answers 503.",
                gauges.writer_queue_capacity,
            ),
            (
                "writer_queue_events",
                "Events in the batches waiting for the store writer.",
                gauges.writer_queue_events,
            ),
            ("store_events", "Events in the store.", gauges.store_events),
            (
                "store_size_bytes",
                "Size of the store file.",
                gauges.store_size_bytes,
            ),
            (
                "index_documents",
                "Documents in the search index.",
                gauges.index_docs,
            ),
            (
                "index_size_bytes",
                "Size of the search index files.",
                gauges.index_size_bytes,
            ),
            (
                "index_lag_events",
                "Stored events not yet searchable.",
                gauges.index_lag,
            ),
            (
                "index_queue_events",
                "Committed events waiting in memory for the indexer.",
                gauges.index_queue_events,
            ),
            (
                "scan_cache_bytes",
                "Memory held by columns decoded for analytics scans ([search] scan_cache_mb).",
                gauges.scan_cache_bytes,
            ),
        ];
        let alerts = &gauges.alerts;
        let alert_counters = [
            (
                "alerts_delivered_total",
                "Alerts delivered to webhooks.",
                alerts.delivered,
            ),
            (
                "alerts_failed_total",
                "Alerts that could not be delivered.",
                alerts.failed,
            ),
            (
                "alerts_throttled_total",
                "Alerts not sent because of the per-cluster throttle.",
                alerts.throttled,
            ),
            (
                "alerts_retries_total",
                "Webhook delivery attempts after the first.",
                alerts.retries,
            ),
            (
                "clustering_runs_total",
                "Clustering passes finished.",
                self.clustering_runs.get(),
            ),
            (
                "clustering_events_total",
                "Events folded into clusters.",
                self.clustering_events.get(),
            ),
        ];
        for (kind, rows) in [
            ("counter", &counters[..]),
            ("counter", &alert_counters[..]),
            ("gauge", &gauge_values[..]),
        ] {
            for (name, help, value) in rows {
                let _ = writeln!(out, "# HELP telemetryd_{name} {help}\n# TYPE telemetryd_{name} {kind}\ntelemetryd_{name} {value}");
            }
        }
        let _ = writeln!(out, "# HELP telemetryd_events_rejected_total Events rejected, by code.\n# TYPE telemetryd_events_rejected_total counter");
        for code in RejectCode::ALL {
            let _ = writeln!(
                out,
                "telemetryd_events_rejected_total{{code=\"{}\"}} {}",
                code.as_str(),
                self.rejected(code)
            );
        }
        let _ = writeln!(out, "# HELP telemetryd_fields_adjusted_total Fields of accepted events dropped or changed by ingest, by product and reason.\n# TYPE telemetryd_fields_adjusted_total counter");
        if let Ok(map) = self.adjusted.lock() {
            for (product, counts) in map.iter() {
                for (reason, count) in AdjustReason::ALL.iter().zip(counts) {
                    let _ = writeln!(
                        out,
                        "telemetryd_fields_adjusted_total{{product=\"{}\",reason=\"{}\"}} {count}",
                        product.replace(['"', '\\', '\n'], ""),
                        reason.as_str()
                    );
                }
            }
        }
        let _ = writeln!(out, "# HELP telemetryd_client_discarded_events_total Events clients report having dropped before sending (Sentry client reports), by reason and category.\n# TYPE telemetryd_client_discarded_events_total counter");
        if let Ok(map) = self.client_discarded.lock() {
            for ((reason, category), count) in map.iter() {
                let _ = writeln!(
                    out,
                    "telemetryd_client_discarded_events_total{{reason=\"{}\",category=\"{}\"}} {count}",
                    reason.replace(['"', '\\', '\n'], ""),
                    category.replace(['"', '\\', '\n'], "")
                );
            }
        }
        let _ = writeln!(out, "# HELP telemetryd_subscriber_lag_events Store positions a commit subscriber has not taken in yet.\n# TYPE telemetryd_subscriber_lag_events gauge");
        for lag in &gauges.subscribers {
            let _ = writeln!(
                out,
                "telemetryd_subscriber_lag_events{{subscriber=\"{}\"}} {}",
                lag.name, lag.lag_events
            );
        }
        render_sinks(&mut out, &gauges.sinks);
        let _ = writeln!(out, "# HELP telemetryd_store_commit_seconds Duration of one durable group commit.\n# TYPE telemetryd_store_commit_seconds histogram");
        self.commit_latency
            .render(&mut out, "telemetryd_store_commit_seconds", "");
        let _ = writeln!(out, "# HELP telemetryd_http_request_duration_seconds HTTP request latency by route and status.\n# TYPE telemetryd_http_request_duration_seconds histogram");
        if let Ok(map) = self.requests.read() {
            for ((route, status), h) in map.iter() {
                let labels = format!("route=\"{}\",status=\"{status}\"", route.replace('"', ""));
                h.render(
                    &mut out,
                    "telemetryd_http_request_duration_seconds",
                    &labels,
                );
            }
        }
        out
    }
}

/// One per-sink figure: its name, type, help and how it is read.
type SinkFigure = (
    &'static str,
    &'static str,
    &'static str,
    fn(&crate::sinks::SinkStatus) -> f64,
);

/// The export sinks' figures, one series per sink.
fn render_sinks(out: &mut String, sinks: &[crate::sinks::SinkStatus]) {
    let figures: [SinkFigure; 8] = [
        ("telemetryd_sink_lag_events", "gauge", "Stored events an export sink has not delivered yet.", |s| s.lag_events as f64),
        ("telemetryd_sink_lag_seconds", "gauge", "Age of the oldest event an export sink has not delivered yet.", |s| s.lag_seconds),
        ("telemetryd_sink_delivered_total", "counter", "Events an export sink delivered (since start).", |s| s.delivered_total as f64),
        ("telemetryd_sink_failures_total", "counter", "Failed deliveries and deletes of an export sink (since start).", |s| s.failures_total as f64),
        ("telemetryd_sink_skipped_total", "counter", "Positions an export sink skipped because the store had deleted them (retention or erasure) before delivery.", |s| s.skipped_total as f64),
        ("telemetryd_sink_pending_erasures", "gauge", "Subject deletes an export sink's destination has not confirmed yet.", |s| s.pending_erasures as f64),
        ("telemetryd_sink_points_lag", "gauge", "Metric point writes an export sink has not delivered yet.", |s| s.points_lag as f64),
        ("telemetryd_sink_points_delivered_total", "counter", "Metric points an export sink delivered (since start).", |s| s.points_delivered_total as f64),
    ];
    for (name, kind, help, value) in figures {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for sink in sinks {
            let _ = writeln!(out, "{name}{{sink=\"{}\"}} {}", sink.name, value(sink));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_counters_and_buckets() {
        let m = Metrics::default();
        m.events_accepted.add(3);
        m.reject(RejectCode::UnknownEvent);
        m.observe_request("/api/v1/events", 200, Duration::from_millis(3));
        m.record_adjusted("app", &[0; AdjustReason::ALL.len()]);
        let mut adjusted = [0; AdjustReason::ALL.len()];
        adjusted[AdjustReason::OffList.index()] = 2;
        m.record_adjusted("app", &adjusted);
        m.record_adjusted("app", &adjusted);
        let text = m.render(&Gauges {
            subscribers: vec![crate::store::subscribers::SubscriberLag {
                name: "search-index",
                position: 5,
                lag_events: 2,
            }],
            ..Gauges::default()
        });
        assert!(text.contains("telemetryd_subscriber_lag_events{subscriber=\"search-index\"} 2"));
        assert!(text.contains("telemetryd_events_accepted_total 3"));
        assert!(text
            .contains("telemetryd_fields_adjusted_total{product=\"app\",reason=\"off_list\"} 4"));
        assert!(
            text.contains("telemetryd_fields_adjusted_total{product=\"app\",reason=\"pattern\"} 0")
        );
        assert!(text.contains("telemetryd_events_rejected_total{code=\"unknown_event\"} 1"));
        assert!(text.contains("telemetryd_http_request_duration_seconds_bucket{route=\"/api/v1/events\",status=\"200\",le=\"0.005\"} 1"));
        assert!(text.contains("telemetryd_http_request_duration_seconds_count{route=\"/api/v1/events\",status=\"200\"} 1"));
    }
}
