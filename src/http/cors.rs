//! CORS, in one place, for the client-facing endpoints only (ingest, OTLP, client config):
//! whether a browser page on another origin may call them (each product's `cors_origins`,
//! decided by [`Products::allows_origin`]), the preflight answer, and the headers on actual
//! answers, error answers included. A route opts in by being built with [`client_resource`];
//! admin routes never do, so they answer cross-origin calls without any CORS header and
//! browsers refuse them. Requests without `Origin` pass through unchanged.
//!
//! [`Products::allows_origin`]: crate::products::Products::allows_origin

use std::future::{ready, Future};
use std::sync::Arc;

use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpResponse, ResponseError};
use futures_util::future::Either;
use serde::Deserialize;

use crate::http::error::ApiError;
use crate::http::ingest::ingest_key_in;
use crate::AppState;

/// Methods a preflight allows.
pub const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
/// Request headers a preflight allows: the body's type and encoding, the ingest key, the
/// install token, Aptabase's app key, Sentry's auth header, W3C trace context, and
/// `If-None-Match` for revalidating the client config.
pub const ALLOW_HEADERS: &str =
    "content-type, content-encoding, x-telemetry-key, x-install-token, app-key, x-sentry-auth, traceparent, tracestate, if-none-match";
/// Response headers a page may read: when to retry (Sentry's browser SDK also reads its own
/// rate-limit header), and the client config's version.
pub const EXPOSE_HEADERS: &str = "Retry-After, X-Sentry-Rate-Limits, ETag";
/// How long a browser may cache a preflight answer (seconds).
pub const MAX_AGE_SECS: &str = "86400";
/// The path segment that names a product (`/otlp/{product}/v1/traces`).
const PRODUCT_SEGMENT: &str = "product";

/// A resource whose `methods` answer browsers on other origins: a preflight (`OPTIONS` asking
/// for one of `methods`) is answered here, and answers to `methods` carry the CORS headers when
/// the origin is allowed. Its other methods (an admin `GET` sharing the path) stay without CORS,
/// and other methods answer `405` as on every resource. Used on a route line:
///
/// ```text
/// .service(cors::client_resource("/v1/traces", &[Method::POST]).route(ingest::route(&OTLP_TRACES)))
/// ```
pub fn client_resource(
    path: &str,
    methods: &[Method],
) -> actix_web::Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let methods: Arc<[Method]> = methods.into();
    super::resource(path).wrap_fn(move |req, srv| handle(req, srv, &methods))
}

/// What CORS does with one request.
enum Plan {
    /// No `Origin`, or a method that is not for browsers on other origins: untouched.
    Pass,
    /// A preflight for one of the client methods, answered without the handler.
    Preflight { origin: HeaderValue, allowed: bool },
    /// A cross-origin request for a client method: the answer gets the headers if `allowed`.
    Actual { origin: HeaderValue, allowed: bool },
}

fn handle<S>(
    req: ServiceRequest,
    srv: &S,
    methods: &[Method],
) -> impl Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>,
{
    match plan(&req, methods) {
        Plan::Pass => Either::Left(Either::Left(srv.call(req))),
        Plan::Preflight { origin, allowed } => Either::Left(Either::Right(ready(Ok(
            req.into_response(preflight(origin, allowed))
        )))),
        Plan::Actual { origin, allowed } => {
            let request = req.request().clone();
            let answer = srv.call(req);
            Either::Right(async move {
                let mut res = match answer.await {
                    Ok(res) => res,
                    Err(e) => ServiceResponse::from_err(e, request),
                };
                decorate(res.headers_mut(), origin, allowed);
                Ok(res)
            })
        }
    }
}

fn plan(req: &ServiceRequest, methods: &[Method]) -> Plan {
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        return Plan::Pass;
    };
    let preflight = req.method() == Method::OPTIONS;
    let method = if preflight {
        match req.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD) {
            Some(asked) => match Method::from_bytes(asked.as_bytes()) {
                Ok(method) => method,
                Err(_) => return Plan::Pass,
            },
            None => return Plan::Pass,
        }
    } else {
        req.method().clone()
    };
    if !methods.contains(&method) {
        return Plan::Pass;
    }
    let allowed = origin_allowed(req, &origin);
    if preflight {
        Plan::Preflight { origin, allowed }
    } else {
        Plan::Actual { origin, allowed }
    }
}

#[derive(Deserialize)]
struct ProductParam {
    product: Option<String>,
}

/// Whether the product the request names (ingest key, `{product}` path segment, `?product=`)
/// or, naming none, any product allows `origin`.
fn origin_allowed(req: &ServiceRequest, origin: &HeaderValue) -> bool {
    let (Some(state), Ok(origin)) = (req.app_data::<web::Data<AppState>>(), origin.to_str()) else {
        return false;
    };
    let key = ingest_key_in(req.headers());
    let query = web::Query::<ProductParam>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().product);
    let id = req.match_info().get(PRODUCT_SEGMENT).or(query.as_deref());
    state.products.allows_origin(origin, key, id)
}

/// `204` with the allow headers, or `403 cors_origin_not_allowed` without them.
fn preflight(origin: HeaderValue, allowed: bool) -> HttpResponse {
    if !allowed {
        let shown: String = String::from_utf8_lossy(origin.as_bytes())
            .chars()
            .take(200)
            .collect();
        let mut refusal = ApiError::CorsOriginNotAllowed(shown).error_response();
        refusal
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static("Origin"));
        return refusal;
    }
    let mut answer = HttpResponse::build(StatusCode::NO_CONTENT);
    answer
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_SECS))
        .append_header((header::VARY, "Origin"));
    answer.finish()
}

/// The headers of an actual answer: it depends on `Origin` either way; an allowed origin may
/// read it and the headers clients act on.
fn decorate(headers: &mut HeaderMap, origin: HeaderValue, allowed: bool) {
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
}
