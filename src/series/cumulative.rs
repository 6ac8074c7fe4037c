//! Cumulative → per-interval increases. A cumulative counter, histogram or summary reports its
//! totals since its `start_time`; the store keeps increases, so each stream's last totals are
//! kept and every new report is turned into what was added since the previous one.
//!
//! A *stream* is one client's run of one series: the series, a hash of the sender's resource
//! and scope, and the run's start time. Without an install id attribute many clients share a
//! series, and their totals must never be subtracted from each other; a client restart starts a
//! new stream (new start time), whose first report is everything it counted since it started.
//!
//! Rules, per report of a stream:
//! - known stream, later time: totals that went down (count, a bucket) are a reset without a
//!   new start time (a client that restarted with the same start time): the increase is the
//!   full totals; otherwise the difference;
//! - known stream, same or earlier time: a resend or a report out of order — no increase;
//! - new stream: with a start time at or after the series' `counted_from_ns` its full totals
//!   are the increase (a new client, or a restart); with no start time, or an earlier one (a
//!   client running since before its stream state was pruned), it only sets the baseline.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::series::mapping::{Data, Temporality};
use crate::series::model::{HistogramPoint, Kind, Point, SummaryPoint};

/// Totals since a stream's start: a counter's value (with `sum` and `buckets` unused), or a
/// histogram's or summary's count, sum and bucket counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub value: f64,
    #[serde(default)]
    pub sum: f64,
    #[serde(default)]
    pub buckets: Vec<u64>,
}

impl Totals {
    pub fn counter(value: f64) -> Totals {
        Totals {
            value,
            sum: 0.0,
            buckets: Vec::new(),
        }
    }

    /// Whether these totals cannot follow `earlier` without a reset.
    fn went_down_from(&self, earlier: &Totals) -> bool {
        self.value < earlier.value
            || self.buckets.len() != earlier.buckets.len()
            || self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .any(|(a, b)| a < b)
    }

    fn minus(&self, earlier: &Totals) -> Totals {
        Totals {
            value: self.value - earlier.value,
            sum: self.sum - earlier.sum,
            buckets: self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|(a, b)| a - b)
                .collect(),
        }
    }

    /// Nothing was added (no point needs storing).
    pub fn is_zero(&self) -> bool {
        self.value == 0.0 && self.sum == 0.0 && self.buckets.iter().all(|b| *b == 0)
    }
}

/// What the store keeps per stream: its last report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamState {
    pub start_ns: u64,
    pub time_ns: u64,
    pub totals: Totals,
}

/// What one report adds.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Stored as the point's increase.
    Increase(Totals),
    /// The first report of a stream that may have been counted before: it only sets the
    /// baseline.
    Baseline,
    /// A resend or a report older than the stream's last: nothing to add, state unchanged.
    Stale,
}

/// A report of a stream, given the stream's state (if any) and the series' `counted_from_ns`.
/// Returns what it adds and the stream's new state (`None`: unchanged).
pub fn step(
    state: Option<&StreamState>,
    start_ns: u64,
    time_ns: u64,
    totals: &Totals,
    counted_from_ns: u64,
) -> (Step, Option<StreamState>) {
    let next = StreamState {
        start_ns,
        time_ns,
        totals: totals.clone(),
    };
    let step = match state {
        Some(last) if time_ns <= last.time_ns => return (Step::Stale, None),
        Some(last) if totals.went_down_from(&last.totals) => Step::Increase(totals.clone()),
        Some(last) => Step::Increase(totals.minus(&last.totals)),
        None if start_ns > 0 && start_ns >= counted_from_ns => Step::Increase(totals.clone()),
        None => Step::Baseline,
    };
    (step, Some(next))
}

/// What a sample of a `kind` metric stores: a gauge's value as it is, a delta's increase as
/// it is (passed through), a cumulative report's increase from [`step`]. `None` when there is
/// nothing to store (no increase, a baseline, a resend); the stream's new state when it changed.
pub fn point(
    kind: Kind,
    data: &Data,
    state: Option<&StreamState>,
    start_ns: u64,
    time_ns: u64,
    counted_from_ns: u64,
) -> (Option<Point>, Option<StreamState>) {
    let (temporality, totals, min, max, quantiles) = match data {
        Data::Value(v) => return (Some(Point::Value { mean: *v, n: 1 }), None),
        Data::Totals {
            temporality,
            totals,
            min,
            max,
            quantiles,
        } => (*temporality, totals, *min, *max, quantiles),
    };
    let (increase, next) = match temporality {
        Temporality::Delta => (Some(totals.clone()), None),
        Temporality::Cumulative => match step(state, start_ns, time_ns, totals, counted_from_ns) {
            (Step::Increase(t), next) => (Some(t), next),
            (Step::Baseline, next) => (None, next),
            (Step::Stale, next) => return (None, next),
        },
    };
    let point = match (kind, increase) {
        (Kind::Counter, Some(t)) if t.value != 0.0 => Some(Point::Increase(t.value)),
        (Kind::Histogram | Kind::ExponentialHistogram, Some(t)) if !t.is_zero() => {
            Some(Point::Histogram(HistogramPoint {
                count: t.value.round() as u64,
                sum: t.sum,
                min,
                max,
                buckets: t.buckets,
            }))
        }
        // A summary's quantiles are worth keeping even when its count did not move.
        (Kind::Summary, t) if t.as_ref().is_some_and(|t| !t.is_zero()) || !quantiles.is_empty() => {
            let t = t.unwrap_or(Totals::counter(0.0));
            Some(Point::Summary(SummaryPoint {
                count: t.value.round() as u64,
                sum: t.sum,
                quantiles: quantiles.clone(),
                n: 1,
            }))
        }
        _ => None,
    };
    (point, next)
}

/// The key of a stream within its series: a stable hash (SHA-256, so it survives upgrades) of
/// the sender (its resource and scope, already hashed into `sender`) and the start time.
pub fn stream_key(sender: &[u8; 32], start_ns: u64) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(sender);
    hasher.update(start_ns.to_be_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A stream store as the writer keeps it, for replaying reports.
    #[derive(Default)]
    struct Streams {
        states: HashMap<u64, StreamState>,
        counted_from_ns: u64,
    }

    impl Streams {
        fn report(&mut self, start_ns: u64, time_ns: u64, totals: Totals) -> Step {
            let key = stream_key(&[7; 32], start_ns);
            let (step, next) = step(
                self.states.get(&key),
                start_ns,
                time_ns,
                &totals,
                self.counted_from_ns,
            );
            if let Some(next) = next {
                self.states.insert(key, next);
            }
            step
        }

        fn counter(&mut self, start_ns: u64, time_ns: u64, value: f64) -> Option<f64> {
            match self.report(start_ns, time_ns, Totals::counter(value)) {
                Step::Increase(t) => Some(t.value),
                Step::Baseline | Step::Stale => None,
            }
        }
    }

    #[test]
    fn a_monotonic_run_becomes_its_differences() {
        let mut s = Streams::default();
        // The first report of a stream with a start time is everything since that start.
        assert_eq!(s.counter(100, 1_000, 5.0), Some(5.0));
        assert_eq!(s.counter(100, 2_000, 8.0), Some(3.0));
        assert_eq!(s.counter(100, 3_000, 8.0), Some(0.0));
        assert_eq!(s.counter(100, 4_000, 20.5), Some(12.5));
    }

    #[test]
    fn a_restart_with_a_new_start_time_counts_its_full_value() {
        let mut s = Streams::default();
        assert_eq!(s.counter(100, 1_000, 50.0), Some(50.0));
        assert_eq!(s.counter(100, 2_000, 60.0), Some(10.0));
        // The client restarted at 2_500: its counter starts again from 0.
        assert_eq!(s.counter(2_500, 3_000, 4.0), Some(4.0));
        assert_eq!(s.counter(2_500, 4_000, 9.0), Some(5.0));
        // A late report of the old run does not disturb the new one.
        assert_eq!(s.counter(100, 2_200, 61.0), Some(1.0));
        assert_eq!(s.counter(2_500, 5_000, 10.0), Some(1.0));
    }

    #[test]
    fn a_value_drop_without_a_new_start_time_is_a_reset() {
        let mut s = Streams::default();
        assert_eq!(s.counter(100, 1_000, 50.0), Some(50.0));
        assert_eq!(s.counter(100, 2_000, 3.0), Some(3.0));
        assert_eq!(s.counter(100, 3_000, 7.0), Some(4.0));
        // A histogram bucket going down is a reset too, even if the count did not.
        let h = |count: f64, buckets: Vec<u64>| Totals {
            value: count,
            sum: count * 2.0,
            buckets,
        };
        let mut s = Streams::default();
        assert!(matches!(
            s.report(5, 10, h(4.0, vec![1, 3])),
            Step::Increase(_)
        ));
        assert_eq!(
            s.report(5, 20, h(6.0, vec![2, 4])),
            Step::Increase(Totals {
                value: 2.0,
                sum: 4.0,
                buckets: vec![1, 1]
            })
        );
        assert_eq!(
            s.report(5, 30, h(6.0, vec![6, 0])),
            Step::Increase(h(6.0, vec![6, 0]))
        );
    }

    #[test]
    fn resends_and_older_reports_add_nothing() {
        let mut s = Streams::default();
        assert_eq!(s.counter(100, 1_000, 5.0), Some(5.0));
        assert_eq!(s.report(100, 1_000, Totals::counter(5.0)), Step::Stale);
        assert_eq!(s.report(100, 900, Totals::counter(4.0)), Step::Stale);
        assert_eq!(s.counter(100, 2_000, 6.0), Some(1.0));
    }

    #[test]
    fn the_first_point_counts_only_when_its_start_is_known_and_recent_enough() {
        // No start time: nothing tells how much of the value is new.
        let mut s = Streams::default();
        assert_eq!(s.report(0, 1_000, Totals::counter(40.0)), Step::Baseline);
        assert_eq!(s.counter(0, 2_000, 45.0), Some(5.0));
        // A stream that started before the series' states were last pruned may have been
        // counted already: a baseline only. One that started since counts in full.
        let mut s = Streams {
            counted_from_ns: 10_000,
            ..Streams::default()
        };
        assert_eq!(
            s.report(9_000, 20_000, Totals::counter(40.0)),
            Step::Baseline
        );
        assert_eq!(s.counter(9_000, 30_000, 41.0), Some(1.0));
        assert_eq!(s.counter(10_000, 30_000, 7.0), Some(7.0));
    }

    fn totals(temporality: Temporality, totals: Totals, quantiles: Vec<(f64, f64)>) -> Data {
        Data::Totals {
            temporality,
            totals,
            min: None,
            max: None,
            quantiles,
        }
    }

    #[test]
    fn deltas_pass_through_and_gauges_are_values() {
        let delta = totals(Temporality::Delta, Totals::counter(4.0), Vec::new());
        // A delta needs no state, whatever came before.
        let old = StreamState {
            start_ns: 1,
            time_ns: 99,
            totals: Totals::counter(100.0),
        };
        assert_eq!(
            point(Kind::Counter, &delta, Some(&old), 1, 50, 0),
            (Some(Point::Increase(4.0)), None)
        );
        assert_eq!(
            point(Kind::Counter, &delta, None, 0, 50, 0).0,
            Some(Point::Increase(4.0))
        );
        // A delta of nothing stores nothing.
        let zero = totals(Temporality::Delta, Totals::counter(0.0), Vec::new());
        assert_eq!(point(Kind::Counter, &zero, None, 0, 50, 0), (None, None));
        let histogram = Data::Totals {
            temporality: Temporality::Delta,
            totals: Totals {
                value: 3.0,
                sum: 0.75,
                buckets: vec![2, 1, 0],
            },
            min: Some(0.1),
            max: Some(0.5),
            quantiles: Vec::new(),
        };
        assert_eq!(
            point(Kind::Histogram, &histogram, None, 0, 50, 0).0,
            Some(Point::Histogram(HistogramPoint {
                count: 3,
                sum: 0.75,
                min: Some(0.1),
                max: Some(0.5),
                buckets: vec![2, 1, 0],
            }))
        );
        assert_eq!(
            point(Kind::Gauge, &Data::Value(-2.5), None, 0, 50, 0),
            (Some(Point::Value { mean: -2.5, n: 1 }), None)
        );
    }

    #[test]
    fn cumulative_reports_store_their_increase_and_the_new_state() {
        let report = |v: f64| totals(Temporality::Cumulative, Totals::counter(v), Vec::new());
        let (first, state) = point(Kind::Counter, &report(10.0), None, 5, 100, 0);
        assert_eq!(first, Some(Point::Increase(10.0)));
        let state = state.unwrap();
        assert_eq!((state.start_ns, state.time_ns), (5, 100));
        let (second, state) = point(Kind::Counter, &report(10.0), Some(&state), 5, 200, 0);
        // Nothing added: no point, but the state moves on.
        assert_eq!(second, None);
        assert_eq!(state.unwrap().time_ns, 200);
        // A summary's baseline still keeps the quantiles it reported.
        let summary = totals(
            Temporality::Cumulative,
            Totals {
                value: 7.0,
                sum: 70.0,
                buckets: Vec::new(),
            },
            vec![(0.5, 9.0)],
        );
        assert_eq!(
            point(Kind::Summary, &summary, None, 0, 100, 0).0,
            Some(Point::Summary(SummaryPoint {
                count: 0,
                sum: 0.0,
                quantiles: vec![(0.5, 9.0)],
                n: 1,
            }))
        );
    }

    #[test]
    fn streams_are_told_apart_by_sender_and_start() {
        assert_ne!(stream_key(&[1; 32], 5), stream_key(&[1; 32], 6));
        assert_ne!(stream_key(&[1; 32], 5), stream_key(&[2; 32], 5));
        assert_eq!(stream_key(&[1; 32], 5), stream_key(&[1; 32], 5));
    }
}
