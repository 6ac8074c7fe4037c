//! Least privilege against a real server: tokens scoped to one of two products see and change
//! only that product on every admin endpoint (lists, search, aggregations, objects by id), are
//! refused global operations, viewers are refused exports, exports and operations are audited
//! (who, what, when, for which products), and `/metrics` behind a token or on its own listener.

mod common;

use common::*;
use serde_json::{json, Value};

const ALPHA_ADMIN: &str = "alpha-admin-token-0123456789";
const ALPHA_VIEWER: &str = "alpha-viewer-token-0123456789";
const ALPHA_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const BETA_TRACE: &str = "5ce92f3577b34da6a3ce929d0e0e4737";
/// One install id in both products: an erasure by a scoped admin leaves the other product's.
const SHARED_INSTALL: &str = "shared-install-1";

fn config() -> String {
    let hash = telemetryd::hash::hash_token;
    format!(
        "[clusters]\nschedule = \"0 0 0 1 1 *\"\n\
         [[products]]\nid = \"alpha\"\nname = \"Alpha\"\nmin_group_installs = 0\n\
         [[products]]\nid = \"beta\"\nname = \"Beta\"\nmin_group_installs = 0\n\
         {}\n\
         [[admin.tokens]]\nname = \"alpha-admin\"\nrole = \"admin\"\nhash = \"{}\"\nproducts = [\"alpha\"]\n\n\
         [[admin.tokens]]\nname = \"alpha-viewer\"\nrole = \"viewer\"\nhash = \"{}\"\nproducts = [\"alpha\"]\n",
        tokens_toml(),
        hash(ALPHA_ADMIN),
        hash(ALPHA_VIEWER),
    )
}

fn events(product: &str, trace: &str, count: usize) -> String {
    let events: Vec<Value> = (0..count)
        .map(|i| {
            json!({"name": "call_failed", "level": "error", "install_id": SHARED_INSTALL,
                   "platform": "ios", "trace_id": trace, "span_id": format!("00f067aa0ba902b{i}"),
                   "error": {"domain": product, "code": "timeout", "message": "Timeout contacting the recognizer"}})
        })
        .collect();
    Value::Array(events).to_string()
}

fn send(server: &TestServer, method: &str, path: &str, token: &str, body: Option<Value>) -> Resp {
    let auth = format!("Bearer {token}");
    request(
        method,
        &format!("{}{path}", server.url),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        body.map(|b| b.to_string().into_bytes()),
    )
}

fn status_code(resp: &Resp) -> (u16, String) {
    (resp.status, resp.error_code())
}

fn not_found() -> (u16, String) {
    (404, "not_found".into())
}

fn forbidden() -> (u16, String) {
    (403, "forbidden".into())
}

/// Products of every event (or row) in a JSON list.
fn products_of(list: &Value, key: &str) -> Vec<String> {
    let mut products: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[key].as_str().unwrap().to_string())
        .collect();
    products.sort();
    products.dedup();
    products
}

/// Two products with events, clusters and a policy each; answers (alpha event id, beta event
/// id, alpha cluster id, beta cluster id, alpha policy id, beta policy id).
fn seed(server: &TestServer) -> [String; 6] {
    for (product, trace, count) in [("alpha", ALPHA_TRACE, 3), ("beta", BETA_TRACE, 4)] {
        let resp = server.post_events(
            &format!("?product={product}"),
            &events(product, trace, count),
        );
        assert_eq!(resp.json()["accepted"], count, "{}", resp.text());
    }
    server.settle();
    let pass = send(server, "POST", "/api/v1/clusters/run", ADMIN_TOKEN, None);
    assert_eq!(pass.status, 200, "{}", pass.text());
    let first = |product: &str, path: &str, list: &str| {
        let all = server
            .admin_get(&format!("{path}?product={product}"))
            .json();
        all[list][0]["id"].as_str().unwrap().to_string()
    };
    let mut policies = Vec::new();
    for product in ["alpha", "beta"] {
        let body = json!({"name": format!("{product} sampling"), "product": product,
                          "settings": {"sample_rate": 0.5}});
        let resp = send(server, "POST", "/api/v1/policies", ADMIN_TOKEN, Some(body));
        assert_eq!(resp.status, 201, "{}", resp.text());
        policies.push(resp.json()["id"].as_str().unwrap().to_string());
    }
    [
        first("alpha", "/api/v1/events", "events"),
        first("beta", "/api/v1/events", "events"),
        first("alpha", "/api/v1/clusters", "clusters"),
        first("beta", "/api/v1/clusters", "clusters"),
        policies[0].clone(),
        policies[1].clone(),
    ]
}

#[test]
fn scoped_tokens_see_only_their_products() {
    let server = TestServer::start(&config(), &[]);
    let [alpha_event, beta_event, alpha_cluster, beta_cluster, alpha_policy, beta_policy] =
        seed(&server);

    for token in [ALPHA_VIEWER, ALPHA_ADMIN] {
        let get = |path: &str| server.get_as(path, token);
        let me = get("/api/v1/whoami").json();
        assert_eq!(me["all_products"], false);
        assert_eq!(me["products"], json!([{"id": "alpha", "name": "Alpha"}]));

        // Lists and search: only alpha, whatever the query says.
        let list = get("/api/v1/events?limit=100").json();
        assert_eq!(products_of(&list["events"], "product"), ["alpha"]);
        assert_eq!(list["total"], 3);
        assert_eq!(get("/api/v1/events?q=product:beta").json()["total"], 0);
        assert_eq!(get("/api/v1/events?q=level:error").json()["total"], 3);
        assert_eq!(
            status_code(&get("/api/v1/events?product=beta")),
            not_found()
        );
        assert_eq!(get("/api/v1/events?product=alpha").json()["total"], 3);

        // Aggregations and the overview count alpha only; process-wide figures are withheld.
        let breakdown = get("/api/v1/stats/breakdown?field=product").json();
        assert_eq!(products_of(&breakdown["rows"], "value"), ["alpha"]);
        let overview = get("/api/v1/stats/overview").json();
        assert_eq!(overview["events_24h"], 3);
        assert_eq!(overview["errors_24h"], 3);
        assert_eq!(overview["store_events"], Value::Null);
        assert_eq!(overview["rejected_total"], Value::Null);
        assert_eq!(
            status_code(&get("/api/v1/stats/overview?product=beta")),
            not_found()
        );
        let series = get("/api/v1/stats/timeseries?from=-1d&bucket=1d").json();
        let total: u64 = series["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["total"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 3);
        assert_eq!(status_code(&get("/api/v1/geo?product=beta")), not_found());

        // Objects of the other product do not exist for this token.
        assert_eq!(get(&format!("/api/v1/events/{alpha_event}")).status, 200);
        assert_eq!(
            status_code(&get(&format!("/api/v1/events/{beta_event}"))),
            not_found()
        );
        assert_eq!(get(&format!("/api/v1/traces/{ALPHA_TRACE}")).status, 200);
        assert_eq!(
            status_code(&get(&format!("/api/v1/traces/{BETA_TRACE}"))),
            not_found()
        );

        let clusters = get("/api/v1/clusters").json();
        assert_eq!(products_of(&clusters["clusters"], "product"), ["alpha"]);
        assert_eq!(
            get(&format!("/api/v1/clusters/{alpha_cluster}")).status,
            200
        );
        for path in [
            format!("/api/v1/clusters/{beta_cluster}"),
            format!("/api/v1/clusters/{beta_cluster}/timeline"),
            "/api/v1/clusters?product=beta".into(),
            "/api/v1/clusters/timeline?product=beta".into(),
        ] {
            assert_eq!(status_code(&get(&path)), not_found(), "{path}");
        }
        let timeline = get("/api/v1/clusters/timeline?days=1").json();
        let day = &timeline["days"][0];
        let counted: f64 = ["warn", "error", "fatal"]
            .iter()
            .map(|s| day[s].as_f64().unwrap())
            .sum();
        assert_eq!(counted, 3.0, "{timeline}");

        let policies = get("/api/v1/policies").json();
        assert_eq!(products_of(&policies["policies"], "product"), ["alpha"]);
        assert_eq!(get(&format!("/api/v1/policies/{alpha_policy}")).status, 200);
        assert_eq!(
            status_code(&get(&format!("/api/v1/policies/{beta_policy}"))),
            not_found()
        );
        assert_eq!(
            status_code(&get("/api/v1/policies?product=beta")),
            not_found()
        );

        assert_eq!(get("/api/v1/metrics/names").json()["metrics"], json!([]));
        assert_eq!(
            status_code(&get("/api/v1/metrics/names?product=beta")),
            not_found()
        );
        assert_eq!(
            status_code(&get("/api/v1/metrics/query?product=beta&name=x")),
            not_found()
        );

        // Figures and logs of the whole process belong to all-products tokens.
        for path in [
            "/api/v1/stats",
            "/api/v1/stats/history",
            "/api/v1/alerts",
            "/api/v1/purge",
        ] {
            assert_eq!(status_code(&get(path)), forbidden(), "{path}");
        }
    }

    // The all-products viewer still sees both.
    let both = server
        .get_as("/api/v1/events?limit=100", VIEWER_TOKEN)
        .json();
    assert_eq!(products_of(&both["events"], "product"), ["alpha", "beta"]);
    assert_eq!(server.get_as("/api/v1/stats", VIEWER_TOKEN).status, 200);
}

#[test]
fn scoped_admins_change_only_their_products_and_run_no_global_operation() {
    let server = TestServer::start(&config(), &[]);
    let [_, beta_event, alpha_cluster, beta_cluster, alpha_policy, beta_policy] = seed(&server);
    let admin = |method: &str, path: &str, body: Option<Value>| {
        send(&server, method, path, ALPHA_ADMIN, body)
    };
    let resolve = json!({"status": "resolved"});
    assert_eq!(
        status_code(&admin(
            "PATCH",
            &format!("/api/v1/clusters/{beta_cluster}"),
            Some(resolve.clone())
        )),
        not_found()
    );
    assert_eq!(
        admin(
            "PATCH",
            &format!("/api/v1/clusters/{alpha_cluster}"),
            Some(resolve)
        )
        .status,
        200
    );
    let draft = |product: &str| json!({"name": "quiet", "product": product, "settings": {"sample_rate": 0.1}});
    assert_eq!(
        status_code(&admin("POST", "/api/v1/policies", Some(draft("beta")))),
        not_found()
    );
    assert_eq!(
        status_code(&admin(
            "POST",
            "/api/v1/policies/preview",
            Some(draft("beta"))
        )),
        not_found()
    );
    assert_eq!(
        admin("POST", "/api/v1/policies", Some(draft("alpha"))).status,
        201
    );
    let path = format!("/api/v1/policies/{beta_policy}");
    assert_eq!(
        status_code(&admin("PUT", &path, Some(draft("beta")))),
        not_found()
    );
    assert_eq!(status_code(&admin("DELETE", &path, None)), not_found());
    // Moving its own policy into another product is refused the same way.
    let own = format!("/api/v1/policies/{alpha_policy}");
    assert_eq!(
        status_code(&admin("PUT", &own, Some(draft("beta")))),
        not_found()
    );
    assert_eq!(admin("DELETE", &own, None).status, 200);
    assert_eq!(
        server.admin_get(&path).status,
        200,
        "the beta policy is untouched"
    );

    // Erasing a subject reaches its events in alpha only.
    let erased = admin(
        "DELETE",
        &format!("/api/v1/subjects/install/{SHARED_INSTALL}"),
        None,
    );
    assert_eq!(erased.status, 200, "{}", erased.text());
    assert_eq!(erased.json()["events_removed"], 3);
    server.settle();
    assert_eq!(
        server
            .admin_get(&format!("/api/v1/events/{beta_event}"))
            .status,
        200
    );
    let left = server
        .admin_get(&format!("/api/v1/events?install_id={SHARED_INSTALL}"))
        .json();
    assert_eq!(products_of(&left["events"], "product"), ["beta"]);

    // Operations that span every product.
    for (method, path, body) in [
        ("POST", "/api/v1/purge", None),
        ("POST", "/api/v1/clusters/run", None),
        (
            "POST",
            "/api/v1/admin/backup",
            Some(json!({"dir": "scoped"})),
        ),
    ] {
        assert_eq!(
            status_code(&admin(method, path, body)),
            forbidden(),
            "{path}"
        );
    }

    // The audit log shows this admin the entries about alpha only.
    let audit = server
        .get_as("/api/v1/audit?limit=1000", ALPHA_ADMIN)
        .json();
    let entries = audit["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    for entry in entries {
        assert_eq!(entry["products"], json!(["alpha"]), "{entry}");
    }
    let everything = server.admin_get("/api/v1/audit?limit=1000").json();
    assert!(everything["entries"].as_array().unwrap().len() > entries.len());
}

#[test]
fn exports_are_admin_actions_and_operations_are_audited() {
    let server = TestServer::start(&config(), &[]);
    seed(&server);
    let subject = format!("/api/v1/subjects/install/{SHARED_INSTALL}");
    for token in [VIEWER_TOKEN, ALPHA_VIEWER] {
        assert_eq!(status_code(&server.get_as(&subject, token)), forbidden());
        assert_eq!(
            status_code(&server.get_as("/api/v1/events/export", token)),
            forbidden()
        );
    }

    // A scoped admin exports its own product's events only.
    let export = server.get_as(&subject, ALPHA_ADMIN);
    assert_eq!(export.status, 200, "{}", export.text());
    assert_eq!(export.header("x-total-count"), Some("3"));
    let bulk = server.get_as("/api/v1/events/export?format=ndjson", ALPHA_ADMIN);
    assert_eq!(bulk.status, 200);
    let lines: Vec<Value> = bulk
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|e| e["product"] == "alpha"));
    assert_eq!(
        server.admin_get(&subject).header("x-total-count"),
        Some("7")
    );

    let purge = send(&server, "POST", "/api/v1/purge", ADMIN_TOKEN, None);
    assert_eq!(purge.status, 202, "{}", purge.text());

    // Who, what, when, for which products; the subject's id never appears.
    let audit = server.admin_get("/api/v1/audit?limit=1000").json();
    let entries = audit["entries"].as_array().unwrap();
    let find = |action: &str, actor: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["actor"] == actor)
            .unwrap_or_else(|| panic!("no {action} by {actor} in {audit}"))
            .clone()
    };
    let scoped_export = find("subject.export", "alpha-admin");
    assert_eq!(scoped_export["products"], json!(["alpha"]));
    assert_eq!(scoped_export["result"]["events_exported"], 3);
    let target = scoped_export["target"].as_str().unwrap();
    assert!(target.starts_with("install:sha256:"), "{target}");
    assert_eq!(find("subject.export", "ops")["products"], json!([]));
    let bulk_entry = find("events.export", "alpha-admin");
    assert_eq!(bulk_entry["products"], json!(["alpha"]));
    assert_eq!(bulk_entry["result"]["matches"], 3);
    assert_eq!(find("purge.start", "ops")["outcome"], "ok");
    let run = find("clustering.run", "ops");
    assert!(run["time_ms"].as_i64().unwrap() > 0);
    assert!(!audit.to_string().contains(SHARED_INSTALL));
    // Scoped tokens do not see the global entries.
    let scoped = server
        .get_as("/api/v1/audit?limit=1000", ALPHA_ADMIN)
        .json();
    for action in ["purge.start", "clustering.run"] {
        assert!(
            !scoped["entries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["action"] == action),
            "{action}"
        );
    }
}

#[test]
fn a_product_scope_must_name_configured_products() {
    let text = config().replace("products = [\"alpha\"]", "products = [\"gamma\"]");
    let err = telemetryd::config::Config::from_toml(&text)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("admin.tokens[2].products[0]") && err.contains("`gamma`"),
        "{err}"
    );
}

const METRICS_TOKEN: &str = "metrics-scraper-token-0123456789";

#[test]
fn metrics_behind_a_token() {
    let config = format!(
        "{}\n[metrics]\ntoken_hash = \"{}\"\n",
        config(),
        telemetryd::hash::hash_token(METRICS_TOKEN)
    );
    let server = TestServer::start(&config, &[]);
    let without = server.get("/metrics");
    assert_eq!(status_code(&without), (401, "missing_token".into()));
    assert_eq!(without.header("content-type"), Some("application/json"));
    let wrong = server.get_as("/metrics", ADMIN_TOKEN);
    assert_eq!(status_code(&wrong), (401, "invalid_token".into()));
    let with = server.get_as("/metrics", METRICS_TOKEN);
    assert_eq!(with.status, 200);
    assert!(with.text().contains("telemetryd_"), "{}", with.text());
}

#[test]
fn metrics_on_a_separate_listener() {
    let config = format!("{}\n[metrics]\nlisten = \"127.0.0.1:0\"\n", config());
    let server = TestServer::start(&config, &[]);
    let address = server
        .state
        .metrics_address
        .expect("metrics listener bound");
    let main = server.get("/metrics");
    assert_eq!(status_code(&main), not_found());
    let metrics = request("GET", &format!("http://{address}/metrics"), &[], None);
    assert_eq!(metrics.status, 200);
    assert!(metrics.text().contains("telemetryd_"));
    // The metrics listener serves nothing else.
    let other = request("GET", &format!("http://{address}/api/v1/events"), &[], None);
    assert_eq!(status_code(&other), not_found());
    // What the HTTP layer refuses there before any route is the JSON error body too.
    let address = address.to_string();
    let big_head = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(200 * 1024)
    );
    for (raw, status, code) in [
        (big_head.into_bytes(), 431, "headers_too_large"),
        (
            b"GARBAGE\x01 / HTTP/1.1\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
    ] {
        let (got, text) = raw_http(&address, &raw);
        assert_eq!(got, status, "{text:.300}");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text:.300}"));
        assert_eq!(json["error"]["code"], code, "{body:.300}");
    }
    assert_eq!(server.get("/healthz").status, 200);
}
