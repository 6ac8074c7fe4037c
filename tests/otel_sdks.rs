//! Compatibility with the real OpenTelemetry SDK exporters, unmodified: the Python SDK's
//! OTLP/HTTP protobuf exporter (gzip, endpoint from `OTEL_EXPORTER_OTLP_ENDPOINT`) and the JS
//! SDK's OTLP/HTTP exporters (JSON) send a voice call's trace, its logs and metrics to a real
//! server, and what they sent is read back through the HTTP API.
//!
//! The senders are `tests/otel/send.py` and `tests/otel/send.mjs`; each prints a JSON summary of
//! what it sent (ids, exact durations, expected values) and of every HTTP answer it got, and
//! exits non-zero when an export failed (run by `common::sdks`). Their SDKs are installed by
//! `scripts/test.sh`: `python3 -m venv tests/otel/.venv && tests/otel/.venv/bin/pip install -r
//! tests/otel/requirements.txt` and `(cd tests/otel && npm ci)`. Without them these tests fail
//! and say so.

mod common;

use std::process::Command;

use common::sdks::{self, Sent};
use common::TestServer;
use serde_json::Value;

fn config() -> String {
    format!(
        r#"
[[products]]
id = "voice-sdk"
[products.schema]
mode = "open"
[products.otlp]
install_id_attribute = "getpatter.install_id"

{}"#,
        common::tokens_toml()
    )
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Sdk {
    Python,
    Node,
}

impl Sdk {
    /// Also its `telemetry.sdk.language`, which becomes the event's `runtime`.
    fn name(self) -> &'static str {
        match self {
            Sdk::Python => "python",
            Sdk::Node => "nodejs",
        }
    }

    fn script(self) -> &'static str {
        match self {
            Sdk::Python => "send.py",
            Sdk::Node => "send.mjs",
        }
    }

    /// The command running the sender, or why it cannot run here.
    fn command(self) -> Result<Command, String> {
        match self {
            Sdk::Python => sdks::python(
                "opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http",
                self.script(),
            ),
            Sdk::Node => sdks::node(self.script()),
        }
    }
}

/// Runs a sender against `endpoint` for the given signals.
fn send(sdk: Sdk, endpoint: &str, signals: &str) -> Sent {
    let mut command = sdk.command().unwrap_or_else(|e| panic!("{e}"));
    // Only what this test sets: no OTEL_* setting of the machine's may redirect or change them.
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    if sdk == Sdk::Python {
        // The Python exporters find the server through the standard variable alone.
        command.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
    }
    sdks::run(command, &[endpoint, signals], sdk.name())
}

fn endpoint(server: &TestServer) -> String {
    format!("{}/otlp/voice-sdk", server.url)
}

/// Every HTTP answer the exporters got for `path` was a 200 of the request's own encoding, with
/// no partial success (Python decodes the answer; the JS exporter reports one through diag,
/// which fails the sender).
fn assert_requests(sdk: Sdk, sent: &Sent, endpoint: &str, path: &str, expected: usize) {
    let requests: Vec<&Value> = sent.summary["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| r["url"] == format!("{endpoint}{path}").as_str())
        .collect();
    assert_eq!(
        requests.len(),
        expected,
        "{}: requests to {endpoint}{path}:\n{}",
        sdk.name(),
        sent.output
    );
    let (content_type, encoding) = match sdk {
        Sdk::Python => ("application/x-protobuf", Value::from("gzip")),
        Sdk::Node => ("application/json", Value::Null),
    };
    for r in requests {
        assert_eq!(r["status"], 200, "{}: {r}", sdk.name());
        assert_eq!(r["request_content_type"], content_type, "{r}");
        assert_eq!(r["request_content_encoding"], encoding, "{r}");
        assert_eq!(r["response_content_type"], content_type, "{r}");
        if sdk == Sdk::Python {
            assert_eq!(r["partial_success"], Value::Null, "{r}");
        }
    }
}

fn assert_exports(sdk: Sdk, sent: &Sent, signal: &str, expected: usize) {
    let exports: Vec<&Value> = sent.summary["exports"]
        .as_array()
        .expect("exports")
        .iter()
        .filter(|e| e["signal"] == signal)
        .collect();
    assert_eq!(
        exports.len(),
        expected,
        "{}: {signal} exports:\n{}",
        sdk.name(),
        sent.output
    );
    for e in exports {
        assert_eq!(
            e["result"],
            "SUCCESS",
            "{}: {e}\n{}",
            sdk.name(),
            sent.output
        );
    }
}

/// Every event of a trace, oldest first, once the index has caught up.
fn trace_events(server: &TestServer, trace_id: &str) -> Vec<Value> {
    server.settle();
    let resp = server.admin_get(&format!("/api/v1/events?q=trace_id:{trace_id}&limit=100"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let mut events = resp.json()["events"].as_array().unwrap().clone();
    events.sort_by_key(|e| e["timestamp"].as_i64());
    events
}

fn by_name<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["name"] == name && e.get("message").is_none())
        .unwrap_or_else(|| panic!("no span `{name}` in {events:#?}"))
}

fn by_message<'a>(events: &'a [Value], message: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["message"] == message)
        .unwrap_or_else(|| panic!("no log record `{message}` in {events:#?}"))
}

/// The stored stack trace is the one the SDK sent, whole (real ones run to kilobytes).
fn assert_stack(error: &Value, sent: &Value) {
    let sent = sent.as_str().expect("the sender reports the stack it sent");
    assert!(sent.len() > 200, "a stack trace a few frames deep: {sent}");
    let stored = error["stack"].as_str().unwrap_or_default();
    assert_eq!(
        stored.trim_end(),
        sent.trim_end(),
        "the exception's stack trace"
    );
}

/// Runs the sender for `signals` and requires that it and every export it made succeeded.
fn send_ok(sdk: Sdk, endpoint: &str, signals: &str) -> Sent {
    let sent = send(sdk, endpoint, signals);
    assert!(
        sent.success,
        "the {} sender failed:\n{}",
        sdk.name(),
        sent.output
    );
    assert_eq!(sent.summary["ok"], true, "{}", sent.output);
    sent
}

/// Sends a voice call's trace and logs through one SDK and reads them back.
fn traces_and_logs(sdk: Sdk) {
    let server = TestServer::start(&config(), &[]);
    let endpoint = endpoint(&server);
    let sent = send_ok(sdk, &endpoint, "traces,logs");
    assert_exports(sdk, &sent, "traces", 1);
    assert_exports(sdk, &sent, "logs", 1);
    assert_requests(sdk, &sent, &endpoint, "/v1/traces", 1);
    assert_requests(sdk, &sent, &endpoint, "/v1/logs", 1);

    let summary = &sent.summary;
    let traces = &summary["traces"];
    let trace_id = traces["trace_id"].as_str().unwrap();
    let install_id = summary["install_id"].as_str().unwrap();
    let resource = &summary["resource"];
    assert_eq!(resource["telemetry.sdk.language"], sdk.name());
    let events = trace_events(&server, trace_id);
    assert_eq!(events.len(), 8, "4 spans and 4 log records: {events:#?}");

    // What every event gets from the resource and the request.
    for e in &events {
        assert_eq!(e["product"], "voice-sdk", "{e}");
        assert_eq!(e["source"], "otlp", "{e}");
        assert_eq!(e["trace_id"], trace_id, "{e}");
        assert_eq!(e["install_id"], install_id, "{e}");
        assert_eq!(e["app_version"], resource["service.version"], "{e}");
        assert_eq!(e["runtime"], sdk.name(), "{e}");
        assert_eq!(e["os_family"], resource["os.type"], "{e}");
        assert_eq!(e["dims"]["service.name"], "getpatter", "{e}");
        assert!(e.get("flags").is_none(), "no clock correction: {e}");
        assert!(
            e["dims"].get("getpatter.install_id").is_none(),
            "the install id is a field, not a dimension: {e}"
        );
    }

    // Spans: names, ids, parents, exact durations and start times, attributes.
    let start_ms = traces["start_ms"].as_i64().unwrap();
    for (name, expected) in traces["spans"].as_object().unwrap() {
        let span = by_name(&events, name);
        assert_eq!(span["span_id"], expected["span_id"], "{name}: {span}");
        assert_eq!(
            span.get("parent_span_id").unwrap_or(&Value::Null),
            &expected["parent_span_id"],
            "{name}: {span}"
        );
        assert_eq!(
            span["metrics"]["duration_ms"].as_f64(),
            expected["duration_ms"].as_f64(),
            "{name}: the exact duration: {span}"
        );
        assert_eq!(
            span["timestamp"].as_i64().unwrap(),
            start_ms + expected["offset_ms"].as_i64().unwrap(),
            "{name}: {span}"
        );
        let level = if name == "getpatter.tts" {
            "error"
        } else {
            "info"
        };
        assert_eq!(span["level"], level, "{name}: {span}");
    }
    let call_id = traces["call_id"].as_str().unwrap();
    let call = by_name(&events, "getpatter.call");
    assert_eq!(call["dims"]["getpatter.call.id"], call_id);
    assert_eq!(call["dims"]["getpatter.direction"], "inbound");
    assert_eq!(call["metrics"]["getpatter.turns"], 2.0);
    let stt = by_name(&events, "getpatter.stt");
    assert_eq!(stt["dims"]["getpatter.stt.provider"], "deepgram");
    assert_eq!(stt["metrics"]["getpatter.stt.audio_ms"], 1800.0);
    let llm = by_name(&events, "getpatter.llm");
    assert_eq!(llm["metrics"]["getpatter.llm.ttft_ms"], 245.0, "{llm}");
    assert_eq!(llm["metrics"]["patter.cost.tts_chars"], 132.0, "{llm}");
    assert_eq!(llm["metrics"]["getpatter.llm.temperature"], 0.7, "{llm}");
    assert_eq!(llm["dims"]["getpatter.call.id"], call_id, "{llm}");
    assert_eq!(llm["dims"]["getpatter.llm.streaming"], true, "{llm}");
    assert_eq!(llm["dims"]["getpatter.llm.model"], "gpt-4o-mini", "{llm}");
    assert!(
        llm["dims"].get("getpatter.llm.tools").is_none()
            && llm["metrics"].get("getpatter.llm.tools").is_none(),
        "an array attribute is neither a dimension nor a metric: {llm}"
    );
    // The failed span: error status and the recorded exception.
    let tts = by_name(&events, "getpatter.tts");
    let error = &traces["error"];
    assert_eq!(tts["dims"]["getpatter.tts.provider"], "elevenlabs");
    assert_eq!(tts["error"]["domain"], error["type"], "{tts}");
    assert_eq!(tts["error"]["message"], error["message"], "{tts}");
    assert_eq!(tts["error"]["code"], "STATUS_CODE_ERROR", "{tts}");
    assert_stack(&tts["error"], &error["stack"]);
    assert!(tts["fingerprint"].is_string(), "errors are fingerprinted");

    // Log records: severity → level, body → message, names, exceptions, trace context.
    let logs = &summary["logs"];
    let first_log_ms = logs["first_timestamp_ms"].as_i64().unwrap();
    for (i, expected) in logs["records"].as_array().unwrap().iter().enumerate() {
        let body = expected["body"].as_str().unwrap();
        let log = by_message(&events, body);
        assert_eq!(log["level"], expected["level"], "{body}: {log}");
        assert_eq!(
            log["name"], expected["name"],
            "{body} ({}): {log}",
            expected["name_from"]
        );
        assert_eq!(log["span_id"], logs["span_id"], "{body}: {log}");
        assert_eq!(log["span_id"], llm["span_id"], "logged inside the LLM span");
        assert!(log.get("parent_span_id").is_none(), "{log}");
        assert!(log["metrics"].get("duration_ms").is_none(), "{log}");
        assert_eq!(
            log["timestamp"].as_i64().unwrap(),
            first_log_ms + i as i64,
            "{body}: {log}"
        );
        assert!(
            log["dims"].get("event.name").is_none(),
            "event.name names the event: {log}"
        );
        match expected.get("exception") {
            Some(exception) => {
                assert_eq!(log["error"]["domain"], exception["type"], "{log}");
                assert_eq!(log["error"]["message"], exception["message"], "{log}");
                assert_stack(&log["error"], &exception["stack"]);
            }
            None => assert!(log.get("error").is_none(), "{log}"),
        }
    }
    let connected = by_message(&events, "call connected");
    assert_eq!(connected["dims"]["getpatter.call.id"], call_id);
    assert_eq!(connected["dims"]["getpatter.sip.codec"], "opus");
    let slow = by_message(&events, "slow provider: deepgram took 1800 ms");
    assert_eq!(slow["metrics"]["getpatter.stt.latency_ms"], 1800.0);
    let stats = by_message(&events, "audio frame stats");
    assert_eq!(stats["metrics"]["getpatter.audio.frames"], 480.0);

    // Filters and the trace view see them as a whole.
    let resp = server.admin_get(&format!(
        "/api/v1/events?trace_id={trace_id}&level=error,fatal&limit=100"
    ));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let mut errors: Vec<String> = resp.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    errors.sort();
    assert_eq!(errors, ["getpatter.agent", "getpatter.tts"]);
    let resp = server.admin_get(&format!("/api/v1/traces/{trace_id}"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let view = resp.json();
    assert_eq!(view["spans"], 4, "{view}");
    assert_eq!(view["logs"], 4, "{view}");
    assert_eq!(view["errors"], 2, "{view}");
    assert_eq!(view["duration_ms"], 3000.0, "{view}");
    assert_eq!(view["start_ms"], start_ms, "{view}");
    let rows = view["waterfall"].as_array().unwrap();
    let depth = |name: &str, kind: &str| -> Vec<i64> {
        rows.iter()
            .filter(|r| r["name"] == name && r["kind"] == kind)
            .map(|r| r["depth"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(depth("getpatter.call", "span"), [0]);
    assert_eq!(depth("getpatter.llm", "span"), [1]);
    assert_eq!(depth("getpatter.tts", "span"), [1]);
    assert_eq!(
        depth("getpatter.call.connected", "log"),
        [2],
        "a log sits under its span"
    );
    assert!(rows.iter().all(|r| r["orphan"] == false), "{view}");
}

#[test]
fn python_sdk_traces_and_logs_protobuf() {
    traces_and_logs(Sdk::Python);
}

#[test]
fn node_sdk_traces_and_logs_json() {
    traces_and_logs(Sdk::Node);
}

/// Metrics become time series (`POST /v1/metrics`), not events: each SDK (on its own server)
/// exports a counter twice, then again from a new MeterProvider as after a client restart, with
/// a histogram and a gauge; the query API answers the counter's increases across the restart,
/// the histogram's count, sum and estimated percentiles, and the gauge's mean.
#[test]
fn sdk_metrics_become_series_with_their_values() {
    for sdk in [Sdk::Python, Sdk::Node] {
        let server = TestServer::start(&config(), &[]);
        let endpoint = endpoint(&server);
        let sent = send_ok(sdk, &endpoint, "metrics");
        assert_exports(sdk, &sent, "metrics", 3);
        assert_requests(sdk, &sent, &endpoint, "/v1/metrics", 3);
        let expected = &sent.summary["metrics"];
        let query = |name: &str, stat: &str, group_by: &str| -> Value {
            let resp = server.admin_get(&format!(
                "/api/v1/metrics/query?product=voice-sdk&name={name}&from=-2h&bucket=1h&stat={stat}&group_by={group_by}"
            ));
            assert_eq!(resp.status, 200, "{}: {}", sdk.name(), resp.text());
            resp.json()
        };
        let overall = |result: &Value, attributes: Value| -> f64 {
            result["groups"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["attributes"] == attributes)
                .unwrap_or_else(|| panic!("{}: no group {attributes} in {result}", sdk.name()))
                ["overall"]
                .as_f64()
                .unwrap()
        };
        let approx = |a: f64, b: f64| (a - b).abs() < 1e-6 * b.abs().max(1.0);

        // The counter: its increases over all three exports, the restart included.
        let counter = &expected["counter"];
        let result = query(
            counter["name"].as_str().unwrap(),
            "increase",
            "surface,event",
        );
        for (labels, increase) in counter["increase_total"].as_object().unwrap() {
            let (surface, event) = labels.split_once('/').unwrap();
            let got = overall(
                &result,
                serde_json::json!({"surface": surface, "event": event}),
            );
            assert!(
                approx(got, increase.as_f64().unwrap()),
                "{}: {labels}: {got} != {increase}",
                sdk.name()
            );
        }

        // The histogram: count (its increase), sum, and the estimated percentiles.
        let histogram = &expected["histogram"];
        let name = histogram["name"].as_str().unwrap();
        let figure = |stat: &str| -> f64 {
            let result = query(name, stat, "");
            let groups = result["groups"].as_array().unwrap();
            assert_eq!(groups.len(), 1, "{}: {result}", sdk.name());
            groups[0]["overall"].as_f64().unwrap()
        };
        let checks = [
            ("increase", &histogram["count"]),
            ("sum", &histogram["sum"]),
            ("p50", &histogram["p50_estimate"]),
            ("p90", &histogram["p90_estimate"]),
        ];
        for (stat, want) in checks {
            let got = figure(stat);
            assert!(
                approx(got, want.as_f64().unwrap()),
                "{}: {stat} of {name}: {got} != {want}",
                sdk.name()
            );
        }

        // The gauge: the mean of the values it reported.
        let gauge = &expected["gauge"];
        let values: Vec<f64> = gauge["values_per_export"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let result = query(gauge["name"].as_str().unwrap(), "value", "");
        let got = result["groups"][0]["overall"].as_f64().unwrap();
        assert!(approx(got, mean), "{}: gauge {got} != {mean}", sdk.name());
    }
}
