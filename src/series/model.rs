//! What a time series is: the kinds of metric (and the statistics each can answer), a series'
//! identity (product, metric name, sorted attributes, install, histogram bounds) and its stored
//! definition, the per-metric definition, and the stored point with how two points at the same
//! millisecond merge.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// The kind of a metric, fixed by its first point: every series of a metric has the same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = MetricKind)]
pub enum Kind {
    /// A monotonic sum: stored as increases per interval.
    Counter,
    /// A non-monotonic cumulative sum: stored as values, like a gauge.
    UpdownCounter,
    Gauge,
    /// Explicit-bucket histogram: count, sum, min/max, bucket counts (increases).
    Histogram,
    /// Count, sum, min and max (increases); its buckets are not kept.
    ExponentialHistogram,
    /// Count and sum (increases) and the quantiles as reported.
    Summary,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::UpdownCounter => "updown_counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::ExponentialHistogram => "exponential_histogram",
            Kind::Summary => "summary",
        }
    }

    /// The statistics a query may ask of this kind, the default first.
    pub fn stats(self) -> &'static [&'static str] {
        match self {
            Kind::Counter => &["increase", "rate"],
            Kind::UpdownCounter | Kind::Gauge => &["value"],
            Kind::Histogram => &[
                "increase", "rate", "sum", "avg", "min", "max", "p50", "p90", "p95", "p99",
            ],
            Kind::ExponentialHistogram => &["increase", "rate", "sum", "avg", "min", "max"],
            Kind::Summary => &["increase", "rate", "sum", "avg", "p50", "p90", "p95", "p99"],
        }
    }

    pub fn default_stat(self) -> &'static str {
        self.stats()[0]
    }

    /// Whether any `pNN` quantile (not only the listed ones) is answered.
    pub fn has_quantiles(self) -> bool {
        matches!(self, Kind::Histogram | Kind::Summary)
    }
}

/// One metric of one product: its kind, the latest unit and description, how many series it
/// has, the attribute keys its series carry, and when it was seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDef {
    pub product: String,
    pub name: String,
    pub kind: Kind,
    pub unit: String,
    pub description: String,
    pub series: u64,
    pub attribute_keys: BTreeSet<String>,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// What makes a series itself, besides its metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// Data point attributes (the install id attribute taken out), sorted by key.
    pub attributes: BTreeMap<String, String>,
    /// The install the series belongs to, when the product names an install id attribute.
    pub install: Option<String>,
    /// A histogram's explicit bounds (empty for other kinds): points with other bounds are
    /// another series, so a point's bucket counts always read against the bounds stored here.
    pub bounds: Vec<f64>,
}

impl Identity {
    /// The series' key in the store: `product \0 name \0 JSON`, so every series of a metric
    /// shares the prefix `product \0 name \0`.
    pub fn key(&self, product: &str, name: &str) -> Result<String, StoreError> {
        let rest = serde_json::to_string(self).map_err(|e| StoreError::Codec(e.to_string()))?;
        Ok(format!("{}{rest}", metric_prefix(product, name)))
    }
}

/// The key prefix shared by the series of one metric (and the key of its [`MetricDef`] once the
/// trailing separator is dropped).
pub fn metric_prefix(product: &str, name: &str) -> String {
    format!("{product}\u{0}{name}\u{0}")
}

/// The key of a metric's definition.
pub fn metric_key(product: &str, name: &str) -> String {
    format!("{product}\u{0}{name}")
}

/// A stored series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesDef {
    pub id: u64,
    pub product: String,
    pub name: String,
    #[serde(flatten)]
    pub identity: Identity,
    pub first_ms: i64,
    pub last_ms: i64,
    /// A cumulative stream seen for the first time counts its whole value only when it started
    /// at or after this instant (ns); earlier starts may have been counted under a stream state
    /// that has since been pruned. 0 until a state of this series is pruned.
    #[serde(default)]
    pub counted_from_ns: u64,
}

/// An explicit-bucket or exponential histogram's increase over one interval (or its sum at one
/// millisecond). `buckets` is empty for exponential histograms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramPoint {
    #[serde(rename = "c")]
    pub count: u64,
    #[serde(rename = "s")]
    pub sum: f64,
    #[serde(rename = "lo", default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(rename = "hi", default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(rename = "b", default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<u64>,
}

/// A summary's count and sum increase, and its quantiles as reported (the mean of `n` reports
/// when several landed on the same millisecond).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryPoint {
    #[serde(rename = "c")]
    pub count: u64,
    #[serde(rename = "s")]
    pub sum: f64,
    #[serde(rename = "q", default)]
    pub quantiles: Vec<(f64, f64)>,
    pub n: u32,
}

/// One stored point of a series, at one millisecond.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Point {
    /// A counter's increase since the series' previous point.
    #[serde(rename = "i")]
    Increase(f64),
    /// A gauge's (or up-down counter's) value: the mean of `n` points at this millisecond.
    #[serde(rename = "v")]
    Value { mean: f64, n: u32 },
    #[serde(rename = "h")]
    Histogram(HistogramPoint),
    #[serde(rename = "q")]
    Summary(SummaryPoint),
}

impl Point {
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self).map_err(|e| StoreError::Codec(e.to_string()))
    }

    pub fn decode(bytes: &[u8]) -> Result<Point, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Codec(e.to_string()))
    }

    /// Folds `other`, a point of the same series at the same millisecond (another client of a
    /// series without install id, or a resend), into this one: increases add up, values average.
    pub fn merge(&mut self, other: Point) {
        match (self, other) {
            (Point::Increase(a), Point::Increase(b)) => *a += b,
            (Point::Value { mean, n }, Point::Value { mean: m2, n: n2 }) => {
                let total = f64::from(*n) + f64::from(n2);
                *mean = (*mean * f64::from(*n) + m2 * f64::from(n2)) / total;
                *n = n.saturating_add(n2);
            }
            (Point::Histogram(a), Point::Histogram(b)) => {
                a.count += b.count;
                a.sum += b.sum;
                a.min = min_of(a.min, b.min);
                a.max = max_of(a.max, b.max);
                if a.buckets.len() == b.buckets.len() {
                    for (x, y) in a.buckets.iter_mut().zip(b.buckets) {
                        *x += y;
                    }
                }
            }
            (Point::Summary(a), Point::Summary(b)) => {
                a.count += b.count;
                a.sum += b.sum;
                let (wa, wb) = (f64::from(a.n), f64::from(b.n));
                for (q, v) in b.quantiles {
                    match a.quantiles.iter_mut().find(|(qa, _)| *qa == q) {
                        Some((_, va)) => *va = (*va * wa + v * wb) / (wa + wb),
                        None => a.quantiles.push((q, v)),
                    }
                }
                a.n = a.n.saturating_add(b.n);
            }
            // Kinds never mix within a series; keep what is stored.
            _ => {}
        }
    }
}

pub fn min_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

pub fn max_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(attrs: &[(&str, &str)], install: Option<&str>) -> Identity {
        Identity {
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            install: install.map(str::to_string),
            bounds: Vec::new(),
        }
    }

    #[test]
    fn identity_ignores_attribute_order_and_keeps_the_install_apart() {
        let a = identity(&[("surface", "cli"), ("event", "start")], None);
        let b = identity(&[("event", "start"), ("surface", "cli")], None);
        assert_eq!(a.key("p", "m").unwrap(), b.key("p", "m").unwrap());
        assert_eq!(
            a.key("p", "m").unwrap(),
            "p\u{0}m\u{0}{\"attributes\":{\"event\":\"start\",\"surface\":\"cli\"},\"install\":null,\"bounds\":[]}"
        );
        let other_value = identity(&[("event", "stop"), ("surface", "cli")], None);
        assert_ne!(a.key("p", "m").unwrap(), other_value.key("p", "m").unwrap());
        // An install is part of the identity, but not an attribute.
        let installed = identity(&[("event", "start"), ("surface", "cli")], Some("i-1"));
        assert_ne!(a.key("p", "m").unwrap(), installed.key("p", "m").unwrap());
        assert_eq!(installed.attributes, a.attributes);
        // Other bounds are another series.
        let mut bounded = a.clone();
        bounded.bounds = vec![0.1, 1.0];
        assert_ne!(a.key("p", "m").unwrap(), bounded.key("p", "m").unwrap());
        // Every series of a metric starts with its prefix; another metric's do not.
        assert!(a
            .key("p", "m")
            .unwrap()
            .starts_with(&metric_prefix("p", "m")));
        assert!(!a
            .key("p", "m2")
            .unwrap()
            .starts_with(&metric_prefix("p", "m")));
    }

    #[test]
    fn points_merge_by_kind() {
        let mut p = Point::Increase(2.0);
        p.merge(Point::Increase(3.5));
        assert_eq!(p, Point::Increase(5.5));

        let mut v = Point::Value { mean: 10.0, n: 1 };
        v.merge(Point::Value { mean: 16.0, n: 2 });
        assert_eq!(v, Point::Value { mean: 14.0, n: 3 });

        let mut h = Point::Histogram(HistogramPoint {
            count: 3,
            sum: 1.5,
            min: Some(0.2),
            max: Some(0.9),
            buckets: vec![1, 2, 0],
        });
        h.merge(Point::Histogram(HistogramPoint {
            count: 2,
            sum: 4.0,
            min: None,
            max: Some(3.0),
            buckets: vec![0, 1, 1],
        }));
        assert_eq!(
            h,
            Point::Histogram(HistogramPoint {
                count: 5,
                sum: 5.5,
                min: Some(0.2),
                max: Some(3.0),
                buckets: vec![1, 3, 1],
            })
        );

        let mut s = Point::Summary(SummaryPoint {
            count: 4,
            sum: 8.0,
            quantiles: vec![(0.5, 2.0)],
            n: 1,
        });
        s.merge(Point::Summary(SummaryPoint {
            count: 1,
            sum: 1.0,
            quantiles: vec![(0.5, 4.0), (0.99, 9.0)],
            n: 1,
        }));
        assert_eq!(
            s,
            Point::Summary(SummaryPoint {
                count: 5,
                sum: 9.0,
                quantiles: vec![(0.5, 3.0), (0.99, 9.0)],
                n: 2,
            })
        );
    }

    #[test]
    fn points_keep_their_stored_shape() {
        let h = Point::Histogram(HistogramPoint {
            count: 2,
            sum: 0.5,
            min: None,
            max: None,
            buckets: vec![1, 1],
        });
        let bytes = h.encode().unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"h":{"c":2,"s":0.5,"b":[1,1]}}"#
        );
        assert_eq!(Point::decode(&bytes).unwrap(), h);
        assert_eq!(
            Point::Increase(3.0).encode().unwrap(),
            br#"{"i":3.0}"#.to_vec()
        );
    }
}
