//! The trace API against a real server: a trace sent as native events (spans with
//! `metrics.duration_ms`, an error span, a log) comes back as its events and its waterfall; ids
//! are checked; both roles read it; a trace past the limit says it is truncated and keeps its
//! oldest events; per-stage latency through search and the aggregations, and per-stage
//! percentiles through analytics, as the README says.

mod common;

use common::*;
use serde_json::{json, Value};
use telemetryd::traces::MAX_TRACE_EVENTS;

/// An open-schema product keeps `duration_ms` and the span attributes as sent.
const CONFIG: &str = r#"
[search]
commit_interval_ms = 200
[[products]]
id = "agent"
retention_days = 30
rate_limit_per_minute = 100000
# One install: no k-anonymity folding of the breakdowns.
min_group_installs = 0
"#;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const OTHER: &str = "0af7651916cd43dd8448eb211c80319c";

fn server() -> TestServer {
    TestServer::start(&format!("{CONFIG}\n{}", tokens_toml()), &[])
}

fn send(server: &TestServer, events: Value) {
    let count = events.as_array().unwrap().len();
    let resp = server.post_events("?product=agent", &json!({ "events": events }).to_string());
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["accepted"], count, "{}", resp.text());
}

/// A voice-agent turn: the root span, speech-to-text, an LLM call that fails, a log inside the
/// LLM span; sent children first, as exporters do. Returns the root's start.
fn seed(server: &TestServer) -> i64 {
    let t0 = telemetryd::model::now_ms() - 60_000;
    send(
        server,
        json!([
            {"id": "c0000000-0000-4000-8000-000000000003", "name": "getpatter.llm", "level": "error",
             "timestamp": t0 + 200, "installId": "inst-1", "traceId": TRACE, "spanId": "00f067aa0ba902b3",
             "parentSpanId": "00f067aa0ba902b1",
             "error": {"domain": "llm", "code": "rate_limit", "message": "429 from the provider"},
             "dims": {"provider": "openai"}, "metrics": {"duration_ms": 400.25, "tokens": 120}},
            {"id": "c0000000-0000-4000-8000-000000000004", "name": "llm.retry", "timestamp": t0 + 450,
             "installId": "inst-1", "traceId": TRACE, "spanId": "00f067aa0ba902b3",
             "dims": {"attempt": "2"}},
            {"id": "c0000000-0000-4000-8000-000000000002", "name": "getpatter.stt", "timestamp": t0 + 10,
             "installId": "inst-1", "traceId": TRACE, "spanId": "00f067aa0ba902b2",
             "parentSpanId": "00f067aa0ba902b1", "metrics": {"duration_ms": 150}},
            {"id": "c0000000-0000-4000-8000-000000000001", "name": "getpatter.turn", "timestamp": t0,
             "installId": "inst-1", "traceId": TRACE, "spanId": "00f067aa0ba902b1",
             "metrics": {"duration_ms": 812.5}},
            {"id": "c0000000-0000-4000-8000-000000000009", "name": "getpatter.turn", "timestamp": t0 + 5,
             "installId": "inst-2", "traceId": OTHER, "spanId": "00f067aa0ba902c1",
             "metrics": {"duration_ms": 50}},
            {"id": "c0000000-0000-4000-8000-00000000000a", "name": "app_opened", "timestamp": t0 + 5,
             "installId": "inst-2"}
        ]),
    );
    server.settle();
    t0
}

fn trace(server: &TestServer, id: &str) -> Value {
    let resp = server.admin_get(&format!("/api/v1/traces/{id}"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

#[test]
fn a_trace_comes_back_as_its_events_and_waterfall() {
    let server = server();
    let t0 = seed(&server);
    let t = trace(&server, TRACE);
    assert_eq!(t["trace_id"], TRACE);
    assert_eq!(t["start_ms"], t0);
    assert_eq!(t["duration_ms"], 812.5);
    assert_eq!(
        (&t["spans"], &t["logs"], &t["errors"]),
        (&json!(3), &json!(1), &json!(1))
    );
    assert_eq!(
        (&t["total"], &t["truncated"], &t["limit"]),
        (&json!(4), &json!(false), &json!(MAX_TRACE_EVENTS))
    );

    let rows = t["waterfall"].as_array().unwrap();
    let shape: Vec<(&str, u64, i64, f64, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["depth"].as_u64().unwrap(),
                r["offset_ms"].as_i64().unwrap(),
                r["duration_ms"].as_f64().unwrap(),
                r["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("getpatter.turn", 0, 0, 812.5, "span"),
            ("getpatter.stt", 1, 10, 150.0, "span"),
            ("getpatter.llm", 1, 200, 400.25, "span"),
            ("llm.retry", 2, 450, 0.0, "log"),
        ]
    );
    let llm = &rows[2];
    assert_eq!(llm["event_id"], "c0000000-0000-4000-8000-000000000003");
    assert_eq!(
        (&llm["level"], &llm["error"], &llm["orphan"]),
        (&json!("error"), &json!(true), &json!(false))
    );
    assert_eq!(
        (&llm["span_id"], &llm["parent_span_id"]),
        (&json!("00f067aa0ba902b3"), &json!("00f067aa0ba902b1"))
    );
    assert_eq!(
        llm["attributes"],
        json!({"provider": "openai", "tokens": 120.0})
    );
    assert_eq!(rows[0]["parent_span_id"], Value::Null);
    assert_eq!(rows[3]["attributes"], json!({"attempt": "2"}));
    assert!(rows
        .iter()
        .filter(|r| r["name"] != "getpatter.llm")
        .all(|r| r["error"] == false));

    // The events themselves, by timestamp, as stored.
    let events = t["events"].as_array().unwrap();
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "getpatter.turn",
            "getpatter.stt",
            "getpatter.llm",
            "llm.retry"
        ]
    );
    assert_eq!(events[2]["error"]["code"], "rate_limit");
    assert_eq!(events[2]["trace_id"], TRACE);
    assert_eq!(
        events[2],
        server.event("c0000000-0000-4000-8000-000000000003")
    );

    // The other trace is one span; the viewer reads traces too.
    let other = server.get_as(&format!("/api/v1/traces/{OTHER}"), VIEWER_TOKEN);
    assert_eq!(other.status, 200, "{}", other.text());
    let other = other.json();
    assert_eq!((&other["spans"], &other["total"]), (&json!(1), &json!(1)));
    assert_eq!(other["waterfall"][0]["name"], "getpatter.turn");
}

#[test]
fn ids_tokens_and_unknown_traces() {
    let server = server();
    seed(&server);
    for bad in [
        "4bf92f3577b34da6",
        "4bf92f3577b34da6a3ce929d0e0e473z",
        "00000000000000000000000000000000",
    ] {
        let resp = server.admin_get(&format!("/api/v1/traces/{bad}"));
        assert_eq!(resp.status, 400, "{bad}");
        assert_eq!(resp.error_code(), "invalid_parameter", "{bad}");
        assert_eq!(resp.json()["error"]["details"]["parameter"], "trace_id");
    }
    let unknown = server.admin_get("/api/v1/traces/ffffffffffffffffffffffffffffffff");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error_code(), "not_found");
    assert_eq!(
        unknown.json()["error"]["message"],
        "trace ffffffffffffffffffffffffffffffff not found"
    );
    let anonymous = server.get(&format!("/api/v1/traces/{TRACE}"));
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.error_code(), "missing_token");
    let post = request(
        "POST",
        &format!("{}/api/v1/traces/{TRACE}", server.url),
        &[],
        None,
    );
    assert_eq!(post.status, 405);
    // The search API finds the same events by the catalogue's trace_id filter and query field.
    let by_param = server.admin_get(&format!("/api/v1/events?trace_id={TRACE}&limit=1"));
    assert_eq!(by_param.json()["total"], 4);
    let by_query = server.admin_get(&format!("/api/v1/events?q=trace_id%3A{TRACE}&limit=1"));
    assert_eq!(by_query.json()["total"], 4);
}

#[test]
fn a_trace_past_the_limit_keeps_its_oldest_events_and_says_so() {
    let server = server();
    let t0 = telemetryd::model::now_ms() - 3_600_000;
    let count = MAX_TRACE_EVENTS + 5;
    // Sent newest first, so neither arrival nor position order is time order.
    let spans: Vec<Value> = (0..count)
        .rev()
        .map(|i| {
            json!({"name": "step", "timestamp": t0 + i as i64, "installId": "inst-1",
                   "traceId": TRACE, "spanId": format!("{i:016x}"),
                   "metrics": {"duration_ms": 1}})
        })
        .collect();
    for batch in spans.chunks(500) {
        send(&server, Value::Array(batch.to_vec()));
    }
    server.settle();
    let t = trace(&server, TRACE);
    assert_eq!(
        (&t["total"], &t["truncated"]),
        (&json!(count), &json!(true))
    );
    let rows = t["waterfall"].as_array().unwrap();
    assert_eq!(rows.len(), MAX_TRACE_EVENTS);
    assert_eq!(t["events"].as_array().unwrap().len(), MAX_TRACE_EVENTS);
    assert_eq!(t["start_ms"], t0);
    let offsets: Vec<i64> = rows
        .iter()
        .map(|r| r["offset_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, (0..MAX_TRACE_EVENTS as i64).collect::<Vec<_>>());
    assert_eq!(t["duration_ms"], MAX_TRACE_EVENTS as f64);
}

/// The README's recipe for per-stage latency with search: metric ranges on `duration_ms`, broken
/// down by span name or counted over time for one stage.
#[test]
fn per_stage_latency_through_search_and_aggregations() {
    let server = server();
    seed(&server);
    let slow = server
        .admin_get(&format!(
            "/api/v1/stats/breakdown?field=name&q={}",
            enc("duration_ms:>=300")
        ))
        .json();
    assert_eq!(
        slow["rows"],
        json!([
            {"value": "getpatter.llm", "events": 1, "raw_events": 1, "installs": 1},
            {"value": "getpatter.turn", "events": 1, "raw_events": 1, "installs": 1}
        ])
    );
    let stage = server
        .admin_get(&format!(
            "/api/v1/stats/timeseries?bucket=1h&from=-2h&q={}",
            enc("name:getpatter.llm duration_ms:>300")
        ))
        .json();
    let total: u64 = stage["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["total"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 1);
    let fast = server
        .admin_get(&format!(
            "/api/v1/events?q={}",
            enc("name:getpatter.turn duration_ms:<100")
        ))
        .json();
    assert_eq!(fast["total"], 1);
    assert_eq!(fast["events"][0]["trace_id"], OTHER);
}

/// The README's recipe for per-stage percentiles: a distribution of `duration_ms` by span name,
/// and a p95 trend of one stage by a span attribute.
#[test]
fn per_stage_percentiles_through_analytics() {
    let server = server();
    seed(&server);
    let query = |spec: Value| {
        let resp = server.admin_request("POST", "/api/v1/analytics/query", Some(&spec));
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.json()
    };
    let stages = query(
        json!({"product": "agent", "kind": "distribution", "metric": "duration_ms",
                              "from": "-7d", "group_by": ["name"]}),
    );
    let summaries: Vec<(String, f64, f64, f64, f64)> = stages["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let s = &g["summary"];
            let f = |k: &str| s[k].as_f64().unwrap();
            (
                g["group"][0].as_str().unwrap().to_string(),
                f("count"),
                f("min"),
                f("max"),
                f("p95"),
            )
        })
        .collect();
    assert_eq!(summaries.len(), 3, "{stages}");
    for expected in [
        ("getpatter.turn", 2.0, 50.0, 812.5, 812.5),
        ("getpatter.llm", 1.0, 400.25, 400.25, 400.25),
        ("getpatter.stt", 1.0, 150.0, 150.0, 150.0),
    ] {
        let found = summaries.iter().find(|s| s.0 == expected.0);
        let found = found.map(|s| (s.0.as_str(), s.1, s.2, s.3, s.4));
        assert_eq!(found, Some(expected), "{stages}");
    }

    let llm = query(
        json!({"product": "agent", "kind": "trend", "measure": "p95",
                           "metric": "duration_ms", "from": "-7d", "q": "name:getpatter.llm",
                           "group_by": ["provider"]}),
    );
    let series = llm["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{llm}");
    assert_eq!(series[0]["group"], json!(["openai"]));
    let values: Vec<f64> = series[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(values, [400.25]);
}

fn enc(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
