//! The client-facing ingest endpoints, one thin adapter for every wire format: it reads what the
//! request says about its product (a `{product}` path segment or `?product=`, and the ingest
//! key header, `X-Telemetry-Key` or `X-Install-Token`), reads the body within the size limit,
//! passes the content type, encoding and client address to [`ingest::accept`], and writes the
//! format's answer (or its error answer).
//! A new format's endpoint is one `.route(ingest::route(&FORMAT))` line in `http/mod.rs`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, Route};
use futures_util::StreamExt;
use serde::Deserialize;

use actix_web::ResponseError;

use crate::http::error::ApiError;
use crate::http::openapi;
use crate::ingest::formats::{Answer, Format, NativeAnswer, ProductRequest};
use crate::ingest::{self, IngestRequest};
use crate::AppState;

pub const INGEST_KEY_HEADER: &str = "x-telemetry-key";
/// Where clients that call their ingest key an install token send it (the dictation app's
/// keyboard extension).
pub const INSTALL_TOKEN_HEADER: &str = "x-install-token";

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IngestQuery {
    /// The product (needed without an ingest key when more than one product is configured;
    /// must agree with the key's product).
    pub product: Option<String>,
}

// The API document's description of `route(&NATIVE)`, which is a closure.
/// Ingest native events.
#[utoipa::path(
    post,
    path = "/api/v1/events",
    summary = "Ingest native events",
    tag = "ingest",
    description = "Takes in a batch of events in the native format. JSON as \
        `application/json`, any `+json` type, `text/plain` (`navigator.sendBeacon`) or no type; \
        `Content-Encoding: gzip`, `deflate` or `zstd`. Each event is checked on its own: the \
        answer lists the rejected ones and every field dropped or changed.",
    params(IngestQuery),
    request_body(content = openapi::NativeBatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The batch was read; what was stored, per event.", body = NativeAnswer),
        openapi::BadIngest, openapi::IngestKeyRequired, openapi::TooLarge,
        openapi::UnsupportedMedia, openapi::RateLimited, openapi::Unavailable,
    ),
    security(("ingest_key" = []), ("install_token" = []), ()),
)]
#[allow(dead_code)]
fn native_events() {}

/// Declares the API document's description of an OTLP/HTTP route (`route(&OTLP_...)`,
/// `otlp_metrics::route()`), with or without the `{product}` path segment.
macro_rules! otlp_route_doc {
    ($name:ident, $path:tt, $signal:tt, $answer:tt, [$($param:tt)*]) => {
        #[utoipa::path(
            post,
            path = $path,
            summary = concat!("Ingest OTLP ", $signal),
            tag = "ingest",
            description = concat!(
                "OTLP/HTTP ", $signal, " (an `Export", $answer, "ServiceRequest`, see \
                https://opentelemetry.io/docs/specs/otlp/), protobuf or JSON, optionally gzip, \
                deflate or zstd. The answer is the `Export", $answer, "ServiceResponse` in the \
                request's encoding; errors answer a `google.rpc.Status` in it."
            ),
            params($($param)*),
            request_body(content(
                (String = "application/x-protobuf"),
                (Object = "application/json"),
            )),
            responses(
                (status = 200, description = concat!("Export", $answer, "ServiceResponse"), content(
                    (String = "application/x-protobuf"),
                    (Object = "application/json"),
                )),
                crate::http::openapi::OtlpErrors,
            ),
            security(("ingest_key" = []), ("install_token" = []), ()),
        )]
        #[allow(dead_code)]
        pub(crate) fn $name() {}
    };
}
pub(crate) use otlp_route_doc;

otlp_route_doc!(otlp_traces, "/v1/traces", "traces", "Trace", [IngestQuery]);
otlp_route_doc!(
    otlp_traces_of_product,
    "/otlp/{product}/v1/traces",
    "traces",
    "Trace",
    [("product" = String, Path, description = "The product")]
);
otlp_route_doc!(otlp_logs, "/v1/logs", "logs", "Logs", [IngestQuery]);
otlp_route_doc!(
    otlp_logs_of_product,
    "/otlp/{product}/v1/logs",
    "logs",
    "Logs",
    [("product" = String, Path, description = "The product")]
);

/// The `POST` route that ingests bodies in `format`.
pub fn route(format: &'static dyn Format) -> Route {
    web::post().to(
        move |req: HttpRequest,
              query: web::Query<IngestQuery>,
              payload: web::Payload,
              state: web::Data<AppState>| async move {
            let content_type = content_type(&req);
            match receive(format, &req, query, payload, &state, content_type.clone()).await {
                Ok(response) => response,
                Err(error) => error_answer(format, &error, content_type.as_deref()),
            }
        },
    )
}

async fn receive(
    format: &'static dyn Format,
    req: &HttpRequest,
    query: web::Query<IngestQuery>,
    payload: web::Payload,
    state: &web::Data<AppState>,
    content_type: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let product = product_request(req, query);
    let body = read_body(req, payload, state.config.server.max_body_bytes).await?;
    let params = params(req, format.headers());
    let request = IngestRequest {
        product,
        body,
        content_type: content_type.clone(),
        content_encoding: header_str(req, header::CONTENT_ENCODING.as_str()).map(str::to_string),
        params: params.clone(),
        client_ip: client_ip(req, state),
    };
    let outcome = ingest::accept(&state.ingest, format, request).await?;
    let answer = format.answer(&outcome, content_type.as_deref(), &params);
    if answer.is_none() {
        return Ok(HttpResponse::NoContent().finish());
    }
    Ok(HttpResponse::Ok()
        .content_type(answer.content_type)
        .body(answer.body))
}

/// The query parameters of a request and the values of `headers` (lowercase names) it carries.
pub(crate) fn params(
    req: &HttpRequest,
    headers: &[&'static str],
) -> crate::ingest::formats::Params {
    crate::ingest::formats::Params {
        query: web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default(),
        path: req
            .match_info()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        headers: headers
            .iter()
            .filter_map(|name| header_str(req, name).map(|v| (*name, v.to_string())))
            .collect(),
    }
}

/// What a client request says about its product: a `{product}` path segment or `?product=`,
/// and the ingest key header.
pub(crate) fn product_request(req: &HttpRequest, query: web::Query<IngestQuery>) -> ProductRequest {
    ProductRequest {
        name: req
            .match_info()
            .get("product")
            .map(str::to_string)
            .or_else(|| query.into_inner().product),
        key: ingest_key(req).map(str::to_string),
    }
}

/// The ingest key a client request carries: `X-Telemetry-Key`, else `X-Install-Token`.
pub(crate) fn ingest_key(req: &HttpRequest) -> Option<&str> {
    ingest_key_in(req.headers())
}

/// [`ingest_key`] from the headers alone (for middleware, which sees a `ServiceRequest`).
pub(crate) fn ingest_key_in(headers: &header::HeaderMap) -> Option<&str> {
    [INGEST_KEY_HEADER, INSTALL_TOKEN_HEADER]
        .into_iter()
        .find_map(|name| headers.get(name).and_then(|v| v.to_str().ok()))
}

/// The error answer in the format's own body where it has one (OTLP's `google.rpc.Status`),
/// with the status and headers of the JSON error answer.
fn error_answer(
    format: &'static dyn Format,
    error: &ApiError,
    content_type: Option<&str>,
) -> HttpResponse {
    let own = format.error_answer(error.code(), &error.to_string(), content_type);
    with_body(error, own)
}

/// The error answer: the JSON error body, or `own` with the same status and headers.
pub(crate) fn with_body(error: &ApiError, own: Option<Answer>) -> HttpResponse {
    let mut response = error.error_response();
    if let Some(answer) = own {
        let mut own = HttpResponse::build(response.status());
        for (name, value) in response.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                own.append_header((name.clone(), value.clone()));
            }
        }
        response = own.content_type(answer.content_type).body(answer.body);
    }
    response
}

/// The client's address: the peer, or what a trusted proxy says it forwarded for.
pub fn client_ip(req: &HttpRequest, state: &AppState) -> Option<std::net::IpAddr> {
    crate::net::client_ip(
        req.peer_addr().map(|a| a.ip()),
        header_str(req, header::FORWARDED.as_str()),
        header_str(req, "x-forwarded-for"),
        &state.trusted_proxies,
    )
}

pub(crate) fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The media type's essence, lowercased, without parameters.
pub(crate) fn content_type(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::CONTENT_TYPE)?;
    let text = value.to_str().unwrap_or("").to_ascii_lowercase();
    Some(text.split(';').next().unwrap_or("").trim().to_string())
}

/// Reads the whole body, failing fast with `413` once it passes `limit`.
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let declared =
        header_str(req, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(8192).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::InvalidBody(format!("the body could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
