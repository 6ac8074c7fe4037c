//! Property tests of every decoder a request reaches and of the search query parser: arbitrary
//! bytes, and valid inputs mutated at random, never panic and always give an answer (a value or
//! a typed error with a code). proptest's default of 256 cases per property; `PROPTEST_CASES=20000`
//! for a longer run.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use proptest::prelude::*;
use telemetryd::config::Config;
use telemetryd::error::ErrorCode;
use telemetryd::ingest::decode::decode_body;
use telemetryd::ingest::formats::{
    Body, DecodeLimits, Format, Params, ProductRequest, APTABASE, NATIVE, OTLP_LOGS, OTLP_TRACES,
    POSTHOG, SENTRY_ENVELOPE, SENTRY_STORE,
};
use telemetryd::ingest::pii::PiiDetector;
use telemetryd::otlp::{self, Encoding};
use telemetryd::products::Products;
use telemetryd::search::query::{self, MAX_QUERY_DEPTH};
use telemetryd::search::SearchError;
use telemetryd::series::mapping::{count_points, map_request, service_name, Rules};

/// A product with a flat mapping, an OTLP service name and a strict schema, so the decoders'
/// every path (native keys, flat keys, OTLP resources) has something to resolve against.
const CONFIG: &str = r#"
[[products]]
id = "app"
[products.mapping]
event = "name"
run_id = "session_id"
sdk_version = "app_version"
[products.otlp]
service_names = ["svc"]
install_id_attribute = "app.install_id"
[products.compat]
posthog_tokens = ["phc_test"]
aptabase_app_keys = ["A-SH-0123456789"]
sentry_dsns = ["https://abc123@telemetry.example/42"]
"#;

const LIMITS: DecodeLimits = DecodeLimits {
    max_batch_events: 100,
    max_event_bytes: 4096,
    max_decompressed_bytes: 100_000,
};

/// A request without query parameters or format headers.
const NO_PARAMS: Params = Params {
    path: Vec::new(),
    query: Vec::new(),
    headers: Vec::new(),
};

/// A PostHog batch as posthog-python sends it: the token, one event with an exception, one
/// person update and a malformed item.
const POSTHOG_SEED: &str = r#"{"api_key": "phc_test", "sent_at": "2026-11-20T10:00:00+00:00", "batch": [
  {"event": "$exception", "distinct_id": "u-1", "uuid": "0192f0c4-3d8c-7cc4-9d4e-1a2b3c4d5e6f",
   "timestamp": "2026-11-20T09:59:59+00:00", "properties": {"$lib": "posthog-python",
   "$lib_version": "7.0.0", "$session_id": "s-1", "plan": "pro", "n": 3,
   "$exception_list": [{"type": "ValueError", "value": "bad",
     "stacktrace": {"frames": [{"function": "f", "filename": "a.py", "lineno": 3}]}}]}},
  {"event": "$identify", "distinct_id": "u-1", "properties": {"$set": {"plan": "pro"}}}, 7
]}"#;

/// Two Aptabase events as the SDKs send them to `/api/v0/events`, and a malformed one.
const APTABASE_SEED: &str = r#"[
  {"timestamp": "2026-11-20T10:00:00Z", "sessionId": "17123", "eventName": "app_started",
   "systemProps": {"isDebug": false, "locale": "en-US", "osName": "Linux", "osVersion": "6.1",
   "appVersion": "1.2.0", "sdkVersion": "aptabase-python@0.1.0"}, "props": {"plan": "pro", "n": 2}},
  {"eventName": "clicked", "sessionId": "17123", "systemProps": {}, "props": null}, {"props": 3}
]"#;

/// A Sentry envelope as the SDKs send it: an error event with an exception, a transaction with
/// a span, a session, a client report, an attachment and a malformed item.
const SENTRY_SEED: &str = concat!(
    r#"{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","dsn":"https://abc123@telemetry.example/42","sent_at":"2026-11-20T10:00:00Z"}"#,
    "\n",
    r#"{"type":"event","content_type":"application/json"}"#,
    "\n",
    r#"{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","level":"error","platform":"python","release":"shop@1.0.0","user":{"id":"u-1"},"tags":{"plan":"pro"},"exception":{"values":[{"type":"ValueError","value":"bad","stacktrace":{"frames":[{"function":"main","in_app":true,"lineno":3}]}}]}}"#,
    "\n",
    r#"{"type":"transaction"}"#,
    "\n",
    r#"{"event_id":"0a1b2c3d4e5f40718293a4b5c6d7e8f9","type":"transaction","transaction":"checkout","start_timestamp":1795219200.0,"timestamp":1795219200.5,"release":"shop@1.0.0","contexts":{"trace":{"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"aaaaaaaaaaaaaaaa"}},"spans":[{"span_id":"bbbbbbbbbbbbbbbb","op":"db","start_timestamp":1795219200.1,"timestamp":1795219200.2}]}"#,
    "\n",
    r#"{"type":"session","length":90}"#,
    "\n",
    r#"{"sid":"s-1","did":"u-1","init":true,"status":"ok","attrs":{"release":"shop@1.0.0"}}      "#,
    "\n",
    r#"{"type":"client_report"}"#,
    "\n",
    r#"{"discarded_events":[{"reason":"sample_rate","category":"error","quantity":2}]}"#,
    "\n",
    r#"{"type":"attachment","length":5}"#,
    "\nab\ncd\n",
    r#"{"type":"event"}"#,
    "\n[1]\n",
);

/// What a Sentry SDK's request carries beside the body: its path's project id and its auth.
fn sentry_params() -> Params {
    Params {
        path: vec![("project_id".into(), "42".into())],
        query: Vec::new(),
        headers: vec![(
            "x-sentry-auth",
            "Sentry sentry_key=abc123, sentry_version=7".into(),
        )],
    }
}

/// What an Aptabase SDK's request carries beside the body: its app key.
fn aptabase_params() -> Params {
    Params {
        path: Vec::new(),
        query: Vec::new(),
        headers: vec![("app-key", "A-SH-0123456789".into())],
    }
}

fn products() -> Products {
    Products::compile(&Config::from_toml(CONFIG).expect("config")).expect("products")
}

/// Valid inputs the mutations start from.
const NATIVE_SEED: &str = r#"{"sent_at": 1795219200000, "events": [
  {"name": "app_started", "install_id": "i-1", "level": "info", "timestamp": 1795219200000,
   "dims": {"screen": "home", "n": 3, "deep": {"a": [1, {"b": null}]}}, "metrics": {"ms": 1.5},
   "error": {"domain": "net", "code": "E1", "message": "timeout", "stack": "at x"}},
  {"event": "run_done", "run_id": "r-1", "sdk_version": "1.2.3", "carrier": "x"}, 3, "s"
]}"#;

const OTLP_TRACES_JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[
  {"key":"service.name","value":{"stringValue":"svc"}},
  {"key":"app.install_id","value":{"stringValue":"i-1"}}]},
 "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
  "spanId":"eee19b7ec3c1b174","name":"llm","kind":3,"startTimeUnixNano":"1795219200000000000",
  "endTimeUnixNano":"1795219201000000000","status":{"code":2,"message":"boom"},
  "attributes":[{"key":"n","value":{"intValue":"42"}},
   {"key":"l","value":{"arrayValue":{"values":[{"boolValue":true}]}}},
   {"key":"m","value":{"kvlistValue":{"values":[{"key":"k","value":{"doubleValue":1.5}}]}}}],
  "events":[{"name":"exception","attributes":[
   {"key":"exception.message","value":{"stringValue":"x"}}]}]}]}]}]}"#;

const OTLP_LOGS_JSON: &str = r#"{"resourceLogs":[{"resource":{"attributes":[
  {"key":"service.name","value":{"stringValue":"svc"}}]},
 "scopeLogs":[{"logRecords":[{"timeUnixNano":"1795219200000000000","severityNumber":17,
  "severityText":"ERROR","body":{"stringValue":"failed"},
  "attributes":[{"key":"app.install_id","value":{"stringValue":"i-1"}}]}]}]}]}"#;

const OTLP_METRICS_JSON: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[
  {"key":"service.name","value":{"stringValue":"svc"}}]},
 "scopeMetrics":[{"metrics":[{"name":"latency","unit":"ms","gauge":{"dataPoints":[
  {"timeUnixNano":"1795219200000000000","asDouble":1.5,
   "attributes":[{"key":"k","value":{"stringValue":"v"}}]}]}},
  {"name":"count","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[
  {"timeUnixNano":"1795219200000000000","asInt":"3"}]}},
  {"name":"h","histogram":{"aggregationTemporality":1,"dataPoints":[
  {"timeUnixNano":"1795219200000000000","count":"2","sum":3,"bucketCounts":["1","1"],
   "explicitBounds":[1.0]}]}}]}]}]}"#;

const QUERY_TOKENS: &[&str] = &[
    "(",
    ")",
    " ",
    "AND",
    "OR",
    "NOT",
    "-",
    "\"",
    "\\",
    ":",
    ">",
    ">=",
    "<",
    "<=",
    "level:error",
    "name:\"a b\"",
    "x:>5",
    "timestamp:>=-24h",
    "timestamp:<2026-11-21",
    "word",
    "dims.k:v",
    "metrics.m:<=0.5",
    "é",
    "\u{0}",
    "12:30",
];

/// One random edit of `input`: flip, insert, delete, duplicate a slice, or truncate.
fn mutate(input: &[u8], edits: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut out = input.to_vec();
    for &(kind, at, byte) in edits {
        let at = if out.is_empty() { 0 } else { at % out.len() };
        match kind % 5 {
            0 if !out.is_empty() => out[at] ^= byte | 1,
            1 => out.insert(at, byte),
            2 if !out.is_empty() => {
                out.remove(at);
            }
            3 => {
                let end = (at + byte as usize).min(out.len());
                let slice = out[at..end].to_vec();
                out.splice(at..at, slice);
            }
            _ => out.truncate(at),
        }
    }
    out
}

fn edits() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8)
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..2048)
}

/// Runs a format's decoder; any error must carry a code (the answer's status and body).
fn decode_with(format: &dyn Format, bytes: &[u8], content_type: &str, products: &Products) {
    decode_with_params(format, bytes, content_type, products, &NO_PARAMS);
}

fn decode_with_params(
    format: &dyn Format,
    bytes: &[u8],
    content_type: &str,
    products: &Products,
    params: &Params,
) {
    let request = ProductRequest {
        name: None,
        key: None,
    };
    let body = Body {
        bytes,
        content_type: Some(content_type),
        params,
    };
    match format.decode(body, products, &request, &LIMITS) {
        Ok(batch) => assert!(batch.items.len() <= LIMITS.max_batch_events),
        Err(e) => {
            let code = e.error_code();
            assert!(code.status() >= 400, "{code:?}: {e}");
        }
    }
    // With the product named, as `?product=app` sends it.
    let named = ProductRequest {
        name: Some("app".into()),
        key: None,
    };
    let body = Body {
        bytes,
        content_type: Some(content_type),
        params,
    };
    if let Err(e) = format.decode(body, products, &named, &LIMITS) {
        assert!(e.error_code().status() >= 400, "{e}");
    }
}

fn common_gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn otlp_protobuf_seeds() -> [(Vec<u8>, &'static dyn Format); 2] {
    let traces: ExportTraceServiceRequest =
        otlp::decode(OTLP_TRACES_JSON.as_bytes(), Encoding::Json).expect("traces seed");
    let logs: ExportLogsServiceRequest =
        otlp::decode(OTLP_LOGS_JSON.as_bytes(), Encoding::Json).expect("logs seed");
    [
        (otlp::encode(&traces, Encoding::Protobuf), &OTLP_TRACES),
        (otlp::encode(&logs, Encoding::Protobuf), &OTLP_LOGS),
    ]
}

/// Decodes and maps an OTLP metrics request as `POST /v1/metrics` does.
fn metrics_with(bytes: &[u8], encoding: Encoding) {
    let Ok(request) = otlp::decode::<ExportMetricsServiceRequest>(bytes, encoding) else {
        return;
    };
    count_points(&request);
    service_name(&request);
    let pii = PiiDetector::all();
    let rules = Rules {
        install_attribute: Some("app.install_id"),
        oldest_ms: 0,
        retention_days: 30,
        newest_ms: i64::MAX,
        pii: &pii,
    };
    map_request(&request, &rules);
}

fn check_query(text: &str) {
    match query::parse(text) {
        Ok(_) => {}
        Err(SearchError::Query { position, message }) => {
            assert!(
                position <= text.len(),
                "{message} at {position} of {text:?}"
            );
            assert!(!message.is_empty());
        }
        Err(other) => panic!("{text:?}: not a query error: {other}"),
    }
}

proptest! {
    #[test]
    fn native_and_flat_answer_any_bytes(raw in bytes(), edits in edits()) {
        let products = products();
        for content_type in ["application/json", "text/plain"] {
            decode_with(&NATIVE, &raw, content_type, &products);
            decode_with(&NATIVE, &mutate(NATIVE_SEED.as_bytes(), &edits), content_type, &products);
        }
    }

    #[test]
    fn gzip_bodies_answer_any_bytes(raw in bytes(), edits in edits(), limit in 0usize..100_000) {
        let gzipped = {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(NATIVE_SEED.as_bytes()).unwrap();
            enc.finish().unwrap()
        };
        for input in [raw.clone(), mutate(&gzipped, &edits)] {
            match decode_body(input, Some("gzip"), limit) {
                Ok(out) => {
                    prop_assert!(out.len() <= limit);
                    decode_with(&NATIVE, &out, "application/json", &products());
                }
                Err(e) => prop_assert!(e.error_code().status() >= 400),
            }
        }
        prop_assert_eq!(decode_body(raw.clone(), None, limit).unwrap(), raw);
    }

    #[test]
    fn otlp_protobuf_answers_any_bytes(raw in bytes(), edits in edits()) {
        let products = products();
        for (seed, format) in otlp_protobuf_seeds() {
            decode_with(format, &raw, "application/x-protobuf", &products);
            decode_with(format, &mutate(&seed, &edits), "application/x-protobuf", &products);
        }
        metrics_with(&raw, Encoding::Protobuf);
        let metrics: ExportMetricsServiceRequest =
            otlp::decode(OTLP_METRICS_JSON.as_bytes(), Encoding::Json).unwrap();
        metrics_with(&mutate(&otlp::encode(&metrics, Encoding::Protobuf), &edits), Encoding::Protobuf);
    }

    #[test]
    fn otlp_json_answers_any_bytes(raw in bytes(), edits in edits()) {
        let products = products();
        for (seed, format) in [(OTLP_TRACES_JSON, &OTLP_TRACES as &dyn Format), (OTLP_LOGS_JSON, &OTLP_LOGS)] {
            decode_with(format, &raw, "application/json", &products);
            decode_with(format, &mutate(seed.as_bytes(), &edits), "application/json", &products);
        }
        metrics_with(&raw, Encoding::Json);
        metrics_with(&mutate(OTLP_METRICS_JSON.as_bytes(), &edits), Encoding::Json);
    }

    #[test]
    fn posthog_and_aptabase_answer_any_bytes(raw in bytes(), edits in edits()) {
        let products = products();
        let gzipped = common_gzip(POSTHOG_SEED.as_bytes());
        let compressions = [None, Some("gzip-js"), Some("base64"), Some("lz64")];
        for compression in compressions {
            let params = Params {
                path: Vec::new(),
                query: compression.map(|c| ("compression".to_string(), c.to_string())).into_iter().collect(),
                headers: Vec::new(),
            };
            for content_type in ["application/json", "text/plain", "application/x-www-form-urlencoded"] {
                decode_with_params(&POSTHOG, &raw, content_type, &products, &params);
                decode_with_params(&POSTHOG, &mutate(POSTHOG_SEED.as_bytes(), &edits), content_type, &products, &params);
                decode_with_params(&POSTHOG, &mutate(&gzipped, &edits), content_type, &products, &params);
            }
        }
        let params = aptabase_params();
        decode_with_params(&APTABASE, &raw, "application/json", &products, &params);
        decode_with_params(&APTABASE, &mutate(APTABASE_SEED.as_bytes(), &edits), "application/json", &products, &params);
    }

    #[test]
    fn sentry_answers_any_bytes(raw in bytes(), edits in edits()) {
        let products = products();
        let params = sentry_params();
        for format in [&SENTRY_ENVELOPE as &dyn Format, &SENTRY_STORE] {
            decode_with_params(format, &raw, "application/x-sentry-envelope", &products, &params);
            decode_with_params(format, &mutate(SENTRY_SEED.as_bytes(), &edits), "application/x-sentry-envelope", &products, &params);
            decode_with_params(format, &raw, "application/json", &products, &NO_PARAMS);
        }
        let event = SENTRY_SEED.lines().nth(2).unwrap();
        decode_with_params(&SENTRY_STORE, &mutate(event.as_bytes(), &edits), "application/json", &products, &params);
    }

    #[test]
    fn compressed_bodies_are_bounded(raw in bytes(), edits in edits(), limit in 0usize..100_000) {
        use std::io::Write;
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(SENTRY_SEED.as_bytes()).unwrap();
        let zstd = zstd::encode_all(SENTRY_SEED.as_bytes(), 1).unwrap();
        for (encoding, seed) in [("deflate", zlib.finish().unwrap()), ("zstd", zstd), ("br", Vec::new())] {
            for input in [raw.clone(), mutate(&seed, &edits)] {
                match decode_body(input, Some(encoding), limit) {
                    Ok(out) => prop_assert!(out.len() <= limit),
                    Err(e) => prop_assert!(e.error_code().status() >= 400),
                }
            }
        }
    }

    #[test]
    fn query_parser_answers_any_text(text in ".{0,300}") {
        check_query(&text);
    }

    #[test]
    fn query_parser_answers_any_token_soup(
        tokens in prop::collection::vec(prop::sample::select(QUERY_TOKENS), 0..400)
    ) {
        check_query(&tokens.concat());
        check_query(&tokens.join(" "));
    }

    #[test]
    fn query_nesting_is_bounded(levels in 0usize..2000, open in prop::sample::select(&["(", "-(", "NOT ("][..])) {
        let text = format!("{}a{}", open.repeat(levels), ")".repeat(levels));
        let result = query::parse(&text);
        let depth_per_level = if open == "(" { 1 } else { 2 };
        prop_assert_eq!(result.is_ok(), levels * depth_per_level <= MAX_QUERY_DEPTH, "{}", text);
    }
}

/// The seeds are valid, so the mutations start from inputs that reach every decoding step.
#[test]
fn seeds_decode_into_events() {
    let products = products();
    let named = ProductRequest {
        name: Some("app".into()),
        key: None,
    };
    let decoded_with = |format: &dyn Format, bytes: &[u8], content_type: &str, params: &Params| {
        let body = Body {
            bytes,
            content_type: Some(content_type),
            params,
        };
        let batch = format.decode(body, &products, &named, &LIMITS).unwrap();
        batch.items.iter().filter(|item| item.is_ok()).count()
    };
    let decoded = |format: &dyn Format, bytes: &[u8], content_type: &str| {
        decoded_with(format, bytes, content_type, &NO_PARAMS)
    };
    // The exception (the person update is set aside, the malformed item refused).
    assert_eq!(
        decoded(&POSTHOG, POSTHOG_SEED.as_bytes(), "application/json"),
        1
    );
    assert_eq!(
        decoded_with(
            &APTABASE,
            APTABASE_SEED.as_bytes(),
            "application/json",
            &aptabase_params()
        ),
        2
    );
    assert_eq!(
        decoded(&NATIVE, NATIVE_SEED.as_bytes(), "application/json"),
        2
    );
    // The error event, the transaction and its span, the session (the client report and the
    // attachment set aside, the malformed event refused).
    assert_eq!(
        decoded_with(
            &SENTRY_ENVELOPE,
            SENTRY_SEED.as_bytes(),
            "application/x-sentry-envelope",
            &sentry_params()
        ),
        4
    );
    assert_eq!(
        decoded(
            &OTLP_TRACES,
            OTLP_TRACES_JSON.as_bytes(),
            "application/json"
        ),
        1
    );
    assert_eq!(
        decoded(&OTLP_LOGS, OTLP_LOGS_JSON.as_bytes(), "application/json"),
        1
    );
    for (seed, format) in otlp_protobuf_seeds() {
        assert_eq!(decoded(format, &seed, "application/x-protobuf"), 1);
    }
    let metrics: ExportMetricsServiceRequest =
        otlp::decode(OTLP_METRICS_JSON.as_bytes(), Encoding::Json).unwrap();
    assert_eq!(count_points(&metrics), 3);
}
