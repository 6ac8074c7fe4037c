//! OTLP/HTTP traces and logs against a real server: protobuf and JSON, gzip, the three ways a
//! request finds its product, the mapping onto events (read back through the API), partial
//! success, and every error answer as a `google.rpc.Status`.

mod common;

use common::{gzip, request, Resp, TestServer};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event as SpanEvent;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::Value;

const TRACE: &str = "5b8efff798038103d269b633813fc60c";
/// A minute ago, in whole milliseconds (as nanoseconds), so no clock rule moves the spans.
/// A minute before the first call, the same for every span of the test binary (spans built a
/// millisecond apart must still be exactly their offsets apart).
fn base_ns() -> u64 {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        (now - 60_000) * 1_000_000
    })
}

fn config() -> String {
    format!(
        r#"
[server]
max_batch_events = 50

[[products]]
id = "voice-sdk"
[products.schema]
mode = "open"
[products.otlp]
service_names = ["patter-voice"]
install_id_attribute = "patter.install_id"

[[products]]
id = "atlas"
ingest_keys = ["atlas-key-0123456789"]
[products.schema]
mode = "open"
[products.otlp]
service_names = ["atlas-sdk"]

{}"#,
        common::tokens_toml()
    )
}

fn server() -> TestServer {
    TestServer::start(&config(), &[])
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            s("service.name", service),
            s("service.version", "0.9.2"),
            s("telemetry.sdk.language", "python"),
            s("os.type", "linux"),
            s("host.arch", "amd64"),
            s("patter.install_id", "install-abc"),
        ],
        ..Resource::default()
    })
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn span(name: &str, id: &str, parent: &str, start_ms: u64, duration_ms: u64) -> Span {
    let base = base_ns();
    Span {
        trace_id: hex(TRACE),
        span_id: hex(id),
        parent_span_id: hex(parent),
        name: name.into(),
        kind: 1,
        start_time_unix_nano: base + start_ms * 1_000_000,
        end_time_unix_nano: base + (start_ms + duration_ms) * 1_000_000,
        ..Span::default()
    }
}

/// A voice call: the root, an LLM turn with attributes, and a TTS span that failed with an
/// exception.
fn call_trace(service: &str) -> ExportTraceServiceRequest {
    let root = span("getpatter.call", "00f067aa0ba902b7", "", 0, 3_000);
    let mut llm = span(
        "getpatter.llm",
        "00f067aa0ba902b8",
        "00f067aa0ba902b7",
        100,
        812,
    );
    llm.attributes = vec![
        s("getpatter.call.id", "call-1"),
        kv("getpatter.llm.ttft_ms", any_value::Value::IntValue(245)),
        kv(
            "patter.latency.ttfb_ms",
            any_value::Value::DoubleValue(98.5),
        ),
        kv("getpatter.streaming", any_value::Value::BoolValue(true)),
    ];
    let mut tts = span(
        "getpatter.tts",
        "00f067aa0ba902b9",
        "00f067aa0ba902b7",
        1_000,
        40,
    );
    tts.status = Some(Status {
        code: 2,
        message: "synthesis failed".into(),
    });
    tts.events = vec![SpanEvent {
        name: "exception".into(),
        time_unix_nano: base_ns(),
        attributes: vec![
            s("exception.type", "TimeoutError"),
            s("exception.message", "TTS timed out for alice@example.com"),
            s("exception.stacktrace", "at synth (tts.py:10)"),
        ],
        ..SpanEvent::default()
    }];
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service),
            scope_spans: vec![ScopeSpans {
                spans: vec![root, llm, tts],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn post(server: &TestServer, path: &str, content_type: &str, body: Vec<u8>) -> Resp {
    request(
        "POST",
        &format!("{}{path}", server.url),
        &[("content-type", content_type)],
        Some(body),
    )
}

fn post_proto(server: &TestServer, path: &str, message: &impl Message) -> Resp {
    post(
        server,
        path,
        "application/x-protobuf",
        message.encode_to_vec(),
    )
}

fn trace_events(server: &TestServer) -> Vec<Value> {
    server.settle();
    let resp = server.admin_get(&format!("/api/v1/events?q=trace_id:{TRACE}&limit=100"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let mut events = resp.json()["events"].as_array().unwrap().clone();
    events.sort_by_key(|e| e["timestamp"].as_i64());
    events
}

/// The `google.rpc.Status` of an error answer, in the request's encoding.
fn status(resp: &Resp, json: bool) -> (i32, String) {
    if json {
        let v = resp.json();
        (
            v["code"].as_i64().unwrap() as i32,
            v["message"].as_str().unwrap().into(),
        )
    } else {
        let status = telemetryd::otlp::Status::decode(resp.body.as_slice())
            .unwrap_or_else(|e| panic!("not a Status ({e}): {:?} {}", resp.headers, resp.text()));
        (status.code, status.message)
    }
}

#[test]
fn spans_in_protobuf_become_events() {
    let server = server();
    let resp = post_proto(&server, "/v1/traces", &call_trace("patter-voice"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/x-protobuf"));
    let answer = ExportTraceServiceResponse::decode(resp.body.as_slice()).unwrap();
    assert_eq!(answer.partial_success, None);

    let events = trace_events(&server);
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["getpatter.call", "getpatter.llm", "getpatter.tts"]);
    let root = &events[0];
    assert_eq!(root["product"], "voice-sdk");
    assert_eq!(root["source"], "otlp");
    let start = root["timestamp"].as_i64().unwrap();
    assert_eq!(events[1]["timestamp"].as_i64().unwrap() - start, 100);
    assert!(root.get("flags").is_none(), "no clock correction: {root}");
    assert_eq!(root["metrics"]["duration_ms"], 3000.0);
    assert_eq!(root["span_id"], "00f067aa0ba902b7");
    assert!(root.get("parent_span_id").is_none());
    assert_eq!(root["app_version"], "0.9.2");
    assert_eq!(root["runtime"], "python");
    assert_eq!(root["os_family"], "linux");
    assert_eq!(root["arch"], "amd64");
    assert_eq!(root["install_id"], "install-abc");
    assert_eq!(root["dims"]["service.name"], "patter-voice");
    assert_eq!(root["level"], "info");

    let llm = &events[1];
    assert_eq!(llm["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(llm["metrics"]["duration_ms"], 812.0);
    assert_eq!(llm["metrics"]["getpatter.llm.ttft_ms"], 245.0);
    assert_eq!(llm["metrics"]["patter.latency.ttfb_ms"], 98.5);
    assert_eq!(llm["dims"]["getpatter.call.id"], "call-1");
    assert_eq!(llm["dims"]["getpatter.streaming"], true);

    let tts = &events[2];
    assert_eq!(tts["level"], "error");
    assert_eq!(tts["error"]["domain"], "TimeoutError");
    assert_eq!(tts["error"]["message"], "TTS timed out for [email]");
    assert_eq!(tts["error"]["stack"], "at synth (tts.py:10)");
    assert!(tts["fingerprint"].is_string(), "errors are fingerprinted");

    // The exporter retries: the same spans are duplicates, not new events.
    let again = post_proto(&server, "/v1/traces", &call_trace("patter-voice"));
    assert_eq!(again.status, 200);
    assert_eq!(server.stored().len(), 3);
    // Searchable by span too.
    let resp = server.admin_get("/api/v1/events?q=span_id:00f067aa0ba902b8");
    assert_eq!(resp.json()["events"][0]["name"], "getpatter.llm");
}

#[test]
fn json_and_gzip_with_the_product_in_the_path_or_the_key() {
    let server = server();
    let trace = call_trace("someone-else");
    let json = serde_json::to_vec(&trace).unwrap();
    let text = String::from_utf8(json.clone()).unwrap();
    assert!(
        text.contains(&format!("\"traceId\":\"{TRACE}\"")),
        "hex ids in JSON"
    );
    let resp = request(
        "POST",
        &format!("{}/otlp/voice-sdk/v1/traces", server.url),
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        Some(gzip(&json)),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.json(), serde_json::json!({}));
    assert_eq!(server.stored().len(), 3);
    assert!(server.stored().iter().all(|e| e.product == "voice-sdk"));

    // A keyed product: by its key, but never by service.name alone.
    let atlas = call_trace("atlas-sdk");
    let resp = post_proto(&server, "/v1/traces", &atlas);
    assert_eq!(resp.status, 401);
    assert_eq!(
        status(&resp, false).1.split(':').next(),
        Some("missing_ingest_key")
    );
    let resp = request(
        "POST",
        &format!("{}/v1/traces", server.url),
        &[
            ("content-type", "application/x-protobuf"),
            ("x-telemetry-key", "atlas-key-0123456789"),
        ],
        Some(atlas.encode_to_vec()),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        server
            .stored()
            .iter()
            .filter(|e| e.product == "atlas")
            .count(),
        3
    );

    // No product at all: the request names none and no service.name is configured.
    let resp = post_proto(&server, "/v1/traces", &call_trace("unknown-service"));
    assert_eq!(resp.status, 400);
    assert!(status(&resp, false).1.starts_with("missing_product"));
    let resp = post_proto(&server, "/otlp/nope/v1/traces", &trace);
    assert_eq!(resp.status, 400);
    assert!(status(&resp, false).1.starts_with("unknown_product"));
}

#[test]
fn partial_success_counts_and_names_the_rejected_spans() {
    let server = server();
    let mut trace = call_trace("patter-voice");
    let spans = &mut trace.resource_spans[0].scope_spans[0].spans;
    // Too many attributes; nested too deep; no name.
    spans[0].attributes = (0..200)
        .map(|i| kv(&format!("a{i}"), any_value::Value::IntValue(i)))
        .collect();
    let mut deep = AnyValue {
        value: Some(any_value::Value::StringValue("x".into())),
    };
    for _ in 0..20 {
        deep = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![deep],
            })),
        };
    }
    spans[1].attributes = vec![KeyValue {
        key: "deep".into(),
        value: Some(deep),
        ..KeyValue::default()
    }];
    spans[2].name = String::new();
    let json = serde_json::to_vec(&trace).unwrap();
    let resp = post(&server, "/v1/traces", "application/json", json);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let answer = resp.json();
    // int64: a JSON number or, as the proto3 JSON mapping writes it, a string.
    let rejected = &answer["partialSuccess"]["rejectedSpans"];
    assert!(rejected == 3 || rejected == "3", "{answer}");
    let message = answer["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(message.contains("2 invalid_event"), "{message}");
    assert!(message.contains("1 missing_name"), "{message}");
    assert!(
        message.contains("200 attributes; the limit is 128"),
        "{message}"
    );
    assert!(server.stored().is_empty());
}

#[test]
fn error_answers_are_google_rpc_status() {
    let server = server();
    // Undecodable protobuf and JSON.
    let resp = post(
        &server,
        "/v1/traces",
        "application/x-protobuf",
        vec![0xff, 0xff, 0x00],
    );
    assert_eq!(resp.status, 400);
    let (code, message) = status(&resp, false);
    assert_eq!(code, 3);
    assert!(
        message.starts_with("invalid_body: invalid protobuf"),
        "{message}"
    );
    let resp = post(
        &server,
        "/v1/logs",
        "application/json",
        b"{\"resourceLogs\": [".to_vec(),
    );
    assert_eq!(resp.status, 400);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert!(status(&resp, true)
        .1
        .starts_with("invalid_body: invalid JSON"));
    // JSON nested deeper than the parser allows: a clear 400, never a crash.
    let deep = format!(
        "{{\"resourceSpans\":[{{\"resource\":{{\"attributes\":[{{\"key\":\"k\",\"value\":{}\"x\"{}}}]}}}}]}}",
        "{\"arrayValue\":{\"values\":[".repeat(200),
        "]}}".repeat(200)
    );
    let resp = post(&server, "/v1/traces", "application/json", deep.into_bytes());
    assert_eq!(resp.status, 400, "{}", resp.text());
    // Unsupported content type.
    let resp = post(&server, "/v1/traces", "text/xml", b"<x/>".to_vec());
    assert_eq!(resp.status, 415);
    assert!(status(&resp, true).1.starts_with("unsupported_media_type"));
    // Too many spans in one request (max_batch_events = 50).
    let mut big = call_trace("patter-voice");
    let one = big.resource_spans[0].scope_spans[0].spans[0].clone();
    big.resource_spans[0].scope_spans[0].spans = vec![one; 51];
    let resp = post_proto(&server, "/v1/traces", &big);
    assert_eq!(resp.status, 413);
    assert!(status(&resp, false).1.starts_with("batch_too_large"));
    // An empty request is a success.
    let resp = post_proto(&server, "/v1/traces", &ExportTraceServiceRequest::default());
    assert_eq!(resp.status, 200);
    let resp = post(&server, "/v1/logs", "application/json", b"{}".to_vec());
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), serde_json::json!({}));
    // Only POST.
    let resp = request("GET", &format!("{}/v1/traces", server.url), &[], None);
    assert_eq!(resp.status, 405);
}

#[test]
fn log_records_become_events_with_level_and_message() {
    let server = server();
    let record = |severity: i32, body: &str, attributes: Vec<KeyValue>| LogRecord {
        time_unix_nano: base_ns(),
        severity_number: severity,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        attributes,
        trace_id: hex(TRACE),
        span_id: hex("00f067aa0ba902b8"),
        ..LogRecord::default()
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("patter-voice"),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "getpatter.agent".into(),
                    ..InstrumentationScope::default()
                }),
                log_records: vec![
                    record(9, "call connected", vec![s("event.name", "call.connected")]),
                    record(13, "slow provider, call +1 202 555 0143", vec![]),
                    record(
                        17,
                        "provider failed",
                        vec![
                            s("exception.type", "ProviderError"),
                            s("exception.message", "503 from provider"),
                        ],
                    ),
                    record(21, "crash", vec![]),
                    record(5, "debug detail", vec![]),
                ],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    let resp = post_proto(&server, "/v1/logs", &logs);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let answer = ExportLogsServiceResponse::decode(resp.body.as_slice()).unwrap();
    assert_eq!(answer.partial_success, None);
    let stored = server.stored();
    let levels: Vec<&str> = stored.iter().map(|e| e.level.as_str()).collect();
    assert_eq!(levels, ["info", "warn", "error", "fatal", "debug"]);
    assert_eq!(stored[0].name, "call.connected");
    assert_eq!(
        stored[1].name, "getpatter.agent",
        "the scope names a log without event.name"
    );
    assert_eq!(stored[0].message.as_deref(), Some("call connected"));
    assert_eq!(
        stored[1].message.as_deref(),
        Some("slow provider, call [phone]"),
        "the body is scrubbed"
    );
    let error = stored[2].error.as_ref().unwrap();
    assert_eq!(error.domain.as_deref(), Some("ProviderError"));
    assert_eq!(error.message.as_deref(), Some("503 from provider"));
    assert_eq!(stored[0].trace_id.as_deref(), Some(TRACE));
    assert_eq!(stored[0].span_id.as_deref(), Some("00f067aa0ba902b8"));
    // The body is searchable by its words.
    server.settle();
    let resp = server.admin_get("/api/v1/events?q=connected");
    assert_eq!(resp.json()["events"][0]["name"], "call.connected");
}

#[test]
fn exception_messages_and_stack_traces_are_kept_whole() {
    // Real stack traces run to kilobytes; they were once cut at 200 characters like a name.
    let server = server();
    let frames: Vec<String> = (0..40)
        .map(|i| format!("  File \"/app/getpatter/tts.py\", line {i}, in synth_{i}\n    stream()"))
        .collect();
    let stack = format!(
        "Traceback (most recent call last):\n{}\nTimeoutError: TTS timed out",
        frames.join("\n")
    );
    let message = format!("TTS timed out: {}", "provider did not answer; ".repeat(20));
    assert!(stack.len() > 2_000 && message.len() > 400);
    let mut trace = call_trace("patter-voice");
    let tts = &mut trace.resource_spans[0].scope_spans[0].spans[2];
    tts.events[0].attributes = vec![
        s("exception.type", "TimeoutError"),
        s("exception.message", &message),
        s("exception.stacktrace", &stack),
    ];
    let resp = post_proto(&server, "/v1/traces", &trace);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("patter-voice"),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: base_ns(),
                    severity_number: 17,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("tts failed".into())),
                    }),
                    attributes: vec![
                        s("exception.type", "TimeoutError"),
                        s("exception.message", &message),
                        s("exception.stacktrace", &stack),
                    ],
                    trace_id: hex(TRACE),
                    ..LogRecord::default()
                }],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    let resp = post_proto(&server, "/v1/logs", &logs);
    assert_eq!(resp.status, 200, "{}", resp.text());

    let events = trace_events(&server);
    let failed: Vec<&Value> = events.iter().filter(|e| e["level"] == "error").collect();
    assert_eq!(failed.len(), 2, "{events:#?}");
    for event in failed {
        assert_eq!(event["error"]["stack"], stack.as_str(), "{}", event["name"]);
        assert_eq!(
            event["error"]["message"],
            message.as_str(),
            "{}",
            event["name"]
        );
    }
}

mod metrics {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    };
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum,
    };

    /// A cumulative counter: `values` reported a second apart from one start time.
    fn counter(service: &str, start_ns: u64, values: &[i64]) -> ExportMetricsServiceRequest {
        let points = values
            .iter()
            .enumerate()
            .map(|(i, v)| NumberDataPoint {
                attributes: vec![s("surface", "cli")],
                start_time_unix_nano: start_ns,
                time_unix_nano: start_ns + (i as u64 + 1) * 1_000_000_000,
                value: Some(number_data_point::Value::AsInt(*v)),
                ..NumberDataPoint::default()
            })
            .collect();
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(service),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "atlas_sdk_events_total".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: points,
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                        })),
                        ..Metric::default()
                    }],
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        }
    }

    fn total(server: &TestServer) -> f64 {
        let resp = server.admin_get(
            "/api/v1/metrics/query?product=voice-sdk&name=atlas_sdk_events_total&from=-1h&bucket=1h&stat=increase",
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        let result = resp.json();
        result["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["overall"].as_f64().unwrap())
            .sum()
    }

    #[test]
    fn metrics_over_http_in_both_encodings() {
        let server = server();
        let start = base_ns();
        // Protobuf, the product in the path: 3 then 5 → 5 events counted.
        let resp = post_proto(
            &server,
            "/otlp/voice-sdk/v1/metrics",
            &counter("x", start, &[3, 5]),
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.header("content-type"), Some("application/x-protobuf"));
        let answer = ExportMetricsServiceResponse::decode(resp.body.as_slice()).unwrap();
        assert_eq!(answer.partial_success, None);
        assert_eq!(total(&server), 5.0);
        // JSON, gzip, the product by service.name; the client restarted (a new start time).
        let restarted = counter("patter-voice", start + 10_000_000_000, &[2]);
        let resp = request(
            "POST",
            &format!("{}/v1/metrics", server.url),
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            Some(gzip(&serde_json::to_vec(&restarted).unwrap())),
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.json(), serde_json::json!({}));
        assert_eq!(total(&server), 7.0);
        // Errors are google.rpc.Status in the request's encoding.
        let resp = post(
            &server,
            "/v1/metrics",
            "application/x-protobuf",
            vec![0xff, 0xff],
        );
        assert_eq!(resp.status, 400);
        assert!(status(&resp, false).1.starts_with("invalid_body"));
        // An empty export is a success, even one that names no product.
        let resp = post(&server, "/v1/metrics", "application/x-protobuf", Vec::new());
        assert_eq!(resp.status, 200, "{}", resp.text());
        let resp = post(&server, "/v1/metrics", "text/csv", b"a,b".to_vec());
        assert_eq!(resp.status, 415);
        assert!(status(&resp, true).1.starts_with("unsupported_media_type"));
        let resp = post_proto(
            &server,
            "/v1/metrics",
            &counter("unknown-service", start, &[1]),
        );
        assert_eq!(resp.status, 400);
        assert!(status(&resp, false).1.starts_with("missing_product"));
    }

    /// Metrics exports are rate limited like events: per client address (counted in exports,
    /// the product's per-minute budget) and by the product's per-second cap (counted in data
    /// points, shared with its events). Points over the cap are named in `partial_success`; an
    /// export with no room at all is a 429 with `Retry-After`.
    #[test]
    fn metrics_exports_are_rate_limited() {
        let config = format!(
            r#"
[[products]]
id = "capped"
max_events_per_second = 5
[products.schema]
mode = "open"

[[products]]
id = "metered"
rate_limit_per_minute = 2
[products.schema]
mode = "open"

{}"#,
            common::tokens_toml()
        );
        let server = TestServer::start(&config, &[]);
        let start = base_ns();
        let resp = post_proto(
            &server,
            "/otlp/capped/v1/metrics",
            &counter("x", start, &[1, 2, 3, 4, 5, 6, 7, 8]),
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        let answer = ExportMetricsServiceResponse::decode(resp.body.as_slice()).unwrap();
        let partial = answer.partial_success.expect("partial success");
        assert_eq!(partial.rejected_data_points, 3, "{}", partial.error_message);
        assert!(
            partial
                .error_message
                .contains("takes at most 5 events and data points per second"),
            "{}",
            partial.error_message
        );

        for i in 0..2u64 {
            let resp = post_proto(
                &server,
                "/otlp/metered/v1/metrics",
                &counter("x", start + i * 10_000_000_000, &[1]),
            );
            assert_eq!(resp.status, 200, "export {i}: {}", resp.text());
        }
        let resp = post_proto(
            &server,
            "/otlp/metered/v1/metrics",
            &counter("x", start + 30_000_000_000, &[1]),
        );
        assert_eq!(resp.status, 429, "{}", resp.text());
        assert!(resp.header("retry-after").is_some());
        let (_, message) = status(&resp, false);
        assert!(
            message.starts_with("rate_limited")
                && message.contains("2 metrics exports in a minute"),
            "{message}"
        );
    }
}

#[test]
fn span_ids_that_look_like_card_numbers_are_kept() {
    // Random 64-bit span ids are sometimes 16 decimal digits that pass a card check.
    let server = server();
    let mut trace = call_trace("patter-voice");
    let spans = &mut trace.resource_spans[0].scope_spans[0].spans;
    spans[0].span_id = hex("4111111111111111");
    spans[1].parent_span_id = hex("4111111111111111");
    let resp = post_proto(&server, "/v1/traces", &trace);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let answer = ExportTraceServiceResponse::decode(resp.body.as_slice()).unwrap();
    assert_eq!(answer.partial_success, None);
    let stored = server.stored();
    assert_eq!(stored.len(), 3);
    assert!(stored
        .iter()
        .any(|e| e.span_id.as_deref() == Some("4111111111111111")));
}
