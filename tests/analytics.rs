//! `POST /api/v1/analytics/query` against a hand-made dataset whose answers are worked out here:
//! weighted trends, distinct installs, a funnel with a drop and the error behind it, a weighted
//! distribution, active installs, retention cohorts and k-anonymity folding (the shipped
//! `min_group_installs = 5`).

mod common;

use std::time::Duration;

use common::{request, TestServer, ADMIN_TOKEN, VIEWER_TOKEN};
use serde_json::{json, Value};
use telemetryd::timespan::{DAY_MS, HOUR_MS};

const MINUTE_MS: i64 = 60_000;
const PRODUCT: &str = "dictation-app";

fn server() -> TestServer {
    TestServer::shipped(&[])
}

/// UTC midnight 20 days ago: day `n` of the dataset starts at `day(n)`.
fn day0() -> i64 {
    let now = telemetryd::model::now_ms();
    now.div_euclid(DAY_MS) * DAY_MS - 20 * DAY_MS
}

struct Events(Vec<Value>);

impl Events {
    fn add(&mut self, install: &str, name: &str, ts: i64, extra: Value) {
        let mut event = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "name": name,
            "timestamp": ts,
            "install_id": install,
        });
        for (k, v) in extra.as_object().unwrap() {
            event[k] = v.clone();
        }
        self.0.push(event);
    }
}

/// The dataset (days relative to [`day0`]):
/// - day 0: i1..i6 (ios) one `app_opened` each at sample_rate 0.25; a1 (android) two at rate 1.
/// - day 1: i1..i6 one `app_opened` each at rate 1.
/// - day 2 (funnel, window 1 h): f1..f4 open → start (+1 min) → complete (+3 min); f5 open →
///   start (+1 min) → `network_timeout` error (+2 min), never completes; f6 opens, its start
///   came 10 min before the open and again 2 h after (outside the window). Completion latencies
///   f1..f4: 100, 200, 300 (rate 1) and 400 (rate 0.25).
/// - days 10..12 (installs): r1..r5 (version 1.0) first seen day 10; r1..r3 active day 11, r1
///   day 12; r6 (version 2.0) first seen day 11.
fn seed(server: &TestServer, d0: i64) {
    let day = |n: i64| d0 + n * DAY_MS;
    let mut events = Events(Vec::new());
    for i in 1..=6 {
        let install = format!("i{i}");
        events.add(
            &install,
            "app_opened",
            day(0) + HOUR_MS,
            json!({"platform": "ios", "sample_rate": 0.25}),
        );
        events.add(
            &install,
            "app_opened",
            day(1) + HOUR_MS,
            json!({"platform": "ios"}),
        );
    }
    for minute in [120, 121] {
        events.add(
            "a1",
            "app_opened",
            day(0) + minute * MINUTE_MS,
            json!({"platform": "android"}),
        );
    }
    let start = day(2) + HOUR_MS;
    for (i, latency, rate) in [(1, 100, 1.0), (2, 200, 1.0), (3, 300, 1.0), (4, 400, 0.25)] {
        let install = format!("f{i}");
        events.add(&install, "app_opened", start, json!({}));
        events.add(&install, "dictation_started", start + MINUTE_MS, json!({}));
        events.add(
            &install,
            "dictation_completed",
            start + 3 * MINUTE_MS,
            json!({"metrics": {"latency_ms": latency}, "sample_rate": rate}),
        );
    }
    events.add("f5", "app_opened", start, json!({}));
    events.add("f5", "dictation_started", start + MINUTE_MS, json!({}));
    events.add(
        "f5",
        "recognition_failed",
        start + 2 * MINUTE_MS,
        json!({"level": "error", "error": {"domain": "speech", "code": "network_timeout", "message": "timed out"}}),
    );
    events.add("f6", "dictation_started", start - 10 * MINUTE_MS, json!({}));
    events.add("f6", "app_opened", start, json!({}));
    events.add("f6", "dictation_started", start + 2 * HOUR_MS, json!({}));
    for i in 1..=5 {
        let install = format!("r{i}");
        events.add(
            &install,
            "app_opened",
            day(10) + HOUR_MS,
            json!({"app_version": "1.0"}),
        );
        if i <= 3 {
            events.add(
                &install,
                "app_opened",
                day(11) + HOUR_MS,
                json!({"app_version": "1.0"}),
            );
        }
        if i == 1 {
            events.add(
                &install,
                "app_opened",
                day(12) + HOUR_MS,
                json!({"app_version": "1.0"}),
            );
        }
    }
    events.add(
        "r6",
        "app_opened",
        day(11) + 2 * HOUR_MS,
        json!({"app_version": "2.0"}),
    );

    let count = events.0.len();
    let resp = server.post_events(
        &format!("?product={PRODUCT}"),
        &Value::Array(events.0).to_string(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["accepted"], count, "{}", resp.text());
    let position = server.state.store.next_seq().unwrap();
    assert!(server
        .state
        .search
        .wait_indexed(position, Duration::from_secs(20)));
}

fn query(server: &TestServer, spec: Value) -> Value {
    let resp = query_resp(server, spec);
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

fn query_resp(server: &TestServer, mut spec: Value) -> common::Resp {
    spec["product"] = json!(PRODUCT);
    server.admin_request("POST", "/api/v1/analytics/query", Some(&spec))
}

#[test]
fn analytics_kinds_against_hand_computed_answers() {
    let server = server();
    let d0 = day0();
    seed(&server, d0);
    let day = |n: i64| d0 + n * DAY_MS;

    // Trend of events by day and platform over days 0..2: sampled ios events count 4×; the
    // android group has one install (< 5) and is folded into "other".
    let trend = query(
        &server,
        json!({"kind": "trend", "measure": "events", "from": day(0), "to": day(2),
               "q": "name:app_opened", "group_by": ["platform"]}),
    );
    assert_eq!(trend["buckets"], json!([day(0), day(1)]));
    assert_eq!(trend["estimated"], true);
    assert_eq!(trend["suppressed_groups"], 1);
    assert_eq!(trend["series"][0]["group"], json!(["ios"]));
    assert_eq!(trend["series"][0]["values"], json!([24.0, 6.0]));
    assert_eq!(trend["series"][0]["raw_events"], json!([6, 6]));
    assert_eq!(trend["series"][0]["installs"], 6);
    assert_eq!(trend["series"][1]["group"], json!(["other"]));
    assert_eq!(trend["series"][1]["values"], json!([2.0, 0.0]));
    assert_eq!(trend["series"][1]["installs"], 1);

    // Distinct installs per day (not weighted): 7 on day 0, 6 on day 1.
    let installs = query(
        &server,
        json!({"kind": "trend", "measure": "installs", "from": day(0), "to": day(2)}),
    );
    assert_eq!(installs["series"][0]["group"], json!([]));
    assert_eq!(installs["series"][0]["values"], json!([7.0, 6.0]));
    assert_eq!(installs["series"][0]["raw_events"], json!([8, 6]));

    // Funnel: 6 open, 5 start within the hour, 4 complete; f5 stopped after starting and hit
    // network_timeout; f6's starts (before the open, after the window) do not count.
    let funnel = query(
        &server,
        json!({"kind": "funnel", "from": day(2), "to": day(2) + 2 * HOUR_MS, "window": "1h",
               "steps": [{"name": "app_opened"}, {"name": "dictation_started"}, {"name": "dictation_completed"}]}),
    );
    let steps = funnel["steps"].as_array().unwrap();
    let counts: Vec<_> = steps.iter().map(|s| s["raw_count"].clone()).collect();
    assert_eq!(counts, vec![json!(6), json!(5), json!(4)]);
    assert_eq!(steps[1]["drop_off"], 1.0);
    assert_eq!(steps[2]["drop_off"], 1.0);
    assert_eq!(steps[2]["conversion"], 4.0 / 6.0);
    assert_eq!(steps[2]["step_conversion"], 4.0 / 5.0);
    assert_eq!(steps[1]["median_ms_from_previous"], json!(MINUTE_MS as f64));
    assert_eq!(
        steps[2]["median_ms_from_previous"],
        json!((2 * MINUTE_MS) as f64)
    );
    assert_eq!(steps[0]["dropped_errors"], json!([]));
    assert_eq!(steps[1]["dropped_errors"].as_array().unwrap().len(), 1);
    assert_eq!(
        steps[1]["dropped_errors"][0]["error_code"],
        "network_timeout"
    );
    assert_eq!(steps[1]["dropped_errors"][0]["units"], 1);
    // Units count with their first-step event's weight (all 1 here), but a sampled step event
    // (f4's completion) makes the funnel an estimate.
    assert_eq!(steps[2]["count"], 4.0);
    assert_eq!(funnel["estimated"], true);

    // Distribution of completion latency: 100, 200, 300 once and 400 four times (rate 0.25).
    let distribution = query(
        &server,
        json!({"kind": "distribution", "metric": "latency_ms", "from": day(2), "to": day(3),
               "q": "name:dictation_completed", "bins": 3}),
    );
    let summary = &distribution["groups"][0]["summary"];
    assert_eq!(distribution["estimated"], true);
    assert_eq!(summary["count"], 7.0);
    assert_eq!(summary["raw_count"], 4);
    assert_eq!(summary["sum"], 2200.0);
    assert_eq!(summary["min"], 100.0);
    assert_eq!(summary["max"], 400.0);
    // Cumulative weights 1, 2, 3, 7 of 7: p50 (3.5) falls on 400, unweighted it would be 200.
    assert_eq!(summary["p50"], 400.0);
    assert_eq!(summary["p99"], 400.0);
    let bins: Vec<_> = distribution["groups"][0]["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_f64().unwrap())
        .collect();
    assert_eq!(bins, vec![1.0, 1.0, 5.0]);

    // Active installs over days 10..12.
    let active = query(
        &server,
        json!({"kind": "active_installs", "from": day(10), "to": day(13)}),
    );
    assert_eq!(active["days"], json!([day(10), day(11), day(12)]));
    assert_eq!(active["dau"], json!([5, 4, 1]));
    assert_eq!(active["new"], json!([5, 1, 0]));
    assert_eq!(active["returning"], json!([0, 3, 1]));
    assert_eq!(active["wau"], json!([5, 6, 6]));
    // Everyone in the dataset was active within 30 days of day 10: 6 + 1 + 6 + 5, then r6.
    assert_eq!(active["mau"], json!([18, 19, 19]));
    // Version 2.0 has one install: folded.
    assert_eq!(active["suppressed_groups"], 1);
    assert_eq!(active["versions"][0]["version"], "1.0");
    assert_eq!(active["versions"][0]["share"], json!([1.0, 0.75, 1.0]));
    assert_eq!(active["versions"][1]["version"], "other");
    assert_eq!(active["versions"][1]["installs"], json!([0, 1, 0]));

    // Retention by day: the day-10 cohort (5) keeps 3 then 1; r6's day-11 cohort of one install
    // is folded into "other".
    let retention = query(
        &server,
        json!({"kind": "retention", "period": "day", "periods": 3, "from": day(10), "to": day(13)}),
    );
    assert_eq!(retention["suppressed_groups"], 1);
    let cohorts = retention["cohorts"].as_array().unwrap();
    assert_eq!(cohorts.len(), 2);
    assert_eq!(cohorts[0]["start_ms"], day(10));
    assert_eq!(cohorts[0]["installs"], 5);
    assert_eq!(cohorts[0]["active"], json!([5, 3, 1]));
    assert_eq!(cohorts[0]["share"], json!([1.0, 0.6, 0.2]));
    assert_eq!(cohorts[1]["label"], "other");
    assert_eq!(cohorts[1]["active"], json!([1, 0, null]));
}

#[test]
fn bad_specs_are_error_answers() {
    let server = server();
    let bad = [
        (
            json!({"kind": "trend", "measure": "p95"}),
            "invalid_parameter",
        ),
        (
            json!({"kind": "trend", "measure": "events", "group_by": ["a", "b", "c"]}),
            "invalid_parameter",
        ),
        (
            json!({"kind": "funnel", "steps": [{"name": "app_opened"}]}),
            "invalid_parameter",
        ),
        (
            json!({"kind": "trend", "measure": "events", "q": "level:("}),
            "invalid_query",
        ),
        (json!({"kind": "nonsense"}), "invalid_body"),
    ];
    for (spec, code) in bad {
        let resp = query_resp(&server, spec.clone());
        assert_eq!(resp.error_code(), code, "{spec}: {}", resp.text());
    }
    // A member a spec does not know is refused by name, at the top and inside a funnel step.
    for (spec, member) in [
        (
            json!({"kind": "trend", "measure": "events", "goup_by": ["platform"]}),
            "goup_by",
        ),
        (
            json!({"kind": "funnel", "steps": [{"name": "a"}, {"name": "b", "filter": "x:y"}]}),
            "filter",
        ),
        (json!({"kind": "retention", "cohort": "week"}), "cohort"),
    ] {
        let resp = query_resp(&server, spec.clone());
        assert_eq!(resp.status, 400, "{spec}");
        assert_eq!(resp.error_code(), "invalid_body", "{spec}");
        let error = &resp.json()["error"];
        assert_eq!(error["details"]["member"], member, "{spec}");
        assert!(
            error["message"].as_str().unwrap().contains(member),
            "{error}"
        );
    }
}

/// Two group-by fields with a weighted p95 per bucket, an install crossing a bucket edge,
/// a funnel per session with a breakdown (one value folded for k-anonymity), and folding off.
#[test]
fn groupings_sessions_and_breakdowns() {
    let server = server();
    let d0 = day0();
    let day = |n: i64| d0 + n * DAY_MS;
    let mut events = Events(Vec::new());
    // Six ios installs on 1.0 with latency 10 (rate 1) and 50 (rate 0.1) on day 0; each also
    // just before and just after the day-1 edge.
    for i in 1..=6 {
        let install = format!("g{i}");
        let ios = json!({"platform": "ios", "app_version": "1.0", "session_id": format!("s{i}")});
        let mut fast = ios.clone();
        fast["metrics"] = json!({"latency_ms": 10});
        let mut slow = ios.clone();
        slow["metrics"] = json!({"latency_ms": 50});
        slow["sample_rate"] = json!(0.1);
        events.add(&install, "dictation_completed", day(0) + HOUR_MS, fast);
        events.add(&install, "dictation_completed", day(0) + 2 * HOUR_MS, slow);
        events.add(&install, "app_opened", day(1) - 1, ios.clone());
        events.add(&install, "app_opened", day(1), ios.clone());
        // Funnel per session: s1..s6 open and start; s1..s3 complete.
        events.add(&install, "dictation_started", day(1) + 1, ios.clone());
        if i <= 3 {
            events.add(&install, "dictation_completed", day(1) + 2, ios);
        }
    }
    // One web install, its own session: opened and started, alone in its breakdown value.
    let web = json!({"platform": "web", "app_version": "1.0", "session_id": "w1"});
    events.add("w1", "app_opened", day(1), web.clone());
    events.add("w1", "dictation_started", day(1) + 1, web);
    let count = events.0.len();
    let resp = server.post_events(
        &format!("?product={PRODUCT}"),
        &Value::Array(events.0).to_string(),
    );
    assert_eq!(resp.json()["accepted"], count, "{}", resp.text());
    let position = server.state.store.next_seq().unwrap();
    assert!(server
        .state
        .search
        .wait_indexed(position, Duration::from_secs(20)));

    // The median latency by platform × version: 6 values of 10 (weight 1), 6 of 50 (weight 10).
    let trend = query(
        &server,
        json!({"kind": "trend", "measure": "p50", "metric": "latency_ms", "from": day(0), "to": day(1),
               "group_by": ["platform", "app_version"]}),
    );
    assert_eq!(trend["series"][0]["group"], json!(["ios", "1.0"]));
    // Cumulative weight 6 of 66 at 10 < 33: the weighted median is 50 (unweighted: 10).
    assert_eq!(trend["series"][0]["values"], json!([50.0]));
    // Raw events: the 12 completions and the 6 opens just before the edge (no latency).
    assert_eq!(trend["series"][0]["raw_events"], json!([18]));
    let sum = query(
        &server,
        json!({"kind": "trend", "measure": "sum", "metric": "latency_ms", "from": day(0), "to": day(1)}),
    );
    assert_eq!(
        sum["series"][0]["values"],
        json!([6.0 * 10.0 + 60.0 * 50.0])
    );

    // The installs on both sides of the day-1 edge count in both buckets.
    let edge = query(
        &server,
        json!({"kind": "trend", "measure": "installs", "from": day(0), "to": day(2), "q": "name:app_opened"}),
    );
    assert_eq!(edge["series"][0]["values"], json!([6.0, 7.0]));
    let sessions = query(
        &server,
        json!({"kind": "trend", "measure": "sessions", "from": day(1), "to": day(2)}),
    );
    assert_eq!(sessions["series"][0]["values"], json!([7.0]));

    // Funnel per session, broken down by platform: web (one install) is folded into "other".
    let funnel = query(
        &server,
        json!({"kind": "funnel", "per": "session", "from": day(1), "to": day(2), "window": "1h",
               "breakdown": "platform",
               "steps": [{"name": "app_opened"}, {"name": "dictation_started"}, {"name": "dictation_completed"}]}),
    );
    let raw = |steps: &Value| -> Vec<u64> {
        steps
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["raw_count"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(raw(&funnel["steps"]), vec![7, 7, 3]);
    assert_eq!(funnel["suppressed_groups"], 1);
    assert_eq!(funnel["groups"][0]["value"], "ios");
    assert_eq!(raw(&funnel["groups"][0]["steps"]), vec![6, 6, 3]);
    assert_eq!(funnel["groups"][1]["value"], "other");
    assert_eq!(raw(&funnel["groups"][1]["steps"]), vec![1, 1, 0]);
}

const SCOPED_ADMIN: &str = "test-voice-admin-0123456789";

/// A call to the saved-queries API as `token`.
fn saved(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> common::Resp {
    let auth = format!("Bearer {token}");
    request(
        method,
        &format!("{}/api/v1/analytics/saved{path}", server.url),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        body.map(|b| b.to_string().into_bytes()),
    )
}

/// Saved queries: created by an admin with a spec the query endpoint accepts, named uniquely per
/// product, pinned or not, renamed, deleted, audited, kept across a restart; viewers read them,
/// and a token scoped to another product neither sees nor changes them.
#[test]
fn saved_queries_are_named_specs_per_product_within_scopes_and_roles() {
    let config = format!(
        "{}\n[[admin.tokens]]\nname = \"voice-admin\"\nrole = \"admin\"\nhash = \"{}\"\nproducts = [\"voice-sdk\"]\n",
        common::shipped_config_text(),
        telemetryd::hash::hash_token(SCOPED_ADMIN)
    );
    let server = TestServer::start(&config, &[]);
    let spec =
        json!({"kind": "trend", "measure": "events", "from": "-7d", "group_by": ["platform"]});
    let created = saved(
        &server,
        "POST",
        "",
        ADMIN_TOKEN,
        Some(
            json!({"product": PRODUCT, "name": "Opens by platform", "query": spec, "pinned": true}),
        ),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let first = created.json();
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/analytics/saved/{id}").as_str())
    );
    assert_eq!(first["product"], PRODUCT);
    assert_eq!(first["query"], spec);
    assert_eq!(first["pinned"], true);
    assert_eq!(first["created_by"], "ops");
    // The saved spec is what the query endpoint runs.
    assert_eq!(query_resp(&server, first["query"].clone()).status, 200);

    let second = saved(
        &server,
        "POST",
        "",
        ADMIN_TOKEN,
        Some(
            json!({"product": PRODUCT, "name": "Daily installs", "query": {"kind": "active_installs"}}),
        ),
    );
    assert_eq!(second.status, 201, "{}", second.text());
    let second_id = second.json()["id"].as_str().unwrap().to_string();
    assert_eq!(second.json()["pinned"], false);

    // Refusals: a name taken in the product, a spec the endpoint would refuse, a viewer writing.
    let taken = saved(
        &server,
        "POST",
        "",
        ADMIN_TOKEN,
        Some(
            json!({"product": PRODUCT, "name": "Opens by platform", "query": {"kind": "active_installs"}}),
        ),
    );
    assert_eq!(taken.status, 409, "{}", taken.text());
    let typo = saved(
        &server,
        "POST",
        "",
        ADMIN_TOKEN,
        Some(
            json!({"product": PRODUCT, "name": "x", "query": {"kind": "trend", "measure": "events", "buckett": "1h"}}),
        ),
    );
    assert_eq!(typo.error_code(), "invalid_body", "{}", typo.text());
    assert_eq!(typo.json()["error"]["details"]["member"], "buckett");
    let unnamed = saved(
        &server,
        "POST",
        "",
        ADMIN_TOKEN,
        Some(json!({"product": PRODUCT, "query": spec})),
    );
    assert_eq!(unnamed.error_code(), "invalid_parameter");
    assert_eq!(unnamed.json()["error"]["details"]["parameter"], "name");
    let by_viewer = saved(
        &server,
        "POST",
        "",
        VIEWER_TOKEN,
        Some(json!({"product": PRODUCT, "name": "v", "query": spec})),
    );
    assert_eq!(by_viewer.status, 403);
    let rename_to_taken = saved(
        &server,
        "PATCH",
        &format!("/{second_id}"),
        ADMIN_TOKEN,
        Some(json!({"name": "Opens by platform"})),
    );
    assert_eq!(rename_to_taken.status, 409);

    // Viewers read; the pinned filter gives the dashboard's queries.
    let list = saved(
        &server,
        "GET",
        &format!("?product={PRODUCT}"),
        VIEWER_TOKEN,
        None,
    )
    .json();
    let names: Vec<_> = list["saved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("Daily installs"), json!("Opens by platform")]
    );
    let pinned = saved(
        &server,
        "GET",
        &format!("?product={PRODUCT}&pinned=true"),
        VIEWER_TOKEN,
        None,
    )
    .json();
    assert_eq!(pinned["saved"].as_array().unwrap().len(), 1);
    assert_eq!(pinned["saved"][0]["id"], id.as_str());
    assert_eq!(
        saved(&server, "GET", &format!("/{id}"), VIEWER_TOKEN, None).json(),
        first
    );

    // A token scoped to voice-sdk sees none of dictation-app's, and changes none.
    let scoped_list = saved(&server, "GET", "", SCOPED_ADMIN, None).json();
    assert_eq!(scoped_list["saved"], json!([]));
    assert_eq!(
        saved(&server, "GET", &format!("/{id}"), SCOPED_ADMIN, None).status,
        404
    );
    assert_eq!(
        saved(
            &server,
            "PATCH",
            &format!("/{id}"),
            SCOPED_ADMIN,
            Some(json!({"name": "mine"}))
        )
        .status,
        404
    );
    assert_eq!(
        saved(&server, "DELETE", &format!("/{id}"), SCOPED_ADMIN, None).status,
        404
    );
    let elsewhere = saved(
        &server,
        "POST",
        "",
        SCOPED_ADMIN,
        Some(json!({"product": PRODUCT, "name": "sneaky", "query": spec})),
    );
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.text());
    // Its own product is implied: the only one it sees.
    let own = saved(
        &server,
        "POST",
        "",
        SCOPED_ADMIN,
        Some(json!({"name": "Voice opens", "query": spec})),
    );
    assert_eq!(own.status, 201, "{}", own.text());
    assert_eq!(own.json()["product"], "voice-sdk");

    // Rename and unpin; the product stays.
    let edited = saved(
        &server,
        "PATCH",
        &format!("/{id}"),
        ADMIN_TOKEN,
        Some(json!({"name": "Opens per platform", "pinned": false})),
    );
    assert_eq!(edited.status, 200, "{}", edited.text());
    assert_eq!(edited.json()["name"], "Opens per platform");
    assert_eq!(edited.json()["query"], spec);
    let moved = saved(
        &server,
        "PATCH",
        &format!("/{id}"),
        ADMIN_TOKEN,
        Some(json!({"product": "voice-sdk"})),
    );
    assert_eq!(moved.error_code(), "invalid_parameter");

    // Kept across a restart.
    let dir = server.stop();
    let server = TestServer::start_in(dir, &config, &[]);
    let again = saved(&server, "GET", &format!("/{id}"), ADMIN_TOKEN, None).json();
    assert_eq!(again["name"], "Opens per platform");
    assert_eq!(again["pinned"], false);

    let deleted = saved(&server, "DELETE", &format!("/{id}"), ADMIN_TOKEN, None);
    assert_eq!(deleted.json()["deleted"], id.as_str());
    assert_eq!(
        saved(&server, "GET", &format!("/{id}"), ADMIN_TOKEN, None).status,
        404
    );

    let audit = server.admin_get("/api/v1/audit?action=saved_query.").json();
    let actions: Vec<_> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("saved_query.delete", "ops"),
            ("saved_query.update", "ops"),
            ("saved_query.create", "voice-admin"),
            ("saved_query.create", "ops"),
            ("saved_query.create", "ops"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(audit["entries"][0]["products"], json!([PRODUCT]));
    assert_eq!(audit["entries"][0]["target"], format!("saved_query:{id}"));
}

/// One generated event of the oracle test.
struct Generated {
    install: String,
    platform: &'static str,
    ts: i64,
    rate: f64,
}

/// The trend answer an oracle expects: per kept group (heaviest first, small groups folded into
/// "other" last), weighted events, stored events and distinct installs per bucket.
struct Expected {
    groups: Vec<String>,
    weighted: Vec<Vec<f64>>,
    raw: Vec<Vec<u64>>,
    suppressed: usize,
}

/// Trend by platform worked out from the events themselves: the same weighting (1 / rate), the
/// same buckets and the same k-anonymity fold as the README describes.
fn oracle(
    events: &[Generated],
    first: i64,
    bucket_ms: i64,
    buckets: usize,
    min_installs: usize,
) -> Expected {
    use std::collections::{BTreeMap, HashSet};
    let mut per_platform: BTreeMap<&str, (f64, HashSet<&str>)> = BTreeMap::new();
    for e in events {
        let entry = per_platform.entry(e.platform).or_default();
        entry.0 += 1.0 / e.rate;
        entry.1.insert(&e.install);
    }
    let mut kept: Vec<(&str, f64)> = per_platform
        .iter()
        .filter(|(_, (_, installs))| installs.len() >= min_installs)
        .map(|(p, (w, _))| (*p, *w))
        .collect();
    kept.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let suppressed = per_platform.len() - kept.len();
    let mut groups: Vec<String> = kept.iter().map(|(p, _)| p.to_string()).collect();
    if suppressed > 0 {
        groups.push("other".into());
    }
    let slot = |platform: &str| {
        kept.iter()
            .position(|(p, _)| *p == platform)
            .unwrap_or(kept.len())
    };
    let mut weighted = vec![vec![0.0; buckets]; groups.len()];
    let mut raw = vec![vec![0u64; buckets]; groups.len()];
    for e in events {
        let bucket = ((e.ts - first) / bucket_ms) as usize;
        weighted[slot(e.platform)][bucket] += 1.0 / e.rate;
        raw[slot(e.platform)][bucket] += 1;
    }
    Expected {
        groups,
        weighted,
        raw,
        suppressed,
    }
}

/// Sampled events at four rates, sent in two batches where the second is late: its events
/// happened days before the first batch's (an offline client catching up). Every trend figure
/// is checked against the oracle computed here from the events sent, in day and 6-hour
/// buckets, with the two-install web platform folded into "other".
#[test]
fn late_and_sampled_events_against_a_computed_oracle() {
    let server = server();
    let d0 = day0();
    let mut rng = fastrand::Rng::with_seed(14);
    let platforms = ["ios", "android", "web"];
    let rates = [1.0, 0.5, 0.25, 0.1];
    let mut events: Vec<Generated> = (0..400)
        .map(|_| {
            let platform = platforms[rng.usize(..2)];
            Generated {
                install: format!("{platform}-{}", rng.usize(..12)),
                platform,
                ts: d0 + rng.i64(0..6 * DAY_MS),
                rate: rates[rng.usize(..rates.len())],
            }
        })
        .collect();
    for i in 0..6 {
        events.push(Generated {
            install: format!("web-{}", i % 2),
            platform: "web",
            ts: d0 + i * DAY_MS + 7 * HOUR_MS,
            rate: 0.5,
        });
    }
    let body = |batch: &[&Generated]| {
        let events: Vec<Value> = batch
            .iter()
            .map(|e| {
                json!({"id": uuid::Uuid::new_v4().to_string(), "name": "dictation_started", "timestamp": e.ts,
                       "install_id": e.install, "platform": e.platform, "sample_rate": e.rate})
            })
            .collect();
        json!({"sent_at": telemetryd::model::now_ms(), "events": events}).to_string()
    };
    // The first batch holds the later events (days 3..6), the second the earlier ones.
    let (late, sent_first): (Vec<&Generated>, Vec<&Generated>) =
        events.iter().partition(|e| e.ts < d0 + 3 * DAY_MS);
    assert!(!late.is_empty() && !sent_first.is_empty());
    for batch in [&sent_first, &late] {
        let resp = server.post_events(&format!("?product={PRODUCT}"), &body(batch));
        assert_eq!(resp.json()["accepted"], batch.len(), "{}", resp.text());
    }
    server.settle();

    for (bucket, bucket_ms) in [("1d", DAY_MS), ("6h", 6 * HOUR_MS)] {
        let buckets = (6 * DAY_MS / bucket_ms) as usize;
        let expected = oracle(&events, d0, bucket_ms, buckets, 5);
        assert_eq!(expected.suppressed, 1, "web has two installs");
        let trend = query(
            &server,
            json!({"kind": "trend", "measure": "events", "from": d0, "to": d0 + 6 * DAY_MS,
                   "bucket": bucket, "group_by": ["platform"]}),
        );
        assert_eq!(trend["estimated"], true);
        assert_eq!(trend["suppressed_groups"], 1);
        let series = trend["series"].as_array().unwrap();
        let groups: Vec<String> = series
            .iter()
            .map(|s| s["group"][0].as_str().unwrap().to_string())
            .collect();
        assert_eq!(groups, expected.groups, "{bucket}");
        for (n, s) in series.iter().enumerate() {
            let values: Vec<f64> = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(values, expected.weighted[n], "{bucket} {}", groups[n]);
            assert_eq!(
                s["raw_events"],
                json!(expected.raw[n]),
                "{bucket} {}",
                groups[n]
            );
        }
    }

    // Distinct installs per day (not weighted), late events included.
    let installs = query(
        &server,
        json!({"kind": "trend", "measure": "installs", "from": d0, "to": d0 + 6 * DAY_MS}),
    );
    let expected: Vec<f64> = (0..6)
        .map(|day| {
            let start = d0 + day * DAY_MS;
            events
                .iter()
                .filter(|e| (start..start + DAY_MS).contains(&e.ts))
                .map(|e| e.install.as_str())
                .collect::<std::collections::HashSet<_>>()
                .len() as f64
        })
        .collect();
    assert_eq!(installs["series"][0]["values"], json!(expected));
}

/// One install of the funnel oracle test: its open (time, sample rate), starts and completions.
struct FunnelInstall {
    id: String,
    open: i64,
    rate: f64,
    starts: Vec<i64>,
    completions: Vec<i64>,
}

/// A funnel whose step events arrive out of order — every completion sent first, then the
/// starts, the opens last — and happen out of order too: starts before the open, completions
/// before the start, steps after the hour's window. The expected counts are worked out here per
/// install by the README's rule (from the open, the earliest next step at or after the previous
/// one and within the window), each install weighted by its sampled open.
#[test]
fn funnel_of_out_of_order_steps_against_a_computed_oracle() {
    let server = server();
    let from = day0() + 14 * DAY_MS;
    let window = HOUR_MS;
    let mut rng = fastrand::Rng::with_seed(1414);
    let rates = [1.0, 0.5, 0.25];
    let installs: Vec<FunnelInstall> = (0..60)
        .map(|i| {
            let open = from + rng.i64(0..20 * HOUR_MS);
            FunnelInstall {
                id: format!("fun-{i}"),
                open,
                rate: rates[rng.usize(..rates.len())],
                starts: (0..rng.usize(0..3))
                    .map(|_| open + rng.i64(-40 * MINUTE_MS..100 * MINUTE_MS))
                    .collect(),
                completions: (0..rng.usize(0..3))
                    .map(|_| open + rng.i64(-10 * MINUTE_MS..150 * MINUTE_MS))
                    .collect(),
            }
        })
        .collect();

    let mut raw = [0u64; 3];
    let mut weighted = [0.0f64; 3];
    for install in &installs {
        let deadline = install.open + window;
        let next = |times: &[i64], at: i64| times.iter().copied().filter(|t| *t >= at).min();
        let mut reached = vec![install.open];
        if let Some(start) = next(&install.starts, install.open).filter(|t| *t <= deadline) {
            reached.push(start);
            if let Some(done) = next(&install.completions, start).filter(|t| *t <= deadline) {
                reached.push(done);
            }
        }
        for step in 0..reached.len() {
            raw[step] += 1;
            weighted[step] += 1.0 / install.rate;
        }
    }
    assert!(raw[1] > 0 && raw[2] > 0 && raw[2] < raw[1] && raw[1] < raw[0]);

    let batch = |name: &str, pick: &dyn Fn(&FunnelInstall) -> Vec<(i64, f64)>| {
        let events: Vec<Value> = installs
            .iter()
            .flat_map(|install| {
                pick(install).into_iter().map(move |(ts, rate)| {
                    json!({"id": uuid::Uuid::new_v4().to_string(), "name": name, "timestamp": ts,
                           "install_id": install.id, "sample_rate": rate})
                })
            })
            .collect();
        let count = events.len();
        let resp = server.post_events(
            &format!("?product={PRODUCT}"),
            &Value::Array(events).to_string(),
        );
        assert_eq!(resp.json()["accepted"], count, "{}", resp.text());
    };
    batch("dictation_completed", &|i| {
        i.completions.iter().map(|t| (*t, 1.0)).collect()
    });
    batch("dictation_started", &|i| {
        i.starts.iter().map(|t| (*t, 1.0)).collect()
    });
    batch("app_opened", &|i| vec![(i.open, i.rate)]);
    server.settle();

    let funnel = query(
        &server,
        json!({"kind": "funnel", "from": from, "to": from + DAY_MS, "window": "1h",
               "steps": [{"name": "app_opened"}, {"name": "dictation_started"}, {"name": "dictation_completed"}]}),
    );
    let steps = funnel["steps"].as_array().unwrap();
    for (n, step) in steps.iter().enumerate() {
        assert_eq!(step["raw_count"], raw[n], "step {n}");
        assert!(
            (step["count"].as_f64().unwrap() - weighted[n]).abs() < 1e-9,
            "step {n}: {} vs {}",
            step["count"],
            weighted[n]
        );
        assert!(
            (step["conversion"].as_f64().unwrap() - weighted[n] / weighted[0]).abs() < 1e-9,
            "step {n}"
        );
    }
    assert_eq!(funnel["estimated"], true);
}
