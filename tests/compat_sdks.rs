//! Drop-in compatibility with other services' SDKs, unmodified: PostHog's (posthog-python,
//! posthog-node), Aptabase's (aptabase-python, @aptabase/web) and Sentry's (sentry-sdk with and
//! without brotli, @sentry/node) send to a real server whose URL is their host or DSN, get the
//! answers they expect (flags included, answered from a collection policy), and what they sent
//! is read back through the API: names, mapped fields, dimensions, an exception from two app
//! versions in one cluster, a transaction's span durations, a release's crash-free sessions.
//! Then hostile bodies per format, answered in that format's error shape with nothing else lost.
//!
//! The senders are `tests/otel/compat_send.py`, `tests/otel/compat_send.mjs`,
//! `tests/otel/sentry_send.py` and `tests/otel/sentry_send.mjs` (run by
//! `common::sdks`; the SDKs are pinned in `tests/otel/requirements.txt` and
//! `tests/otel/package.json` and installed by `scripts/test.sh`).

mod common;

use common::sdks::{self, Sent};
use common::{gzip, request, Resp, TestServer};
use serde_json::{json, Value};

const PRODUCT: &str = "web-app";
/// The DSN the Sentry senders are given (with the test server's address as host, which is not
/// compared).
const SENTRY_DSN: &str = "http://0123456789abcdef0123456789abcdef@telemetry.example/4242";
const SENTRY_ENVELOPE: &str = "/api/4242/envelope/";
const SENTRY_AUTH: (&str, &str) = (
    "x-sentry-auth",
    "Sentry sentry_key=0123456789abcdef0123456789abcdef, sentry_version=7",
);

fn config() -> String {
    format!(
        r#"
[[products]]
id = "{PRODUCT}"
# The tests' releases have two installs each.
min_group_installs = 0
[products.schema]
mode = "open"
[products.compat]
posthog_tokens = ["phc_compat_python", "phc_compat_node"]
aptabase_app_keys = ["A-SH-COMPATPY01", "A-SH-COMPATJS01"]
sentry_dsns = ["{SENTRY_DSN}"]

[[products]]
id = "other"

{}"#,
        common::tokens_toml()
    )
}

fn admin(server: &TestServer, method: &str, path: &str, body: Option<Value>) -> Resp {
    server.admin_request(method, path, body.as_ref())
}

/// Two policies: one for every client of the product, one for iOS only (so, for none here).
fn policies(server: &TestServer) -> (String, String) {
    let create = |body: Value| {
        let resp = admin(server, "POST", "/api/v1/policies", Some(body));
        assert_eq!(resp.status, 201, "{}", resp.text());
        resp.json()["id"].as_str().unwrap().to_string()
    };
    let everyone = create(
        json!({"name": "small batches", "product": PRODUCT, "priority": 1,
        "settings": {"batch_size": 10, "sample_rate": 1.0}}),
    );
    let ios = create(
        json!({"name": "ios only", "product": PRODUCT, "priority": 2,
        "targeting": {"platforms": ["ios"]}, "settings": {"collection_enabled": false}}),
    );
    (everyone, ios)
}

fn send(sdk: &str) -> (TestServer, Sent, (String, String)) {
    let server = TestServer::start(&config(), &[]);
    let policies = policies(&server);
    let command = match sdk {
        "python" => sdks::python("posthog, aptabase", "compat_send.py"),
        _ => sdks::node("compat_send.mjs"),
    }
    .unwrap_or_else(|e| panic!("{e}"));
    let sent = sdks::run(command, &[&server.url], sdk);
    assert!(sent.success, "the {sdk} sender failed:\n{}", sent.output);
    assert_eq!(sent.summary["ok"], true, "{}", sent.output);
    (server, sent, policies)
}

/// The events of the product matching `query`, once the index caught up.
fn events(server: &TestServer, query: &str) -> Vec<Value> {
    server.settle();
    let resp = server.admin_get(&format!(
        "/api/v1/events?product={PRODUCT}&limit=100&q={}",
        query.replace(' ', "%20").replace('$', "%24")
    ));
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()["events"].as_array().unwrap().clone()
}

/// Every request to `path` was answered 200 with `{"status": 1}` and nothing refused, and the
/// requests came in exactly the content encodings `encodings` (an SDK may split its queue into
/// more than one request).
fn assert_captures(sent: &Sent, path: &str, encodings: &[Value]) {
    let requests: Vec<&Value> = sent.summary["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["url"].as_str().unwrap().ends_with(path))
        .collect();
    let mut seen: Vec<String> = Vec::new();
    for r in &requests {
        assert_eq!(r["status"], 200, "{r}");
        let answer: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        assert_eq!(answer["status"], 1, "{answer}");
        assert_eq!(answer["rejected"], json!([]), "{answer}");
        seen.push(r["content_encoding"].to_string());
    }
    seen.sort();
    seen.dedup();
    let mut expected: Vec<String> = encodings.iter().map(Value::to_string).collect();
    expected.sort();
    assert_eq!(seen, expected, "{}", sent.output);
}

/// The flags the SDK read: collection on with the merged settings as payload, the policy for
/// everyone on, the iOS one off.
fn assert_flags(sent: &Sent, (everyone, ios): &(String, String)) {
    let flags = &sent.summary["posthog"]["flags"];
    let payload = &flags["payload"];
    assert_eq!(payload["product"], PRODUCT, "{flags}");
    assert_eq!(payload["applied_policies"], json!([everyone]), "{flags}");
    assert_eq!(payload["settings"]["batch_size"], 10, "{flags}");
    assert_eq!(payload["settings"]["collection_enabled"], true, "{flags}");
    let enabled = &flags["enabled"];
    assert_eq!(enabled["telemetryd-collection"], true, "{flags}");
    assert_eq!(
        enabled[format!("telemetryd-policy-{everyone}")],
        true,
        "{flags}"
    );
    assert_eq!(
        enabled[format!("telemetryd-policy-{ios}")],
        false,
        "{flags}"
    );
}

/// The exception sent from two app versions: both stored with the error mapped, one
/// fingerprint, and one cluster counting both versions.
fn assert_exception_cluster(server: &TestServer, sent: &Sent, platform: &str) {
    let exception = &sent.summary["posthog"]["exception"];
    let errors = events(server, &format!("name:$exception platform:{platform}"));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let mut versions: Vec<&str> = Vec::new();
    for e in &errors {
        assert_eq!(e["level"], "error", "{e}");
        assert_eq!(e["error"]["domain"], exception["type"], "{e}");
        assert_eq!(e["error"]["message"], exception["message"], "{e}");
        let stack = e["error"]["stack"].as_str().unwrap();
        assert!(stack.contains("failing"), "the frames: {stack}");
        assert!(e["dims"].get("exception_list").is_none(), "{e}");
        versions.push(e["app_version"].as_str().unwrap());
    }
    versions.sort();
    let mut expected: Vec<&str> = sent.summary["posthog"]["installs"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    expected.sort();
    assert_eq!(versions, expected);
    assert_one_cluster(server, &errors, &expected);
}

/// `errors` (one per version of `versions`) share one fingerprint, and its cluster counts each
/// version once.
fn assert_one_cluster(server: &TestServer, errors: &[Value], versions: &[&str]) {
    assert_eq!(errors.len(), versions.len(), "{errors:#?}");
    let fingerprint = errors[0]["fingerprint"].as_str().unwrap();
    for e in errors {
        assert_eq!(e["fingerprint"], fingerprint, "one problem, one key: {e}");
    }
    let resp = admin(server, "POST", "/api/v1/clusters/run", None);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = server.admin_get(&format!("/api/v1/clusters/{fingerprint}"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let cluster = resp.json();
    let cluster = cluster.get("cluster").unwrap_or(&cluster);
    // Compared as a number: a cluster's count may be a weighted (float) figure.
    assert_eq!(cluster["count"].as_f64(), Some(2.0), "{cluster}");
    for version in versions {
        assert_eq!(cluster["app_versions"][version], 1, "{cluster}");
    }
}

/// What every PostHog event of an SDK carries.
fn assert_posthog_event(e: &Value, platform: &str, runtime: &str, versions: &Value) {
    assert_eq!(e["source"], "posthog", "{e}");
    assert_eq!(e["platform"], platform, "{e}");
    assert!(e["runtime"].as_str().unwrap().starts_with(runtime), "{e}");
    let install = e["install_id"].as_str().unwrap();
    assert_eq!(e["app_version"], versions[install], "{e}");
    // A server SDK's distinct id names a person: the user id too.
    assert_eq!(e["user_id"], install, "{e}");
}

#[test]
fn posthog_python_and_aptabase_python() {
    let (server, sent, policies) = send("python");
    assert_flags(&sent, &policies);
    // Two clients, the second gzipping; a person update ($set) set aside.
    assert_captures(&sent, "/batch/", &[Value::Null, Value::from("gzip")]);
    let versions = &sent.summary["posthog"]["installs"];

    let opened = events(&server, "name:app_opened");
    assert_eq!(opened.len(), 2, "{opened:#?}");
    for e in &opened {
        assert_posthog_event(e, "python", "posthog-python/", versions);
        let i = if e["install_id"] == "install-py-0" {
            0
        } else {
            1
        };
        assert_eq!(e["session_id"], format!("session-py-{i}"), "{e}");
        assert_eq!(e["dims"]["plan"], "pro", "{e}");
        assert_eq!(e["metrics"]["seats"], 3.0 + i as f64, "{e}");
        assert!(e["dims"].get("lib").is_none() && e["dims"].get("token").is_none());
    }
    for e in events(&server, "name:$exception") {
        assert_posthog_event(&e, "python", "posthog-python/", versions);
    }
    assert_exception_cluster(&server, &sent, "python");
    assert!(
        events(&server, "name:$set").is_empty(),
        "person updates are not stored"
    );

    // Aptabase: systemProps → environment, props → dims and metrics, one session.
    let aptabase = &sent.summary["aptabase"];
    let started = events(&server, "name:app_started");
    let viewed = events(&server, "name:screen_viewed");
    assert_eq!((started.len(), viewed.len()), (1, 1));
    let (started, viewed) = (&started[0], &viewed[0]);
    for e in [started, viewed] {
        assert_eq!(e["source"], "aptabase", "{e}");
        assert_eq!(e["platform"], "python", "{e}");
        assert_eq!(e["runtime"], aptabase["sdk_version"], "{e}");
        assert_eq!(e["app_version"], aptabase["app_version"], "{e}");
        assert_eq!(e["release_channel"], "debug", "isDebug: {e}");
        assert_eq!(e["dims"]["locale"], "en-US", "{e}");
        assert!(e["os_family"].is_string(), "{e}");
    }
    assert!(started["session_id"].as_str().unwrap().len() > 10);
    assert_eq!(started["session_id"], viewed["session_id"]);
    assert_eq!(started["dims"]["plan"], "pro");
    assert_eq!(started["metrics"]["tabs"], 4.0);
    assert_eq!(viewed["dims"]["screen"], "home");
}

#[test]
fn posthog_node_and_aptabase_web() {
    let (server, sent, policies) = send("node");
    assert_flags(&sent, &policies);
    // posthog-node gzips its batches; identify and groupIdentify ride along, set aside.
    assert_captures(&sent, "/batch/", &[Value::from("gzip")]);
    let versions = &sent.summary["posthog"]["installs"];
    let checkouts = events(&server, "name:checkout_done");
    assert_eq!(checkouts.len(), 2, "{checkouts:#?}");
    for e in &checkouts {
        assert_posthog_event(e, "node", "posthog-node/", versions);
        let install = e["install_id"].as_str().unwrap();
        assert_eq!(e["session_id"], format!("session-{install}"), "{e}");
        assert_eq!(e["dims"]["coupon"], "spring", "{e}");
        assert_eq!(e["metrics"]["cart_items"], 2.0, "{e}");
    }
    assert_exception_cluster(&server, &sent, "node");
    for name in ["$identify", "$groupidentify"] {
        assert!(
            events(&server, &format!("name:{name}")).is_empty(),
            "{name}"
        );
    }

    let viewed = events(&server, "name:page_viewed");
    assert_eq!(viewed.len(), 1, "{viewed:#?}");
    let e = &viewed[0];
    let aptabase = &sent.summary["aptabase"];
    assert_eq!(e["source"], "aptabase", "{e}");
    assert_eq!(e["platform"], "web", "{e}");
    assert_eq!(e["runtime"], aptabase["sdk_version"], "{e}");
    assert_eq!(e["app_version"], aptabase["app_version"], "{e}");
    assert_eq!(e["release_channel"], "release", "{e}");
    assert_eq!(e["dims"]["page"], "pricing", "{e}");
    assert_eq!(e["metrics"]["scroll_pct"], 80.0, "{e}");
    assert!(e["session_id"].as_str().unwrap().len() > 10, "{e}");
}

fn post(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
) -> Resp {
    request(
        "POST",
        &format!("{}{path}", server.url),
        headers,
        Some(body.into()),
    )
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// A PostHog error answer: the status, PostHog's body shape, our code, a detail naming why.
fn assert_posthog_error(resp: &Resp, status: u16, code: &str, detail: &str) {
    assert_eq!(resp.status, status, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["code"], code, "{body}");
    let kind = match status {
        401 => "authentication_error",
        429 => "throttled_error",
        _ => "validation_error",
    };
    assert_eq!(body["type"], kind, "{body}");
    assert!(body["attr"].is_null(), "{body}");
    let text = body["detail"].as_str().unwrap();
    assert!(text.contains(detail), "{detail:?} in {text:?}");
}

fn stored_names(server: &TestServer) -> Vec<String> {
    let mut names: Vec<String> = server.stored().into_iter().map(|e| e.name).collect();
    names.sort();
    names
}

#[test]
fn posthog_bodies_paths_and_refusals() {
    let server = TestServer::start(&config(), &[("TELEMETRYD_SERVER__MAX_BATCH_EVENTS", "20")]);
    let token = "phc_compat_python";
    let event =
        |name: &str| json!({"event": name, "distinct_id": "d-1", "properties": {"token": token}});

    // Every capture path, with and without the trailing slash, takes one event.
    let paths = ["/i/v0/e", "/e", "/capture", "/batch", "/track"];
    let mut expected: Vec<String> = Vec::new();
    for path in paths {
        for path in [path.to_string(), format!("{path}/")] {
            let name = format!("path{}", path.replace('/', "_"));
            let resp = post(&server, &path, &[JSON], event(&name).to_string());
            assert_eq!(resp.status, 200, "{path}: {}", resp.text());
            assert_eq!(resp.json()["status"], 1, "{path}");
            expected.push(name);
        }
    }
    // The encodings: gzip-js by query (posthog-js, text/plain), gzip by magic bytes alone,
    // base64 in a form's data=, base64 by query; beacon=1 answered without a body.
    let batch = |name: &str| json!([event(name)]).to_string();
    let text_plain = ("content-type", "text/plain");
    let resp = post(
        &server,
        "/i/v0/e/?compression=gzip-js&ver=1.200.0",
        &[text_plain],
        gzip(batch("gzip_js").as_bytes()),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = post(
        &server,
        "/e/",
        &[text_plain],
        gzip(batch("gzip_magic").as_bytes()),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    use base64::Engine;
    let form = form_data(batch("base64_form").as_bytes());
    let resp = post(
        &server,
        "/e/",
        &[("content-type", "application/x-www-form-urlencoded")],
        form,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let b64 = base64::engine::general_purpose::STANDARD.encode(batch("base64_query"));
    let resp = post(&server, "/batch/?compression=base64", &[text_plain], b64);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = post(&server, "/e/?beacon=1", &[text_plain], batch("beacon"));
    assert_eq!(resp.status, 204, "{}", resp.text());
    assert!(resp.body.is_empty());
    expected.extend(
        [
            "gzip_js",
            "gzip_magic",
            "base64_form",
            "base64_query",
            "beacon",
        ]
        .map(String::from),
    );

    // One batch: valid events stored, each bad item refused with its index and why; a person
    // update neither stored nor refused.
    let mixed = json!({"api_key": token, "sent_at": "2026-11-20T10:00:00Z", "batch": [
        {"event": "kept_1", "distinct_id": "d-1"},
        7,
        {"distinct_id": "d-2", "properties": {"plan": "pro"}},
        {"event": "$identify", "distinct_id": "d-1", "properties": {"$set": {"email": "a@b.c"}}},
        {"event": "other_project", "distinct_id": "d-3", "api_key": "phc_compat_node"},
        {"event": "kept_2", "distinct_id": "d-1"}]});
    let resp = post(&server, "/batch/", &[JSON], mixed.to_string());
    assert_eq!(resp.status, 200, "{}", resp.text());
    let answer = resp.json();
    assert_eq!(answer["status"], 1);
    assert_eq!(answer["accepted"], 2, "{answer}");
    let refused: Vec<(i64, &str)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_i64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        refused,
        [
            (1, "invalid_event"),
            (2, "missing_name"),
            (4, "invalid_event")
        ],
        "{answer}"
    );
    expected.extend(["kept_1", "kept_2"].map(String::from));
    // /engage: answered, nothing stored.
    let engage = json!({"$set": {"plan": "pro"}, "$token": token, "$distinct_id": "d-1"});
    for path in ["/engage", "/engage/"] {
        let resp = post(&server, path, &[JSON], engage.to_string());
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.json()["accepted"], 0);
    }

    // Whole-request refusals, in PostHog's error shape.
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        (
            "/batch/",
            b"!!not base64 or JSON!!".to_vec(),
            400,
            "invalid_encoding",
            "base64",
        ),
        (
            "/batch/?compression=gzip-js",
            batch("x").into_bytes(),
            400,
            "invalid_encoding",
            "gzip",
        ),
        (
            "/batch/?compression=lz64",
            b"N4Ig".to_vec(),
            415,
            "unsupported_encoding",
            "lz64",
        ),
        (
            "/batch/",
            b"42".to_vec(),
            400,
            "invalid_body",
            "expected a JSON array",
        ),
        (
            "/batch/",
            b"[{\"event\": ".to_vec(),
            400,
            "invalid_json",
            "JSON",
        ),
        ("/batch/", b"".to_vec(), 400, "invalid_body", "empty"),
        ("/e/", b"data=".to_vec(), 400, "invalid_body", "empty"),
        (
            "/e/",
            b"data=%%%".to_vec(),
            400,
            "invalid_encoding",
            "base64",
        ),
        (
            "/batch/",
            json!({"api_key": "phc_nobody", "batch": [event("x")]})
                .to_string()
                .into_bytes(),
            401,
            "invalid_ingest_key",
            "posthog_tokens",
        ),
        (
            "/batch/",
            json!([{"event": "x", "distinct_id": "d"}])
                .to_string()
                .into_bytes(),
            400,
            "missing_product",
            "product",
        ),
        (
            "/batch/",
            serde_json::to_vec(&vec![event("x"); 21]).unwrap(),
            413,
            "batch_too_large",
            "21",
        ),
        (
            "/batch/",
            gzip(&vec![b' '; 40 << 20]),
            413,
            "payload_too_large",
            "limit",
        ),
        (
            "/batch/",
            vec![b' '; 2 << 20],
            413,
            "payload_too_large",
            "limit",
        ),
    ];
    for (path, body, status, code, detail) in cases {
        let resp = post(&server, path, &[text_plain], body);
        assert_posthog_error(&resp, status, code, detail);
    }

    // Nothing refused took anything with it; everything valid is stored, nothing else.
    expected.sort();
    assert_eq!(stored_names(&server), expected);
    for e in server.stored() {
        assert_eq!(e.source.as_str(), "posthog");
        assert!(e.dims.keys().all(|k| k != "token"), "{e:?}");
    }
}

/// Over a product's rate limit: the events past it refused by index, then a batch with
/// nothing taken answered `429` with `Retry-After`, in PostHog's shape.
#[test]
fn posthog_rate_limit() {
    let config = format!(
        "{}\n[[products]]\nid = \"limited\"\nrate_limit_per_minute = 2\n[products.compat]\nposthog_tokens = [\"phc_limited\"]\n",
        config()
    );
    let server = TestServer::start(&config, &[]);
    let batch = |names: &[&str]| {
        let events: Vec<Value> = names
            .iter()
            .map(|n| json!({"event": n, "distinct_id": "one-install"}))
            .collect();
        json!({"api_key": "phc_limited", "batch": events}).to_string()
    };
    let resp = post(&server, "/batch/", &[JSON], batch(&["a", "b", "c"]));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let answer = resp.json();
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(answer["rejected"][0]["index"], 2, "{answer}");
    assert_eq!(answer["rejected"][0]["code"], "rate_limited", "{answer}");
    let resp = post(&server, "/batch/", &[JSON], batch(&["d"]));
    assert_posthog_error(&resp, 429, "rate_limited", "rate limit");
    assert!(resp.header("retry-after").is_some(), "{:?}", resp.headers);
    assert_eq!(stored_names(&server), ["a", "b"]);
}

#[test]
fn posthog_flags_and_decide() {
    let server = TestServer::start(&config(), &[]);
    let (everyone, _) = policies(&server);
    let body = json!({"token": "phc_compat_node", "distinct_id": "d-1"}).to_string();
    // The legacy /decide answers featureFlags and featureFlagPayloads.
    let resp = post(&server, "/decide/?v=3", &[JSON], body.clone());
    assert_eq!(resp.status, 200, "{}", resp.text());
    let decide = resp.json();
    assert_eq!(
        decide["featureFlags"][format!("telemetryd-policy-{everyone}")],
        true
    );
    let payload: Value = serde_json::from_str(
        decide["featureFlagPayloads"]["telemetryd-collection"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["settings"]["batch_size"], 10);
    // posthog-js's compressed flags request (base64 form) and a bad token.
    let form = form_data(body.as_ref());
    let resp = post(
        &server,
        "/flags/?v=2&config=true",
        &[("content-type", "application/x-www-form-urlencoded")],
        form,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json()["flags"]["telemetryd-collection"]["enabled"],
        true
    );
    let resp = post(
        &server,
        "/flags/?v=2",
        &[JSON],
        json!({"token": "phc_x", "distinct_id": "d"}).to_string(),
    );
    assert_posthog_error(&resp, 401, "invalid_ingest_key", "posthog_tokens");
    // posthog-js's remote config, the token in the path.
    let resp = server.get("/array/phc_compat_node/config");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json()["telemetryd"]["applied_policies"],
        json!([everyone])
    );
    let resp = post(&server, "/flags/?v=2", &[JSON], "{not json");
    assert_posthog_error(&resp, 400, "invalid_json", "JSON");
    assert!(server.stored().is_empty(), "flags store nothing");
}

#[test]
fn aptabase_bodies_and_refusals() {
    let server = TestServer::start(&config(), &[]);
    let key = ("app-key", "a-sh-compatpy01"); // matched in any case, as Aptabase does
    let event = |name: &str| {
        json!({"timestamp": "2026-11-20T10:00:00Z", "sessionId": "1732", "eventName": name,
               "systemProps": {"isDebug": false, "osName": "iOS", "osVersion": "18.1",
               "appVersion": "5.0.0", "sdkVersion": "aptabase-swift@0.3.0"}, "props": {"tab": "home"}})
    };
    let resp = post(
        &server,
        "/api/v0/event",
        &[JSON, key],
        event("one").to_string(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    // A batch: the malformed item refused alone, by index.
    let batch = json!([event("two"), {"eventName": "bad", "props": [1]}, event("three")]);
    let resp = post(&server, "/api/v0/events", &[JSON, key], batch.to_string());
    assert_eq!(resp.status, 200, "{}", resp.text());
    let answer = resp.json();
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(answer["rejected"][0]["index"], 1, "{answer}");
    assert!(answer["rejected"][0]["message"]
        .as_str()
        .unwrap()
        .contains("props"));

    let too_many = Value::Array((0..26).map(|i| event(&format!("e{i}"))).collect());
    type Case<'a> = (Vec<(&'a str, &'a str)>, String, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![JSON, key],
            too_many.to_string(),
            413,
            "batch_too_large",
        ),
        (
            vec![JSON, ("app-key", "A-SH-NOBODY")],
            event("x").to_string(),
            401,
            "invalid_ingest_key",
        ),
        (vec![JSON], event("x").to_string(), 400, "missing_product"),
        (
            vec![JSON, key],
            "{\"eventName\": ".into(),
            400,
            "invalid_json",
        ),
        (vec![JSON, key], "\"text\"".into(), 400, "invalid_body"),
        (
            vec![("content-type", "text/xml"), key],
            "<event/>".into(),
            415,
            "unsupported_media_type",
        ),
    ];
    for (headers, body, status, code) in cases {
        let resp = post(&server, "/api/v0/events", &headers, body);
        assert_eq!(resp.status, status, "{code}: {}", resp.text());
        assert_eq!(resp.error_code(), code);
    }
    let mut names = stored_names(&server);
    names.sort();
    assert_eq!(names, ["one", "three", "two"]);
    let e = &server.stored()[0];
    assert_eq!(e.source.as_str(), "aptabase");
    assert_eq!(e.os_family.as_deref(), Some("iOS"));
    assert_eq!(e.platform.as_deref(), Some("swift"));
    assert_eq!(e.release_channel.as_deref(), Some("release"));

    // The web SDK's preflight: the App-Key header is allowed.
    let resp = request(
        "OPTIONS",
        &format!("{}/api/v0/event", server.url),
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "app-key, content-type"),
        ],
        None,
    );
    assert_eq!(resp.status, 204, "{}", resp.text());
    assert!(resp
        .header("access-control-allow-headers")
        .unwrap()
        .contains("app-key"));
}

/// Runs a Sentry sender (`python` with or without brotli importable, or `node`) against a new
/// server; every request answered 200.
fn send_sentry(sdk: &str) -> (TestServer, Sent) {
    let server = TestServer::start(&config(), &[]);
    let mut command = match sdk {
        "node" => sdks::node("sentry_send.mjs"),
        _ => sdks::python("sentry_sdk, brotli", "sentry_send.py"),
    }
    .unwrap_or_else(|e| panic!("{e}"));
    if sdk == "python-gzip" {
        command.env("SENTRY_SEND_WITHOUT_BROTLI", "1");
    }
    let sent = sdks::run(command, &[&server.url], sdk);
    assert!(sent.success, "the {sdk} sender failed:\n{}", sent.output);
    assert_eq!(sent.summary["ok"], true, "{}", sent.output);
    (server, sent)
}

/// What the Sentry SDKs sent, read back: each request's answer, the exception of two releases
/// in one cluster, the message with its level, the transaction's spans with the durations the
/// SDK measured, and the crash-free sessions of each release.
fn assert_sentry(server: &TestServer, sent: &Sent, platform: &str, encodings: &[&str]) {
    let requests = sent.summary["requests"].as_array().unwrap();
    let mut answered_ids: Vec<String> = Vec::new();
    for r in requests {
        assert!(r["url"].as_str().unwrap().contains(SENTRY_ENVELOPE), "{r}");
        assert_eq!(r["status"], 200, "{r}");
        let encoding = r["content_encoding"].as_str().unwrap_or("none");
        assert!(encodings.contains(&encoding), "{encoding} in {r}");
        let answer: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        assert_eq!(answer["rejected"], json!([]), "{answer}");
        if let Some(id) = answer["id"].as_str() {
            answered_ids.push(id.replace('-', ""));
        }
    }
    let versions = ["1.0.0", "1.1.0"];
    for version in versions {
        let id = sent.summary["ids"][version]["exception"].as_str().unwrap();
        assert!(
            answered_ids.iter().any(|a| a == id),
            "{id} answered: {answered_ids:?}"
        );
    }

    // The exception: mapped, and one cluster across the two releases.
    let exception = &sent.summary["exception"];
    let errors: Vec<Value> = events(server, "name:exception")
        .into_iter()
        .filter(|e| e["error"]["message"] == exception["message"])
        .collect();
    let mut seen_versions: Vec<&str> = Vec::new();
    for e in &errors {
        assert_eq!(e["source"], "sentry", "{e}");
        assert_eq!(e["platform"], platform, "{e}");
        assert_eq!(e["level"], "error", "{e}");
        assert_eq!(e["release_channel"], "production", "{e}");
        assert_eq!(e["error"]["domain"], exception["type"], "{e}");
        let stack = e["error"]["stack"].as_str().unwrap();
        assert!(stack.contains("failing"), "the frames: {stack}");
        assert!(
            e["error"]["code"].as_str().unwrap().contains("failing"),
            "the in-app functions: {e}"
        );
        let version = e["app_version"].as_str().unwrap();
        assert_eq!(e["user_id"], format!("install-{version}"), "{e}");
        assert_eq!(e["install_id"], format!("install-{version}"), "{e}");
        assert_eq!(e["dims"]["plan"], "pro", "{e}");
        seen_versions.push(version);
    }
    seen_versions.sort();
    assert_eq!(seen_versions, versions, "{errors:#?}");
    assert_one_cluster(server, &errors, &versions);

    // The message, with its level.
    let messages = events(server, "name:message");
    assert_eq!(messages.len(), 2, "{messages:#?}");
    for e in &messages {
        assert_eq!(e["message"], "disk almost full", "{e}");
        assert_eq!(e["level"], "warn", "{e}");
        assert!(e.get("error").is_none(), "a message, not an exception: {e}");
    }
    assert!(
        events(server, "dropped").is_empty(),
        "before_send dropped it"
    );

    // The transaction and its spans, each with the duration the SDK measured.
    let checkouts = events(server, "name:checkout");
    assert_eq!(checkouts.len(), 2, "{checkouts:#?}");
    for transaction in sent.summary["transactions"].as_array().unwrap() {
        let version = transaction["release"]
            .as_str()
            .unwrap()
            .replace("shop@", "");
        let root = checkouts
            .iter()
            .find(|e| e["app_version"] == version)
            .unwrap_or_else(|| panic!("the transaction of {version}: {checkouts:#?}"));
        assert!(
            root["metrics"]["duration_ms"].as_f64().unwrap() > 0.0,
            "{root}"
        );
        for span in transaction["spans"].as_array().unwrap() {
            let op = span["op"].as_str().unwrap();
            let stored: Vec<Value> = events(server, &format!("name:{op}"))
                .into_iter()
                .filter(|e| e["app_version"] == version)
                .collect();
            assert_eq!(stored.len(), 1, "{op} of {version}: {stored:#?}");
            let e = &stored[0];
            assert_eq!(e["dims"]["description"], span["description"], "{e}");
            assert_eq!(e["trace_id"], root["trace_id"], "{e}");
            assert_eq!(e["parent_span_id"], root["span_id"], "{e}");
            let measured = span["duration_ms"].as_f64().unwrap();
            let duration = e["metrics"]["duration_ms"].as_f64().unwrap();
            assert!(
                (duration - measured).abs() < 0.01,
                "{duration} vs {measured}: {e}"
            );
        }
    }

    // Release health: 1.0.0 had one of two sessions crash, 1.1.0 none of two.
    let health = release_health(server);
    let release = |version: &str| {
        health["releases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["app_version"] == version)
            .unwrap_or_else(|| panic!("{version} in {health}"))
            .clone()
    };
    let first = release("1.0.0");
    assert_eq!(first["sessions"], 2.0, "{first}");
    assert_eq!(first["crashed"], 1.0, "{first}");
    assert_eq!(first["crash_free_sessions"], 0.5, "{first}");
    assert_eq!(first["installs"], 2, "{first}");
    assert_eq!(first["crash_free_installs"], 0.5, "{first}");
    let second = release("1.1.0");
    assert_eq!(second["sessions"], 2.0, "{second}");
    assert_eq!(second["crash_free_sessions"], 1.0, "{second}");
}

/// The product's release health, through the analytics API.
fn release_health(server: &TestServer) -> Value {
    let spec = json!({"product": PRODUCT, "kind": "release_health", "from": "-30d"});
    let resp = admin(server, "POST", "/api/v1/analytics/query", Some(spec));
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

#[test]
fn sentry_python_with_brotli() {
    let (server, sent) = send_sentry("python");
    assert_eq!(sent.summary["brotli"], true, "{}", sent.output);
    assert_sentry(&server, &sent, "python", &["br"]);
    // The event before_send dropped, reported by the SDK.
    let metrics = server.admin_get("/metrics").text();
    assert!(
        metrics.contains(
            "telemetryd_client_discarded_events_total{reason=\"before_send\",category=\"error\"} 1"
        ),
        "{metrics}"
    );
}

#[test]
fn sentry_node() {
    let (server, sent) = send_sentry("node");
    // @sentry/node gzips bodies over 32 KiB only.
    assert_sentry(&server, &sent, "node", &["none", "gzip"]);
}

#[test]
fn sentry_python_without_brotli() {
    let (server, sent) = send_sentry("python-gzip");
    assert_eq!(sent.summary["brotli"], false, "{}", sent.output);
    assert_sentry(&server, &sent, "python", &["gzip"]);
}

/// An envelope of `items` (type, payload) with the event id `event_id`, lengths declared.
fn envelope(event_id: &str, items: &[(&str, String)]) -> Vec<u8> {
    let mut body = json!({"event_id": event_id, "sent_at": "2026-11-20T10:00:00Z"}).to_string();
    for (kind, payload) in items {
        body.push_str(&format!(
            "\n{}\n{payload}",
            json!({"type": kind, "length": payload.len()})
        ));
    }
    body.push('\n');
    body.into_bytes()
}

/// A message event with a new event id.
fn sentry_event(message: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    json!({"event_id": id, "platform": "python",
        "release": "shop@3.0.0", "user": {"id": "install-h"}, "level": "info",
        "message": message})
    .to_string()
}

/// A Sentry error answer: the status, Relay's body shape with our code, a detail naming why.
fn assert_sentry_error(resp: &Resp, status: u16, code: &str, detail: &str) {
    assert_eq!(resp.status, status, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["code"], code, "{body}");
    let text = body["detail"].as_str().unwrap();
    assert!(text.contains(detail), "{detail:?} in {text:?}");
}

#[test]
fn sentry_bodies_paths_and_refusals() {
    let server = TestServer::start(
        &config(),
        &[
            ("TELEMETRYD_SERVER__MAX_EVENT_BYTES", "2000"),
            ("TELEMETRYD_SERVER__MAX_BODY_BYTES", "20000"),
        ],
    );
    let envelope_type = ("content-type", "application/x-sentry-envelope");
    // One envelope: each bad item refused with its index and why, unknown types and client
    // reports set aside, the rest stored; the answer carries the envelope's event id.
    let items = vec![
        ("event", sentry_event("kept_1")),
        ("event", "{not json".to_string()),
        ("profile", "\u{0}binary\nwith newlines".to_string()),
        ("event", sentry_event(&"x".repeat(3000))),
        ("session", json!({"sid": "s-1", "status": "ok"}).to_string()),
        ("client_report", json!({"discarded_events": []}).to_string()),
        ("event", "[1, 2]".to_string()),
        ("event", sentry_event("kept_2")),
    ];
    let body = envelope("0a1b2c3d4e5f40718293a4b5c6d7e8f9", &items);
    let resp = post(
        &server,
        SENTRY_ENVELOPE,
        &[envelope_type, SENTRY_AUTH],
        body,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let answer = resp.json();
    assert_eq!(answer["id"], "0a1b2c3d4e5f40718293a4b5c6d7e8f9", "{answer}");
    let refused: Vec<(i64, &str)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_i64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        refused,
        [
            (1, "invalid_event"),
            (3, "event_too_large"),
            (4, "invalid_event"),
            (6, "invalid_event")
        ],
        "{answer}"
    );
    // The rejections say why.
    let messages = answer["rejected"].to_string();
    for why in ["not JSON", "limit", "attrs.release", "JSON object"] {
        assert!(messages.contains(why), "{why} in {messages}");
    }

    // The store endpoint, without the slash, `?sentry_key=` and deflate; the envelope
    // endpoint gzipped, without the slash, authenticated by the DSN in its header.
    let stored = sentry_event("stored_deflate");
    let mut deflate = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut deflate, stored.as_bytes()).unwrap();
    let resp = post(
        &server,
        "/api/4242/store?sentry_key=0123456789abcdef0123456789abcdef&sentry_version=7",
        &[JSON, ("content-encoding", "deflate")],
        deflate.finish().unwrap(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(resp.json()["id"], stored["event_id"]);
    let with_dsn = format!(
        "{}\n{}\n{}\n",
        json!({"dsn": SENTRY_DSN}),
        json!({"type": "event"}),
        sentry_event("enveloped_gzip")
    );
    let resp = post(
        &server,
        "/api/4242/envelope",
        &[envelope_type, ("content-encoding", "gzip")],
        gzip(with_dsn.as_bytes()),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());

    // Whole requests refused in Relay's shape: a bad encoding, wrong shapes, too large, a key or
    // DSN of no product.
    let auth = [envelope_type, SENTRY_AUTH];
    let resp = post(
        &server,
        SENTRY_ENVELOPE,
        &[envelope_type, SENTRY_AUTH, ("content-encoding", "br")],
        b"not brotli".to_vec(),
    );
    assert_sentry_error(&resp, 400, "invalid_encoding", "brotli");
    let resp = post(&server, SENTRY_ENVELOPE, &auth, "[1]");
    assert_sentry_error(&resp, 400, "invalid_body", "envelope header");
    let resp = post(&server, SENTRY_ENVELOPE, &auth, "{}\n{\"length\": 3}\nabc");
    assert_sentry_error(&resp, 400, "invalid_body", "item 0");
    let resp = post(&server, "/api/4242/store/", &auth, "42");
    assert_sentry_error(&resp, 400, "invalid_body", "one event");
    let resp = post(&server, SENTRY_ENVELOPE, &auth, vec![b' '; 30_000]);
    assert_sentry_error(&resp, 413, "payload_too_large", "limit");
    let other_key = ("x-sentry-auth", "Sentry sentry_key=ffff, sentry_version=7");
    let resp = post(
        &server,
        SENTRY_ENVELOPE,
        &[envelope_type, other_key],
        envelope("", &[("event", sentry_event("lost"))]),
    );
    assert_sentry_error(&resp, 401, "invalid_ingest_key", "sentry_dsns");
    let other_project = with_dsn.replace("/4242", "/77");
    let resp = post(&server, SENTRY_ENVELOPE, &[envelope_type], other_project);
    assert_sentry_error(&resp, 400, "invalid_body", "project 77");

    // Browser SDKs on another origin: the preflight allows Sentry's auth header, and the page
    // may read the rate-limit headers.
    let preflight = request(
        "OPTIONS",
        &format!("{}{SENTRY_ENVELOPE}", server.url),
        &[
            ("origin", "https://shop.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "x-sentry-auth, content-type",
            ),
        ],
        None,
    );
    assert!(preflight.status < 300, "{}", preflight.status);
    let allowed = preflight.header("access-control-allow-headers").unwrap();
    assert!(allowed.contains("x-sentry-auth"), "{allowed}");
    let resp = post(
        &server,
        &format!("{SENTRY_ENVELOPE}?sentry_key=0123456789abcdef0123456789abcdef"),
        &[
            ("origin", "https://shop.example"),
            ("content-type", "text/plain;charset=UTF-8"),
        ],
        envelope("", &[("event", sentry_event("from_a_page"))]),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let exposed = resp.header("access-control-expose-headers").unwrap();
    assert!(exposed.contains("X-Sentry-Rate-Limits"), "{exposed}");

    // Nothing else lost, nothing refused stored.
    server.settle();
    let messages: Vec<String> = server
        .stored()
        .into_iter()
        .filter_map(|e| e.message)
        .collect::<Vec<_>>();
    let mut messages = messages;
    messages.sort();
    assert_eq!(
        messages,
        [
            "enveloped_gzip",
            "from_a_page",
            "kept_1",
            "kept_2",
            "stored_deflate"
        ]
    );
}

/// Over a product's rate limit: the events past it refused by index, then an envelope with
/// nothing taken answered `429` with `Retry-After` and `X-Sentry-Rate-Limits`, in Relay's shape.
#[test]
fn sentry_rate_limit() {
    let config = format!(
        "{}\n[[products]]\nid = \"limited\"\nrate_limit_per_minute = 2\n[products.compat]\nsentry_dsns = [\"https://beef@telemetry.example/9\"]\n",
        config()
    );
    let server = TestServer::start(&config, &[]);
    let auth = ("x-sentry-auth", "Sentry sentry_key=beef, sentry_version=7");
    let events = |names: &[&str]| {
        let items: Vec<(&str, String)> = names.iter().map(|n| ("event", sentry_event(n))).collect();
        envelope("", &items)
    };
    let resp = post(
        &server,
        "/api/9/envelope/",
        &[auth],
        events(&["a", "b", "c"]),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let answer = resp.json();
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(answer["rejected"][0]["index"], 2, "{answer}");
    assert_eq!(answer["rejected"][0]["code"], "rate_limited", "{answer}");
    let resp = post(&server, "/api/9/envelope/", &[auth], events(&["d"]));
    assert_sentry_error(&resp, 429, "rate_limited", "rate limit");
    let retry_after = resp.header("retry-after").unwrap().to_string();
    assert_eq!(
        resp.header("x-sentry-rate-limits"),
        Some(format!("{retry_after}::key").as_str()),
        "{:?}",
        resp.headers
    );
    server.settle();
    let mut stored: Vec<String> = server
        .stored()
        .into_iter()
        .filter_map(|e| e.message)
        .collect();
    stored.sort();
    assert_eq!(stored, ["a", "b"]);
}

/// `data=` and the body in base64, form-encoded, as posthog-js sends it.
fn form_data(body: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(body);
    format!(
        "data={}",
        b64.replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    )
}
