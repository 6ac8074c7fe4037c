//! OTLP metrics → samples: every data point of an `ExportMetricsServiceRequest` checked and
//! mapped onto its metric (name, kind, unit, description), its series identity (attributes,
//! install, bounds), its sender (resource and scope, for cumulative streams) and its data, or
//! refused with a reason. Nothing here touches the store.
//!
//! | OTLP | kind | data |
//! |---|---|---|
//! | Gauge | gauge | value |
//! | Sum, monotonic | counter | totals (delta or cumulative) |
//! | Sum, not monotonic, cumulative | updown_counter | value |
//! | Sum, not monotonic, delta | refused: its level cannot be known | |
//! | Histogram | histogram | count, sum, bucket counts (delta or cumulative), min, max |
//! | ExponentialHistogram | exponential_histogram | count, sum (delta or cumulative), min, max |
//! | Summary | summary | count, sum (cumulative), quantiles as reported |

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, HistogramDataPoint, Metric, NumberDataPoint,
    SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::ingest::decode::FieldValue;
use crate::ingest::pii::{PiiDetector, PiiKind};
use crate::otlp;
use crate::series::cumulative::Totals;
use crate::series::model::{Identity, Kind};

/// The fields every OTLP data point type has under the same names.
macro_rules! point_fields {
    ($p:expr) => {
        PointFields {
            attributes: &$p.attributes,
            start_ns: $p.start_time_unix_nano,
            time_ns: $p.time_unix_nano,
            flags: $p.flags,
        }
    };
}

/// Longest metric name (the OpenTelemetry instrument name limit).
pub const MAX_NAME_CHARS: usize = 255;
/// Longest attribute key or value kept in a series identity.
pub const MAX_ATTRIBUTE_CHARS: usize = 256;
/// Longest unit and description kept.
const MAX_UNIT_CHARS: usize = 63;
const MAX_DESCRIPTION_CHARS: usize = 1023;
/// OTLP's `DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK`: the point carries no value.
const NO_RECORDED_VALUE: u32 = 1;

/// A metric as a request describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricInfo {
    pub name: String,
    pub kind: Kind,
    pub unit: String,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    Delta,
    Cumulative,
}

/// What a data point reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// A gauge's or up-down counter's value.
    Value(f64),
    /// A counter's, histogram's or summary's totals: an increase (delta) or everything since
    /// the start time (cumulative). `min`, `max` and `quantiles` are kept as reported.
    Totals {
        temporality: Temporality,
        totals: Totals,
        min: Option<f64>,
        max: Option<f64>,
        quantiles: Vec<(f64, f64)>,
    },
}

/// One accepted data point, ready for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Index into [`Mapped::metrics`].
    pub metric: usize,
    pub identity: Identity,
    /// Hash of the sender's resource and scope (see `cumulative::stream_key`).
    pub sender: [u8; 32],
    pub start_ns: u64,
    pub time_ns: u64,
    pub time_ms: i64,
    pub data: Data,
}

/// Refused data points, counted by metric and reason, for the answer's `error_message`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rejections {
    count: u64,
    reasons: BTreeMap<(String, String), u64>,
}

impl Rejections {
    pub fn add(&mut self, metric: &str, reason: impl Into<String>, points: u64) {
        if points == 0 {
            return;
        }
        self.count += points;
        let metric: String = metric.chars().take(80).collect();
        *self.reasons.entry((metric, reason.into())).or_default() += points;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn extend(&mut self, other: Rejections) {
        self.count += other.count;
        for (key, n) in other.reasons {
            *self.reasons.entry(key).or_default() += n;
        }
    }

    /// `N data points rejected: metric `a`: reason (n); ...`, the most frequent reasons first,
    /// at most five of them. Empty when nothing was rejected.
    pub fn message(&self) -> String {
        if self.count == 0 {
            return String::new();
        }
        let mut reasons: Vec<(&(String, String), &u64)> = self.reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut out = format!(
            "{} data point{} rejected: ",
            self.count,
            if self.count == 1 { "" } else { "s" }
        );
        for (i, ((metric, reason), n)) in reasons.iter().take(5).enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            let metric = if metric.is_empty() {
                "(no name)"
            } else {
                metric
            };
            let _ = write!(out, "metric `{metric}`: {reason} ({n})");
        }
        if reasons.len() > 5 {
            let _ = write!(out, "; and {} more reasons", reasons.len() - 5);
        }
        out
    }
}

/// How one product's points are checked.
pub struct Rules<'a> {
    /// The resource or point attribute carrying the install id (`[products.otlp]`).
    pub install_attribute: Option<&'a str>,
    /// Points before this are past the product's retention.
    pub oldest_ms: i64,
    pub retention_days: u32,
    /// Points after this are too far in the future.
    pub newest_ms: i64,
    pub pii: &'a PiiDetector,
}

/// A request's samples and refusals. Points with no recorded value are neither.
#[derive(Debug, Default)]
pub struct Mapped {
    pub metrics: Vec<MetricInfo>,
    pub samples: Vec<Sample>,
    pub rejected: Rejections,
    /// Points flagged "no recorded value": accepted, nothing to store.
    pub empty: u64,
}

/// Data points in a request (a metric of unknown type counts as one), to refuse an oversized
/// request before any work.
pub fn count_points(request: &ExportMetricsServiceRequest) -> usize {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(points_in)
        .sum()
}

/// Data points of one metric (one for a metric of unknown type).
fn points_in(metric: &Metric) -> usize {
    match &metric.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 1,
    }
}

/// The first `service.name` of the request's resources (it may select the product).
pub fn service_name(request: &ExportMetricsServiceRequest) -> Option<&str> {
    request.resource_metrics.iter().find_map(|r| {
        let resource = r.resource.as_ref()?;
        otlp::string_attribute(&resource.attributes, "service.name")
    })
}

/// Maps every data point of `request` under `rules`.
pub fn map_request(request: &ExportMetricsServiceRequest, rules: &Rules) -> Mapped {
    let mut mapper = Mapper {
        rules,
        out: Mapped::default(),
        pii_seen: HashMap::new(),
    };
    for resource_metrics in &request.resource_metrics {
        let resource = resource_metrics.resource.clone().unwrap_or_default();
        let resource_problem = otlp::attributes(resource.attributes.clone())
            .err()
            .map(|e| format!("resource attributes: {e}"));
        let resource_install = rules
            .install_attribute
            .and_then(|attr| otlp::string_attribute(&resource.attributes, attr))
            .map(str::to_string);
        for scope_metrics in &resource_metrics.scope_metrics {
            let sender = sender_hash(&resource, scope_metrics.scope.as_ref());
            for metric in &scope_metrics.metrics {
                let context = Context {
                    sender,
                    install: resource_install.as_deref(),
                };
                mapper.metric(metric, &context, resource_problem.as_deref());
            }
        }
    }
    mapper.out
}

fn sender_hash(resource: &Resource, scope: Option<&InstrumentationScope>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(resource.encode_to_vec());
    if let Some(scope) = scope {
        hasher.update(scope.name.as_bytes());
        hasher.update([0]);
        hasher.update(scope.version.as_bytes());
    }
    hasher.finalize().into()
}

struct Context<'a> {
    sender: [u8; 32],
    install: Option<&'a str>,
}

/// One data point's common fields, whatever its type.
struct PointFields<'a> {
    attributes: &'a [KeyValue],
    start_ns: u64,
    time_ns: u64,
    flags: u32,
}

struct Mapper<'a> {
    rules: &'a Rules<'a>,
    out: Mapped,
    /// PII found per attribute value, so repeated values are checked once per request.
    pii_seen: HashMap<String, Option<PiiKind>>,
}

impl Mapper<'_> {
    fn metric(&mut self, metric: &Metric, context: &Context, resource_problem: Option<&str>) {
        let name = metric.name.as_str();
        let points = points_in(metric) as u64;
        if let Some(problem) = resource_problem {
            self.out.rejected.add(name, problem, points);
            return;
        }
        if let Err(reason) = check_name(name) {
            self.out.rejected.add(name, reason, points);
            return;
        }
        let Some(data) = &metric.data else {
            self.out.rejected.add(name, "unknown metric type", points);
            return;
        };
        let kind = match data {
            metric::Data::Gauge(_) => Kind::Gauge,
            metric::Data::Sum(s) if s.is_monotonic => Kind::Counter,
            metric::Data::Sum(s)
                if s.aggregation_temporality == AggregationTemporality::Cumulative as i32 =>
            {
                Kind::UpdownCounter
            }
            metric::Data::Sum(_) => {
                let reason = if temporality(sum_temporality(data)).is_none() {
                    "aggregation temporality unspecified"
                } else {
                    "a non-monotonic sum with delta temporality is not supported (its level cannot be known)"
                };
                self.out.rejected.add(name, reason, points);
                return;
            }
            metric::Data::Histogram(_) => Kind::Histogram,
            metric::Data::ExponentialHistogram(_) => Kind::ExponentialHistogram,
            metric::Data::Summary(_) => Kind::Summary,
        };
        let temporality = match data {
            metric::Data::Gauge(_) | metric::Data::Summary(_) => Some(Temporality::Cumulative),
            other => temporality(sum_temporality(other)),
        };
        let Some(temporality) = temporality else {
            self.out
                .rejected
                .add(name, "aggregation temporality unspecified", points);
            return;
        };
        let index = self.out.metrics.len();
        self.out.metrics.push(MetricInfo {
            name: name.to_string(),
            kind,
            unit: metric.unit.chars().take(MAX_UNIT_CHARS).collect(),
            description: metric
                .description
                .chars()
                .take(MAX_DESCRIPTION_CHARS)
                .collect(),
        });
        match data {
            metric::Data::Gauge(g) => {
                for p in &g.data_points {
                    self.point(
                        index,
                        name,
                        context,
                        point_fields!(p),
                        number(p).map(Data::Value),
                        &[],
                    );
                }
            }
            metric::Data::Sum(s) => {
                for p in &s.data_points {
                    let data = number(p).and_then(|v| match kind {
                        Kind::Counter => counter(v, temporality),
                        _ => Ok(Data::Value(v)),
                    });
                    self.point(index, name, context, point_fields!(p), data, &[]);
                }
            }
            metric::Data::Histogram(h) => {
                for p in &h.data_points {
                    let fields = point_fields!(p);
                    let data = histogram(p, temporality);
                    self.point(index, name, context, fields, data, &p.explicit_bounds);
                }
            }
            metric::Data::ExponentialHistogram(h) => {
                for p in &h.data_points {
                    let fields = point_fields!(p);
                    let data = count_sum(p.count, p.sum, p.min, p.max, temporality);
                    self.point(index, name, context, fields, data, &[]);
                }
            }
            metric::Data::Summary(s) => {
                for p in &s.data_points {
                    let fields = point_fields!(p);
                    self.point(index, name, context, fields, summary(p), &[]);
                }
            }
        }
    }

    fn point(
        &mut self,
        metric: usize,
        name: &str,
        context: &Context,
        fields: PointFields,
        data: Result<Data, String>,
        bounds: &[f64],
    ) {
        if fields.flags & NO_RECORDED_VALUE != 0 {
            self.out.empty += 1;
            return;
        }
        let checked = self
            .identity(context, fields.attributes, bounds)
            .and_then(|identity| {
                let time_ms = self.time(fields.time_ns)?;
                Ok((identity, time_ms, data?))
            });
        match checked {
            Ok((identity, time_ms, data)) => self.out.samples.push(Sample {
                metric,
                identity,
                sender: context.sender,
                start_ns: fields.start_ns,
                time_ns: fields.time_ns,
                time_ms,
                data,
            }),
            Err(reason) => self.out.rejected.add(name, reason, 1),
        }
    }

    fn time(&self, time_ns: u64) -> Result<i64, String> {
        let time_ms = otlp::millis(time_ns).ok_or("the point has no time_unix_nano")?;
        if time_ms < self.rules.oldest_ms {
            return Err(format!(
                "older than the product's retention of {} days",
                self.rules.retention_days
            ));
        }
        if time_ms > self.rules.newest_ms {
            return Err("time_unix_nano is more than an hour in the future".into());
        }
        Ok(time_ms)
    }

    /// The series identity of a point: its scalar attributes as text (the install id
    /// attribute taken out), checked for size and PII.
    fn identity(
        &mut self,
        context: &Context,
        attributes: &[KeyValue],
        bounds: &[f64],
    ) -> Result<Identity, String> {
        let list = otlp::attributes(attributes.to_vec()).map_err(|e| e.to_string())?;
        let mut map = BTreeMap::new();
        for (key, value) in list {
            let text = match value {
                FieldValue::Null => continue,
                FieldValue::List(_) | FieldValue::Object(_) => {
                    return Err(format!(
                        "attribute `{}` is {}: series attributes are strings, numbers or booleans",
                        clip(&key),
                        value.kind()
                    ))
                }
                scalar => scalar.into_text().unwrap_or_default(),
            };
            if key.chars().count() > MAX_ATTRIBUTE_CHARS
                || text.chars().count() > MAX_ATTRIBUTE_CHARS
            {
                return Err(format!(
                    "attribute `{}` is longer than {MAX_ATTRIBUTE_CHARS} characters",
                    clip(&key)
                ));
            }
            map.insert(key, text);
        }
        let install = match self.rules.install_attribute {
            Some(attr) => map
                .remove(attr)
                .or_else(|| context.install.map(str::to_string)),
            None => None,
        };
        for (key, value) in &map {
            if let Some(kind) = self.pii(value) {
                return Err(format!(
                    "attribute `{}` carries PII ({})",
                    clip(key),
                    kind.as_str()
                ));
            }
        }
        if let Some(kind) = install.as_deref().and_then(|i| self.pii(i)) {
            return Err(format!("the install id carries PII ({})", kind.as_str()));
        }
        if !bounds.is_empty() && bounds.iter().any(|b| !b.is_finite()) {
            return Err("explicit_bounds must be finite".into());
        }
        Ok(Identity {
            attributes: map,
            install,
            bounds: bounds.to_vec(),
        })
    }

    fn pii(&mut self, value: &str) -> Option<PiiKind> {
        if let Some(found) = self.pii_seen.get(value) {
            return *found;
        }
        let found = self.rules.pii.detect(value);
        self.pii_seen.insert(value.to_string(), found);
        found
    }
}

fn sum_temporality(data: &metric::Data) -> i32 {
    match data {
        metric::Data::Sum(s) => s.aggregation_temporality,
        metric::Data::Histogram(h) => h.aggregation_temporality,
        metric::Data::ExponentialHistogram(h) => h.aggregation_temporality,
        metric::Data::Gauge(_) | metric::Data::Summary(_) => {
            AggregationTemporality::Cumulative as i32
        }
    }
}

fn temporality(value: i32) -> Option<Temporality> {
    match AggregationTemporality::try_from(value).ok()? {
        AggregationTemporality::Delta => Some(Temporality::Delta),
        AggregationTemporality::Cumulative => Some(Temporality::Cumulative),
        AggregationTemporality::Unspecified => None,
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the metric has no name".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "the metric name is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':'))
    {
        return Err(
            "invalid metric name: use letters, digits and _ . - / : (OpenTelemetry instrument names)"
                .into(),
        );
    }
    Ok(())
}

fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

fn number(p: &NumberDataPoint) -> Result<f64, String> {
    let value = match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => return Err("the point has no value".into()),
    };
    finite(value, "value")
}

fn finite(value: f64, what: &str) -> Result<f64, String> {
    if value.is_nan() {
        Err(format!("{what} is NaN"))
    } else if value.is_infinite() {
        Err(format!("{what} is infinite"))
    } else {
        Ok(value)
    }
}

fn counter(value: f64, temporality: Temporality) -> Result<Data, String> {
    if value < 0.0 {
        return Err("a monotonic sum cannot be negative".into());
    }
    Ok(Data::Totals {
        temporality,
        totals: Totals::counter(value),
        min: None,
        max: None,
        quantiles: Vec::new(),
    })
}

fn histogram(p: &HistogramDataPoint, temporality: Temporality) -> Result<Data, String> {
    let bounds = &p.explicit_bounds;
    if !(p.bucket_counts.is_empty() || p.bucket_counts.len() == bounds.len() + 1) {
        return Err(format!(
            "{} bucket counts for {} explicit bounds (expected {})",
            p.bucket_counts.len(),
            bounds.len(),
            bounds.len() + 1
        ));
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err("explicit_bounds are not strictly increasing".into());
    }
    if !p.bucket_counts.is_empty() {
        let total: u128 = p.bucket_counts.iter().map(|c| u128::from(*c)).sum();
        if total != u128::from(p.count) {
            return Err(format!(
                "the bucket counts add up to {total}, the count is {}",
                p.count
            ));
        }
    }
    Ok(Data::Totals {
        temporality,
        totals: Totals {
            value: p.count as f64,
            sum: checked_opt(p.sum, "sum")?.unwrap_or(0.0),
            buckets: p.bucket_counts.clone(),
        },
        min: checked_opt(p.min, "min")?,
        max: checked_opt(p.max, "max")?,
        quantiles: Vec::new(),
    })
}

fn checked_opt(value: Option<f64>, what: &str) -> Result<Option<f64>, String> {
    value.map(|v| finite(v, what)).transpose()
}

fn count_sum(
    count: u64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    temporality: Temporality,
) -> Result<Data, String> {
    Ok(Data::Totals {
        temporality,
        totals: Totals {
            value: count as f64,
            sum: checked_opt(sum, "sum")?.unwrap_or(0.0),
            buckets: Vec::new(),
        },
        min: checked_opt(min, "min")?,
        max: checked_opt(max, "max")?,
        quantiles: Vec::new(),
    })
}

fn summary(p: &SummaryDataPoint) -> Result<Data, String> {
    let mut quantiles = Vec::with_capacity(p.quantile_values.len());
    for q in &p.quantile_values {
        if !(0.0..=1.0).contains(&q.quantile) {
            return Err(format!("quantile {} is outside [0, 1]", q.quantile));
        }
        quantiles.push((q.quantile, finite(q.value, "a quantile value")?));
    }
    Ok(Data::Totals {
        temporality: Temporality::Cumulative,
        totals: Totals {
            value: p.count as f64,
            sum: finite(p.sum, "sum")?,
            buckets: Vec::new(),
        },
        min: None,
        max: None,
        quantiles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Histogram, ResourceMetrics, ScopeMetrics, Sum, Summary,
    };

    const T: u64 = 1_700_000_000_000_000_000;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..KeyValue::default()
        }
    }

    fn number(attrs: Vec<KeyValue>, value: f64) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            start_time_unix_nano: T - 1_000_000_000,
            time_unix_nano: T,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..NumberDataPoint::default()
        }
    }

    fn metric(name: &str, data: metric::Data) -> Metric {
        Metric {
            name: name.into(),
            unit: "1".into(),
            description: "what it counts".into(),
            data: Some(data),
            ..Metric::default()
        }
    }

    fn request(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: resource,
                    ..Resource::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        }
    }

    fn sum(
        monotonic: bool,
        temporality: AggregationTemporality,
        points: Vec<NumberDataPoint>,
    ) -> metric::Data {
        metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: monotonic,
        })
    }

    fn map(request: &ExportMetricsServiceRequest, install: Option<&str>) -> Mapped {
        let pii = PiiDetector::all();
        let t_ms = (T / 1_000_000) as i64;
        map_request(
            request,
            &Rules {
                install_attribute: install,
                oldest_ms: t_ms - 1_000,
                retention_days: 30,
                newest_ms: t_ms + 1_000,
                pii: &pii,
            },
        )
    }

    #[test]
    fn each_otlp_kind_becomes_its_series_kind() {
        let hist = HistogramDataPoint {
            time_unix_nano: T,
            count: 3,
            sum: Some(1.5),
            bucket_counts: vec![1, 2, 0],
            explicit_bounds: vec![0.5, 1.0],
            ..HistogramDataPoint::default()
        };
        let request = request(
            vec![kv("service.name", "atlas")],
            vec![
                metric(
                    "requests",
                    sum(
                        true,
                        AggregationTemporality::Cumulative,
                        vec![number(vec![kv("surface", "cli")], 5.0)],
                    ),
                ),
                metric(
                    "queue",
                    sum(
                        false,
                        AggregationTemporality::Cumulative,
                        vec![number(vec![], 3.0)],
                    ),
                ),
                metric(
                    "memory",
                    metric::Data::Gauge(Gauge {
                        data_points: vec![number(vec![], 12.5)],
                    }),
                ),
                metric(
                    "latency",
                    metric::Data::Histogram(Histogram {
                        data_points: vec![hist],
                        aggregation_temporality: AggregationTemporality::Delta as i32,
                    }),
                ),
                metric(
                    "rpc",
                    metric::Data::Summary(Summary {
                        data_points: vec![SummaryDataPoint {
                            time_unix_nano: T,
                            count: 4,
                            sum: 2.0,
                            ..SummaryDataPoint::default()
                        }],
                    }),
                ),
            ],
        );
        assert_eq!(service_name(&request), Some("atlas"));
        assert_eq!(count_points(&request), 5);
        let mapped = map(&request, None);
        assert_eq!(mapped.rejected.count(), 0, "{}", mapped.rejected.message());
        let kinds: Vec<Kind> = mapped.metrics.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Counter,
                Kind::UpdownCounter,
                Kind::Gauge,
                Kind::Histogram,
                Kind::Summary
            ]
        );
        assert_eq!(mapped.metrics[0].unit, "1");
        let s = &mapped.samples;
        assert_eq!(
            s[0].identity.attributes.get("surface").map(String::as_str),
            Some("cli")
        );
        assert_eq!(s[0].time_ms, (T / 1_000_000) as i64);
        assert_eq!(s[0].start_ns, T - 1_000_000_000);
        assert!(matches!(
            &s[0].data,
            Data::Totals { temporality: Temporality::Cumulative, totals, .. } if totals.value == 5.0
        ));
        assert_eq!(s[1].data, Data::Value(3.0));
        assert_eq!(s[2].data, Data::Value(12.5));
        assert_eq!(s[3].identity.bounds, vec![0.5, 1.0]);
        assert!(matches!(
            &s[3].data,
            Data::Totals { temporality: Temporality::Delta, totals, .. }
                if totals.buckets == vec![1, 2, 0] && totals.sum == 1.5
        ));
        // Points of one sender share its hash.
        assert!(s.iter().all(|x| x.sender == s[0].sender));
    }

    #[test]
    fn bad_points_are_rejected_with_their_reason() {
        let many: Vec<KeyValue> = (0..=otlp::MAX_ATTRIBUTES)
            .map(|i| kv(&format!("k{i}"), "v"))
            .collect();
        let mut deep = AnyValue {
            value: Some(any_value::Value::StringValue("x".into())),
        };
        for _ in 0..otlp::MAX_ATTRIBUTE_DEPTH {
            deep = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![deep],
                })),
            };
        }
        let deep = KeyValue {
            key: "nested".into(),
            value: Some(deep),
            ..KeyValue::default()
        };
        let mut late = number(vec![], 1.0);
        late.time_unix_nano = T - 10_000_000_000;
        let request = request(
            vec![],
            vec![
                metric(
                    "a",
                    sum(
                        true,
                        AggregationTemporality::Cumulative,
                        vec![number(vec![], f64::NAN)],
                    ),
                ),
                metric(
                    "b",
                    sum(true, AggregationTemporality::Delta, vec![number(many, 1.0)]),
                ),
                metric(
                    "c",
                    sum(
                        true,
                        AggregationTemporality::Delta,
                        vec![number(vec![deep], 1.0)],
                    ),
                ),
                metric(
                    "d",
                    sum(
                        false,
                        AggregationTemporality::Delta,
                        vec![number(vec![], 1.0), number(vec![], 2.0)],
                    ),
                ),
                metric(
                    "e",
                    sum(
                        true,
                        AggregationTemporality::Unspecified,
                        vec![number(vec![], 1.0)],
                    ),
                ),
                Metric {
                    name: "f".into(),
                    ..Metric::default()
                },
                metric(
                    "g",
                    sum(
                        true,
                        AggregationTemporality::Delta,
                        vec![number(vec![], -1.0)],
                    ),
                ),
                metric("h", sum(true, AggregationTemporality::Delta, vec![late])),
                metric(
                    "bad name!",
                    sum(
                        true,
                        AggregationTemporality::Delta,
                        vec![number(vec![], 1.0)],
                    ),
                ),
                metric(
                    "j",
                    sum(
                        true,
                        AggregationTemporality::Delta,
                        vec![number(vec![kv("who", "jane.doe@example.com")], 1.0)],
                    ),
                ),
                metric(
                    "ok",
                    sum(
                        true,
                        AggregationTemporality::Delta,
                        vec![number(vec![], 1.0)],
                    ),
                ),
            ],
        );
        let mapped = map(&request, None);
        assert_eq!(mapped.samples.len(), 1);
        assert_eq!(mapped.rejected.count(), 11);
        let message = mapped.rejected.message();
        assert!(message.starts_with("11 data points rejected: metric `d`: a non-monotonic sum with delta temporality is not supported"), "{message}");
        for reason in [
            "metric `a`: value is NaN (1)",
            "metric `b`: 129 attributes; the limit is 128 (1)",
            "metric `c`: attribute `nested` nests deeper than 8 levels (1)",
        ] {
            assert!(message.contains(reason), "{reason} in {message}");
        }
        assert!(message.ends_with("; and 5 more reasons"), "{message}");
        let reasons: Vec<String> = mapped
            .rejected
            .reasons
            .keys()
            .map(|(m, r)| format!("{m}: {r}"))
            .collect();
        for reason in [
            "e: aggregation temporality unspecified",
            "f: unknown metric type",
            "g: a monotonic sum cannot be negative",
            "h: older than the product's retention of 30 days",
            "j: attribute `who` carries PII (email)",
        ] {
            assert!(
                reasons.iter().any(|r| r == reason),
                "{reason} in {reasons:?}"
            );
        }
        assert!(reasons
            .iter()
            .any(|r| r.starts_with("bad name!: invalid metric name")));
    }

    #[test]
    fn the_install_id_comes_from_a_point_or_the_resource_and_leaves_the_attributes() {
        let request = request(
            vec![kv("app.install_id", "res-install")],
            vec![metric(
                "m",
                sum(
                    true,
                    AggregationTemporality::Delta,
                    vec![
                        number(vec![kv("surface", "cli")], 1.0),
                        number(
                            vec![kv("surface", "cli"), kv("app.install_id", "point-install")],
                            1.0,
                        ),
                    ],
                ),
            )],
        );
        let mapped = map(&request, Some("app.install_id"));
        let installs: Vec<Option<&str>> = mapped
            .samples
            .iter()
            .map(|s| s.identity.install.as_deref())
            .collect();
        assert_eq!(installs, vec![Some("res-install"), Some("point-install")]);
        assert!(mapped
            .samples
            .iter()
            .all(|s| s.identity.attributes.len() == 1));
        // Without the setting, the attribute is an attribute like any other.
        let mapped = map(&request, None);
        assert_eq!(mapped.samples[0].identity.install, None);
        assert_eq!(mapped.samples[1].identity.attributes.len(), 2);
    }

    #[test]
    fn points_without_a_recorded_value_are_skipped() {
        let mut empty = number(vec![], 0.0);
        empty.flags = NO_RECORDED_VALUE;
        let request = request(
            vec![],
            vec![metric(
                "m",
                sum(true, AggregationTemporality::Cumulative, vec![empty]),
            )],
        );
        let mapped = map(&request, None);
        assert_eq!(
            (mapped.samples.len(), mapped.empty, mapped.rejected.count()),
            (0, 1, 0)
        );
    }
}
