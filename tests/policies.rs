//! Collection policies against a real server: CRUD with validation and audit, the client config
//! endpoint (targeting, merge, ETag/304), enforcement at ingest, and the preview.

mod common;

use common::*;
use serde_json::{json, Value};

fn admin(method: &str, server: &TestServer, path: &str, body: Option<Value>) -> Resp {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    request(
        method,
        &format!("{}{path}", server.url),
        &headers,
        body.map(|b| b.to_string().into_bytes()),
    )
}

fn create(server: &TestServer, policy: Value) -> Value {
    let resp = admin("POST", server, "/api/v1/policies", Some(policy));
    assert_eq!(resp.status, 201, "{}", resp.text());
    resp.json()
}

fn config(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> Resp {
    request(
        "GET",
        &format!("{}/api/v1/config?{query}", server.url),
        headers,
        None,
    )
}

fn geo_server() -> TestServer {
    TestServer::shipped(&[(
        "TELEMETRYD_GEO__DATABASE",
        testdata("geoip2-city-test.mmdb").to_str().unwrap(),
    )])
}

#[test]
fn targeting_merge_and_etag() {
    let server = geo_server();
    let ios = create(
        &server,
        json!({"name": "ios sampling", "product": "dictation-app", "priority": 1,
        "targeting": {"platforms": ["ios"]}, "settings": {"sample_rate": 0.5, "batch_size": 20}}),
    );
    let v33 = create(
        &server,
        json!({"name": "3.3 quiet", "product": "dictation-app", "priority": 2,
        "targeting": {"app_versions": ">=3.3.0, <4"}, "settings": {"min_level": "warn", "sample_rate": 0.25}}),
    );
    let gb = create(
        &server,
        json!({"name": "GB off", "product": "dictation-app", "priority": 3,
        "targeting": {"countries": ["gb"]}, "settings": {"collection_enabled": false}}),
    );
    create(
        &server,
        json!({"name": "disabled", "product": "dictation-app", "enabled": false, "priority": 9,
        "settings": {"collection_enabled": false}}),
    );
    create(
        &server,
        json!({"name": "expired", "product": "dictation-app", "priority": 9,
        "expires_at": "2020-01-01T00:00:00Z", "settings": {"collection_enabled": false}}),
    );

    let base = "product=dictation-app&install_id=i-1&channel=keyboard&release_channel=stable";
    let resp = config(
        &server,
        &format!("{base}&platform=ios&app_version=3.3.1"),
        &[],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("cache-control"), Some("private, max-age=60"));
    let body = resp.json();
    assert_eq!(body["applied_policies"], json!([ios["id"], v33["id"]]));
    assert_eq!(
        body["settings"]["sample_rate"], 0.25,
        "the higher priority wins"
    );
    assert_eq!(body["settings"]["batch_size"], 20);
    assert_eq!(body["settings"]["min_level"], "warn");
    assert_eq!(body["settings"]["collection_enabled"], true);

    // A pre-release inside the range matches; an older version does not.
    let beta = config(
        &server,
        &format!("{base}&platform=android&app_version=3.4.0-beta.2"),
        &[],
    )
    .json();
    assert_eq!(beta["applied_policies"], json!([v33["id"]]));
    let old = config(
        &server,
        &format!("{base}&platform=android&app_version=3.2.0"),
        &[],
    )
    .json();
    assert_eq!(old["applied_policies"], json!([]));
    assert_eq!(old["settings"]["sample_rate"], 1.0);

    // Country comes from the request's address (through a trusted proxy).
    let from_gb = config(
        &server,
        &format!("{base}&platform=web&app_version=3.2.0"),
        &[("x-forwarded-for", "81.2.69.142")],
    )
    .json();
    assert_eq!(from_gb["applied_policies"], json!([gb["id"]]));
    assert_eq!(from_gb["settings"]["collection_enabled"], false);

    // ETag and 304.
    let first = config(
        &server,
        &format!("{base}&platform=ios&app_version=3.3.1"),
        &[],
    );
    let etag = first.header("etag").unwrap().to_string();
    assert!(etag.starts_with('"'));
    let again = config(
        &server,
        &format!("{base}&platform=ios&app_version=3.3.1"),
        &[("if-none-match", &etag)],
    );
    assert_eq!(again.status, 304);
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert!(again.body.is_empty());
    // A change to a policy changes the content and so the ETag.
    let mut changed = v33.clone();
    changed["settings"]["sample_rate"] = json!(0.1);
    for key in ["created_at", "updated_at"] {
        changed.as_object_mut().unwrap().remove(key);
    }
    let resp = admin(
        "PUT",
        &server,
        &format!("/api/v1/policies/{}", v33["id"].as_str().unwrap()),
        Some(changed),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let after = config(
        &server,
        &format!("{base}&platform=ios&app_version=3.3.1"),
        &[("if-none-match", &etag)],
    );
    assert_eq!(after.status, 200);
    assert_eq!(after.json()["settings"]["sample_rate"], 0.1);
    assert_ne!(after.header("etag"), Some(etag.as_str()));
}

#[test]
fn config_parameters_are_checked() {
    let server = TestServer::shipped(&[]);
    for (query, parameter) in [
        ("install_id=x", "product"),
        (
            "product=dictation-app&app_version=not.a.version!",
            "app_version",
        ),
        ("product=dictation-app&platform=%3Cscript%3E", "platform"),
    ] {
        let resp = config(&server, query, &[]);
        assert_eq!(
            (resp.status, resp.error_code().as_str()),
            (400, "invalid_parameter"),
            "{query}: {}",
            resp.text()
        );
        assert_eq!(
            resp.json()["error"]["details"]["parameter"],
            parameter,
            "{query}"
        );
    }
    let resp = config(&server, "product=nope", &[]);
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (400, "unknown_product")
    );
}

#[test]
fn validation_errors_name_the_field_and_writes_are_audited() {
    let server = TestServer::shipped(&[]);
    let cases = [
        (json!({"product": "dictation-app"}), "name"),
        (json!({"name": "x", "product": "nope"}), "product"),
        (
            json!({"name": "x", "product": "dictation-app", "targeting": {"app_versions": ">=banana"}, "settings": {"sample_rate": 0.5}}),
            "targeting.app_versions",
        ),
        (
            json!({"name": "x", "product": "dictation-app", "targeting": {"rollout_percent": 120}, "settings": {"sample_rate": 0.5}}),
            "targeting.rollout_percent",
        ),
        (
            json!({"name": "x", "product": "dictation-app", "settings": {"sample_rate": 2}}),
            "settings.sample_rate",
        ),
        (
            json!({"name": "x", "product": "dictation-app", "settings": {"min_level": "loud"}}),
            "settings.min_level",
        ),
        (
            json!({"name": "x", "product": "dictation-app", "settings": {"sample_rate": 0.5}, "colour": "red"}),
            "colour",
        ),
    ];
    for (body, field) in cases {
        let resp = admin("POST", &server, "/api/v1/policies", Some(body.clone()));
        assert_eq!(
            (resp.status, resp.error_code().as_str()),
            (400, "invalid_policy"),
            "{body}: {}",
            resp.text()
        );
        let got = resp.json()["error"]["details"]["field"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            got.starts_with(field),
            "{body}: field {got}, expected {field}"
        );
    }
    let viewer = request(
        "POST",
        &format!("{}/api/v1/policies", server.url),
        &[
            ("authorization", &format!("Bearer {VIEWER_TOKEN}")),
            ("content-type", "application/json"),
        ],
        Some(
            json!({"name": "x", "product": "dictation-app", "settings": {"sample_rate": 0.5}})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(viewer.status, 403);

    let p = create(
        &server,
        json!({"id": "fixed-id", "name": "one", "product": "voice-sdk", "settings": {"sample_rate": 0.5}}),
    );
    let dup = admin(
        "POST",
        &server,
        "/api/v1/policies",
        Some(
            json!({"id": "fixed-id", "name": "two", "product": "voice-sdk", "settings": {"sample_rate": 0.5}}),
        ),
    );
    assert_eq!((dup.status, dup.error_code().as_str()), (409, "conflict"));
    assert_eq!(
        server
            .get_as("/api/v1/policies/fixed-id", VIEWER_TOKEN)
            .json()["name"],
        "one"
    );
    assert_eq!(
        server.get_as("/api/v1/policies", VIEWER_TOKEN).json()["policies"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let resp = admin(
        "PUT",
        &server,
        "/api/v1/policies/fixed-id",
        Some(json!({"name": "renamed", "product": "voice-sdk", "settings": {"sample_rate": 0.2}})),
    );
    assert_eq!(resp.json()["created_at"], p["created_at"]);
    assert_eq!(
        admin("DELETE", &server, "/api/v1/policies/fixed-id", None).status,
        200
    );
    assert_eq!(
        admin("DELETE", &server, "/api/v1/policies/fixed-id", None).status,
        404
    );
    assert_eq!(server.admin_get("/api/v1/policies/fixed-id").status, 404);

    let audit = server.admin_get("/api/v1/audit?action=policy").json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["policy.delete", "policy.update", "policy.create"]);
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["target"] == "policy:fixed-id" && e["actor"] == "ops"));
}

fn native(install: &str, platform: &str, name: &str, level: &str, n: usize) -> Value {
    let events: Vec<Value> = (0..n)
        .map(|_| json!({"id": uuid::Uuid::new_v4().to_string(), "eventName": name, "level": level, "installId": install,
                        "platform": platform, "appVersion": "3.3.1", "channel": "app", "module": "dictation"}))
        .collect();
    json!({"events": events})
}

#[test]
fn enforcement_drops_and_samples_at_ingest() {
    let server = TestServer::shipped(&[]);
    create(
        &server,
        json!({"name": "android off", "product": "dictation-app", "targeting": {"platforms": ["android"]}, "settings": {"collection_enabled": false}}),
    );
    create(
        &server,
        json!({"name": "web sampled", "product": "dictation-app", "targeting": {"platforms": ["web"]},
        "settings": {"sample_rate": 0.5, "events_deny": ["keyboard_shown"], "min_level": "info"}}),
    );

    let resp = server
        .post_events(
            "?product=dictation-app",
            &native("a1", "android", "app_opened", "info", 10).to_string(),
        )
        .json();
    assert_eq!(
        (
            resp["accepted"].as_u64(),
            resp["dropped_by_policy"].as_u64()
        ),
        (Some(0), Some(10))
    );
    assert_eq!(resp["rejected"], json!([]));

    let mut accepted = 0;
    let mut sampled = 0;
    for i in 0..20 {
        let resp = server
            .post_events(
                "?product=dictation-app",
                &native(&format!("w{i}"), "web", "app_opened", "info", 50).to_string(),
            )
            .json();
        accepted += resp["accepted"].as_u64().unwrap();
        sampled += resp["sampled_out"].as_u64().unwrap();
    }
    assert_eq!(accepted + sampled, 1000);
    assert!(
        (400..=600).contains(&accepted),
        "kept {accepted} of 1000 at rate 0.5"
    );
    let resp = server
        .post_events(
            "?product=dictation-app",
            &native("w-x", "web", "keyboard_shown", "info", 5).to_string(),
        )
        .json();
    assert_eq!(resp["dropped_by_policy"], 5);
    let resp = server
        .post_events(
            "?product=dictation-app",
            &native("w-y", "web", "app_opened", "debug", 5).to_string(),
        )
        .json();
    assert_eq!(resp["dropped_by_policy"], 5);

    let stored = server.stored();
    assert!(stored
        .iter()
        .all(|e| e.platform.as_deref() == Some("web") && e.sample_rate == 0.5));
    let stats = server.stats();
    assert_eq!(stats["dropped_by_policy"], 20);
    assert_eq!(
        stats["dropped_by_policy_reasons"]["collection_disabled"],
        10
    );
    assert_eq!(stats["dropped_by_policy_reasons"]["event_denied"], 5);
    assert_eq!(stats["dropped_by_policy_reasons"]["below_min_level"], 5);
    assert_eq!(stats["sampled_out"], sampled);
    let metrics = server.get("/metrics").text();
    assert!(metrics.contains("telemetryd_events_dropped_by_policy_total 20"));
}

#[test]
fn preview_counts_installs_and_dry_runs_stored_events() {
    let server = TestServer::shipped(&[]);
    for (i, platform) in ["ios", "ios", "ios", "android", "web"].iter().enumerate() {
        let resp = server.post_events(
            "?product=dictation-app",
            &native(&format!("inst-{i}"), platform, "app_opened", "info", 4).to_string(),
        );
        assert_eq!(resp.json()["accepted"], 4);
    }
    server.settle();
    let draft = json!({"name": "ios off", "product": "dictation-app", "targeting": {"platforms": ["ios"]}, "settings": {"collection_enabled": false}});
    let resp = admin("POST", &server, "/api/v1/policies/preview", Some(draft));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let report = resp.json();
    assert_eq!(report["matching_installs"], 3);
    assert_eq!(report["total_installs"], 5);
    let ios = report["by_platform"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["value"] == "ios")
        .unwrap();
    assert_eq!(
        (ios["matching"].as_u64(), ios["total"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(report["by_app_version"][0]["value"], "3.3.1");
    assert_eq!(report["dry_run"]["events"], 20);
    assert_eq!(report["dry_run"]["dropped_by_policy"], 12);
    assert_eq!(report["dry_run"]["kept"], 8);
    // Nothing was stored by the preview.
    assert_eq!(
        server.admin_get("/api/v1/policies").json()["policies"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn oversized_admin_bodies_get_a_json_error() {
    let server = TestServer::shipped(&[]);
    let huge = json!({"name": "x".repeat(400_000), "product": "voice-sdk"});
    let resp = admin("POST", &server, "/api/v1/policies", Some(huge));
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (413, "payload_too_large"),
        "{}",
        resp.text()
    );
    assert!(!resp.json()["error"]["message"].as_str().unwrap().is_empty());
}

/// Concurrent admin writes leave the served policies and client config equal to the stored
/// ones: the cache is refreshed in commit order, inside the write's transaction boundary.
#[test]
fn concurrent_writes_leave_the_cache_equal_to_the_store() {
    let server = TestServer::shipped(&[]);
    let base = "product=dictation-app&install_id=i-1&platform=ios&app_version=3.3.1";
    for round in 0..5 {
        let policy = create(
            &server,
            json!({"name": format!("round {round}"), "product": "dictation-app",
                   "priority": 100 + round, "settings": {"batch_size": 1}}),
        );
        let id = policy["id"].as_str().unwrap().to_string();
        std::thread::scope(|scope| {
            for writer in 0..4 {
                let (server, id) = (&server, &id);
                scope.spawn(move || {
                    for n in 0..8 {
                        let batch_size = 2 + writer * 8 + n;
                        let resp = admin(
                            "PUT",
                            server,
                            &format!("/api/v1/policies/{id}"),
                            Some(json!({"name": format!("round {round}"), "product": "dictation-app",
                                        "priority": 100 + round, "settings": {"batch_size": batch_size}})),
                        );
                        assert_eq!(resp.status, 200, "{}", resp.text());
                        if n % 4 == 0 {
                            create(
                                server,
                                json!({"name": "extra", "product": "dictation-app", "priority": 1,
                                       "settings": {"flush_interval_ms": 1000 + writer * 8 + n}}),
                            );
                        }
                    }
                });
            }
        });
        let stored = server.state.store.policies().unwrap();
        let served = admin("GET", &server, "/api/v1/policies", None).json()["policies"].clone();
        let mut served_ids: Vec<(String, String)> = served
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_string(),
                    p["settings"].to_string(),
                )
            })
            .collect();
        let mut stored_ids: Vec<(String, String)> = stored
            .iter()
            .map(|p| {
                (
                    p.id.clone(),
                    serde_json::to_value(&p.settings).unwrap().to_string(),
                )
            })
            .collect();
        served_ids.sort();
        stored_ids.sort();
        assert_eq!(served_ids, stored_ids, "round {round}");
        let stored_batch = stored
            .iter()
            .find(|p| p.id == id)
            .and_then(|p| serde_json::to_value(&p.settings).unwrap()["batch_size"].as_u64());
        let served_config = config(&server, base, &[]).json();
        assert_eq!(
            served_config["settings"]["batch_size"].as_u64(),
            stored_batch,
            "round {round}: {served_config}"
        );
    }
}
