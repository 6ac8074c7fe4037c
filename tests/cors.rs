//! CORS against a real server: preflights allowed and refused by each product's `cors_origins`,
//! the headers on actual answers (error answers included), a beacon's `text/plain` body stored,
//! and admin routes — the search that shares its path with ingest among them — never answering
//! a browser on another origin.

mod common;

use common::*;
use serde_json::json;

/// A page on another origin, allowed by anonymous products only.
const PAGE: &str = "https://pages.example.org";
const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example";
const WEB_KEY: &str = "web-key-0123456";

const KEYED_PRODUCTS: &str = "[[products]]\nid = \"web\"\ningest_keys = [\"web-key-0123456\"]\n\
     cors_origins = [\"https://app.example.com\", \"HTTPS://Shop.Example.com:8443\"]\n\n\
     [[products]]\nid = \"backend\"\ningest_keys = [\"backend-key-0123\"]\n";

/// An anonymous product (any origin by default) and the two keyed ones.
fn server() -> TestServer {
    let config = format!(
        "[server]\nmax_body_bytes = 4096\n\n[[products]]\nid = \"open\"\nrate_limit_per_minute = 2\n\n\
         {KEYED_PRODUCTS}\n{}",
        tokens_toml()
    );
    TestServer::start(&config, &[])
}

fn options(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> Resp {
    request("OPTIONS", &format!("{}{path}", server.url), headers, None)
}

fn preflight(server: &TestServer, path: &str, origin: &str, method: &str) -> Resp {
    options(
        server,
        path,
        &[
            ("origin", origin),
            ("access-control-request-method", method),
            (
                "access-control-request-headers",
                "content-type,x-telemetry-key",
            ),
        ],
    )
}

/// The answer's `Access-Control-*` headers, names lowercased, sorted.
fn cors_headers(resp: &Resp) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| k.starts_with("access-control-"))
        .collect();
    headers.sort();
    headers
}

/// Every value of the answer's `Vary` headers.
fn vary(resp: &Resp) -> Vec<String> {
    resp.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("vary"))
        .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()))
        .collect()
}

fn post(server: &TestServer, query: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    server.post_events_with(query, &all, body.as_bytes().to_vec())
}

/// The headers of an actual answer an allowed origin may read.
fn assert_readable_by(resp: &Resp, origin: &str) {
    assert_eq!(
        cors_headers(resp),
        vec![
            (
                "access-control-allow-origin".to_string(),
                origin.to_string()
            ),
            (
                "access-control-expose-headers".to_string(),
                "Retry-After, X-Sentry-Rate-Limits, ETag".to_string()
            ),
        ],
        "{} {}",
        resp.status,
        resp.text()
    );
    assert!(vary(resp).contains(&"Origin".to_string()));
}

fn assert_preflight_allows(resp: &Resp, origin: &str) {
    assert_eq!(resp.status, 204, "{}", resp.text());
    assert!(resp.body.is_empty());
    assert_eq!(resp.header("access-control-allow-origin"), Some(origin));
    assert_eq!(
        resp.header("access-control-allow-methods"),
        Some("GET, POST, OPTIONS")
    );
    assert_eq!(
        resp.header("access-control-allow-headers"),
        Some("content-type, content-encoding, x-telemetry-key, x-install-token, app-key, x-sentry-auth, traceparent, tracestate, if-none-match")
    );
    assert_eq!(resp.header("access-control-max-age"), Some("86400"));
    assert_eq!(resp.header("access-control-allow-credentials"), None);
    assert_eq!(vary(resp), vec!["Origin"]);
}

fn assert_preflight_refused(resp: &Resp, origin: &str) {
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(resp.error_code(), "cors_origin_not_allowed");
    assert_eq!(resp.json()["error"]["details"]["origin"], origin);
    assert_eq!(cors_headers(resp), vec![]);
    assert_eq!(vary(resp), vec!["Origin"]);
}

#[test]
fn preflights_for_the_client_endpoints_are_answered_and_cached() {
    let server = server();
    for (path, method) in [
        ("/api/v1/events?product=open", "POST"),
        ("/api/v1/events", "POST"),
        ("/api/v1/config?product=open", "GET"),
        ("/api/v1/config", "GET"),
    ] {
        assert_preflight_allows(&preflight(&server, path, PAGE, method), PAGE);
    }
    // An OPTIONS that is no preflight is an ordinary request for a method the route lacks.
    let resp = options(&server, "/api/v1/events?product=open", &[("origin", PAGE)]);
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (405, "method_not_allowed")
    );
    assert_eq!(cors_headers(&resp), vec![]);
}

#[test]
fn the_named_products_origins_decide_the_preflight() {
    let server = server();
    for origin in [APP, "https://shop.example.com:8443"] {
        assert_preflight_allows(
            &preflight(&server, "/api/v1/events?product=web", origin, "POST"),
            origin,
        );
    }
    // Scheme and host compare case-insensitively; the answer echoes the origin as sent.
    assert_preflight_allows(
        &preflight(
            &server,
            "/api/v1/config?product=web",
            "HTTPS://APP.example.com",
            "GET",
        ),
        "HTTPS://APP.example.com",
    );
    for origin in [
        EVIL,
        "https://shop.example.com",
        "http://app.example.com",
        "null",
    ] {
        assert_preflight_refused(
            &preflight(&server, "/api/v1/events?product=web", origin, "POST"),
            origin,
        );
    }
    // A product with ingest keys and no `cors_origins` allows no origin.
    assert_preflight_refused(
        &preflight(&server, "/api/v1/events?product=backend", APP, "POST"),
        APP,
    );
    assert_preflight_refused(
        &preflight(&server, "/api/v1/config?product=backend", PAGE, "GET"),
        PAGE,
    );
}

#[test]
fn a_preflight_naming_no_product_is_allowed_if_any_product_allows_the_origin() {
    let config = format!("{KEYED_PRODUCTS}\n{}", tokens_toml());
    let server = TestServer::start(&config, &[]);
    assert_preflight_allows(&preflight(&server, "/api/v1/events", APP, "POST"), APP);
    assert_preflight_allows(&preflight(&server, "/api/v1/config", APP, "GET"), APP);
    assert_preflight_refused(&preflight(&server, "/api/v1/events", PAGE, "POST"), PAGE);
    // Without anonymous products, nothing allows the origin when the key names none.
    let resp = post(
        &server,
        "",
        &[("origin", PAGE), ("x-telemetry-key", "no-such-key-0")],
        "[]",
    );
    assert_eq!(resp.error_code(), "invalid_ingest_key");
    assert_eq!(cors_headers(&resp), vec![]);
}

#[test]
fn answers_to_allowed_origins_carry_the_headers_and_others_only_vary() {
    let server = server();
    let resp = post(
        &server,
        "?product=open",
        &[("origin", PAGE)],
        r#"[{"name": "page_view", "install_id": "i-1"}]"#,
    );
    assert_eq!(resp.json()["accepted"], 1);
    assert_readable_by(&resp, PAGE);

    // A keyed product's listed origin, the product told by the key alone.
    let body = json!([{"id": "0190a6a0-0000-7000-8000-00000000c0a1", "name": "checkout", "install_id": "i-2"}]);
    let resp = post(
        &server,
        "",
        &[("origin", APP), ("x-telemetry-key", WEB_KEY)],
        &body.to_string(),
    );
    assert_eq!(resp.json()["accepted"], 1, "{}", resp.text());
    assert_readable_by(&resp, APP);
    assert_eq!(
        server.event("0190a6a0-0000-7000-8000-00000000c0a1")["product"],
        "web"
    );

    // An origin the product does not list: the answer says nothing a browser would accept.
    let resp = post(
        &server,
        "",
        &[("origin", EVIL), ("x-telemetry-key", WEB_KEY)],
        "[]",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(cors_headers(&resp), vec![]);
    assert_eq!(vary(&resp), vec!["Origin"]);

    // Without `Origin` nothing changes.
    let resp = post(&server, "?product=open", &[], "[]");
    assert_eq!(resp.status, 200);
    assert_eq!(cors_headers(&resp), vec![]);
    assert_eq!(vary(&resp), Vec::<String>::new());

    // The client config, and its 304 revalidation.
    let get = |headers: &[(&str, &str)]| {
        let mut all = vec![("x-telemetry-key", WEB_KEY)];
        all.extend_from_slice(headers);
        request(
            "GET",
            &format!("{}/api/v1/config?product=web&install_id=i-2", server.url),
            &all,
            None,
        )
    };
    let resp = get(&[("origin", APP)]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["product"], "web");
    assert_readable_by(&resp, APP);
    let etag = resp.header("etag").expect("etag").to_string();
    let resp = get(&[("origin", APP), ("if-none-match", &etag)]);
    assert_eq!(resp.status, 304);
    assert_readable_by(&resp, APP);
    let resp = get(&[("origin", EVIL)]);
    assert_eq!(resp.status, 200);
    assert_eq!(cors_headers(&resp), vec![]);
}

#[test]
fn error_answers_to_allowed_origins_carry_the_headers() {
    let server = server();
    let origin = [("origin", PAGE)];
    let resp = post(&server, "?product=open", &origin, "{\"events\": [");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (400, "invalid_json")
    );
    assert_readable_by(&resp, PAGE);

    let big = format!("[{{\"name\": \"x\", \"pad\": \"{}\"}}]", "a".repeat(5000));
    let resp = post(&server, "?product=open", &origin, &big);
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (413, "payload_too_large")
    );
    assert_readable_by(&resp, PAGE);

    // An unknown product names none: the anonymous product allows any origin.
    let resp = post(&server, "?product=nope", &origin, "[]");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (400, "unknown_product")
    );
    assert_readable_by(&resp, PAGE);

    let resp = post(&server, "?product=web", &[("origin", APP)], "[]");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (401, "missing_ingest_key")
    );
    assert_readable_by(&resp, APP);

    let batch =
        r#"[{"name": "tick", "install_id": "busy"}, {"name": "tick", "install_id": "busy"}]"#;
    assert_eq!(
        post(&server, "?product=open", &origin, batch).json()["accepted"],
        2
    );
    let resp = post(&server, "?product=open", &origin, batch);
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (429, "rate_limited")
    );
    assert!(resp.header("retry-after").is_some());
    assert_readable_by(&resp, PAGE);
}

#[test]
fn a_beacon_with_a_text_plain_body_is_stored() {
    let server = server();
    // What `navigator.sendBeacon(url, JSON.stringify(batch))` sends: no preflight, text/plain.
    let body = json!({"sent_at": telemetryd::model::now_ms(), "events": [
        {"eventId": "0190a6a0-0000-7000-8000-0000000beac0", "eventName": "page_hidden",
         "installId": "i-3", "platform": "web", "dims": {"path": "/checkout"}}]});
    let resp = server.post_events_with(
        "?product=open",
        &[
            ("content-type", "text/plain;charset=UTF-8"),
            ("origin", PAGE),
        ],
        body.to_string().into_bytes(),
    );
    assert_eq!(resp.json()["accepted"], 1, "{}", resp.text());
    assert_readable_by(&resp, PAGE);
    let event = server.event("0190a6a0-0000-7000-8000-0000000beac0");
    assert_eq!(event["name"], "page_hidden");
    assert_eq!(event["platform"], "web");
    assert_eq!(event["install_id"], "i-3");
    assert_eq!(event["dims"]["path"], "/checkout");
}

#[test]
fn admin_routes_never_answer_a_browser_on_another_origin() {
    let server = server();
    let id = "0190a6a0-0000-7000-8000-00000000ad01";
    let batch = json!([{"id": id, "name": "x", "install_id": "i-4"}]).to_string();
    assert_eq!(
        post(&server, "?product=open", &[], &batch).json()["accepted"],
        1
    );
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let admin_paths = [
        "/api/v1/events?product=open",
        "/api/v1/events?q=name:x",
        "/api/v1/events/export?format=ndjson",
        &format!("/api/v1/events/{id}"),
        "/api/v1/stats",
        "/api/v1/clusters",
        "/api/v1/policies",
        "/api/v1/subjects/install/i-4",
        "/api/v1/audit",
        "/api/v1/whoami",
    ];
    for path in admin_paths {
        // The call itself works (the token is good) but says nothing a browser would accept.
        let resp = request(
            "GET",
            &format!("{}{path}", server.url),
            &[("origin", PAGE), ("authorization", &auth)],
            None,
        );
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
        assert_eq!(cors_headers(&resp), vec![], "{path}");
        assert!(!vary(&resp).contains(&"Origin".to_string()), "{path}");
        // And its preflight gets no allow headers (a POST to /api/v1/events is ingest).
        let methods: &[&str] = if path.starts_with("/api/v1/events?") {
            &["GET", "PUT", "DELETE"]
        } else {
            &["GET", "POST", "DELETE"]
        };
        for method in methods {
            let resp = options(
                &server,
                path,
                &[
                    ("origin", PAGE),
                    ("access-control-request-method", *method),
                    ("access-control-request-headers", "authorization"),
                ],
            );
            assert_eq!(resp.status, 405, "{method} {path}: {}", resp.text());
            assert_eq!(cors_headers(&resp), vec![], "{method} {path}");
        }
    }
    // Admin writes from another origin, preflighted or not, carry no CORS headers either.
    let resp = request(
        "DELETE",
        &format!("{}/api/v1/subjects/install/i-4", server.url),
        &[("origin", PAGE), ("authorization", &auth)],
        None,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(cors_headers(&resp), vec![]);
}
