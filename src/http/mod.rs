//! The HTTP surface: routes, JSON errors for everything actix itself rejects (unknown routes,
//! wrong methods, bad query strings), and per-route request metrics. Client-facing routes
//! (ingest, client config) are built with `cors::client_resource`, admin routes with `resource`;
//! admin handlers extract `auth::Caller`, which checks the role and the product scope. The
//! separate metrics listener (`[metrics] listen`) gets `configure_metrics_listener`.

pub mod admin;
pub mod analytics;
pub mod auth;
pub mod backup;
pub mod clusters;
pub mod codec_errors;
pub mod compat;
pub mod cors;
pub mod error;
pub mod ingest;
pub mod openapi;
pub mod ops;
pub mod otlp_metrics;
pub mod policies;
pub mod saved_queries;
pub mod search;
pub mod series;
pub mod stats;
pub mod subjects;
pub mod traces;
pub mod ui;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, HttpResponse};

use crate::error::Code;
use crate::http::error::ApiError;
use crate::ingest::formats::{NATIVE, OTLP_LOGS, OTLP_TRACES};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::invalid_parameter("query", err.to_string()).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::invalid_parameter("path", err.to_string()).into()),
    )
    .service(
        web::scope("")
            .wrap(ErrorHandlers::new().default_handler(json_errors))
            .wrap_fn(|req, srv| {
                let started = Instant::now();
                let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
                let state = req.app_data::<web::Data<AppState>>().cloned();
                let fut = srv.call(req);
                async move {
                    let res = fut.await?;
                    if let Some(state) = state {
                        state.metrics.observe_request(
                            &route,
                            res.status().as_u16(),
                            started.elapsed(),
                        );
                    }
                    Ok(res)
                }
            })
            // Ingest (POST) answers browsers on other origins; the search (GET) never does.
            .service(
                cors::client_resource("/api/v1/events", &[Method::POST])
                    .route(ingest::route(&NATIVE))
                    .route(web::get().to(search::search_events)),
            )
            // OTLP/HTTP; `/otlp/{product}/...` for exporters that only append `/v1/traces`.
            .service(
                cors::client_resource("/v1/traces", &[Method::POST])
                    .route(ingest::route(&OTLP_TRACES)),
            )
            .service(
                cors::client_resource("/otlp/{product}/v1/traces", &[Method::POST])
                    .route(ingest::route(&OTLP_TRACES)),
            )
            .service(
                cors::client_resource("/v1/logs", &[Method::POST]).route(ingest::route(&OTLP_LOGS)),
            )
            .service(
                cors::client_resource("/otlp/{product}/v1/logs", &[Method::POST])
                    .route(ingest::route(&OTLP_LOGS)),
            )
            .service(
                cors::client_resource("/v1/metrics", &[Method::POST]).route(otlp_metrics::route()),
            )
            .service(
                cors::client_resource("/otlp/{product}/v1/metrics", &[Method::POST])
                    .route(otlp_metrics::route()),
            )
            // Other services' SDKs: PostHog (capture, flags), Aptabase.
            .configure(compat::routes)
            .service(resource("/api/v1/events/export").route(web::get().to(search::export_events)))
            .service(resource("/api/v1/events/{id}").route(web::get().to(admin::get_event)))
            .service(resource("/api/v1/traces/{trace_id}").route(web::get().to(traces::get_trace)))
            .service(resource("/api/v1/geo").route(web::get().to(search::geo)))
            .service(resource("/api/v1/stats").route(web::get().to(admin::stats)))
            .service(resource("/api/v1/stats/overview").route(web::get().to(stats::overview)))
            .service(resource("/api/v1/stats/timeseries").route(web::get().to(stats::timeseries)))
            .service(resource("/api/v1/stats/breakdown").route(web::get().to(stats::breakdown)))
            .service(resource("/api/v1/stats/history").route(web::get().to(stats::history)))
            .service(resource("/api/v1/whoami").route(web::get().to(stats::whoami)))
            .service(resource("/api/v1/analytics/query").route(web::post().to(analytics::query)))
            .service(
                resource("/api/v1/analytics/saved")
                    .route(web::get().to(saved_queries::list))
                    .route(web::post().to(saved_queries::create)),
            )
            .service(
                resource("/api/v1/analytics/saved/{id}")
                    .route(web::get().to(saved_queries::get))
                    .route(web::patch().to(saved_queries::update))
                    .route(web::delete().to(saved_queries::delete)),
            )
            .service(resource("/api/v1/metrics/names").route(web::get().to(series::names)))
            .service(resource("/api/v1/metrics/query").route(web::get().to(series::query)))
            .service(
                resource("/api/v1/subjects/{kind}/{id}")
                    .route(web::get().to(subjects::export))
                    .route(web::delete().to(subjects::erase)),
            )
            .service(
                resource("/api/v1/purge")
                    .route(web::get().to(subjects::purge_status))
                    .route(web::post().to(subjects::start_purge)),
            )
            .service(
                cors::client_resource("/api/v1/config", &[Method::GET])
                    .route(web::get().to(policies::client_config)),
            )
            .service(
                resource("/api/v1/policies")
                    .route(web::get().to(policies::list))
                    .route(web::post().to(policies::create)),
            )
            .service(resource("/api/v1/policies/preview").route(web::post().to(policies::preview)))
            .service(
                resource("/api/v1/policies/{id}")
                    .route(web::get().to(policies::get))
                    .route(web::put().to(policies::replace))
                    .route(web::delete().to(policies::delete)),
            )
            .service(resource("/api/v1/clusters").route(web::get().to(clusters::list)))
            .service(resource("/api/v1/clusters/timeline").route(web::get().to(clusters::timeline)))
            .service(resource("/api/v1/clusters/run").route(web::post().to(clusters::run)))
            .service(
                resource("/api/v1/clusters/{id}")
                    .route(web::get().to(clusters::get))
                    .route(web::patch().to(clusters::patch)),
            )
            .service(
                resource("/api/v1/clusters/{id}/timeline")
                    .route(web::get().to(clusters::cluster_timeline)),
            )
            .service(resource("/api/v1/alerts").route(web::get().to(clusters::alerts)))
            .service(resource("/api/v1/audit").route(web::get().to(subjects::audit)))
            .service(resource("/api/v1/admin/backup").route(web::post().to(backup::post_backup)))
            .service(resource("/healthz").route(web::get().to(ops::healthz)))
            .service(resource("/readyz").route(web::get().to(ops::readyz)))
            .service(resource("/metrics").route(web::get().to(ops::metrics)))
            .service(resource(openapi::PATH).route(web::get().to(openapi::serve)))
            // UI files and client-side routes; the JSON 404 for `/api/...` and the rest.
            .default_service(web::to(ui::serve)),
    );
}

/// The separate metrics listener (`[metrics] listen`): `/metrics` and JSON errors, nothing else.
pub fn configure_metrics_listener(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("")
            .wrap(ErrorHandlers::new().default_handler(json_errors))
            .service(resource("/metrics").route(web::get().to(ops::prometheus)))
            .default_service(web::to(not_found)),
    );
}

async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("route {}", req.path())))
}

/// Errors actix produces itself (a body over an extractor's limit, a bad header) come as plain
/// text; they leave as the same JSON error body as every other error, with the headers they
/// had (`Retry-After`, CORS).
fn json_errors<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    // Plain text (or no type) is what actix's own rejections carry; JSON and a format's own error
    // bodies (OTLP's protobuf `google.rpc.Status`) stay as they are.
    let plain = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !plain || res.status().as_u16() < 400 {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let message = res
        .response()
        .error()
        .map(|e| e.to_string())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let body = error::error_body(Code::for_status(status.as_u16()), &message, None);
    let (req, original) = res.into_parts();
    let mut response = HttpResponse::build(status);
    for (name, value) in original.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            response.append_header((name.clone(), value.clone()));
        }
    }
    let response = response
        .content_type("application/json")
        .body(body)
        .map_into_right_body();
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(
        req, response,
    )))
}

/// A resource whose other methods answer `405` with a JSON error. Every route is built here, so
/// debug builds (every test) refuse a path the OpenAPI document does not describe.
fn resource(path: &str) -> actix_web::Resource {
    debug_assert!(
        openapi::documents(path),
        "route {path} is not in the OpenAPI document: annotate its handler with \
         #[utoipa::path] and list it in http::openapi"
    );
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// The answer of a delete.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// The id of the object deleted.
    pub deleted: String,
}

/// Runs blocking store work on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(f)
        .await
        .map_err(|e| ApiError::Internal(format!("blocking task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use actix_web::{test, App};

    use super::*;

    #[actix_web::test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "is not in the OpenAPI document")]
    async fn an_undocumented_route_is_refused() {
        let _ = resource("/api/v1/undocumented");
    }

    #[actix_web::test]
    async fn documented_routes_are_accepted() {
        let _ = resource("/api/v1/events/{id}");
        let _ = resource(openapi::PATH);
    }

    #[actix_web::test]
    async fn plain_text_errors_become_json_and_keep_their_headers() {
        let app = test::init_service(
            App::new().service(
                web::scope("")
                    .wrap(ErrorHandlers::new().default_handler(json_errors))
                    .route(
                        "/upload",
                        web::get().to(|| async {
                            HttpResponse::PayloadTooLarge()
                                .insert_header((header::RETRY_AFTER, "7"))
                                .insert_header((
                                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                                    "https://a.example",
                                ))
                                .body("too large")
                        }),
                    ),
            ),
        )
        .await;
        let res =
            test::call_service(&app, test::TestRequest::get().uri("/upload").to_request()).await;
        assert_eq!(res.status(), 413);
        let headers = res.headers().clone();
        assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "7");
        assert_eq!(
            headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
            "https://a.example"
        );
        assert_eq!(
            headers.get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["error"]["code"], "payload_too_large");
        assert_eq!(body["error"]["message"], "Payload Too Large");
    }
}
