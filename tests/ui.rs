//! Delivery of the embedded admin UI against a real server: index.html revalidated with an
//! ETag, versioned assets cached for a year, content types, security headers, the SPA fallback
//! for client-side routes, and JSON 404s for API paths and non-HTML requests.

mod common;

use common::*;

fn get_with(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> Resp {
    request("GET", &format!("{}{path}", server.url), headers, None)
}

const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml,*/*;q=0.8");

fn assert_security_headers(resp: &Resp) {
    let csp = resp.header("content-security-policy").expect("CSP");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(resp.header("x-frame-options"), Some("DENY"));
}

/// The `/assets/{version}/...` URLs index.html names.
fn asset_urls(index: &str) -> Vec<String> {
    index
        .split('"')
        .filter(|s| s.starts_with("/assets/"))
        .map(str::to_string)
        .collect()
}

#[test]
fn index_is_revalidated_and_names_versioned_assets() {
    let server = TestServer::shipped(&[]);
    let index = get_with(&server, "/", &[HTML]);
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    assert_security_headers(&index);
    let etag = index.header("etag").expect("etag").to_string();
    let text = index.text();
    assert!(!text.contains("__ASSET_VERSION__"));
    assert!(text.contains("<main id=\"view\""));

    let again = get_with(&server, "/", &[HTML, ("if-none-match", &etag)]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));

    let urls = asset_urls(&text);
    assert!(urls.iter().any(|u| u.ends_with("/app.js")), "{urls:?}");
    assert!(urls.iter().any(|u| u.ends_with("/style.css")), "{urls:?}");
    for url in &urls {
        let asset = server.get(url);
        assert_eq!(asset.status, 200, "{url}");
        assert_eq!(
            asset.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{url}"
        );
        assert!(asset.header("etag").is_some());
        assert_security_headers(&asset);
    }
    let js = server.get(urls.iter().find(|u| u.ends_with("/app.js")).unwrap());
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let css = server.get(urls.iter().find(|u| u.ends_with("/style.css")).unwrap());
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));

    // A module imported relatively from app.js resolves under the same version.
    let module = urls[0].rsplit_once('/').unwrap().0.to_string();
    let version_prefix = module.split('/').take(3).collect::<Vec<_>>().join("/");
    let page = server.get(&format!("{version_prefix}/pages/events.js"));
    assert_eq!(page.status, 200);
    assert!(page.text().starts_with("//"));
}

#[test]
fn stale_versions_and_plain_paths_revalidate() {
    let server = TestServer::shipped(&[]);
    let stale = server.get("/assets/0000000000000000/app.js");
    assert_eq!(stale.status, 200);
    assert_eq!(stale.header("cache-control"), Some("no-cache"));
    let icon = server.get("/favicon.svg");
    assert_eq!(icon.status, 200);
    assert_eq!(icon.header("content-type"), Some("image/svg+xml"));
    let etag = icon.header("etag").unwrap().to_string();
    let cached = request(
        "GET",
        &format!("{}/favicon.svg", server.url),
        &[("if-none-match", &format!("W/{etag}"))],
        None,
    );
    assert_eq!(cached.status, 304);
}

#[test]
fn client_routes_fall_back_to_the_app_and_api_paths_stay_json() {
    let server = TestServer::shipped(&[]);
    for path in [
        "/events",
        "/clusters/abc123",
        "/policies/new",
        "/geo/US?range=-7d",
    ] {
        let resp = get_with(&server, path, &[HTML]);
        assert_eq!(resp.status, 200, "{path}");
        assert!(resp.text().contains("<main id=\"view\""), "{path}");
        assert_security_headers(&resp);
    }
    // API paths never get the app, whatever they accept.
    let api = get_with(&server, "/api/v1/nope", &[HTML]);
    assert_eq!(api.status, 404);
    assert_eq!(api.error_code(), "not_found");
    // Without text/html in Accept, an unknown path is the JSON 404.
    let plain = server.get("/nope.js");
    assert_eq!(plain.status, 404);
    assert_eq!(plain.error_code(), "not_found");
    // Other methods than GET/HEAD keep the JSON 404.
    let post = request(
        "POST",
        &format!("{}/events", server.url),
        &[HTML],
        Some(b"{}".to_vec()),
    );
    assert_eq!(post.status, 404);
    assert_eq!(post.error_code(), "not_found");
    // No way out of ui/.
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/assets/x/../../Cargo.toml",
    ] {
        let resp = server.get(path);
        assert_ne!(resp.status, 200, "{path}");
    }
    // The API and the operational routes are untouched.
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/api/v1/events").error_code(), "missing_token");
}
