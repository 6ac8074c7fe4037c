//! The endpoints of other services' SDKs, so they send to telemetryd unmodified: PostHog's
//! capture paths and its feature-flag and remote-config requests (answered from the collection
//! policy), and Aptabase's event endpoints. Capture goes through the one ingest adapter
//! ([`ingest::route`]) with the format of `ingest::formats`; every route answers browsers on
//! the origins the product allows (`cors::client_resource`). Registered by one line in
//! `http/mod.rs` (`.configure(compat::routes)`).

use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::http::cors;
use crate::http::error::ApiError;
use crate::http::ingest::{
    self, client_ip, content_type, header_str, params, product_request, read_body, with_body,
    IngestQuery,
};
use crate::ingest::decode::decode_body;
use crate::ingest::formats::posthog::{self, FlagsRequest};
use crate::ingest::formats::{APTABASE, POSTHOG};
use crate::model::now_ms;
use crate::policies::{ClientContext, ConfigQuery, Policy};
use crate::AppState;

/// The capture paths PostHog's SDKs post to (each also with a trailing slash).
const POSTHOG_CAPTURE: &[&str] = &["/i/v0/e", "/e", "/capture", "/batch", "/track", "/engage"];
/// Feature flags (`/flags?v=2` and later), the legacy `/decide/?v=3`, and the remote config
/// posthog-js reads first (the token in the path).
const POSTHOG_FLAGS: &[&str] = &["/flags", "/decide", "/array/{token}/config"];

pub fn routes(cfg: &mut web::ServiceConfig) {
    for path in POSTHOG_CAPTURE {
        for path in [path.to_string(), format!("{path}/")] {
            cfg.service(
                cors::client_resource(&path, &[Method::POST]).route(ingest::route(&POSTHOG)),
            );
        }
    }
    for path in POSTHOG_FLAGS {
        for path in [path.to_string(), format!("{path}/")] {
            cfg.service(
                cors::client_resource(&path, &[Method::POST, Method::GET])
                    .route(web::post().to(posthog_flags))
                    .route(web::get().to(posthog_flags)),
            );
        }
    }
    for path in ["/api/v0/event", "/api/v0/events"] {
        cfg.service(cors::client_resource(path, &[Method::POST]).route(ingest::route(&APTABASE)));
    }
}

/// `/flags`, `/decide`: the client's collection policy as feature flags, or the error in
/// PostHog's shape.
async fn posthog_flags(
    req: HttpRequest,
    query: web::Query<IngestQuery>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    match flags(&req, query, payload, &state).await {
        Ok(response) => response,
        Err(error) => {
            let own = posthog::error_answer(error.code(), &error.to_string());
            with_body(&error, Some(own))
        }
    }
}

async fn flags(
    req: &HttpRequest,
    query: web::Query<IngestQuery>,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(req, payload, state.config.server.max_body_bytes).await?;
    let limits = state.ingest.decode_limits();
    let encoding = header_str(req, header::CONTENT_ENCODING.as_str());
    let body = decode_body(body, encoding, limits.max_decompressed_bytes)?;
    let mut flags = FlagsRequest::decode(
        &body,
        content_type(req).as_deref(),
        &params(req, &[]),
        &limits,
    )?;
    if let Some(token) = req.match_info().get("token") {
        flags.token.get_or_insert_with(|| token.to_string());
    }
    let product = flags.product(&state.products, &product_request(req, query))?;
    let context = client_context(state, req, &product.id, &flags);
    let config = state.policies.client_config(&context, now_ms());
    let policies: Vec<Policy> = state
        .policies
        .policies()
        .into_iter()
        .filter(|p| p.product == product.id)
        .collect();
    let legacy = req.path().starts_with("/decide");
    let answer = posthog::flags_answer(&config.config, &policies, legacy);
    Ok(HttpResponse::Ok().json(answer))
}

/// The client the policy is decided for: its install, app version and location; an install id
/// or version the config endpoint would refuse (an email as distinct id) is left out.
fn client_context(
    state: &AppState,
    req: &HttpRequest,
    product: &str,
    flags: &FlagsRequest,
) -> ClientContext {
    let location = state.ingest.locate(client_ip(req, state));
    let known = [product];
    let query = |install_id: Option<String>, app_version: Option<String>| ConfigQuery {
        product: Some(product.to_string()),
        install_id,
        app_version,
        ..ConfigQuery::default()
    };
    let (country, region) = (location.country_code, location.region_code);
    query(flags.install_id.clone(), flags.app_version.clone())
        .into_context(&known, country.clone(), region.clone())
        .or_else(|_| query(None, None).into_context(&known, country, region))
        .unwrap_or_else(|_| ClientContext::new(product))
}
