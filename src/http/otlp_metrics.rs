//! `POST /v1/metrics` (and `/otlp/{product}/v1/metrics`): OTLP/HTTP metrics, which become time
//! series (`series`), not events. Reads the product hints, the body within the size limit and its
//! encoding, hands the rest to `Series::accept` on the blocking pool, and answers with the
//! `ExportMetricsServiceResponse` — or a `google.rpc.Status` — in the request's encoding.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, Route};

use crate::http::error::ApiError;
use crate::http::ingest::{
    client_ip, content_type, header_str, product_request, read_body, with_body,
};
use crate::http::{blocking, ingest::IngestQuery};
use crate::ingest::decode::decode_body;
use crate::ingest::formats::otlp::{encoding_of, status_answer};
use crate::ingest::formats::ProductRequest;
use crate::series;
use crate::AppState;

crate::http::ingest::otlp_route_doc!(
    otlp_metrics,
    "/v1/metrics",
    "metrics",
    "Metrics",
    [crate::http::ingest::IngestQuery]
);
crate::http::ingest::otlp_route_doc!(
    otlp_metrics_of_product,
    "/otlp/{product}/v1/metrics",
    "metrics",
    "Metrics",
    [("product" = String, Path, description = "The product")]
);

/// The `POST` route for OTLP metrics.
pub fn route() -> Route {
    web::post().to(
        |req: HttpRequest,
         query: web::Query<IngestQuery>,
         payload: web::Payload,
         state: web::Data<AppState>| async move {
            let content_type = content_type(&req);
            match receive(&req, query, payload, &state, content_type.as_deref()).await {
                Ok(response) => response,
                Err(error) => {
                    let status =
                        status_answer(error.code(), &error.to_string(), content_type.as_deref());
                    with_body(&error, Some(status))
                }
            }
        },
    )
}

async fn receive(
    req: &HttpRequest,
    query: web::Query<IngestQuery>,
    payload: web::Payload,
    state: &web::Data<AppState>,
    content_type: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let encoding = encoding_of(content_type)?;
    let ProductRequest { name: product, key } = product_request(req, query);
    let encoding_header = header_str(req, header::CONTENT_ENCODING.as_str()).map(str::to_string);
    let client_address = client_ip(req, state);
    let body = read_body(req, payload, state.config.server.max_body_bytes).await?;
    let max_decompressed = state.config.server.max_decompressed_bytes;
    let st = state.clone();
    let outcome = blocking(move || {
        let body = decode_body(body, encoding_header.as_deref(), max_decompressed)?;
        Ok(st.series.accept(
            product.as_deref(),
            key.as_deref(),
            client_address,
            &body,
            encoding,
        )?)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .content_type(encoding.content_type())
        .body(series::answer(&outcome, encoding)))
}
