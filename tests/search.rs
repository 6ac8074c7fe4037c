//! Search, export, geo, retention, erasure and the audit log against a real server.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::{json, Value};
use telemetryd::timespan::{DAY_MS, HOUR_MS, MINUTE_MS};

const CONFIG: &str = r#"
[server]
trusted_proxies = ["127.0.0.1"]
[search]
commit_interval_ms = 200
[[products]]
id = "app"
retention_days = 2
# A handful of installs: no k-anonymity folding (tests/analytics.rs covers it).
min_group_installs = 0
[[products]]
id = "sdk"
retention_days = 30
min_group_installs = 0
"#;

fn server() -> TestServer {
    let config = format!(
        "{CONFIG}\n[geo]\ndatabase = \"{}\"\n{}",
        testdata("geoip2-city-test.mmdb").display(),
        tokens_toml()
    );
    TestServer::start(&config, &[])
}

fn post(server: &TestServer, product: &str, events: Value, from_ip: &str) -> Value {
    let body = events.to_string().into_bytes();
    let resp = server.post_events_with(
        &format!("?product={product}"),
        &[
            ("content-type", "application/json"),
            ("x-forwarded-for", from_ip),
        ],
        body,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

fn search(server: &TestServer, query: &str) -> Value {
    let resp = server.admin_get(&format!("/api/v1/events?{query}"));
    assert_eq!(resp.status, 200, "{query}: {}", resp.text());
    resp.json()
}

fn names(result: &Value) -> Vec<String> {
    result["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

fn ids(result: &Value) -> Vec<String> {
    result["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn enc(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A small, known data set: dictation-app-like events and SDK-like events.
fn seed(server: &TestServer) -> i64 {
    let now = telemetryd::model::now_ms();
    let app = json!([
        {"id": "a0000000-0000-4000-8000-000000000001", "name": "dictation_completed", "timestamp": now - 5_000, "install_id": "inst-a", "user_id": "user-1",
         "platform": "ios", "channel": "keyboard", "module": "dictation", "app_version": "3.3.1", "release_channel": "stable",
         "dims": {"language": "en"}, "metrics": {"latency_ms": 420, "words": 12}},
        {"id": "a0000000-0000-4000-8000-000000000002", "name": "recognition_failed", "level": "error", "timestamp": now - 4_000, "install_id": "inst-a",
         "platform": "ios", "channel": "keyboard", "module": "dictation", "app_version": "3.3.1",
         "error": {"domain": "speech", "code": "network_timeout", "message": "Timeout after 3021 ms contacting recognizer"},
         "metrics": {"latency_ms": 3021}},
        {"id": "a0000000-0000-4000-8000-000000000003", "name": "recognition_failed", "level": "fatal", "timestamp": now - 3_000, "install_id": "inst-b",
         "platform": "android", "channel": "app", "module": "dictation", "app_version": "3.4.0",
         "error": {"domain": "audio", "code": "session_lost", "message": "Audio session interrupted by phone call"},
         "dims": {"language": "de"}, "metrics": {"latency_ms": 150}},
        {"id": "a0000000-0000-4000-8000-000000000004", "name": "settings_changed", "timestamp": now - 2 * DAY_MS - HOUR_MS, "install_id": "inst-c",
         "platform": "web", "channel": "app", "module": "settings", "app_version": "3.2.0", "dims": {"language": "fr"}},
        {"id": "a0000000-0000-4000-8000-000000000005", "name": "keyboard_shown", "level": "warn", "timestamp": now - 10 * DAY_MS, "install_id": "inst-c",
         "platform": "desktop", "channel": "keyboard", "module": "keyboard", "app_version": "3.2.0"}
    ]);
    assert_eq!(post(server, "app", app, "81.2.69.142")["accepted"], 5);
    let sdk = json!([
        {"id": "b0000000-0000-4000-8000-000000000001", "name": "call_completed", "timestamp": now - 1_000, "install_id": "inst-s",
         "platform": "python", "app_version": "0.7.0", "carrier": "twilio", "latency_ms": 812, "outcome": "completed"},
        {"id": "b0000000-0000-4000-8000-000000000002", "name": "call_completed", "timestamp": now - 900, "install_id": "inst-s",
         "platform": "python", "app_version": "0.7.0", "carrier": "telnyx", "latency_ms": 95, "outcome": "error"}
    ]);
    assert_eq!(post(server, "sdk", sdk, "216.160.83.57")["accepted"], 2);
    server.settle();
    now
}

#[test]
fn every_query_form_and_filter() {
    let server = server();
    seed(&server);
    let all = search(&server, "");
    assert_eq!(all["total"], 7);
    assert_eq!(all["total_exact"], true);
    let counted = search(&server, "exact_total=true");
    assert_eq!(
        (&counted["total"], &counted["total_exact"]),
        (&json!(7), &json!(true))
    );
    // Newest first.
    assert_eq!(names(&all)[..2], ["call_completed", "call_completed"]);
    assert_eq!(names(&all).last().unwrap(), "keyboard_shown");

    let q = |query: &str| format!("q={}", enc(query));
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            "q=timeout".to_string(),
            vec!["a0000000-0000-4000-8000-000000000002"],
        ),
        (
            "q=RECOGNIZER".to_string(),
            vec!["a0000000-0000-4000-8000-000000000002"],
        ),
        (
            "q=%22phone%20call%22".to_string(),
            vec!["a0000000-0000-4000-8000-000000000003"],
        ),
        ("q=%22call%20phone%22".to_string(), vec![]),
        (
            q("level:error OR level:fatal"),
            vec![
                "a0000000-0000-4000-8000-000000000003",
                "a0000000-0000-4000-8000-000000000002",
            ],
        ),
        (
            q("module:dictation AND NOT level:fatal"),
            vec![
                "a0000000-0000-4000-8000-000000000002",
                "a0000000-0000-4000-8000-000000000001",
            ],
        ),
        (
            q("module:dictation -level:fatal"),
            vec![
                "a0000000-0000-4000-8000-000000000002",
                "a0000000-0000-4000-8000-000000000001",
            ],
        ),
        (
            q("latency_ms:>400"),
            vec![
                "b0000000-0000-4000-8000-000000000001",
                "a0000000-0000-4000-8000-000000000002",
                "a0000000-0000-4000-8000-000000000001",
            ],
        ),
        (
            q("latency_ms:<=150"),
            vec![
                "b0000000-0000-4000-8000-000000000002",
                "a0000000-0000-4000-8000-000000000003",
            ],
        ),
        (
            q("carrier:twilio"),
            vec!["b0000000-0000-4000-8000-000000000001"],
        ),
        (
            q("language:de OR language:fr"),
            vec![
                "a0000000-0000-4000-8000-000000000003",
                "a0000000-0000-4000-8000-000000000004",
            ],
        ),
        (
            q("(platform:ios OR platform:android) AND error_code:session_lost"),
            vec!["a0000000-0000-4000-8000-000000000003"],
        ),
        (
            q("app_version:\"3.3.1\" dictation"),
            vec![
                "a0000000-0000-4000-8000-000000000002",
                "a0000000-0000-4000-8000-000000000001",
            ],
        ),
        (
            "platform=ios".to_string(),
            vec![
                "a0000000-0000-4000-8000-000000000002",
                "a0000000-0000-4000-8000-000000000001",
            ],
        ),
        (
            "product=sdk&app_version=0.7.0".to_string(),
            vec![
                "b0000000-0000-4000-8000-000000000002",
                "b0000000-0000-4000-8000-000000000001",
            ],
        ),
        (
            "level=warn".to_string(),
            vec!["a0000000-0000-4000-8000-000000000005"],
        ),
        (
            "level=error,fatal&channel=app".to_string(),
            vec!["a0000000-0000-4000-8000-000000000003"],
        ),
        (
            "module=settings".to_string(),
            vec!["a0000000-0000-4000-8000-000000000004"],
        ),
        (
            "name=call_completed&install_id=inst-s".to_string(),
            vec![
                "b0000000-0000-4000-8000-000000000002",
                "b0000000-0000-4000-8000-000000000001",
            ],
        ),
        (
            "user_id=user-1".to_string(),
            vec!["a0000000-0000-4000-8000-000000000001"],
        ),
        (
            "country_code=US".to_string(),
            vec![
                "b0000000-0000-4000-8000-000000000002",
                "b0000000-0000-4000-8000-000000000001",
            ],
        ),
        (
            "region_code=GB-ENG&release_channel=stable".to_string(),
            vec!["a0000000-0000-4000-8000-000000000001"],
        ),
        // The older spellings, as saved links still send them.
        (
            "country=US".to_string(),
            vec![
                "b0000000-0000-4000-8000-000000000002",
                "b0000000-0000-4000-8000-000000000001",
            ],
        ),
        (
            "region=GB-ENG&release_channel=stable".to_string(),
            vec!["a0000000-0000-4000-8000-000000000001"],
        ),
        (
            q("country:US region_code:US-WA"),
            vec![
                "b0000000-0000-4000-8000-000000000002",
                "b0000000-0000-4000-8000-000000000001",
            ],
        ),
    ];
    for (query, expected) in cases {
        let result = search(&server, &query);
        assert_eq!(ids(&result), expected, "{query}");
        assert_eq!(result["total"], expected.len(), "{query}");
    }
}

#[test]
fn time_ranges_relative_and_absolute() {
    let server = server();
    let now = seed(&server);
    assert_eq!(search(&server, "from=-1h")["total"], 5);
    assert_eq!(search(&server, "from=-3d")["total"], 6);
    assert_eq!(search(&server, "from=-3d&to=-1d")["total"], 1);
    let from = time::OffsetDateTime::from_unix_timestamp((now - 11 * DAY_MS) / 1000).unwrap();
    let to = time::OffsetDateTime::from_unix_timestamp((now - 9 * DAY_MS) / 1000).unwrap();
    let fmt = |t: time::OffsetDateTime| {
        enc(&t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap())
    };
    let result = search(&server, &format!("from={}&to={}", fmt(from), fmt(to)));
    assert_eq!(names(&result), ["keyboard_shown"]);
    let resp = server.admin_get("/api/v1/events?from=yesterday-ish");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (400, "invalid_parameter")
    );
    assert_eq!(resp.json()["error"]["details"]["parameter"], "from");
}

#[test]
fn query_errors_point_at_the_problem() {
    let server = server();
    for (q, position) in [
        ("level:error AND (module:x", 19usize),
        ("\"unclosed phrase", 0),
        ("latency_ms:>abc", 12),
    ] {
        let resp = server.admin_get(&format!("/api/v1/events?q={}", enc(q)));
        assert_eq!(
            (resp.status, resp.error_code().as_str()),
            (400, "invalid_query"),
            "{q}"
        );
        let details = &resp.json()["error"]["details"];
        assert_eq!(details["parameter"], "q");
        let at = details["position"].as_u64().unwrap() as usize;
        assert!(
            at.abs_diff(position) <= 12,
            "{q}: position {at}, expected near {position}"
        );
    }
    let resp = server.admin_get("/api/v1/events?limit=5000");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (400, "invalid_parameter")
    );
    let resp = server.admin_get("/api/v1/events?nonsense=1");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (400, "invalid_parameter")
    );
}

/// A query nested past the parser's depth limit is a 400 naming the limit, not a stack overflow
/// that aborts the process: the server still answers afterwards.
#[test]
fn deeply_nested_queries_are_refused_not_fatal() {
    let server = server();
    let deep_parens = format!("{}a{}", "(".repeat(30_000), ")".repeat(10));
    let deep_not = "-(".repeat(15_000);
    let deep_word_not = "NOT%20".repeat(5_000);
    for q in [deep_parens, deep_not, deep_word_not] {
        let resp = server.admin_get(&format!("/api/v1/events?q={q}"));
        assert_eq!(
            (resp.status, resp.error_code().as_str()),
            (400, "invalid_query"),
            "{}",
            resp.text()
        );
        assert!(resp.text().contains("nested"), "{}", resp.text());
    }
    let ok = format!("{}level:error{}", "(".repeat(20), ")".repeat(20));
    search(&server, &format!("q={}", enc(&ok)));
}

/// Extreme `from`/`to`/`bucket`/`limit`/`offset` values on every endpoint that takes them are a
/// 400 or a capped answer: no overflow, no allocation sized by the request, no 5xx.
#[test]
fn extreme_ranges_buckets_and_limits_are_refused_or_capped() {
    let server = server();
    seed(&server);
    server.settle();
    let times = [
        "",
        "0",
        "9223372036854775807",
        "-9223372036854775807ms",
        "-1ms",
    ];
    let buckets = ["1ms", "9223372036854775807ms", "1w"];
    let mut paths = Vec::new();
    for from in times {
        for to in times {
            let range = format!("from={from}&to={to}");
            for bucket in buckets {
                paths.push(format!("/api/v1/stats/timeseries?{range}&bucket={bucket}"));
                paths.push(format!(
                    "/api/v1/metrics/query?product=app&name=m&{range}&bucket={bucket}"
                ));
            }
            paths.push(format!("/api/v1/events?{range}"));
            paths.push(format!("/api/v1/events/export?{range}"));
            paths.push(format!("/api/v1/stats/breakdown?field=platform&{range}"));
            paths.push(format!("/api/v1/stats/overview?{range}"));
            paths.push(format!("/api/v1/geo?{range}"));
            paths.push(format!("/api/v1/audit?{range}"));
        }
    }
    for limit in ["0", "18446744073709551615", "99999999999999999999999", "-1"] {
        paths.push(format!("/api/v1/events?limit={limit}"));
        paths.push(format!(
            "/api/v1/stats/breakdown?field=platform&limit={limit}"
        ));
        paths.push(format!("/api/v1/clusters?limit={limit}&offset={limit}"));
        paths.push(format!("/api/v1/audit?limit={limit}&before={limit}"));
        paths.push(format!("/api/v1/stats/history?minutes={limit}"));
        paths.push(format!("/api/v1/clusters/timeline?days={limit}"));
        paths.push(format!("/api/v1/subjects/install_id/i-1?limit={limit}"));
    }
    for cursor in [
        "-9223372036854775808_0",
        "9223372036854775807_18446744073709551615",
        "1_99999999999999999999",
        "_",
    ] {
        paths.push(format!("/api/v1/events?cursor={cursor}&limit=1000"));
    }
    for path in &paths {
        let resp = server.admin_get(path);
        assert!(
            matches!(resp.status, 200 | 400 | 404),
            "{path}: {} {}",
            resp.status,
            resp.text()
        );
        if resp.status != 200 {
            assert!(!resp.error_code().is_empty(), "{path}: {}", resp.text());
        }
    }
    // One millisecond buckets over a century: refused before any bucket exists.
    for path in [
        "/api/v1/stats/timeseries?from=0&to=3155760000000&bucket=1ms",
        "/api/v1/metrics/query?product=app&name=m&from=0&to=3155760000000&bucket=1ms",
    ] {
        let resp = server.admin_get(path);
        assert_eq!(resp.status, 400, "{path}: {}", resp.text());
        assert_eq!(resp.json()["error"]["details"]["parameter"], "bucket");
    }
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn cursor_pages_have_no_duplicates_or_gaps_while_ingest_runs() {
    let server = server();
    let now = telemetryd::model::now_ms();
    let batch = |from: usize, n: usize, ts: i64| -> Value {
        Value::Array((from..from + n).map(|i| json!({"id": format!("c0000000-0000-4000-8000-{i:012}"), "name": "page", "timestamp": ts - (i % 7) as i64, "install_id": format!("i{}", i % 97)})).collect())
    };
    for chunk in 0..5 {
        post(
            &server,
            "app",
            batch(chunk * 100, 100, now - MINUTE_MS),
            "127.0.0.1",
        );
    }
    server.settle();
    let expected: HashSet<String> = (0..500)
        .map(|i| format!("c0000000-0000-4000-8000-{i:012}"))
        .collect();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut page = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=37&name=page&cursor={}", enc(c)),
            None => "limit=37&name=page".to_string(),
        };
        let result = search(&server, &query);
        seen.extend(ids(&result));
        // New events arrive between pages: newer, equal and older timestamps.
        post(
            &server,
            "app",
            batch(
                10_000 + page * 3,
                3,
                if page % 2 == 0 { now } else { now - MINUTE_MS },
            ),
            "127.0.0.1",
        );
        page += 1;
        match result["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(page < 100, "pagination does not end");
    }
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a page repeated an event");
    assert!(
        expected.is_subset(&unique),
        "{} of the original events missing",
        expected.difference(&unique).count()
    );
}

#[test]
fn export_as_ndjson_and_csv() {
    let server = server();
    seed(&server);
    let resp = server.admin_get("/api/v1/events/export?format=ndjson&product=app");
    assert_eq!(resp.status, 200);
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("application/x-ndjson"));
    let lines: Vec<Value> = resp
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["id"], "a0000000-0000-4000-8000-000000000003");

    let resp = server.admin_get("/api/v1/events/export?format=csv&level=error,fatal");
    assert!(resp.header("content-type").unwrap().starts_with("text/csv"));
    let text = resp.text();
    let rows: Vec<&str> = text.lines().collect();
    assert!(rows[0].starts_with("id,timestamp,received_at,product,name,level"));
    assert_eq!(rows.len(), 3);
    assert!(
        rows[1].contains("recognition_failed")
            && rows[1].contains("Audio session interrupted by phone call")
    );
    let resp = server.admin_get("/api/v1/events/export?format=xml");
    assert_eq!(resp.error_code(), "invalid_parameter");
    let resp = server.admin_get("/api/v1/events/export?q=%28broken");
    assert_eq!(resp.error_code(), "invalid_query");
}

#[test]
fn geo_counts_by_country_and_region() {
    let server = server();
    seed(&server);
    let geo = server.admin_get("/api/v1/geo").json();
    let countries = geo["countries"].as_array().unwrap();
    assert_eq!(countries[0]["country_code"], "GB");
    assert_eq!(countries[0]["events"], 5);
    assert_eq!(countries[0]["installs"], 3);
    assert_eq!(countries[0]["regions"][0]["region_code"], "GB-ENG");
    assert_eq!(countries[1]["country_code"], "US");
    assert_eq!(countries[1]["events"], 2);
    assert_eq!(countries[1]["installs"], 1);
    assert_eq!(countries[1]["regions"][0]["region_code"], "US-WA");
    // Filtered by country, under either spelling.
    for param in ["country_code", "country"] {
        let us = server.admin_get(&format!("/api/v1/geo?{param}=US")).json();
        assert_eq!(us["countries"].as_array().unwrap().len(), 1, "{param}");
        assert_eq!(us["countries"][0]["country_code"], "US", "{param}");
    }
    let errors = server
        .admin_get("/api/v1/geo?level=error,fatal&from=-1h")
        .json();
    assert_eq!(errors["countries"].as_array().unwrap().len(), 1);
    assert_eq!(errors["countries"][0]["events"], 2);
}

#[test]
fn retention_removes_old_events_from_store_and_index() {
    let server = server();
    seed(&server);
    let report = server.state.retention.sweep().unwrap();
    // Product `app` keeps 2 days: its 2-day-old and 10-day-old events go; `sdk` keeps 30.
    assert_eq!(report.events_deleted, 2);
    assert_eq!(search(&server, "")["total"], 5);
    assert_eq!(search(&server, "product=app")["total"], 3);
    assert!(server
        .state
        .store
        .event_by_id("a0000000-0000-4000-8000-000000000005".parse().unwrap())
        .unwrap()
        .is_none());
    assert!(server
        .state
        .store
        .event_by_id("a0000000-0000-4000-8000-000000000001".parse().unwrap())
        .unwrap()
        .is_some());
    assert_eq!(server.state.store.event_count().unwrap(), 5);
    // inst-c was last seen 2 days ago: pruned from the registry.
    assert!(server
        .state
        .store
        .install("app", "inst-c")
        .unwrap()
        .is_none());
    assert!(server
        .state
        .store
        .install("app", "inst-a")
        .unwrap()
        .is_some());
    assert_eq!(
        server
            .admin_get("/api/v1/events/a0000000-0000-4000-8000-000000000004")
            .status,
        404
    );
    let metrics = server.get("/metrics").text();
    assert!(metrics.contains("telemetryd_retention_deleted_events_total 2"));
}

/// Bytes of every file below `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    files_under(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_retention_sweep_shrinks_the_data_dir() {
    let server = server();
    // 20,000 events past `app`'s 2-day retention, each with its own (incompressible) text, and
    // a fresh one.
    let now = telemetryd::model::now_ms();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random_hex = move || {
        (0..4)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                format!("{state:016x}")
            })
            .collect::<String>()
    };
    for round in 0..40 {
        let batch: Vec<Value> = (0..500)
            .map(|i| {
                let n = round * 500 + i;
                json!({"name": "dictation_completed", "install_id": format!("old-{}", n % 400),
                       "timestamp": now - 10 * DAY_MS - n, "app_version": "3.3.1",
                       "dims": {"language": "en", "note": random_hex()},
                       "metrics": {"latency_ms": n % 900, "words": n % 40}})
            })
            .collect();
        assert_eq!(
            post(&server, "app", Value::Array(batch), "127.0.0.1")["accepted"],
            500
        );
    }
    let fresh = json!([{"name": "app_opened", "install_id": "new-1", "timestamp": now - 1_000}]);
    assert_eq!(post(&server, "app", fresh, "127.0.0.1")["accepted"], 1);
    server.settle();
    let store_file = server.dir.path().join("telemetry.redb");
    let index_dir = server.dir.path().join("index");
    let (store_before, index_before) = (
        std::fs::metadata(&store_file).unwrap().len(),
        bytes_under(&index_dir),
    );

    let report = server.state.retention.sweep().unwrap();
    assert_eq!(report.events_deleted, 20_000);
    assert_eq!(search(&server, "")["total"], 1);
    let (store_after, index_after) = (
        std::fs::metadata(&store_file).unwrap().len(),
        bytes_under(&index_dir),
    );
    // The store file is rewritten without the deleted events, and the index merged without them.
    assert!(
        store_after * 2 < store_before,
        "store file {store_before} → {store_after} bytes"
    );
    assert!(
        index_after * 2 < index_before,
        "index {index_before} → {index_after} bytes"
    );
}

#[test]
fn erasure_leaves_nothing_behind() {
    let server = server();
    seed(&server);
    // Many events so the install id sits in several blocks and index segments.
    let now = telemetryd::model::now_ms();
    for round in 0..4 {
        let batch: Vec<Value> = (0..50)
            .map(|i| json!({"name": "dictation_completed", "install_id": if i % 2 == 0 { "erase-me-7f3a" } else { "keep-me" }, "timestamp": now - i, "user_id": format!("u{round}")}))
            .collect();
        post(&server, "app", Value::Array(batch), "127.0.0.1");
    }
    server.settle();
    assert_eq!(search(&server, "install_id=erase-me-7f3a")["total"], 100);

    let viewer = request(
        "DELETE",
        &format!("{}/api/v1/subjects/install/erase-me-7f3a", server.url),
        &[("authorization", &format!("Bearer {VIEWER_TOKEN}"))],
        None,
    );
    assert_eq!(
        (viewer.status, viewer.error_code().as_str()),
        (403, "forbidden")
    );

    let resp = request(
        "DELETE",
        &format!(
            "{}/api/v1/subjects/install/erase-me-7f3a?wait_purge=true",
            server.url
        ),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        None,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let report = resp.json();
    assert_eq!(report["events_removed"], 100);
    assert_eq!(report["installs_removed"], 1);
    assert_eq!(report["purge"]["state"], "idle");
    assert!(report["purge"]["last"]["error"].is_null(), "{report}");
    assert_eq!(
        report["purge_wait"],
        json!({"timed_out": false, "timeout_secs": 60})
    );

    assert_eq!(search(&server, "install_id=erase-me-7f3a")["total"], 0);
    assert_eq!(
        search(&server, &format!("q={}", enc("install_id:erase-me-7f3a")))["total"],
        0
    );
    assert_eq!(search(&server, "install_id=keep-me")["total"], 100);
    let export = server.admin_get("/api/v1/subjects/install/erase-me-7f3a");
    assert_eq!((export.status, export.text().as_str()), (200, ""));
    assert!(server
        .state
        .store
        .install("app", "erase-me-7f3a")
        .unwrap()
        .is_none());
    // Erasing an unknown subject is not an error.
    let again = request(
        "DELETE",
        &format!("{}/api/v1/subjects/install/erase-me-7f3a", server.url),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        None,
    );
    assert_eq!(again.json()["events_removed"], 0);

    let dir = server.stop();
    assert!(files_under(&dir.path().join("index")).len() > 1);
    assert_eq!(
        occurrences_in_dir(dir.path(), b"erase-me-7f3a"),
        0,
        "the erased install id is still in the data dir"
    );
}

/// Erasures share purges: one starts at once, the next waits for `purge_interval_secs` (each
/// merges the index and rewrites the store while ingest waits) unless asked for at once; a purge
/// still wanted when the server stops runs at the next start, so the erased bytes leave the
/// disk either way.
#[test]
fn erasures_share_one_purge_per_interval() {
    let config = format!(
        "{CONFIG}\n[privacy]\npurge_interval_secs = 3600\n{}",
        tokens_toml()
    );
    let server = TestServer::start(&config, &[]);
    let now = telemetryd::model::now_ms();
    let events: Vec<Value> = ["purge-a-51c2", "purge-b-51c2", "purge-c-51c2", "kept-51c2"]
        .iter()
        .map(|install| json!({"name": "dictation_completed", "install_id": install, "timestamp": now}))
        .collect();
    post(&server, "app", Value::Array(events), "127.0.0.1");
    server.settle();
    let erase = |server: &TestServer, install: &str, query: &str| {
        let resp = request(
            "DELETE",
            &format!("{}/api/v1/subjects/install/{install}{query}", server.url),
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            None,
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.json()
    };
    let purge_done = |server: &TestServer| {
        for _ in 0..600 {
            let status = server.admin_get("/api/v1/purge").json();
            if status["state"] == "idle" && !status["last"].is_null() {
                return status;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the purge did not finish");
    };

    // The first erasure's purge starts at once; the second is scheduled an interval later.
    assert_eq!(
        erase(&server, "purge-a-51c2", "")["purge"]["state"],
        "running"
    );
    purge_done(&server);
    let second = erase(&server, "purge-b-51c2", "");
    assert_eq!(second["purge"]["state"], "scheduled", "{second}");
    let due = second["purge"]["due_at"].as_i64().unwrap();
    assert!(due > telemetryd::model::now_ms() + 3_500_000, "{second}");
    assert_eq!(
        server.admin_get("/api/v1/purge").json()["state"],
        "scheduled"
    );
    // Asked for at once, it runs at once.
    let started = send_purge(&server);
    assert_eq!(started["state"], "running", "{started}");
    purge_done(&server);

    // Scheduled when the server stops: it runs at the next start.
    assert_eq!(
        erase(&server, "purge-c-51c2", "")["purge"]["state"],
        "scheduled"
    );
    let dir = server.stop();
    assert!(occurrences_in_dir(dir.path(), b"purge-c-51c2") > 0);
    let again = TestServer::start_in(dir, &config, &[]);
    purge_done(&again);
    assert!(!again.state.store.purge_wanted().unwrap());
    let dir = again.stop();
    for install in ["purge-a-51c2", "purge-b-51c2", "purge-c-51c2"] {
        assert_eq!(
            occurrences_in_dir(dir.path(), install.as_bytes()),
            0,
            "{install}"
        );
    }
    assert!(occurrences_in_dir(dir.path(), b"kept-51c2") > 0);
}

fn send_purge(server: &TestServer) -> Value {
    let resp = request(
        "POST",
        &format!("{}/api/v1/purge", server.url),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        None,
    );
    assert_eq!(resp.status, 202, "{}", resp.text());
    resp.json()
}

#[test]
fn export_and_audit_for_subjects() {
    let server = server();
    seed(&server);
    let export = server.admin_get("/api/v1/subjects/user/user-1");
    assert_eq!(export.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = export
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], "a0000000-0000-4000-8000-000000000001");
    let export = server.admin_get("/api/v1/subjects/install/inst-a");
    assert_eq!(export.text().lines().count(), 2);
    assert_eq!(
        server.admin_get("/api/v1/subjects/device/x").error_code(),
        "invalid_parameter"
    );

    let resp = request(
        "DELETE",
        &format!("{}/api/v1/subjects/user/user-1", server.url),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        None,
    );
    assert_eq!(resp.json()["events_removed"], 1);
    let audit = server
        .admin_get("/api/v1/audit?action=subject.erase")
        .json();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry["actor"], "ops");
    assert_eq!(entry["action"], "subject.erase");
    assert_eq!(entry["outcome"], "ok");
    assert_eq!(entry["result"]["events_removed"], 1);
    let target = entry["target"].as_str().unwrap();
    assert!(
        target.starts_with("user:sha256:") && !target.contains("user-1"),
        "{target}"
    );
    assert_eq!(server.get_as("/api/v1/audit", VIEWER_TOKEN).status, 403);
    assert_eq!(
        server.admin_get("/api/v1/audit?action=policy").json()["entries"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn index_catches_up_after_its_directory_is_deleted() {
    let config = format!("{CONFIG}\n{}", tokens_toml());
    let server = TestServer::start(&config, &[]);
    seed(&server);
    let before = search(&server, "");
    let dir = server.stop();
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let server = TestServer::start_in(dir, &config, &[]);
    server.settle();
    let after = search(&server, "");
    assert_eq!(after["total"], 7);
    assert_eq!(ids(&after), ids(&before));
}

#[test]
fn overview_timeseries_breakdown_and_whoami() {
    let server = server();
    seed(&server);
    let who = |token: &str| {
        let me = server.get_as("/api/v1/whoami", token).json();
        (
            me["name"].clone(),
            me["role"].clone(),
            me["all_products"].clone(),
        )
    };
    assert_eq!(
        who(ADMIN_TOKEN),
        (json!("ops"), json!("admin"), json!(true))
    );
    assert_eq!(
        who(VIEWER_TOKEN),
        (json!("dash"), json!("viewer"), json!(true))
    );

    let overview = server.admin_get("/api/v1/stats/overview").json();
    assert_eq!(overview["events_24h"], 5);
    assert_eq!(overview["errors_24h"], 2);
    assert_eq!(overview["active_installs_24h"], 3);
    assert_eq!(overview["store_events"], 7);
    assert_eq!(
        server
            .admin_get("/api/v1/stats/overview?product=sdk")
            .json()["events_24h"],
        2
    );

    let series = server
        .admin_get("/api/v1/stats/timeseries?from=-3d&bucket=1d")
        .json();
    assert_eq!(series["bucket_ms"], DAY_MS);
    let buckets = series["buckets"].as_array().unwrap();
    let total: u64 = buckets.iter().map(|b| b["total"].as_u64().unwrap()).sum();
    assert_eq!(total, 6);
    let errors: u64 = buckets
        .iter()
        .map(|b| {
            b["by_level"]["error"].as_u64().unwrap() + b["by_level"]["fatal"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(errors, 2);
    let only_ios = server
        .admin_get("/api/v1/stats/timeseries?from=-1d&bucket=1h&platform=ios")
        .json();
    let ios_total: u64 = only_ios["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["total"].as_u64().unwrap())
        .sum();
    assert_eq!(ios_total, 2);
    assert_eq!(
        server
            .admin_get("/api/v1/stats/timeseries?bucket=soon")
            .error_code(),
        "invalid_parameter"
    );

    let platforms = server
        .admin_get("/api/v1/stats/breakdown?field=platform&from=-30d")
        .json();
    assert_eq!(
        platforms["rows"][0],
        json!({"value": "ios", "events": 2, "raw_events": 2, "installs": 1})
    );
    // Catalogue fields answer under their canonical name, whichever spelling was asked.
    for field in ["country_code", "country"] {
        let countries = server
            .admin_get(&format!("/api/v1/stats/breakdown?field={field}&from=-30d"))
            .json();
        assert_eq!(countries["field"], "country_code");
        assert_eq!(countries["rows"][0]["value"], "GB");
    }
    let names = server
        .admin_get("/api/v1/stats/breakdown?field=name&limit=1&from=-30d")
        .json();
    assert_eq!(names["rows"].as_array().unwrap().len(), 1);
    assert_eq!(names["rows"][0]["value"], "call_completed");
    assert_eq!(
        server.admin_get("/api/v1/stats/breakdown").error_code(),
        "invalid_parameter"
    );

    let history = server.admin_get("/api/v1/stats/history?minutes=5").json();
    assert_eq!(history["interval_ms"], 10_000);
    assert!(
        !history["points"].as_array().unwrap().is_empty(),
        "the sampler records a point at start"
    );
}
