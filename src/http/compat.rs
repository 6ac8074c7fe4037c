//! The endpoints of other services' SDKs, so they send to telemetryd unmodified: PostHog's
//! capture paths and its feature-flag and remote-config requests (answered from the collection
//! policy), Aptabase's event endpoints, and Sentry's envelope and store endpoints (a `429`
//! there also carries `X-Sentry-Rate-Limits`, which the Sentry SDKs read). Capture goes through the one ingest adapter
//! ([`ingest::route`]) with the format of `ingest::formats`; every route answers browsers on
//! the origins the product allows (`cors::client_resource`). Registered by one line in
//! `http/mod.rs` (`.configure(compat::routes)`).

use actix_web::dev::Service;
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
use crate::ingest::formats::{APTABASE, POSTHOG, SENTRY_ENVELOPE, SENTRY_STORE};
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
                    .route(web::post().to(answer_posthog_flags))
                    .route(web::get().to(answer_posthog_flags)),
            );
        }
    }
    for path in ["/api/v0/event", "/api/v0/events"] {
        cfg.service(cors::client_resource(path, &[Method::POST]).route(ingest::route(&APTABASE)));
    }
    for (path, format) in [
        ("/api/{project_id}/envelope", &SENTRY_ENVELOPE),
        ("/api/{project_id}/store", &SENTRY_STORE),
    ] {
        for path in [path.to_string(), format!("{path}/")] {
            cfg.service(
                cors::client_resource(&path, &[Method::POST])
                    .wrap_fn(|req, srv| {
                        let answer = srv.call(req);
                        async move { answer.await.map(with_sentry_rate_limits) }
                    })
                    .route(ingest::route(format)),
            );
        }
    }
}

/// `X-Sentry-Rate-Limits` on a `429` (`retry_after::key`: every category, for this DSN), which
/// the Sentry SDKs read beside `Retry-After` to hold back what they send.
fn with_sentry_rate_limits<B>(
    mut response: actix_web::dev::ServiceResponse<B>,
) -> actix_web::dev::ServiceResponse<B> {
    if response.status() != actix_web::http::StatusCode::TOO_MANY_REQUESTS {
        return response;
    }
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(60);
    if let Ok(value) = header::HeaderValue::from_str(&format!("{retry_after}::key")) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static(SENTRY_RATE_LIMITS), value);
    }
    response
}

/// The header with Sentry's per-category rate limits.
pub const SENTRY_RATE_LIMITS: &str = "x-sentry-rate-limits";

/// The API document's description of a PostHog capture route (`route(&POSTHOG)`).
macro_rules! posthog_capture_doc {
    ($($name:ident = $path:literal),+ $(,)?) => {$(
        #[utoipa::path(
            post,
            path = $path,
            tag = "compat",
            summary = "PostHog capture",
            description = "PostHog's SDKs' capture endpoint: an array of events, \
                `{api_key, batch, sent_at}` or one event; gzip by `Content-Encoding`, magic bytes \
                or `?compression=gzip-js`, base64, or form-encoded `data=`. The project token \
                (`api_key`/`token`) selects the product (`[products.compat] posthog_tokens`). \
                Person and group updates are answered and not stored.",
            params(IngestQuery),
            request_body(content(
                (Object = "application/json"),
                (String = "application/x-www-form-urlencoded"),
                (String = "text/plain"),
            )),
            responses(
                (status = 200, description = "`{\"status\": 1}` with what was stored, per event, beside it.", body = Object),
                (status = 204, description = "With `beacon=1`: no body."),
                crate::http::openapi::PostHogErrors,
            ),
        )]
        #[allow(dead_code)]
        fn $name() {}
    )+};
}

posthog_capture_doc!(
    posthog_i_v0_e = "/i/v0/e",
    posthog_i_v0_e_slash = "/i/v0/e/",
    posthog_e = "/e",
    posthog_e_slash = "/e/",
    posthog_capture = "/capture",
    posthog_capture_slash = "/capture/",
    posthog_batch = "/batch",
    posthog_batch_slash = "/batch/",
    posthog_track = "/track",
    posthog_track_slash = "/track/",
    posthog_engage = "/engage",
    posthog_engage_slash = "/engage/",
);

/// The API document's description of a PostHog flags route (`answer_posthog_flags`).
macro_rules! posthog_flags_doc {
    ($($name:ident = $path:literal [$($param:tt)*]),+ $(,)?) => {$(
        #[utoipa::path(
            method(get, post),
            path = $path,
            tag = "compat",
            summary = "PostHog feature flags",
            description = "PostHog's feature-flag requests (`/flags?v=2`, the legacy \
                `/decide/?v=3`, posthog-js's remote config): answered from the collection \
                policy that applies to the client — a `telemetryd-collection` flag carrying the \
                settings as its payload, and one flag per policy.",
            params($($param)*),
            responses(
                (status = 200, description = "The flags, in the shape the request's version expects.", body = Object),
                crate::http::openapi::PostHogErrors,
            ),
        )]
        #[allow(dead_code)]
        fn $name() {}
    )+};
}

posthog_flags_doc!(
    posthog_flags = "/flags" [IngestQuery],
    posthog_flags_slash = "/flags/" [IngestQuery],
    posthog_decide = "/decide" [IngestQuery],
    posthog_decide_slash = "/decide/" [IngestQuery],
    posthog_config = "/array/{token}/config" [("token" = String, Path, description = "The project token."), IngestQuery],
    posthog_config_slash = "/array/{token}/config/" [("token" = String, Path, description = "The project token."), IngestQuery],
);

/// The API document's description of an Aptabase route (`route(&APTABASE)`).
macro_rules! aptabase_doc {
    ($($name:ident = $path:literal, $summary:literal),+ $(,)?) => {$(
        #[utoipa::path(
            post,
            path = $path,
            tag = "compat",
            summary = $summary,
            description = "Aptabase's SDKs' events (one, or up to 25): the `App-Key` header \
                selects the product (`[products.compat] aptabase_app_keys`); `systemProps` become \
                the environment fields, `sessionId` the session, `props` the dimensions.",
            params(IngestQuery),
            request_body(content = Object, content_type = "application/json"),
            responses(
                (status = 200, description = "What was stored, and each refused event's index and reason.", body = Object),
                crate::http::openapi::BadIngest, crate::http::openapi::IngestKeyRequired,
                crate::http::openapi::TooLarge, crate::http::openapi::UnsupportedMedia,
                crate::http::openapi::RateLimited, crate::http::openapi::Unavailable,
            ),
            security(("aptabase_app_key" = [])),
        )]
        #[allow(dead_code)]
        fn $name() {}
    )+};
}

aptabase_doc!(
    aptabase_event = "/api/v0/event",
    "Aptabase event",
    aptabase_events = "/api/v0/events",
    "Aptabase events",
);

/// The API document's description of a Sentry route (`route(&SENTRY_ENVELOPE)`,
/// `route(&SENTRY_STORE)`).
macro_rules! sentry_doc {
    ($($name:ident = $path:literal, $summary:literal, $body:literal),+ $(,)?) => {$(
        #[utoipa::path(
            post,
            path = $path,
            tag = "compat",
            summary = $summary,
            description = concat!("Sentry's SDKs' ", $body, " The project id of the path and \
                the DSN's public key (`X-Sentry-Auth: Sentry sentry_key=...`, `?sentry_key=` or \
                the envelope header's `dsn`) select the product (`[products.compat] \
                sentry_dsns`); `Content-Encoding` gzip, deflate or br. Events with exceptions \
                become errors clustered by type and in-app functions, transactions and their \
                spans events with `duration_ms`, sessions `session` events for release health; \
                client reports are counted in the metrics; other item types are set aside."),
            params(
                ("project_id" = String, Path, description = "The DSN's project id."),
                ("sentry_key" = Option<String>, Query, description = "The DSN's public key (browser SDKs)."),
                IngestQuery,
            ),
            request_body(content(
                (String = "application/x-sentry-envelope"),
                (Object = "application/json"),
            )),
            responses(
                (status = 200, description = "`{\"id\": event_id}` with what was stored, per item, beside it.", body = Object),
                crate::http::openapi::SentryErrors,
            ),
            security(("sentry_auth" = []), ()),
        )]
        #[allow(dead_code)]
        fn $name() {}
    )+};
}

sentry_doc!(
    sentry_envelope = "/api/{project_id}/envelope",
    "Sentry envelope",
    "envelopes (`event`, `transaction`, `session`, `sessions`, `client_report` items, ...).",
    sentry_envelope_slash = "/api/{project_id}/envelope/",
    "Sentry envelope",
    "envelopes (`event`, `transaction`, `session`, `sessions`, `client_report` items, ...).",
    sentry_store = "/api/{project_id}/store",
    "Sentry store",
    "one event, as older SDKs send it.",
    sentry_store_slash = "/api/{project_id}/store/",
    "Sentry store",
    "one event, as older SDKs send it.",
);

/// `/flags`, `/decide`: the client's collection policy as feature flags, or the error in
/// PostHog's shape.
async fn answer_posthog_flags(
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
