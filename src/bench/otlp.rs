//! The OTLP traffic of `telemetryd bench --mode otlp-traces|otlp-metrics`: export requests shaped
//! like the voice SDK's (`getpatter.call` traces with `stt`/`llm`/`tts`/`tool` children, call and
//! latency metrics), and how an export answer counts what was refused.
//!
//! Each request comes from one SDK process: one resource (`service.name`, `service.version`,
//! `telemetry.sdk.language` and the install id under [`INSTALL_ATTRIBUTE`]) with one scope.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::{Event, SpanKind},
    status::StatusCode,
    ResourceSpans, ScopeSpans, Span, Status,
};

use crate::otlp::{self, Encoding};

/// The resource attribute that carries the install id (the product's
/// `[products.otlp] install_id_attribute`).
pub const INSTALL_ATTRIBUTE: &str = "patter.install_id";
/// `service.name` of the generated resources.
pub const SERVICE_NAME: &str = "getpatter";
/// Seconds between two collections of the same metric series.
const COLLECTION_INTERVAL_NS: u64 = 10_000_000_000;
/// The histogram's explicit bucket bounds (ms) and the share of observations in each of the
/// `bounds + 1` buckets (percent).
const TTFT_BOUNDS_MS: [f64; 9] = [
    50.0, 100.0, 200.0, 300.0, 500.0, 750.0, 1000.0, 2000.0, 5000.0,
];
const TTFT_SHARES: [u64; 10] = [2, 8, 20, 25, 20, 12, 7, 4, 1, 1];

/// What the generators need besides the size of a request.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Percentage of spans that fail (error status and an `exception` event).
    pub error_percent: f64,
    /// Distinct installs the requests come from.
    pub installs: u32,
    /// Start of the cumulative metric series, in ns since the epoch (before the run starts).
    pub series_start_ns: u64,
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn s(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn i(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

/// A double, rounded to 6 decimals as an SDK would report it (which also makes the JSON text
/// read back to the same double).
fn d(key: &str, value: f64) -> KeyValue {
    kv(
        key,
        any_value::Value::DoubleValue((value * 1e6).round() / 1e6),
    )
}

fn b(key: &str, value: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(value))
}

fn pick<'a>(rng: &mut fastrand::Rng, items: &[&'a str]) -> &'a str {
    items[rng.usize(..items.len())]
}

/// Milliseconds with one decimal, as SDKs measure latencies.
fn ms(rng: &mut fastrand::Rng, low: u32, high: u32) -> f64 {
    f64::from(rng.u32(low * 10..high * 10)) / 10.0
}

/// The resource of one SDK process: its service, version, language and install.
fn resource(rng: &mut fastrand::Rng, installs: u32) -> Resource {
    Resource {
        attributes: vec![
            s("service.name", SERVICE_NAME),
            s(
                "service.version",
                pick(rng, &["0.6.2", "0.7.0", "0.7.1", "0.8.0-beta.1"]),
            ),
            s(
                "telemetry.sdk.language",
                pick(rng, &["python", "python", "nodejs"]),
            ),
            s("telemetry.sdk.name", "opentelemetry"),
            s("os.type", pick(rng, &["linux", "darwin", "windows"])),
            s(INSTALL_ATTRIBUTE, super::install_id(rng, installs)),
        ],
        ..Resource::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "getpatter".into(),
        version: "0.8.0".into(),
        ..InstrumentationScope::default()
    }
}

/// A random, valid (non-zero) 16-byte trace id.
fn trace_id(rng: &mut fastrand::Rng) -> Vec<u8> {
    rng.u128(1..).to_be_bytes().to_vec()
}

/// A random, valid (non-zero) 8-byte span id.
fn span_id(rng: &mut fastrand::Rng) -> Vec<u8> {
    rng.u64(1..).to_be_bytes().to_vec()
}

/// The stages of a voice call, each a child span of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Stt,
    Llm,
    Tool,
    Tts,
}

/// One call's trace: what its spans share.
struct Call {
    trace_id: Vec<u8>,
    root_id: Vec<u8>,
    call_id: String,
    stt_provider: &'static str,
    llm_provider: &'static str,
    llm_model: &'static str,
    tts_provider: &'static str,
}

impl Call {
    fn new(rng: &mut fastrand::Rng) -> Call {
        let (llm_provider, llm_model) = match rng.u8(..4) {
            0 => ("openai", "gpt-4o-mini"),
            1 => ("openai", "gpt-4.1"),
            2 => ("anthropic", "claude-haiku-4.5"),
            _ => ("cerebras", "llama-3.3-70b"),
        };
        Call {
            trace_id: trace_id(rng),
            root_id: span_id(rng),
            call_id: uuid::Builder::from_random_bytes(rng.u128(..).to_be_bytes())
                .into_uuid()
                .to_string(),
            stt_provider: pick(rng, &["deepgram", "whisper", "openai"]),
            llm_provider,
            llm_model,
            tts_provider: pick(rng, &["elevenlabs", "cartesia", "openai"]),
        }
    }

    fn span(&self, rng: &mut fastrand::Rng, name: &str, parent: &[u8], start: u64) -> Span {
        Span {
            trace_id: self.trace_id.clone(),
            span_id: span_id(rng),
            parent_span_id: parent.to_vec(),
            flags: 0x101, // sampled, parent known to be local
            name: name.to_string(),
            start_time_unix_nano: start,
            ..Span::default()
        }
    }

    /// One stage of turn `turn`, starting at `start` (ns); its end is the span's end.
    fn stage(&self, rng: &mut fastrand::Rng, stage: Stage, turn: i64, start: u64) -> Span {
        let call_id = s("getpatter.call.id", self.call_id.as_str());
        let turn_index = i("getpatter.turn.index", turn);
        let (name, kind, duration_ms, attributes) = match stage {
            Stage::Stt => {
                let ttfb = ms(rng, 40, 400);
                let audio_ms = rng.i64(400..8_000);
                let attributes = vec![
                    call_id,
                    turn_index,
                    s("getpatter.stt.provider", self.stt_provider),
                    s(
                        "getpatter.stt.model",
                        pick(rng, &["nova-3", "whisper-1", "gpt-4o-transcribe"]),
                    ),
                    i("getpatter.stt.audio_ms", audio_ms),
                    i("getpatter.stt.words", rng.i64(1..60)),
                    d("getpatter.stt.confidence", 0.6 + rng.f64() * 0.4),
                    d("patter.latency.ttfb_ms", ttfb),
                    b("getpatter.stt.final", rng.u8(..10) > 0),
                    s(
                        "getpatter.language",
                        pick(rng, &["en", "en", "de", "es", "fr"]),
                    ),
                ];
                (
                    "getpatter.stt",
                    SpanKind::Client,
                    ttfb + ms(rng, 20, 300),
                    attributes,
                )
            }
            Stage::Llm => {
                let ttft = rng.i64(80..1_500);
                let output_tokens = rng.i64(5..400);
                let attributes = vec![
                    call_id,
                    turn_index,
                    s("getpatter.llm.provider", self.llm_provider),
                    s("getpatter.llm.model", self.llm_model),
                    i("getpatter.llm.ttft_ms", ttft),
                    i("getpatter.llm.input_tokens", rng.i64(200..6_000)),
                    i("getpatter.llm.output_tokens", output_tokens),
                    d("patter.cost.llm_usd", output_tokens as f64 * 0.000_002),
                    b("getpatter.streaming", true),
                    d("patter.latency.ttfb_ms", ttft as f64 + ms(rng, 0, 20)),
                ];
                let duration = ttft as f64 + output_tokens as f64 * ms(rng, 5, 30);
                ("getpatter.llm", SpanKind::Client, duration, attributes)
            }
            Stage::Tool => {
                let took = ms(rng, 5, 2_000);
                let attributes = vec![
                    call_id,
                    turn_index,
                    s(
                        "getpatter.tool.name",
                        pick(
                            rng,
                            &["transfer_call", "lookup_order", "book_slot", "end_call"],
                        ),
                    ),
                    b("getpatter.tool.builtin", rng.bool()),
                    i("getpatter.tool.timeout_ms", 5_000),
                    i("getpatter.tool.attempt", 1 + i64::from(rng.u8(..10) == 0)),
                    s("getpatter.tool.status", "ok"),
                    d("patter.latency.tool_ms", took),
                    i("getpatter.tool.result_bytes", rng.i64(20..4_000)),
                    b("getpatter.tool.async", false),
                ];
                ("getpatter.tool", SpanKind::Internal, took, attributes)
            }
            Stage::Tts => {
                let chars = rng.i64(10..600);
                let ttfb = ms(rng, 60, 500);
                let attributes = vec![
                    call_id,
                    turn_index,
                    s("getpatter.tts.provider", self.tts_provider),
                    s(
                        "getpatter.tts.model",
                        pick(rng, &["eleven-flash-v2.5", "sonic-2", "gpt-4o-mini-tts"]),
                    ),
                    s(
                        "getpatter.tts.voice",
                        pick(rng, &["rachel", "adam", "alloy", "aria"]),
                    ),
                    i("patter.cost.tts_chars", chars),
                    d("patter.latency.ttfb_ms", ttfb),
                    i("getpatter.tts.audio_ms", chars * 60),
                    b("getpatter.streaming", true),
                    d("patter.cost.tts_usd", chars as f64 * 0.000_03),
                ];
                (
                    "getpatter.tts",
                    SpanKind::Client,
                    ttfb + chars as f64 * 2.0,
                    attributes,
                )
            }
        };
        let mut span = self.span(rng, name, &self.root_id, start);
        span.kind = kind as i32;
        span.end_time_unix_nano = start + (duration_ms * 1e6) as u64;
        span.attributes = attributes;
        span
    }
}

/// Marks a span failed the way the SDK does: error status and an `exception` event.
fn fail(rng: &mut fastrand::Rng, span: &mut Span) {
    let (kind, message) = match rng.u8(..4) {
        0 => ("TimeoutError", "provider did not answer within 10000 ms"),
        1 => ("ConnectionResetError", "connection reset by peer"),
        2 => ("RateLimitError", "provider rate limit reached, retry later"),
        _ => ("ProviderError", "upstream returned status 503"),
    };
    let stage = span.name.trim_start_matches("getpatter.");
    let stack = format!(
        "Traceback (most recent call last):\n  File \"getpatter/{stage}.py\", line {}, in run\n    \
         await self._stream()\n{kind}: {message}",
        rng.u32(40..600)
    );
    span.status = Some(Status {
        code: StatusCode::Error as i32,
        message: message.to_string(),
    });
    span.events.push(Event {
        time_unix_nano: span.end_time_unix_nano,
        name: "exception".into(),
        attributes: vec![
            s("exception.type", kind),
            s("exception.message", message),
            s("exception.stacktrace", stack),
        ],
        ..Event::default()
    });
}

/// One call with `children` stage spans (turns of stt → llm → [tool] → tts), then its root
/// `getpatter.call` span, in the order an SDK ends and exports them.
fn call(rng: &mut fastrand::Rng, shape: &Shape, children: usize, now: u64, out: &mut Vec<Span>) {
    let call = Call::new(rng);
    // Calls started 2–5 minutes ago, so even a long one has ended by now.
    let call_start = now - rng.u64(120_000_000_000..300_000_000_000);
    let mut at = call_start + rng.u64(50_000_000..500_000_000);
    let (mut turn, mut made) = (0, 0);
    while made < children {
        turn += 1;
        for stage in [Stage::Stt, Stage::Llm, Stage::Tool, Stage::Tts] {
            if made == children || (stage == Stage::Tool && rng.u8(..4) != 0) {
                continue;
            }
            let mut span = call.stage(rng, stage, turn, at);
            if rng.f64() * 100.0 < shape.error_percent {
                fail(rng, &mut span);
            }
            at = span.end_time_unix_nano + rng.u64(1_000_000..50_000_000);
            out.push(span);
            made += 1;
        }
    }
    let mut root = call.span(rng, "getpatter.call", &[], call_start);
    root.span_id = call.root_id.clone();
    root.kind = SpanKind::Server as i32;
    root.end_time_unix_nano = at + rng.u64(100_000_000..2_000_000_000);
    let outcome = pick(
        rng,
        &["completed", "completed", "completed", "hangup_remote"],
    );
    root.attributes = vec![
        s("getpatter.call.id", call.call_id.as_str()),
        s(
            "getpatter.call.direction",
            pick(rng, &["inbound", "outbound"]),
        ),
        s(
            "getpatter.carrier",
            pick(rng, &["twilio", "telnyx", "plivo"]),
        ),
        s(
            "getpatter.engine",
            pick(rng, &["pipeline", "pipeline", "realtime"]),
        ),
        i("getpatter.call.turns", turn),
        s("getpatter.call.outcome", outcome),
        d(
            "patter.cost.total_usd",
            0.004 + turn as f64 * rng.f64() * 0.01,
        ),
        i("patter.cost.tts_chars", turn * rng.i64(10..600)),
        d("patter.latency.ttfb_ms", ms(rng, 300, 2_500)),
        b("getpatter.call.recorded", rng.u8(..5) == 0),
    ];
    if rng.f64() * 100.0 < shape.error_percent {
        fail(rng, &mut root);
    }
    out.push(root);
}

/// An export of exactly `spans` spans from one install: whole calls (a root and its children),
/// 3–15 children each, the last one sized to fit.
pub fn traces(rng: &mut fastrand::Rng, shape: &Shape, spans: usize) -> ExportTraceServiceRequest {
    let now = now_ns();
    let mut out = Vec::with_capacity(spans);
    while out.len() < spans {
        let room = spans - out.len();
        let children = rng.usize(3..=15).min(room - 1);
        call(rng, shape, children, now, &mut out);
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(rng, shape.installs)),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans: out,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// The counter's attribute combinations: direction × outcome × carrier.
fn call_attributes(series: usize) -> Vec<KeyValue> {
    const DIRECTIONS: [&str; 2] = ["inbound", "outbound"];
    const OUTCOMES: [&str; 3] = ["completed", "error", "no_answer"];
    const CARRIERS: [&str; 2] = ["twilio", "telnyx"];
    vec![
        s("getpatter.call.direction", DIRECTIONS[series % 2]),
        s("getpatter.call.outcome", OUTCOMES[(series / 2) % 3]),
        s("getpatter.carrier", CARRIERS[(series / 6) % 2]),
    ]
}
const CALL_SERIES: usize = 12;

/// The histogram's and the gauge's attribute combinations: the LLM provider.
const PROVIDERS: [&str; 4] = ["openai", "anthropic", "cerebras", "google"];

/// When the `k`-th point of a metric with `points` points over `series` series is taken: the
/// series repeat once per collection interval, the last interval ending now.
fn point_time(now: u64, k: usize, points: usize, series: usize) -> u64 {
    let intervals = points.div_ceil(series).max(1);
    let interval = k / series;
    now - (intervals - 1 - interval) as u64 * COLLECTION_INTERVAL_NS
}

/// An export of exactly `points` data points from one install: half of them for the counter
/// `getpatter.calls` (cumulative, monotonic, 12 attribute combinations), a quarter for the
/// histogram `getpatter.llm.ttft` (cumulative, explicit buckets, per provider) and a quarter for
/// the gauge `getpatter.calls.active`. Points beyond one per series are earlier collections of
/// the same series; cumulative values grow with time since [`Shape::series_start_ns`].
pub fn metrics(
    rng: &mut fastrand::Rng,
    shape: &Shape,
    points: usize,
) -> ExportMetricsServiceRequest {
    let now = now_ns().max(shape.series_start_ns + COLLECTION_INTERVAL_NS * points as u64);
    let start = shape.series_start_ns;
    let counter_points = points.div_ceil(2);
    let histogram_points = (points - counter_points).div_ceil(2);
    let gauge_points = points - counter_points - histogram_points;
    let cumulative = AggregationTemporality::Cumulative as i32;
    let counter = (0..counter_points)
        .map(|k| {
            let time = point_time(now, k, counter_points, CALL_SERIES);
            let series = k % CALL_SERIES;
            // Calls so far: a rate per series, growing with time.
            let value = (time - start) / 1_000_000_000 * (series as u64 + 1) / 4;
            NumberDataPoint {
                attributes: call_attributes(series),
                start_time_unix_nano: start,
                time_unix_nano: time,
                value: Some(number_data_point::Value::AsInt(value as i64)),
                ..NumberDataPoint::default()
            }
        })
        .collect();
    let histogram = (0..histogram_points)
        .map(|k| {
            let time = point_time(now, k, histogram_points, PROVIDERS.len());
            let series = k % PROVIDERS.len();
            let count = (time - start) / 1_000_000_000 * (series as u64 + 2);
            let mut bucket_counts: Vec<u64> = TTFT_SHARES
                .iter()
                .map(|share| count * share / 100)
                .collect();
            let last = bucket_counts.len() - 1;
            bucket_counts[last] += count - bucket_counts.iter().sum::<u64>();
            let sum: f64 = bucket_counts
                .iter()
                .enumerate()
                .map(|(b, n)| {
                    let low = if b == 0 { 0.0 } else { TTFT_BOUNDS_MS[b - 1] };
                    let high = TTFT_BOUNDS_MS.get(b).copied().unwrap_or(8_000.0);
                    *n as f64 * (low + high) / 2.0
                })
                .sum();
            HistogramDataPoint {
                attributes: vec![s("getpatter.llm.provider", PROVIDERS[series])],
                start_time_unix_nano: start,
                time_unix_nano: time,
                count,
                sum: Some(sum),
                bucket_counts,
                explicit_bounds: TTFT_BOUNDS_MS.to_vec(),
                min: (count > 0).then_some(31.0),
                max: (count > 0).then_some(7_412.0),
                ..HistogramDataPoint::default()
            }
        })
        .collect();
    let gauge = (0..gauge_points)
        .map(|k| NumberDataPoint {
            attributes: vec![s("getpatter.llm.provider", PROVIDERS[k % PROVIDERS.len()])],
            time_unix_nano: point_time(now, k, gauge_points, PROVIDERS.len()),
            value: Some(number_data_point::Value::AsInt(rng.i64(0..25))),
            ..NumberDataPoint::default()
        })
        .collect();
    let metric = |name: &str, description: &str, unit: &str, data: metric::Data| Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(data),
        ..Metric::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(rng, shape.installs)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics: vec![
                    metric(
                        "getpatter.calls",
                        "Calls handled",
                        "{call}",
                        metric::Data::Sum(Sum {
                            data_points: counter,
                            aggregation_temporality: cumulative,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "getpatter.llm.ttft",
                        "Time to the LLM's first token",
                        "ms",
                        metric::Data::Histogram(Histogram {
                            data_points: histogram,
                            aggregation_temporality: cumulative,
                        }),
                    ),
                    metric(
                        "getpatter.calls.active",
                        "Calls in progress",
                        "{call}",
                        metric::Data::Gauge(Gauge { data_points: gauge }),
                    ),
                ],
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

/// What an export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    /// The path under `/otlp/{product}`.
    pub fn path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }

    /// An export of `items` spans or data points, encoded.
    pub fn body(
        self,
        rng: &mut fastrand::Rng,
        shape: &Shape,
        items: usize,
        encoding: Encoding,
    ) -> Vec<u8> {
        match self {
            Signal::Traces => otlp::encode(&traces(rng, shape, items), encoding),
            Signal::Metrics => otlp::encode(&metrics(rng, shape, items), encoding),
        }
    }

    /// Items a successful answer says were refused (`partial_success.rejected_spans` or
    /// `rejected_data_points`), read in the request's encoding; an empty answer refused none.
    pub fn rejected(self, answer: &[u8], encoding: Encoding) -> Result<u64, String> {
        let rejected = match self {
            Signal::Traces => otlp::decode::<ExportTraceServiceResponse>(answer, encoding)?
                .partial_success
                .map_or(0, |p| p.rejected_spans),
            Signal::Metrics => otlp::decode::<ExportMetricsServiceResponse>(answer, encoding)?
                .partial_success
                .map_or(0, |p| p.rejected_data_points),
        };
        Ok(rejected.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;
    use serde_json::Value;

    /// Attributes on every generated span.
    const ATTRIBUTES_PER_SPAN: usize = 10;

    /// Data points in a metrics export.
    fn data_points(request: &ExportMetricsServiceRequest) -> usize {
        request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.len(),
                Some(metric::Data::Sum(s)) => s.data_points.len(),
                Some(metric::Data::Histogram(h)) => h.data_points.len(),
                Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
                Some(metric::Data::Summary(s)) => s.data_points.len(),
                None => 0,
            })
            .sum()
    }

    fn shape() -> Shape {
        Shape {
            error_percent: 3.0,
            installs: 1_000,
            series_start_ns: now_ns() - 3_600_000_000_000,
        }
    }

    fn spans(request: &ExportTraceServiceRequest) -> Vec<&Span> {
        request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect()
    }

    #[test]
    fn spans_per_request_and_attributes() {
        let mut rng = fastrand::Rng::with_seed(7);
        for size in [1, 2, 3, 17, 100, 250] {
            let request = traces(&mut rng, &shape(), size);
            assert_eq!(request.resource_spans.len(), 1);
            let spans = spans(&request);
            assert_eq!(spans.len(), size, "spans per request");
            for span in spans {
                assert_eq!(span.attributes.len(), ATTRIBUTES_PER_SPAN, "{}", span.name);
                let keys: HashSet<&str> = span.attributes.iter().map(|a| a.key.as_str()).collect();
                assert_eq!(
                    keys.len(),
                    ATTRIBUTES_PER_SPAN,
                    "distinct keys on {}",
                    span.name
                );
                assert!(span.end_time_unix_nano > span.start_time_unix_nano);
            }
        }
    }

    #[test]
    fn attributes_have_every_type() {
        let mut rng = fastrand::Rng::with_seed(8);
        let request = traces(&mut rng, &shape(), 100);
        let mut kinds = HashSet::new();
        for span in spans(&request) {
            for a in &span.attributes {
                kinds.insert(std::mem::discriminant(
                    a.value.as_ref().unwrap().value.as_ref().unwrap(),
                ));
            }
        }
        assert_eq!(kinds.len(), 4, "strings, ints, doubles and bools");
        let resource = otlp::string_attributes(
            &request.resource_spans[0]
                .resource
                .as_ref()
                .unwrap()
                .attributes,
        )
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<std::collections::BTreeMap<_, _>>();
        for key in [
            "service.name",
            "service.version",
            "telemetry.sdk.language",
            INSTALL_ATTRIBUTE,
        ] {
            assert!(resource.contains_key(key), "resource has {key}");
        }
    }

    #[test]
    fn ids_are_unique_and_trees_are_whole() {
        let mut rng = fastrand::Rng::with_seed(9);
        let (mut span_ids, mut roots, mut traces_seen) = (HashSet::new(), 0, HashSet::new());
        let mut installs = HashSet::new();
        for _ in 0..200 {
            let request = traces(&mut rng, &shape(), 100);
            let resource = &request.resource_spans[0]
                .resource
                .as_ref()
                .unwrap()
                .attributes;
            installs.insert(otlp::string_attributes(resource)[INSTALL_ATTRIBUTE].to_string());
            let spans = spans(&request);
            let in_request: HashSet<(&[u8], &[u8])> = spans
                .iter()
                .map(|s| (s.trace_id.as_slice(), s.span_id.as_slice()))
                .collect();
            for span in &spans {
                assert_eq!((span.trace_id.len(), span.span_id.len()), (16, 8));
                assert!(otlp::id(&span.trace_id).is_some() && otlp::id(&span.span_id).is_some());
                assert!(
                    span_ids.insert((span.trace_id.clone(), span.span_id.clone())),
                    "unique ids"
                );
                if span.parent_span_id.is_empty() {
                    assert_eq!(span.name, "getpatter.call");
                    roots += 1;
                    assert!(
                        traces_seen.insert(span.trace_id.clone()),
                        "one root per trace"
                    );
                } else {
                    // Every child's parent is the root of its call, in the same request.
                    assert!(in_request
                        .contains(&(span.trace_id.as_slice(), span.parent_span_id.as_slice())));
                    assert!(span.name.starts_with("getpatter."));
                }
            }
        }
        assert_eq!(span_ids.len(), 200 * 100);
        assert!(
            roots > 200 * 100 / 17,
            "calls of 3–15 children: {roots} roots"
        );
        assert!(
            installs.len() > 150,
            "requests spread over installs: {}",
            installs.len()
        );
    }

    #[test]
    fn a_few_percent_fail_with_an_exception() {
        let mut rng = fastrand::Rng::with_seed(10);
        let (mut failed, mut total) = (0, 0);
        for _ in 0..100 {
            let request = traces(&mut rng, &shape(), 100);
            for span in spans(&request) {
                total += 1;
                if span
                    .status
                    .as_ref()
                    .is_some_and(|s| s.code == StatusCode::Error as i32)
                {
                    failed += 1;
                    let event = &span.events[0];
                    assert_eq!(event.name, "exception");
                    let attributes = otlp::string_attributes(&event.attributes);
                    assert!(attributes.contains_key("exception.type"));
                    assert!(attributes.contains_key("exception.stacktrace"));
                } else {
                    assert!(span.events.is_empty());
                }
            }
        }
        let share = failed as f64 * 100.0 / total as f64;
        assert!((2.0..4.0).contains(&share), "{share} % failed");
        let none = Shape {
            error_percent: 0.0,
            ..shape()
        };
        assert!(spans(&traces(&mut rng, &none, 100))
            .iter()
            .all(|s| s.status.is_none()));
    }

    #[test]
    fn protobuf_decodes_back() {
        let mut rng = fastrand::Rng::with_seed(11);
        let request = traces(&mut rng, &shape(), 100);
        let bytes = otlp::encode(&request, Encoding::Protobuf);
        let back: ExportTraceServiceRequest = otlp::decode(&bytes, Encoding::Protobuf).unwrap();
        assert_eq!(back, request);
        let request = metrics(&mut rng, &shape(), 100);
        let bytes = otlp::encode(&request, Encoding::Protobuf);
        let back: ExportMetricsServiceRequest = otlp::decode(&bytes, Encoding::Protobuf).unwrap();
        assert_eq!(back, request);
    }

    #[test]
    fn json_follows_the_otlp_json_rules() {
        let mut rng = fastrand::Rng::with_seed(12);
        let request = traces(
            &mut rng,
            &Shape {
                error_percent: 100.0,
                ..shape()
            },
            20,
        );
        let bytes = otlp::encode(&request, Encoding::Json);
        let json: Value = serde_json::from_slice(&bytes).unwrap();
        let resource_spans = &json["resourceSpans"][0];
        assert!(resource_spans["resource"]["attributes"].is_array());
        let span = &resource_spans["scopeSpans"][0]["spans"][0];
        // Ids are lowercase hex, not base64; camelCase keys; 64-bit integers as strings.
        let trace_id = span["traceId"].as_str().unwrap();
        assert_eq!(trace_id.len(), 32);
        assert!(trace_id
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_eq!(span["spanId"].as_str().unwrap().len(), 16);
        assert_eq!(span["parentSpanId"].as_str().unwrap().len(), 16);
        assert!(span["startTimeUnixNano"].is_string() && span["endTimeUnixNano"].is_string());
        assert!(span["kind"].is_number());
        assert_eq!(span["status"]["code"], 2);
        assert_eq!(span["events"][0]["name"], "exception");
        assert!(span.get("trace_id").is_none() && span.get("start_time_unix_nano").is_none());
        let values: Vec<&Value> = span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["value"])
            .collect();
        assert!(values.iter().any(|v| v["stringValue"].is_string()));
        assert!(
            values.iter().any(|v| v["intValue"].is_string()),
            "intValue as a string"
        );
        assert!(values.iter().any(|v| v["doubleValue"].is_number()));
        assert!(values.iter().any(|v| v["boolValue"].is_boolean()));
        // And the server's decoder reads it back to the same message.
        let back: ExportTraceServiceRequest = otlp::decode(&bytes, Encoding::Json).unwrap();
        assert_eq!(back, request);

        let metrics = otlp::encode(&metrics(&mut rng, &shape(), 40), Encoding::Json);
        let json: Value = serde_json::from_slice(&metrics).unwrap();
        let list = &json["resourceMetrics"][0]["scopeMetrics"][0]["metrics"];
        assert_eq!(list[0]["sum"]["aggregationTemporality"], 2);
        assert_eq!(list[0]["sum"]["isMonotonic"], true);
        assert!(list[0]["sum"]["dataPoints"][0]["asInt"].is_string());
        assert!(list[0]["sum"]["dataPoints"][0]["timeUnixNano"].is_string());
        assert!(list[1]["histogram"]["dataPoints"][0]["explicitBounds"].is_array());
        assert!(list[2]["gauge"]["dataPoints"].is_array());
        let back: ExportMetricsServiceRequest = otlp::decode(&metrics, Encoding::Json).unwrap();
        assert_eq!(data_points(&back), 40);
    }

    #[test]
    fn metrics_points_per_request_and_cumulative_values() {
        let mut rng = fastrand::Rng::with_seed(13);
        let shape = shape();
        for size in [1, 3, 4, 50, 100, 333] {
            assert_eq!(data_points(&metrics(&mut rng, &shape, size)), size);
        }
        let request = metrics(&mut rng, &shape, 100);
        let list = &request.resource_metrics[0].scope_metrics[0].metrics;
        let Some(metric::Data::Sum(sum)) = &list[0].data else {
            panic!("a sum first")
        };
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        // The same series, one collection later, has a later time and a larger value.
        let (first, later) = (&sum.data_points[0], &sum.data_points[CALL_SERIES]);
        assert_eq!(first.attributes, later.attributes);
        assert!(later.time_unix_nano > first.time_unix_nano);
        assert!(later
            .value
            .map(|v| matches!(v, number_data_point::Value::AsInt(n) if n > 0))
            .unwrap());
        let as_int = |p: &NumberDataPoint| match p.value {
            Some(number_data_point::Value::AsInt(n)) => n,
            _ => panic!("an int"),
        };
        assert!(as_int(later) > as_int(first));
        let Some(metric::Data::Histogram(h)) = &list[1].data else {
            panic!("then a histogram")
        };
        for p in &h.data_points {
            assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
            assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
        }
        // Later requests carry cumulative values that are not smaller for the same series.
        let again = metrics(&mut rng, &shape, 100);
        let Some(metric::Data::Sum(sum2)) =
            &again.resource_metrics[0].scope_metrics[0].metrics[0].data
        else {
            panic!()
        };
        assert!(
            as_int(sum2.data_points.last().unwrap()) >= as_int(sum.data_points.last().unwrap())
        );
    }

    #[test]
    fn answers_count_rejections_in_either_encoding() {
        let partial = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 7,
                error_message: "7 invalid_event".into(),
            }),
        };
        for encoding in [Encoding::Protobuf, Encoding::Json] {
            let body = otlp::encode(&partial, encoding);
            assert_eq!(Signal::Traces.rejected(&body, encoding), Ok(7));
            assert_eq!(Signal::Traces.rejected(b"", encoding), Ok(0));
        }
        assert_eq!(Signal::Traces.rejected(b"{}", Encoding::Json), Ok(0));
        assert_eq!(
            Signal::Metrics.rejected(
                br#"{"partialSuccess":{"rejectedDataPoints":3}}"#,
                Encoding::Json
            ),
            Ok(3)
        );
        assert!(Signal::Traces.rejected(b"{", Encoding::Json).is_err());
    }
}
