//! `POST /api/v1/events`: the client-facing ingest endpoint. Checks the product, key, content
//! type and size, runs the ingest stages on the blocking pool, hands the events to the store
//! writer and answers only once they are durable.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, RejectCode, Rejection};
use crate::http::blocking;
use crate::store::writer::SubmitError;
use crate::AppState;

pub const INGEST_KEY_HEADER: &str = "x-telemetry-key";

#[derive(Deserialize)]
pub struct IngestQuery {
    product: Option<String>,
}

#[derive(Serialize)]
struct IngestResponse {
    accepted: u64,
    duplicates: u64,
    /// Dropped by a collection policy (not an error: do not retry).
    dropped_by_policy: u64,
    /// Removed by server-side sampling (not an error: do not retry).
    sampled_out: u64,
    rejected: Vec<Rejection>,
}

pub async fn post_events(
    req: HttpRequest,
    query: web::Query<IngestQuery>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = header_str(&req, INGEST_KEY_HEADER);
    let product_index = state
        .ingest
        .resolve_product(query.product.as_deref(), key)?
        .index;
    check_content_type(&req)?;
    let body = read_body(&req, payload, state.config.server.max_body_bytes).await?;
    let encoding = header_str(&req, header::CONTENT_ENCODING.as_str()).map(str::to_string);
    // The address is used here and dropped: only the location goes on.
    let location = state.ingest.locate(client_ip(&req, &state));
    let st = state.clone();
    let prepared = blocking(move || {
        let product = &st.ingest.products[product_index];
        st.ingest
            .prepare(&st, product, body, encoding.as_deref(), &location)
    })
    .await?;

    let mut rejected = prepared.rejected;
    let policy = prepared.policy;
    let mut duplicates = prepared.duplicates;
    let (indices, events): (Vec<usize>, Vec<_>) = prepared
        .events
        .into_iter()
        .map(|(index, event)| (index, Arc::new(event)))
        .unzip();
    let mut accepted = 0;
    if !events.is_empty() {
        let receiver = state.writer.submit(events).map_err(|e| match e {
            SubmitError::Full => {
                state.metrics.requests_overloaded.inc();
                ApiError::Overloaded { retry_after: 1 }
            }
            SubmitError::Closed => ApiError::NotReady("the store writer has stopped".into()),
        })?;
        let stored = receiver.await.map_err(|_| {
            ApiError::Internal("the store writer stopped before answering".into())
        })??;
        accepted = stored.iter().filter(|s| **s).count() as u64;
        duplicates += stored.len() as u64 - accepted;
        debug_assert_eq!(stored.len(), indices.len());
    }
    rejected.sort_by_key(|r| r.index);
    let metrics = &state.metrics;
    metrics.events_accepted.add(accepted);
    metrics.duplicates.add(duplicates);
    for rejection in &rejected {
        metrics.reject(rejection.code);
    }
    metrics.record_policy(&policy);
    let rate_limited = rejected.iter().any(|r| r.code == RejectCode::RateLimited);
    if accepted == 0 && duplicates == 0 && rate_limited {
        return Err(ApiError::RateLimited {
            retry_after: prepared.retry_after_secs.max(1),
            rejected,
        });
    }
    Ok(HttpResponse::Ok().json(IngestResponse {
        accepted,
        duplicates,
        dropped_by_policy: policy.dropped_by_policy,
        sampled_out: policy.sampled_out,
        rejected,
    }))
}

/// The client's address: the peer, or what a trusted proxy says it forwarded for.
pub fn client_ip(req: &HttpRequest, state: &AppState) -> Option<std::net::IpAddr> {
    crate::net::client_ip(
        req.peer_addr().map(|a| a.ip()),
        header_str(req, header::FORWARDED.as_str()),
        header_str(req, "x-forwarded-for"),
        &state.ingest.trusted_proxies,
    )
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// JSON in any of its spellings; `text/plain` for `navigator.sendBeacon`; a missing type is
/// read as JSON.
fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = text.split(';').next().unwrap_or("").trim();
    let json_like = essence == "application/json"
        || essence == "text/plain"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json_like {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(
            essence.chars().take(100).collect(),
        ))
    }
}

/// Reads the whole body, failing fast with `413` once it passes `limit`.
async fn read_body(
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
