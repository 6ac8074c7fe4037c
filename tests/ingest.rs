//! Ingest, stage by stage, against a real server: mapping and allowlist, PII, geo, time,
//! dedup, rate limit, gzip, and every whole-request error code.

mod common;

use common::*;
use serde_json::{json, Value};
use telemetryd::model::{DimValue, Event};
use telemetryd::timespan::{DAY_MS, HOUR_MS, MINUTE_MS};

fn by_name<'a>(events: &'a [Event], name: &str) -> &'a Event {
    events
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no stored event {name}"))
}

fn rejected_codes(body: &Value) -> Vec<(u64, String)> {
    body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn flat_sdk_batch_is_mapped_onto_the_event() {
    let server = TestServer::shipped(&[]);
    let body = std::fs::read_to_string(testdata("flat-sdk-batch.json")).unwrap();
    let resp = server.post_events("?product=voice-sdk", &body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    // The SDK's provider keys are not in its allowlist: dropped, and the answer says so.
    let unknown = |field: &str| json!({"index": 2, "field": field, "reason": "unknown_key"});
    assert_eq!(
        resp.json(),
        json!({"accepted": 7, "duplicates": 0, "dropped_by_policy": 0, "sampled_out": 0, "rejected": [],
               "adjusted": [unknown("dims.stt_provider"), unknown("dims.tts_provider"), unknown("dims.llm_provider")]})
    );

    let stored = server.stored();
    assert_eq!(stored.len(), 7);
    let completed = by_name(&stored, "call_completed");
    assert_eq!(completed.product, "voice-sdk");
    assert_eq!(completed.platform.as_deref(), Some("python"));
    assert_eq!(completed.app_version.as_deref(), Some("0.7.0"));
    assert_eq!(completed.os_family.as_deref(), Some("linux"));
    assert_eq!(completed.arch.as_deref(), Some("x86_64"));
    assert_eq!(completed.runtime.as_deref(), Some("cpython"));
    assert_eq!(
        completed.install_id.as_deref(),
        Some("f663700fdfef4ad8b590b343872ce14e")
    );
    assert_eq!(
        completed.session_id.as_deref(),
        Some("da44eb99d7374c5cbfbb1429411b64fb")
    );
    assert_eq!(completed.schema_version, Some(8));
    assert_eq!(completed.sample_rate, 0.5);
    assert_eq!(completed.metrics["latency_ms"], 812.0);
    assert_eq!(completed.metrics["cost_usd"], 0.042);
    assert_eq!(completed.dims["outcome"], DimValue::Str("error".into()));
    // The SDK's error_code is the error's code (checked against its enum), which makes it an error.
    assert_eq!(
        completed.error.as_ref().unwrap().code.as_deref(),
        Some("timeout")
    );
    assert_eq!(completed.level, telemetryd::model::Level::Error);
    assert_eq!(completed.dims["ci"], DimValue::Bool(false));
    assert_eq!(
        completed.dims["runtime_version"],
        DimValue::Str("3.11".into())
    );
    assert_eq!(
        completed.dims["call_uid"],
        DimValue::Str("0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f".into())
    );
    assert_eq!(completed.source, telemetryd::model::Source::FLAT);
    // The server stamps the receive time and makes a time-ordered id.
    assert_eq!(completed.timestamp, completed.received_at);
    assert_eq!(completed.id.get_version_num(), 7);
    // Keys outside the allowlist are dropped.
    let feature = by_name(&stored, "feature_used");
    assert!(!feature.dims.contains_key("stt_provider"));
    assert_eq!(
        feature.dims["stt_model"],
        DimValue::Str("deepgram-nova-3".into())
    );
    assert_eq!(
        feature.dims["llm_model"],
        DimValue::Str("anthropic-claude-haiku-4-5".into())
    );

    let fetched = server.event(&completed.id.to_string());
    assert_eq!(fetched["name"], "call_completed");
    assert_eq!(fetched["metrics"]["latency_ms"], 812.0);
}

#[test]
fn hostile_flat_batch_keeps_valid_events_and_names_each_rejection() {
    let server = TestServer::shipped(&[]);
    let body = std::fs::read_to_string(testdata("flat-sdk-batch-hostile.json")).unwrap();
    let resp = server.post_events("?product=voice-sdk", &body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let json = resp.json();
    assert_eq!(json["accepted"], 2);
    assert_eq!(
        rejected_codes(&json),
        vec![
            (2, "unknown_event".to_string()),
            (3, "pii_detected".to_string()),
            (4, "missing_field".to_string()),
            (5, "invalid_event".to_string()),
        ]
    );
    // What the allowlist did to the events it took in, field by field.
    let adjusted: Vec<String> = json["adjusted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {} {}",
                a["index"],
                a["field"].as_str().unwrap(),
                a["reason"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        adjusted,
        [
            "0 dims.carrier off_list",
            "0 dims.customer_email unknown_key",
            "1 metrics.latency_ms wrong_type",
            "1 dims.container wrong_type",
            "1 dims.llm_model pattern",
        ],
        "{json}"
    );
    // The rejection names the field, never the value.
    let pii_message = json["rejected"][1]["message"].as_str().unwrap();
    assert!(
        pii_message.contains("call_uid") && !pii_message.contains("4155550123"),
        "{pii_message}"
    );

    let stored = server.stored();
    assert_eq!(stored.len(), 2);
    let init = by_name(&stored, "sdk_initialized");
    assert_eq!(init.dims["carrier"], DimValue::Str("other".into()));
    assert!(!init.dims.contains_key("customer_email"));
    let completed = by_name(&stored, "call_completed");
    assert_eq!(completed.dims["outcome"], DimValue::Str("completed".into()));
    assert!(
        !completed.metrics.contains_key("latency_ms"),
        "a number sent as a string is dropped"
    );
    assert!(
        !completed.dims.contains_key("container"),
        "a bool sent as a string is dropped"
    );
    assert!(
        !completed.dims.contains_key("llm_model"),
        "a model id off the pattern is dropped"
    );
    // Nothing of the email reached the store.
    let raw = serde_json::to_string(&stored).unwrap();
    assert!(!raw.contains("jane.doe"));

    let stats = server.stats();
    assert_eq!(stats["accepted"], 2);
    assert_eq!(stats["rejected"]["unknown_event"], 1);
    assert_eq!(stats["rejected"]["pii_detected"], 1);
    assert_eq!(stats["pii"]["rejected"], 1);
}

#[test]
fn native_events_accept_camel_case_and_nested_parts() {
    let server = TestServer::shipped(&[]);
    let id = uuid::Uuid::new_v4().to_string();
    let body = json!({"sent_at": telemetryd::model::now_ms(), "events": [{
        "eventId": id, "eventName": "recognition_failed", "level": "ERROR", "installId": "inst-1",
        "userId": "u-42", "sessionId": "s-1", "platform": "ios", "channel": "keyboard", "module": "dictation",
        "appVersion": "3.3.1", "releaseChannel": "beta", "osFamily": "ios", "osVersion": "18.1",
        "deviceModel": "iPhone16,2",
        "error": {"domain": "speech", "code": "network_timeout", "message": "Timeout after 3021 ms", "stack": "at Recognizer.start()"},
        "dims": {"language": "de", "input_mode": "telepathy", "offline": true, "unknown_dim": "x"},
        "metrics": {"latency_ms": 3021, "words": "many"}
    }, {"eventName": "app_opened", "installId": "inst-1", "platform": "smart-fridge"}]});
    let resp = server.post_events("?product=dictation-app", &body.to_string());
    assert_eq!(resp.json()["accepted"], 2, "{}", resp.text());
    let adjusted = |index: u64, field: &str, reason: &str| json!({"index": index, "field": field, "reason": reason});
    assert_eq!(
        resp.json()["adjusted"],
        json!([
            adjusted(0, "dims.input_mode", "off_list"),
            adjusted(0, "dims.unknown_dim", "unknown_key"),
            adjusted(0, "metrics.words", "wrong_type"),
            adjusted(1, "platform", "off_list"),
        ])
    );
    let e = server.event(&id);
    assert_eq!(e["level"], "error");
    assert_eq!(e["channel"], "keyboard");
    assert_eq!(e["release_channel"], "beta");
    assert_eq!(e["device_model"], "iPhone16,2");
    assert_eq!(e["user_id"], "u-42");
    assert_eq!(
        e["error"],
        json!({"domain": "speech", "code": "network_timeout", "message": "Timeout after 3021 ms", "stack": "at Recognizer.start()"})
    );
    assert_eq!(
        e["dims"],
        json!({"language": "de", "input_mode": "other", "offline": true})
    );
    assert_eq!(e["metrics"], json!({"latency_ms": 3021.0}));
    assert_eq!(e["source"], "native");
    let opened = by_name(&server.stored(), "app_opened").clone();
    assert_eq!(
        opened.platform.as_deref(),
        Some("other"),
        "an enum on an event field applies too"
    );
    assert_eq!(opened.level, telemetryd::model::Level::Info);
}

const OPEN_PRODUCT: &str = "[[products]]\nid = \"app\"\n";

fn open_server(privacy: &str) -> TestServer {
    TestServer::start(
        &format!("{privacy}\n{OPEN_PRODUCT}\n{}", tokens_toml()),
        &[],
    )
}

#[test]
fn pii_is_scrubbed_from_free_text_and_rejected_in_fields() {
    let server = open_server("");
    let events = json!([
        {"id": "00000000-0000-4000-8000-000000000001", "name": "crash", "install_id": "i1",
         "error": {"code": "E1", "message": "Failed for jane.doe@example.com with card 4111 1111 1111 1111 from 10.0.0.7",
                   "stack": "Traceback:\n  token=sk_live_51HqLyjWDarjtT1zdp7dcXYZ\n"}},
        {"id": "00000000-0000-4000-8000-000000000002", "name": "login", "install_id": "i1", "user_id": "jane@example.com"},
        {"id": "00000000-0000-4000-8000-000000000003", "name": "note", "install_id": "i1", "dims": {"ssn": "123-45-6789"}},
        {"id": "00000000-0000-4000-8000-000000000004", "name": "lookalikes", "install_id": "a3f9c2e1b7d44e0fa1c2b3d4e5f60718",
         "app_version": "2024.10.1-beta.2",
         "dims": {"version": "1.2.3", "uuid": "550e8400-e29b-41d4-a716-446655440000", "sha1": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
                  "ts": "1700000000000", "when": "2024-10-01T12:30:45Z", "model": "gpt-4o-mini-2024-07-18", "count": "4111"},
         "error": {"message": "Timeout after 3021 ms at 12:30:45 on port 8080 (build 1.2.3.4567)"}}
    ]);
    let resp = server.post_events("", &events.to_string());
    let json = resp.json();
    assert_eq!(json["accepted"], 2, "{json}");
    assert_eq!(
        rejected_codes(&json),
        vec![(1, "pii_detected".into()), (2, "pii_detected".into())]
    );

    let crash = server.event("00000000-0000-4000-8000-000000000001");
    assert_eq!(
        crash["error"]["message"],
        "Failed for [email] with card [card] from [ip]"
    );
    let stack = crash["error"]["stack"].as_str().unwrap();
    assert!(!stack.contains("sk_live"), "{stack}");
    let lookalikes = server.event("00000000-0000-4000-8000-000000000004");
    assert_eq!(lookalikes["dims"]["version"], "1.2.3");
    assert_eq!(
        lookalikes["dims"]["uuid"],
        "550e8400-e29b-41d4-a716-446655440000"
    );
    assert_eq!(
        lookalikes["dims"]["sha1"],
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    );
    assert_eq!(lookalikes["dims"]["ts"], "1700000000000");
    assert_eq!(lookalikes["dims"]["when"], "2024-10-01T12:30:45Z");
    assert_eq!(lookalikes["dims"]["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(lookalikes["app_version"], "2024.10.1-beta.2");
    assert_eq!(
        lookalikes["error"]["message"],
        "Timeout after 3021 ms at 12:30:45 on port 8080 (build 1.2.3.4567)"
    );

    let stats = server.stats();
    assert_eq!(stats["pii"]["scrubbed"], 1);
    assert_eq!(stats["pii"]["rejected"], 2);
}

#[test]
fn pii_actions_are_configurable() {
    let server = open_server("[privacy]\nfree_text = \"reject\"\nfields = \"drop\"\n");
    let events = json!([
        {"id": "00000000-0000-4000-8000-00000000000a", "name": "a", "user_id": "jane@example.com", "dims": {"phone": "+1 (415) 555-2671", "ok": "fine"}},
        {"id": "00000000-0000-4000-8000-00000000000b", "name": "b", "error": {"message": "mail bob@example.org"}}
    ]);
    let json = server.post_events("", &events.to_string()).json();
    assert_eq!(json["accepted"], 1, "{json}");
    assert_eq!(rejected_codes(&json), vec![(1, "pii_detected".into())]);
    let a = server.event("00000000-0000-4000-8000-00000000000a");
    assert!(a.get("user_id").is_none());
    assert_eq!(a["dims"], json!({"ok": "fine"}));
    assert_eq!(server.stats()["pii"]["fields_dropped"], 2);
}

fn geo_server(database: &str, trusted: &str) -> TestServer {
    let config = format!(
        "[server]\ntrusted_proxies = [{trusted}]\n[geo]\ndatabase = \"{}\"\n{OPEN_PRODUCT}\n{}",
        testdata(database).display(),
        tokens_toml()
    );
    TestServer::start(&config, &[])
}

fn post_from(server: &TestServer, id: &str, headers: &[(&str, &str)]) -> Value {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let body = json!([{"id": id, "name": "geo", "install_id": "geo-install"}]).to_string();
    let resp = server.post_events_with("", &all, body.into_bytes());
    assert_eq!(resp.json()["accepted"], 1, "{}", resp.text());
    server.event(id)
}

#[test]
fn geo_from_trusted_proxy_headers_with_the_nested_layout() {
    let server = geo_server("geoip2-city-test.mmdb", "\"127.0.0.1\"");
    let e = post_from(
        &server,
        "00000000-0000-4000-8000-0000000000c1",
        &[("x-forwarded-for", "81.2.69.142")],
    );
    assert_eq!(
        (e["country_code"].as_str(), e["region_code"].as_str()),
        (Some("GB"), Some("GB-ENG"))
    );
    let e = post_from(
        &server,
        "00000000-0000-4000-8000-0000000000c2",
        &[("forwarded", "for=\"[2a02:d300::1]:443\"")],
    );
    assert_eq!(
        (e["country_code"].as_str(), e["region_code"].as_str()),
        (Some("DE"), Some("DE-HE"))
    );
    let e = post_from(
        &server,
        "00000000-0000-4000-8000-0000000000c3",
        &[("x-forwarded-for", "216.160.83.57, 127.0.0.1")],
    );
    assert_eq!(e["region_code"], "US-WA");
    // No header: the peer (loopback) has no record.
    let e = post_from(&server, "00000000-0000-4000-8000-0000000000c4", &[]);
    assert!(e.get("country_code").is_none());
}

#[test]
fn geo_ignores_forwarding_headers_from_untrusted_peers() {
    let server = geo_server("geoip2-city-test.mmdb", "");
    let e = post_from(
        &server,
        "00000000-0000-4000-8000-0000000000d1",
        &[("x-forwarded-for", "81.2.69.142")],
    );
    assert!(e.get("country_code").is_none(), "{e}");
    let e = post_from(
        &server,
        "00000000-0000-4000-8000-0000000000d2",
        &[("forwarded", "for=81.2.69.142")],
    );
    assert!(e.get("country_code").is_none(), "{e}");
}

#[test]
fn geo_with_the_flat_layout() {
    let server = geo_server("country-cc-by.mmdb", "\"127.0.0.0/8\"");
    let e = post_from(
        &server,
        "00000000-0000-4000-8000-0000000000e1",
        &[("x-forwarded-for", "81.2.69.142")],
    );
    assert_eq!(e["country_code"], "GB");
    assert!(e.get("region_code").is_none());
    let e = post_from(
        &server,
        "00000000-0000-4000-8000-0000000000e2",
        &[("x-forwarded-for", "2001:4860:4860::8888")],
    );
    assert_eq!(e["country_code"], "US");
}

#[test]
fn no_client_ip_reaches_the_data_dir() {
    let server = geo_server("geoip2-city-test.mmdb", "\"127.0.0.1\"");
    let addresses = ["81.2.69.142", "89.160.20.115", "2001:480::17"];
    for (i, address) in addresses.iter().enumerate() {
        for n in 0..20 {
            let id = format!("00000000-0000-4000-8000-{:012}", i * 100 + n);
            post_from(&server, &id, &[("x-forwarded-for", address)]);
        }
    }
    let stored = server.stored();
    assert_eq!(stored.len(), 60);
    assert!(stored.iter().all(|e| e.country_code.is_some()));
    let dir = server.stop();
    let ipv6: std::net::Ipv6Addr = "2001:480::17".parse().unwrap();
    let needles: Vec<Vec<u8>> = vec![
        b"81.2.69.142".to_vec(),
        vec![81, 2, 69, 142],
        b"89.160.20.115".to_vec(),
        vec![89, 160, 20, 115],
        b"2001:480::17".to_vec(),
        ipv6.octets().to_vec(),
    ];
    assert!(!files_under(dir.path()).is_empty());
    for needle in needles {
        assert_eq!(
            occurrences_in_dir(dir.path(), &needle),
            0,
            "{needle:?} found in the data dir"
        );
    }
}

#[test]
fn timestamps_are_corrected_for_drift_and_clamped() {
    let server = open_server("");
    let now = telemetryd::model::now_ms();
    // The client's clock is two hours behind.
    let body = json!({"sent_at": now - 2 * HOUR_MS, "events": [
        {"id": "00000000-0000-4000-8000-0000000000f1", "name": "a", "timestamp": now - 2 * HOUR_MS - 5_000}
    ]});
    server.post_events("", &body.to_string());
    let e = server.event("00000000-0000-4000-8000-0000000000f1");
    let ts = e["timestamp"].as_i64().unwrap();
    assert!(
        (ts - (now - 5_000)).abs() < 2_000,
        "corrected {ts} vs {}",
        now - 5_000
    );
    assert_eq!(e["flags"], json!(["clock_drift_corrected"]));

    let body = json!([
        {"id": "00000000-0000-4000-8000-0000000000f2", "name": "future", "timestamp": now + DAY_MS},
        {"id": "00000000-0000-4000-8000-0000000000f3", "name": "ancient", "timestamp": "2001-01-01T00:00:00Z"},
        {"id": "00000000-0000-4000-8000-0000000000f4", "name": "fine", "timestamp": (now - MINUTE_MS) as f64 / 1000.0},
        {"id": "00000000-0000-4000-8000-0000000000f5", "name": "none"}
    ]);
    server.post_events("", &body.to_string());
    let future = server.event("00000000-0000-4000-8000-0000000000f2");
    assert_eq!(future["timestamp"], future["received_at"]);
    assert_eq!(future["flags"], json!(["timestamp_in_future"]));
    let ancient = server.event("00000000-0000-4000-8000-0000000000f3");
    assert_eq!(ancient["timestamp"], ancient["received_at"]);
    assert_eq!(ancient["flags"], json!(["timestamp_too_old"]));
    let fine = server.event("00000000-0000-4000-8000-0000000000f4");
    assert!((fine["timestamp"].as_i64().unwrap() - (now - MINUTE_MS)).abs() < 2);
    assert!(fine.get("flags").is_none());
    let none = server.event("00000000-0000-4000-8000-0000000000f5");
    assert_eq!(none["timestamp"], none["received_at"]);
}

#[test]
fn duplicates_are_reported_not_stored_even_across_restarts() {
    let config = format!("{OPEN_PRODUCT}\n{}", tokens_toml());
    let server = TestServer::start(&config, &[]);
    let batch = json!([
        {"id": "10000000-0000-4000-8000-000000000001", "name": "a"},
        {"id": "10000000-0000-4000-8000-000000000002", "name": "b"},
        {"id": "10000000-0000-4000-8000-000000000002", "name": "b-again-in-batch"},
        {"id": "client-id-that-is-not-a-uuid", "name": "c"}
    ])
    .to_string();
    assert_eq!(
        server.post_events("", &batch).json(),
        json!({"accepted": 3, "duplicates": 1, "dropped_by_policy": 0, "sampled_out": 0, "rejected": []})
    );
    assert_eq!(
        server.post_events("", &batch).json(),
        json!({"accepted": 0, "duplicates": 4, "dropped_by_policy": 0, "sampled_out": 0, "rejected": []})
    );
    let dir = server.stop();
    let server = TestServer::start_in(dir, &config, &[]);
    assert_eq!(server.post_events("", &batch).json()["duplicates"], 4);
    assert_eq!(server.stored().len(), 3);
    assert_eq!(server.stats()["duplicates"], 4);

    // The nil UUID identifies nothing: such events get ids of their own.
    let nil = json!([
        {"id": "00000000-0000-0000-0000-000000000000", "name": "n1"},
        {"id": "00000000-0000-0000-0000-000000000000", "name": "n2"}
    ])
    .to_string();
    assert_eq!(server.post_events("", &nil).json()["accepted"], 2);
    assert_eq!(server.stored().len(), 5);
}

#[test]
fn rate_limit_per_install_with_retry_after() {
    let config = format!(
        "[[products]]\nid = \"app\"\nrate_limit_per_minute = 5\n{}",
        tokens_toml()
    );
    let server = TestServer::start(&config, &[]);
    let batch = |install: &str, n: usize| {
        let events: Vec<Value> = (0..n)
            .map(|_| json!({"name": "tick", "install_id": install}))
            .collect();
        Value::Array(events).to_string()
    };
    let json = server.post_events("", &batch("busy", 8)).json();
    assert_eq!(json["accepted"], 5);
    assert_eq!(
        rejected_codes(&json),
        (5..8)
            .map(|i| (i, "rate_limited".to_string()))
            .collect::<Vec<_>>()
    );
    let resp = server.post_events("", &batch("busy", 2));
    assert_eq!(resp.status, 429);
    assert_eq!(resp.error_code(), "rate_limited");
    let retry: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(
        resp.json()["error"]["details"]["rejected"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Other installs have their own budget.
    assert_eq!(
        server.post_events("", &batch("calm", 3)).json()["accepted"],
        3
    );
    assert_eq!(server.stats()["rate_limited"], 5);
}

#[test]
fn gzip_bodies_are_accepted_and_bounded() {
    let server = TestServer::start(
        &format!(
            "[server]\nmax_decompressed_bytes = 100000\n{OPEN_PRODUCT}\n{}",
            tokens_toml()
        ),
        &[],
    );
    let body = json!([{"name": "zipped"}, {"name": "zipped"}]).to_string();
    let headers = [
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    let resp = server.post_events_with("", &headers, gzip(body.as_bytes()));
    assert_eq!(resp.json()["accepted"], 2, "{}", resp.text());

    let resp = server.post_events_with("", &headers, b"not gzip at all".to_vec());
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (400, "invalid_encoding")
    );

    let bomb = format!("[{}{{\"name\":\"x\"}}]", " ".repeat(200_000));
    let resp = server.post_events_with("", &headers, gzip(bomb.as_bytes()));
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (413, "payload_too_large")
    );
}

#[test]
fn every_whole_request_error_has_its_status_and_code() {
    let config = format!(
        "[server]\nmax_body_bytes = 4096\nmax_batch_events = 3\n\
         [[products]]\nid = \"open\"\n[[products]]\nid = \"keyed\"\ningest_keys = [\"key-0123456789\"]\n{}",
        tokens_toml()
    );
    let server = TestServer::start(&config, &[]);
    let ok = json!([{"name": "x"}]).to_string();
    let json_type = ("content-type", "application/json");
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "?product=open",
            vec![json_type],
            b"{\"events\": [".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "?product=open",
            vec![json_type],
            b"{\"something\": 1}".to_vec(),
            400,
            "invalid_body",
        ),
        (
            "?product=open",
            vec![json_type],
            b"\"just a string\"".to_vec(),
            400,
            "invalid_body",
        ),
        (
            "?product=open",
            vec![json_type],
            vec![b'[', 0xff, 0xfe, b']'],
            400,
            "invalid_encoding",
        ),
        (
            "",
            vec![json_type],
            ok.clone().into_bytes(),
            400,
            "missing_product",
        ),
        (
            "?product=nope",
            vec![json_type],
            ok.clone().into_bytes(),
            400,
            "unknown_product",
        ),
        (
            "?product=keyed",
            vec![json_type],
            ok.clone().into_bytes(),
            401,
            "missing_ingest_key",
        ),
        (
            "?product=keyed",
            vec![json_type, ("x-telemetry-key", "wrong-key-000")],
            ok.clone().into_bytes(),
            401,
            "invalid_ingest_key",
        ),
        (
            "?product=open",
            vec![json_type],
            vec![b' '; 5000],
            413,
            "payload_too_large",
        ),
        (
            "?product=open",
            vec![json_type],
            json!([{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}])
                .to_string()
                .into_bytes(),
            413,
            "batch_too_large",
        ),
        (
            "?product=open",
            vec![("content-type", "application/x-www-form-urlencoded")],
            ok.clone().into_bytes(),
            415,
            "unsupported_media_type",
        ),
        (
            "?product=open",
            vec![json_type, ("content-encoding", "compress")],
            ok.clone().into_bytes(),
            415,
            "unsupported_encoding",
        ),
    ];
    for (query, headers, body, status, code) in cases {
        let resp = server.post_events_with(query, &headers, body);
        assert_eq!(
            (resp.status, resp.error_code().as_str()),
            (status, code),
            "{query} {headers:?}: {}",
            resp.text()
        );
        assert!(!resp.json()["error"]["message"].as_str().unwrap().is_empty());
    }
    // The key alone selects its product.
    let resp = server.post_events_with(
        "",
        &[json_type, ("x-telemetry-key", "key-0123456789")],
        ok.clone().into_bytes(),
    );
    assert_eq!(resp.json()["accepted"], 1);
    let resp = server.get("/no/such/route");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (404, "not_found")
    );
    let resp = request(
        "DELETE",
        &format!("{}/api/v1/events", server.url),
        &[],
        None,
    );
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (405, "method_not_allowed")
    );
    let resp = server.admin_get("/api/v1/events/not-a-uuid");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (400, "invalid_parameter")
    );
    let resp = server.admin_get("/api/v1/events/00000000-0000-4000-8000-999999999999");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (404, "not_found")
    );
}

/// The writer's queue is bounded in batches (`writer_queue`) and in the events they hold
/// (`writer_queue_events`): past either, ingest answers 503 and the queued batches still land.
#[test]
fn a_full_writer_queue_answers_503_with_retry_after() {
    full_writer_queue_answers_503("writer_queue = 1", 1);
    full_writer_queue_answers_503("writer_queue_events = 3", 3);
}

/// Blocks the writer, queues one batch of `queued` events behind the one it holds, and checks
/// that one more event is refused.
fn full_writer_queue_answers_503(limit: &str, queued: usize) {
    let config = format!("[server]\n{limit}\n{OPEN_PRODUCT}\n{}", tokens_toml());
    let server = TestServer::start(&config, &[]);
    // Hold redb's write lock so the writer blocks on its next transaction.
    let blocker = server.state.store.database().begin_write().unwrap();
    let post = |n: usize, count: usize| {
        let url = format!("{}/api/v1/events", server.url);
        let events: Vec<Value> = (0..count)
            .map(|i| json!({"name": format!("queued-{n}-{i}")}))
            .collect();
        let body = Value::from(events).to_string().into_bytes();
        std::thread::spawn(move || {
            request(
                "POST",
                &url,
                &[("content-type", "application/json")],
                Some(body),
            )
        })
    };
    let first = post(1, 1); // taken by the writer, which then waits for the lock
    std::thread::sleep(std::time::Duration::from_millis(300));
    let second = post(2, queued); // fills the queue
    std::thread::sleep(std::time::Duration::from_millis(300));
    let resp = server.post_events("", &json!([{"name": "rejected"}]).to_string());
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (503, "overloaded"),
        "{limit}"
    );
    assert_eq!(resp.header("retry-after"), Some("1"));
    drop(blocker);
    assert_eq!(first.join().unwrap().json()["accepted"], 1);
    assert_eq!(second.join().unwrap().json()["accepted"], queued);
    assert_eq!(server.stats()["overloaded"], 1);
}

#[test]
fn admin_auth_and_operations_endpoints() {
    let server = TestServer::shipped(&[]);
    let resp = server.get("/api/v1/stats");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (401, "missing_token")
    );
    assert_eq!(resp.header("www-authenticate"), Some("Bearer"));
    let resp = server.get_as("/api/v1/stats", "not-a-token");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (401, "invalid_token")
    );
    assert_eq!(server.get_as("/api/v1/stats", VIEWER_TOKEN).status, 200);
    assert_eq!(server.get_as("/api/v1/stats", ADMIN_TOKEN).status, 200);

    assert_eq!(server.get("/healthz").json()["status"], "ok");
    let body = std::fs::read_to_string(testdata("flat-sdk-batch.json")).unwrap();
    server.post_events("?product=voice-sdk", &body);
    let ready = server.get("/readyz");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["store"]["events"], 7);
    let metrics = server.get("/metrics");
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.text();
    for line in [
        "telemetryd_events_accepted_total 7",
        "telemetryd_events_rejected_total{code=\"unknown_event\"} 0",
        "telemetryd_pii_scrubbed_total 0",
        "telemetryd_events_rate_limited_total 0",
        "telemetryd_events_duplicate_total 0",
        "telemetryd_writer_queue_depth 0",
        "telemetryd_store_events 7",
        "telemetryd_store_commit_seconds_count 1",
        "telemetryd_http_request_duration_seconds_count{route=\"/api/v1/events\",status=\"200\"} 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    assert!(text.contains("telemetryd_store_size_bytes "));
    let stats = server.stats();
    assert_eq!(stats["store"]["store_events"], 7);
    assert!(stats["store"]["store_size_bytes"].as_u64().unwrap() > 0);
}

/// JSON nested far deeper than any event needs, as the whole body, as one event, inside a
/// dimension and inside a policy body: each is a 4xx or a rejection naming serde_json's
/// recursion limit (128), never a stack overflow.
#[test]
fn deeply_nested_json_is_refused_not_fatal() {
    let server = open_server("");
    // Deep enough for any stack, small enough to stay under the event size limit.
    let depth = 5_000;
    let deep = |open: &str, close: &str| format!("{}1{}", open.repeat(depth), close.repeat(depth));
    let json_type = [("content-type", "application/json")];
    // A whole body that is not a batch: refused before any of it is read as an event.
    let resp = server.post_events_with(
        "?product=app",
        &json_type,
        deep("{\"a\":", "}").into_bytes(),
    );
    assert_eq!(resp.status, 400, "{}", resp.text());
    // A list is skipped without recursion (serde's IgnoredAny), so depth alone costs nothing.
    let list_dim = format!(
        "[{{\"name\":\"deep\",\"dims\":{{\"d\":{}}}}}]",
        deep("[", "]")
    );
    let resp = server.post_events_with("?product=app", &json_type, list_dim.into_bytes());
    assert_eq!(resp.status, 200, "{}", resp.text());
    let event = deep("{\"a\":", "}");
    let json = server
        .post_events_with(
            "?product=app",
            &json_type,
            format!("[{event}]").into_bytes(),
        )
        .json();
    assert_eq!(json["accepted"], 0, "{json}");
    assert_eq!(
        rejected_codes(&json),
        vec![(0, "invalid_event".to_string())]
    );
    assert!(json.to_string().contains("recursion limit"), "{json}");
    let in_dimension = format!(
        "[{{\"name\":\"deep\",\"dims\":{{\"d\":{}}}}},{{\"name\":\"fine\"}}]",
        deep("{\"a\":", "}")
    );
    let resp = server.post_events_with("?product=app", &json_type, in_dimension.into_bytes());
    match resp.status {
        200 => {
            let json = resp.json();
            assert_eq!(json["accepted"], 1, "{json}");
            assert_eq!(
                rejected_codes(&json),
                vec![(0, "invalid_event".to_string())]
            );
            assert!(json.to_string().contains("recursion limit"), "{json}");
        }
        _ => assert_eq!(resp.error_code(), "invalid_json", "{}", resp.text()),
    }
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let policy = format!(
        "{{\"name\":\"p\",\"product\":\"app\",\"settings\":{}}}",
        deep("{\"a\":", "}")
    );
    let resp = request(
        "POST",
        &format!("{}/api/v1/policies", server.url),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Some(policy.into_bytes()),
    );
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(resp.text().contains("recursion limit"), "{}", resp.text());
    assert_eq!(server.get("/healthz").status, 200);
}

/// Events without an install id use a per-minute budget per client address (kept only as a
/// keyed hash, in memory); each address has its own.
#[test]
fn rate_limit_per_client_address_without_install_id() {
    let config = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[[products]]\nid = \"app\"\nrate_limit_per_minute = 5\n{}",
        tokens_toml()
    );
    let server = TestServer::start(&config, &[]);
    let anonymous = |n: usize| {
        let events: Vec<Value> = (0..n).map(|_| json!({"name": "tick"})).collect();
        Value::Array(events).to_string().into_bytes()
    };
    let from = |address: &str, body: Vec<u8>| {
        server.post_events_with(
            "",
            &[
                ("content-type", "application/json"),
                ("x-forwarded-for", address),
            ],
            body,
        )
    };
    let json = from("203.0.113.9", anonymous(8)).json();
    assert_eq!(json["accepted"], 5, "{json}");
    assert_eq!(
        rejected_codes(&json),
        (5..8)
            .map(|i| (i, "rate_limited".to_string()))
            .collect::<Vec<_>>()
    );
    let message = json["rejected"][0]["message"].as_str().unwrap();
    assert!(message.contains("client address"), "{message}");
    assert!(!message.contains("203.0.113.9"), "{message}");
    let resp = from("203.0.113.9", anonymous(1));
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (429, "rate_limited")
    );
    let retry: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // Another address has its own budget; an install id uses the install's budget.
    assert_eq!(from("198.51.100.4", anonymous(3)).json()["accepted"], 3);
    let with_install = json!([{"name": "tick", "install_id": "i-1"}]).to_string();
    assert_eq!(
        from("203.0.113.9", with_install.into_bytes()).json()["accepted"],
        1
    );
    assert_eq!(occurrences_in_dir(server.dir.path(), b"203.0.113.9"), 0);
}

/// A product's `max_events_per_second` caps what it takes in all, whoever sends it.
#[test]
fn product_events_per_second_cap() {
    let config = format!(
        "[[products]]\nid = \"app\"\nmax_events_per_second = 3\n{}",
        tokens_toml()
    );
    let server = TestServer::start(&config, &[]);
    let batch = |n: usize, tag: &str| {
        let events: Vec<Value> = (0..n)
            .map(|i| json!({"name": "tick", "install_id": format!("{tag}-{i}")}))
            .collect();
        Value::Array(events).to_string()
    };
    let json = server.post_events("", &batch(10, "a")).json();
    assert!(json["accepted"].as_u64().unwrap() <= 3, "{json}");
    let rejected = rejected_codes(&json);
    assert!(rejected.len() >= 7, "{json}");
    assert!(rejected.iter().all(|(_, code)| code == "rate_limited"));
    let message = json["rejected"][0]["message"].as_str().unwrap();
    assert!(message.contains("at most 3 events per second"), "{message}");
    // Over the cap a whole batch is refused with 429 and Retry-After (within a few tries: the
    // one-second window may roll over between two requests).
    let refused = (0..50)
        .map(|i| server.post_events("", &batch(4, &format!("b{i}"))))
        .find(|resp| resp.status == 429)
        .expect("a batch over the cap is refused");
    assert_eq!(refused.error_code(), "rate_limited");
    assert_eq!(refused.header("retry-after"), Some("1"));
}

/// Every error answer over a raw connection is the JSON error body with a code: those of the
/// router and extractors (unknown routes, wrong methods, bad parameters, bodies over the limit)
/// and those actix-http's codec makes before any service (a URI of 64 KiB or more, a malformed
/// request line, an unknown HTTP version, a head over 128 KiB); the process keeps serving.
#[test]
fn http_layer_errors_over_raw_connections() {
    let server = TestServer::start(
        &format!(
            "[server]\nmax_body_bytes = 4096\n{OPEN_PRODUCT}\n{}",
            tokens_toml()
        ),
        &[],
    );
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    let long_path = format!("/{}", "a".repeat(64 * 1024));
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            format!("GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a".repeat(60 * 1024)).into_bytes(),
            404,
            "not_found",
        ),
        (
            format!("GET {long_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes(),
            400,
            "bad_request",
        ),
        (
            format!("GET /api/v1/events?limit={} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n", "9".repeat(60 * 1024)).into_bytes(),
            400,
            "invalid_parameter",
        ),
        (
            b"PUT /api/v1/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            405,
            "method_not_allowed",
        ),
        (
            format!("GET /api/v1/stats/history?minutes=-1 HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").into_bytes(),
            400,
            "invalid_parameter",
        ),
        (
            format!(
                "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000\r\nConnection: close\r\n\r\n{}",
                " ".repeat(10_000)
            ).into_bytes(),
            413,
            "payload_too_large",
        ),
        (
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(200 * 1024)).into_bytes(),
            431,
            "headers_too_large",
        ),
        (b"GARBAGE\x01 / HTTP/1.1\r\n\r\n".to_vec(), 400, "bad_request"),
        (b"GET / HTTP/9.9\r\n\r\n".to_vec(), 400, "bad_request"),
    ];
    for (request, status, code) in cases {
        let (got, text) = raw_http(server.url.trim_start_matches("http://"), &request);
        let head = String::from_utf8_lossy(&request[..60.min(request.len())]).to_string();
        assert_eq!(got, status, "{head}: {text:.300}");
        assert!(
            text.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}: {text:.300}"
        );
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        let json: Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{head}: {e}: {text:.300}"));
        assert_eq!(json["error"]["code"], code, "{head}: {body:.300}");
        assert!(!json["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(server.get("/healthz").status, 200);
}

/// The dictation app's clients as they are: `anonymousInstallId`, `tags`, a nested context object.
/// (`json!` sorts keys: the event's fields arrive in alphabetical order.)
fn dictation_client_event(id: &str) -> Value {
    json!({
        "eventId": id, "eventName": "dictation_completed", "anonymousInstallId": "anon-install-1",
        "userId": "", "platform": "ios", "channel": "keyboard",
        "tags": {"language": "en", "input_mode": "voice", "network": "5g"},
        "dictationContext": {"backend": "cloud", "model": {"name": "whisper-small", "quant": {"bits": {"weights": 4}}}},
        "metrics": {"latency_ms": 420}
    })
}

#[test]
fn dictation_clients_are_understood_and_every_adjustment_is_reported() {
    let server = TestServer::shipped(&[]);
    let id = "00000000-0000-4000-8000-0000000000d1";
    let body = json!({"sent_at": telemetryd::model::now_ms(), "events": [
        {"eventName": "app_opened", "installId": "anon-install-1", "platform": "ios"},
        dictation_client_event(id),
    ]});
    let resp = server.post_events("?product=dictation-app", &body.to_string());
    let answer = resp.json();
    assert_eq!(answer["accepted"], 2, "{answer}");
    let adjusted =
        |field: &str, reason: &str| json!({"index": 1, "field": field, "reason": reason});
    assert_eq!(
        answer["adjusted"],
        json!([
            adjusted("dims.dictation_context.model.name", "unknown_key"),
            adjusted("dims.dictation_context.model.quant.bits", "too_deep"),
            adjusted("dims.network", "off_list"),
        ]),
        "{answer}"
    );
    assert!(answer.get("adjusted_more").is_none());

    let e = server.event(id);
    assert_eq!(e["install_id"], "anon-install-1");
    assert!(e.get("user_id").is_none());
    assert_eq!(
        e["dims"],
        json!({"language": "en", "input_mode": "voice", "network": "other", "dictation_context.backend": "cloud"})
    );
    assert_eq!(e["metrics"], json!({"latency_ms": 420.0}));

    // The install is an install: its events are found and erased by its id.
    let erased = request(
        "DELETE",
        &format!("{}/api/v1/subjects/install/anon-install-1", server.url),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        None,
    );
    assert_eq!(erased.status, 200, "{}", erased.text());
    assert!(server.stored().is_empty());

    let metrics = server.get("/metrics").text();
    for (reason, count) in [
        ("off_list", 1),
        ("unknown_key", 1),
        ("too_deep", 1),
        ("pattern", 0),
    ] {
        let line = format!(
            "telemetryd_fields_adjusted_total{{product=\"dictation-app\",reason=\"{reason}\"}} {count}"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

#[test]
fn an_open_schema_keeps_flattened_context_and_bounds_it() {
    let server = open_server("");
    let id = "00000000-0000-4000-8000-0000000000d2";
    let many: serde_json::Map<String, Value> =
        (0..70).map(|i| (format!("k{i:02}"), json!(i))).collect();
    let body = json!([
        dictation_client_event(id),
        {"id": "00000000-0000-4000-8000-0000000000d3", "name": "wide", "tags": many},
    ]);
    let answer = server.post_events("", &body.to_string()).json();
    assert_eq!(answer["accepted"], 2, "{answer}");
    let e = server.event(id);
    assert_eq!(e["install_id"], "anon-install-1");
    assert_eq!(
        e["dims"],
        json!({"language": "en", "input_mode": "voice", "network": "5g",
               "dictation_context.backend": "cloud", "dictation_context.model.name": "whisper-small"})
    );
    let wide = server.event("00000000-0000-4000-8000-0000000000d3");
    assert_eq!(wide["metrics"].as_object().unwrap().len(), 64);
    let listed: Vec<(u64, String, String)> = answer["adjusted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["index"].as_u64().unwrap(),
                a["field"].as_str().unwrap().to_string(),
                a["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut expected = vec![(
        0,
        "dims.dictation_context.model.quant.bits".to_string(),
        "too_deep".to_string(),
    )];
    expected.extend((64..70).map(|i| (1, format!("metrics.k{i}"), "too_many".to_string())));
    assert_eq!(listed, expected);
}

#[test]
fn the_adjusted_list_is_bounded_and_says_how_many_more() {
    let server = TestServer::shipped(&[]);
    let events: Vec<Value> = (0..30)
        .map(|i| {
            json!({"eventName": "app_opened", "installId": format!("i{i}"),
                        "dims": {"a": 1, "b": "x", "offline": "yes", "network": "5g"}})
        })
        .collect();
    let answer = server
        .post_events("?product=dictation-app", &Value::Array(events).to_string())
        .json();
    assert_eq!(answer["accepted"], 30, "{answer}");
    assert_eq!(answer["adjusted"].as_array().unwrap().len(), 100);
    assert_eq!(answer["adjusted_more"], 20);
    assert_eq!(
        Value::from(answer["adjusted"].as_array().unwrap()[0..4].to_vec()),
        json!([
            {"index": 0, "field": "metrics.a", "reason": "unknown_key"},
            {"index": 0, "field": "dims.b", "reason": "unknown_key"},
            {"index": 0, "field": "dims.network", "reason": "off_list"},
            {"index": 0, "field": "dims.offline", "reason": "wrong_type"},
        ])
    );
}

#[test]
fn random_numeric_session_ids_are_ids_and_cards_in_ids_are_still_pii() {
    let server = TestServer::shipped(&[]);
    // All digits, Luhn-valid, a card brand's prefix: what a random 16-hex id sometimes is.
    let event = |run_id: &str| {
        json!({"event": "first_run", "schema_version": 8, "install_id": "f663700fdfef4ad8b590b343872ce14e",
               "run_id": run_id, "call_uid": "0123456789abcdef0123456789abcdef"})
    };
    let body = json!([
        event("4111111111111111"),
        event("5555555555554444"),
        event("4111 1111 1111 1111"),
        event("378282246310005"),
    ]);
    let answer = server
        .post_events("?product=voice-sdk", &body.to_string())
        .json();
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(
        rejected_codes(&answer),
        vec![(2, "pii_detected".into()), (3, "pii_detected".into())]
    );
    let sessions: Vec<String> = server
        .stored()
        .into_iter()
        .filter_map(|e| e.session_id)
        .collect();
    assert!(
        sessions.contains(&"4111111111111111".to_string()),
        "{sessions:?}"
    );
    assert!(
        sessions.contains(&"5555555555554444".to_string()),
        "{sessions:?}"
    );

    // Dimensions named as ids are ids too; any other dimension keeps the card check.
    let open = open_server("");
    let body = json!([
        {"id": "00000000-0000-4000-8000-0000000000e1", "name": "call", "dims": {"call_id": "4111111111111111", "requestId": "6011000990139424"}},
        {"id": "00000000-0000-4000-8000-0000000000e2", "name": "call", "dims": {"note": "4111111111111111"}},
        {"id": "00000000-0000-4000-8000-0000000000e3", "name": "call", "dims": {"call_id": "4111-1111-1111-1111"}},
    ]);
    let answer = open.post_events("", &body.to_string()).json();
    assert_eq!(
        rejected_codes(&answer),
        vec![(1, "pii_detected".into()), (2, "pii_detected".into())]
    );
    let kept = open.event("00000000-0000-4000-8000-0000000000e1");
    assert_eq!(
        kept["dims"],
        json!({"call_id": "4111111111111111", "requestId": "6011000990139424"})
    );
}

#[test]
fn the_install_token_header_is_an_ingest_key() {
    let config = format!(
        "[[products]]\nid = \"kb\"\ningest_keys = [\"kb-install-token-1\"]\n{}",
        tokens_toml()
    );
    let server = TestServer::start(&config, &[]);
    let body = json!([{"eventName": "keyboard_shown", "anonymousInstallId": "a1"}]).to_string();
    let post = |headers: &[(&str, &str)]| {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        server.post_events_with("", &all, body.clone().into_bytes())
    };
    let ok = post(&[("x-install-token", "kb-install-token-1")]);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["accepted"], 1);
    let wrong = post(&[("x-install-token", "another-token")]);
    assert_eq!(
        (wrong.status, wrong.error_code()),
        (401, "invalid_ingest_key".to_string())
    );
    let none = post(&[]);
    assert_eq!(
        (none.status, none.error_code()),
        (401, "missing_ingest_key".to_string())
    );

    let config = |headers: &[(&str, &str)]| {
        request(
            "GET",
            &format!(
                "{}/api/v1/config?product=kb&anonymousInstallId=a1&userId=",
                server.url
            ),
            headers,
            None,
        )
    };
    assert_eq!(
        config(&[("x-install-token", "kb-install-token-1")]).status,
        200
    );
    assert_eq!(config(&[]).status, 401);
}

#[test]
fn the_config_endpoint_reads_the_anonymous_install_id() {
    let server = TestServer::shipped(&[]);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let created = request(
        "POST",
        &format!("{}/api/v1/policies", server.url),
        &[("authorization", &auth), ("content-type", "application/json")],
        Some(
            json!({"name": "half", "product": "dictation-app", "targeting": {"rollout_percent": 50},
                   "settings": {"sample_rate": 0.5}})
            .to_string()
            .into_bytes(),
        ),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let policy = created.json()["id"].as_str().unwrap().to_string();
    let install = |inside: bool| {
        (0..1000)
            .map(|i| format!("anon-{i}"))
            .find(|id| telemetryd::policies::in_rollout(&policy, id, 50.0) == inside)
            .unwrap()
    };
    let applied = |query: &str| {
        let resp = server.get(&format!("/api/v1/config?product=dictation-app&{query}"));
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.json()["applied_policies"].clone()
    };
    let (inside, outside) = (install(true), install(false));
    assert_eq!(
        applied(&format!("anonymousInstallId={inside}&userId=")),
        json!([policy])
    );
    assert_eq!(
        applied(&format!("anonymousInstallId={outside}&userId=")),
        json!([])
    );
    // An empty canonical parameter does not hide the client's own.
    assert_eq!(
        applied(&format!("install_id=&anonymousInstallId={inside}")),
        json!([policy])
    );
    let bad = server.get("/api/v1/config?product=dictation-app&anonymousInstallId=not%20an%20id");
    assert_eq!(
        (bad.status, bad.error_code()),
        (400, "invalid_parameter".to_string())
    );
}
