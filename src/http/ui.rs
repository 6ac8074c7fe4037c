//! The admin UI's delivery: the static files of `ui/` embedded with rust-embed and served at `/`.
//!
//! - `index.html` is revalidated on every load (`no-cache` + ETag) and names its scripts and
//!   styles under `/assets/{version}/`, where `version` hashes every embedded file. Those
//!   versioned URLs are immutable (one year), and relative ES-module imports inherit the prefix,
//!   so a new binary changes every asset URL at once. Unversioned paths (`/favicon.svg`) are
//!   `no-cache` + ETag. `If-None-Match` answers `304`.
//! - Client-side routes (`/events`, `/clusters/abc`) get `index.html` when the request accepts
//!   HTML; `/api/...` and everything else that matches no file keeps the JSON `404`.
//! - Every UI response carries a same-origin-only Content-Security-Policy, `nosniff` and frame
//!   denial.

use std::borrow::Cow;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;

#[derive(RustEmbed)]
#[folder = "ui/"]
struct Assets;

const INDEX: &str = "index.html";
/// `index.html` says `/assets/__ASSET_VERSION__/app.js`; the placeholder becomes the version.
const VERSION_PLACEHOLDER: &str = "__ASSET_VERSION__";
const VERSIONED_PREFIX: &str = "/assets/";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// Same origin only: no inline script, no inline style attributes, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The default service: UI files and client-side routes for `GET`/`HEAD`, the JSON `404`
/// (or `405`) for everything else.
pub async fn serve(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let path = req.path();
    if is_api(path) || !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Err(ApiError::NotFound(format!(
            "route {} {}",
            req.method(),
            path
        )));
    }
    if let Some(response) = asset_response(&req, path) {
        return Ok(response);
    }
    if accepts_html(&req) {
        return Ok(index_response(&req));
    }
    Err(ApiError::NotFound(format!("route {} {path}", req.method())))
}

fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

fn accepts_html(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// A file named by the path: `/`, `/index.html`, `/assets/{version}/{file}` or `/{file}`.
fn asset_response(req: &HttpRequest, path: &str) -> Option<HttpResponse> {
    if path == "/" || path == "/index.html" {
        return Some(index_response(req));
    }
    let (name, versioned) = match path.strip_prefix(VERSIONED_PREFIX) {
        Some(rest) => {
            let (version, name) = rest.split_once('/')?;
            (name, version == current_version())
        }
        None => (path.strip_prefix('/')?, false),
    };
    if !is_safe_name(name) || name == INDEX {
        return None;
    }
    let file = Assets::get(name)?;
    let etag = format!(
        "\"{}\"",
        &crate::hash::hex(&file.metadata.sha256_hash())[..32]
    );
    let cache = if versioned { IMMUTABLE } else { REVALIDATE };
    Some(respond(req, file.data, content_type(name), &etag, cache))
}

/// Plain relative names only: no `..`, no hidden files, no escapes.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains(['%', '\\'])
        && name
            .split('/')
            .all(|seg| !seg.is_empty() && !seg.starts_with('.'))
}

fn index_response(req: &HttpRequest) -> HttpResponse {
    let version = current_version();
    let Some(file) = Assets::get(INDEX) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("the admin UI is not part of this build");
    };
    let body = String::from_utf8_lossy(&file.data).replace(VERSION_PLACEHOLDER, &version);
    // The version covers index.html itself, so it identifies the rendered page.
    let etag = format!("\"{version}\"");
    respond(
        req,
        Cow::Owned(body.into_bytes()),
        content_type(INDEX),
        &etag,
        REVALIDATE,
    )
}

fn respond(
    req: &HttpRequest,
    body: Cow<'static, [u8]>,
    content_type: &str,
    etag: &str,
    cache_control: &str,
) -> HttpResponse {
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, etag));
    let mut builder = HttpResponse::build(if fresh {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    });
    builder
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, cache_control))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if fresh {
        return builder.finish();
    }
    builder.content_type(content_type).body(body.into_owned())
}

/// `If-None-Match`: `*`, or a list of (weak or strong) tags compared weakly (RFC 9110 §13.1.2).
fn etag_matches(header_value: &str, etag: &str) -> bool {
    header_value.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, ext)| ext).unwrap_or("");
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A hash over every embedded file's name and content. Release builds embed the files, so it
/// is computed once; debug builds read `ui/` from disk and recompute it (files change there).
fn current_version() -> String {
    #[cfg(not(debug_assertions))]
    {
        static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        VERSION.get_or_init(compute_version).clone()
    }
    #[cfg(debug_assertions)]
    compute_version()
}

fn compute_version() -> String {
    let mut names: Vec<Cow<'static, str>> = Assets::iter().collect();
    names.sort();
    let mut hasher = Sha256::new();
    for name in names {
        if let Some(file) = Assets::get(&name) {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(file.metadata.sha256_hash());
        }
    }
    crate::hash::hex(&hasher.finalize())[..16].to_string()
}

/// Bytes of UI embedded in the binary (for the size budget and the README).
pub fn embedded_bytes() -> usize {
    Assets::iter()
        .filter_map(|name| Assets::get(&name))
        .map(|file| file.data.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_match_weakly_and_in_lists() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("W/\"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\", \"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }

    #[test]
    fn names_are_plain_and_typed() {
        assert!(is_safe_name("app.js"));
        assert!(is_safe_name("pages/events.js"));
        assert!(!is_safe_name("../Cargo.toml"));
        assert!(!is_safe_name("pages/../../x"));
        assert!(!is_safe_name(".hidden"));
        assert!(!is_safe_name("a%2e%2e/b"));
        assert!(!is_safe_name("a//b"));
        assert_eq!(content_type("a/b.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("style.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("blob"), "application/octet-stream");
    }

    #[test]
    fn the_ui_is_embedded_whole_and_small() {
        assert!(Assets::get(INDEX).is_some(), "ui/index.html is embedded");
        let index = Assets::get(INDEX).unwrap();
        assert!(String::from_utf8_lossy(&index.data).contains(VERSION_PLACEHOLDER));
        let bytes = embedded_bytes();
        assert!(
            bytes <= 1_000_000,
            "embedded UI is {bytes} bytes, over 1 MB"
        );
        assert_eq!(current_version().len(), 16);
    }
}
