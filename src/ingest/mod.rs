//! Ingest: a request body in any wire format → validated, scrubbed, placed, deduplicated and
//! rate-limited events, made durable by the store writer, counted in the metrics. [`accept`]
//! does the whole job for every format; the HTTP handlers only read the request and write the
//! answer. [`Ingest`] holds what is compiled once at start and the handles the stages use.
//!
//! The pipeline, in order:
//! 1. undo `Content-Encoding` ([`decode::decode_body`]);
//! 2. the format decodes the body into raw events ([`formats`]);
//! 3. per event: map the keys, apply the schema, check for PII, place it with the location of
//!    the client's address (looked up once, then dropped), correct its clock, fingerprint it
//!    ([`pipeline`]), noting each field dropped or changed ([`adjusted`]);
//! 4. per batch: collection policy, dedup pre-check, rate limit ([`stages`]);
//! 5. the store writer commits the batch durably; only then is it acknowledged.

pub mod adjusted;
pub mod decode;
pub mod formats;
pub mod geo;
pub mod limits;
pub mod pii;
pub mod pipeline;
pub mod schema;
pub mod stages;

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::error::{Code, ErrorCode, RejectCode, Rejection, StoreError};
use crate::metrics::Metrics;
use crate::model::{now_ms, Event};
use crate::policies::{DecisionCounts, PolicyCache};
use crate::products::{ProductError, Products};
use crate::store::writer::{SubmitError, Writer};
use crate::store::Store;
use adjusted::Adjustments;
use formats::{Body, DecodeLimits, Format, Params, ProductRequest};
use geo::{GeoDb, Location};
use limits::{ClockRules, RateLimiter};
use pii::PiiDetector;
use pipeline::EventContext;
pub use pipeline::ProductRules;

/// The ingest service: rules compiled at start and the handles its stages need.
pub struct Ingest {
    pub products: Arc<Products>,
    pii: PiiDetector,
    geo: Option<GeoDb>,
    clock: ClockRules,
    pub limiter: Arc<RateLimiter>,
    limits: DecodeLimits,
    max_decompressed_bytes: usize,
    store: Store,
    writer: Arc<Writer>,
    policies: Arc<PolicyCache>,
    metrics: Arc<Metrics>,
}

/// The handles [`Ingest`] works with.
pub struct IngestDeps {
    pub products: Arc<Products>,
    pub limiter: Arc<RateLimiter>,
    pub geo: Option<GeoDb>,
    pub store: Store,
    pub writer: Arc<Writer>,
    pub policies: Arc<PolicyCache>,
    pub metrics: Arc<Metrics>,
}

/// One request for [`accept`]: everything a format and the stages need from it.
pub struct IngestRequest {
    /// What the request says about its product (the format tells the product from it).
    pub product: ProductRequest,
    pub body: Vec<u8>,
    /// The media type's essence, lowercased, if the request had one.
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// Query parameters and the headers the format reads.
    pub params: Params,
    /// Used for the geo lookup and the rate limit of events without an install id, then
    /// dropped; never stored or logged.
    pub client_ip: Option<IpAddr>,
}

/// What became of an accepted request's events.
#[derive(Debug, Default)]
pub struct Outcome {
    pub accepted: u64,
    pub duplicates: u64,
    /// Per rejected event, by its index in the request.
    pub rejected: Vec<Rejection>,
    /// The fields of the events taken in that were dropped or changed, and why.
    pub adjusted: Adjustments,
    /// What the collection policies dropped or sampled out (not errors: not retried).
    pub policy: DecisionCounts,
    /// The id the format's answer echoes ([`formats::RawBatch::reply_id`]).
    pub reply_id: Option<String>,
}

/// Why a request as a whole was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("the body could not be decoded: {0}")]
    InvalidEncoding(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the batch has {count} events; the limit is {limit}")]
    BatchTooLarge { count: usize, limit: usize },
    #[error("unsupported content type `{content_type}`: send {expected}")]
    UnsupportedMediaType {
        content_type: String,
        expected: &'static str,
    },
    #[error("unsupported content encoding `{0}`: send gzip, deflate, br, zstd or no encoding")]
    UnsupportedEncoding(String),
    #[error("rate limit exceeded; retry after {retry_after} s")]
    RateLimited {
        retry_after: u64,
        rejected: Vec<Rejection>,
    },
    #[error("the server is busy; retry after {retry_after} s")]
    Overloaded { retry_after: u64 },
    #[error("the server is not ready: the store writer has stopped")]
    WriterStopped,
    #[error(transparent)]
    Product(#[from] ProductError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ErrorCode for IngestError {
    fn error_code(&self) -> Code {
        match self {
            IngestError::InvalidJson(_) => Code::InvalidJson,
            IngestError::InvalidBody(_) => Code::InvalidBody,
            IngestError::InvalidEncoding(_) => Code::InvalidEncoding,
            IngestError::PayloadTooLarge { .. } => Code::PayloadTooLarge,
            IngestError::BatchTooLarge { .. } => Code::BatchTooLarge,
            IngestError::UnsupportedMediaType { .. } => Code::UnsupportedMediaType,
            IngestError::UnsupportedEncoding(_) => Code::UnsupportedEncoding,
            IngestError::RateLimited { .. } => Code::RateLimited,
            IngestError::Overloaded { .. } => Code::Overloaded,
            IngestError::WriterStopped => Code::NotReady,
            IngestError::Product(e) => e.error_code(),
            IngestError::Store(e) => e.error_code(),
            IngestError::Internal(_) => Code::Internal,
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            IngestError::PayloadTooLarge { limit } => Some(serde_json::json!({ "limit": limit })),
            IngestError::BatchTooLarge { count, limit } => {
                Some(serde_json::json!({ "count": count, "limit": limit }))
            }
            IngestError::RateLimited { rejected, .. } => {
                Some(serde_json::json!({ "accepted": 0, "rejected": rejected }))
            }
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            IngestError::RateLimited { retry_after, .. }
            | IngestError::Overloaded { retry_after } => Some(*retry_after),
            IngestError::WriterStopped => Some(1),
            IngestError::Store(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// A batch after every stage but the store: events to write (with their index in the request)
/// and the rejections so far.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The product's index in the registry.
    pub product: usize,
    pub events: Vec<(usize, Event)>,
    pub rejected: Vec<Rejection>,
    pub adjusted: Adjustments,
    pub duplicates: u64,
    pub retry_after_secs: u64,
    pub policy: DecisionCounts,
    pub reply_id: Option<String>,
}

impl Ingest {
    pub fn new(config: &Config, deps: IngestDeps) -> Result<Ingest, ConfigError> {
        Ok(Ingest {
            products: deps.products,
            pii: PiiDetector::new(&config.pii_detectors()?),
            geo: deps.geo,
            clock: ClockRules::new(&config.limits),
            limiter: deps.limiter,
            limits: DecodeLimits {
                max_batch_events: config.server.max_batch_events,
                max_event_bytes: config.server.max_event_bytes,
                max_decompressed_bytes: config.server.max_decompressed_bytes,
            },
            max_decompressed_bytes: config.server.max_decompressed_bytes,
            store: deps.store,
            writer: deps.writer,
            policies: deps.policies,
            metrics: deps.metrics,
        })
    }

    /// The limits formats decode within (also for bodies read outside ingest: PostHog's flags).
    pub fn decode_limits(&self) -> DecodeLimits {
        self.limits
    }

    /// Country and region of a client address; the address goes no further.
    pub fn locate(&self, client_ip: Option<IpAddr>) -> Location {
        match (&self.geo, client_ip) {
            (Some(geo), Some(ip)) => geo.locate(ip),
            _ => Location::default(),
        }
    }

    /// Stages 1–4 over one request. Blocking (CPU and store reads).
    pub fn prepare(
        &self,
        format: &dyn Format,
        request: IngestRequest,
    ) -> Result<Prepared, IngestError> {
        let body = decode::decode_body(
            request.body,
            request.content_encoding.as_deref(),
            self.max_decompressed_bytes,
        )?;
        let batch = format.decode(
            Body {
                bytes: &body,
                content_type: request.content_type.as_deref(),
                params: &request.params,
            },
            &self.products,
            &request.product,
            &self.limits,
        )?;
        let product = self
            .products
            .at(batch.product)
            .ok_or_else(|| IngestError::Internal(format!("no product at {}", batch.product)))?;
        let location = self.locate(request.client_ip);
        let received_at = now_ms();
        let context = EventContext {
            product,
            clock: self.clock.for_batch(received_at, batch.sent_at),
            location: &location,
            pii: &self.pii,
            metrics: &self.metrics,
        };
        self.metrics
            .record_client_discarded(&batch.client_discarded);
        let mut prepared = Prepared {
            product: batch.product,
            reply_id: batch.reply_id.clone(),
            ..Prepared::default()
        };
        let mut adjusted = Vec::new();
        for (position, item) in batch.items.into_iter().enumerate() {
            let index = batch
                .positions
                .as_ref()
                .and_then(|p| p.get(position).copied())
                .unwrap_or(position);
            match item.and_then(|raw| context.build(raw, &mut adjusted)) {
                Ok(event) => {
                    prepared.events.push((index, event));
                    if !adjusted.is_empty() {
                        prepared.adjusted.add(index, std::mem::take(&mut adjusted));
                    }
                }
                Err(rejection) => prepared.rejected.push(Rejection { index, ..rejection }),
            }
        }
        stages::enforce_policies(&mut prepared, &self.policies, received_at);
        stages::drop_known_duplicates(&mut prepared, &self.store)?;
        stages::apply_rate_limit(
            &mut prepared,
            &self.limiter,
            product,
            request.client_ip,
            received_at,
        );
        Ok(prepared)
    }
}

/// The whole ingest of one request in `format`: every stage, the durable commit, the metrics.
/// Answers only once the accepted events are committed.
pub async fn accept(
    ingest: &Arc<Ingest>,
    format: &'static dyn Format,
    request: IngestRequest,
) -> Result<Outcome, IngestError> {
    format.check_content_type(request.content_type.as_deref())?;
    let service = ingest.clone();
    let prepared = tokio::task::spawn_blocking(move || service.prepare(format, request))
        .await
        .map_err(|e| IngestError::Internal(format!("the ingest task failed: {e}")))??;
    let outcome = commit(ingest, prepared).await?;
    Ok(outcome)
}

/// Stage 5: hands the events to the writer, waits until they are durable, counts everything.
async fn commit(ingest: &Ingest, prepared: Prepared) -> Result<Outcome, IngestError> {
    let metrics = &ingest.metrics;
    let mut outcome = Outcome {
        accepted: 0,
        duplicates: prepared.duplicates,
        rejected: prepared.rejected,
        adjusted: prepared.adjusted,
        policy: prepared.policy,
        reply_id: prepared.reply_id,
    };
    let events: Vec<Arc<Event>> = prepared
        .events
        .into_iter()
        .map(|(_, event)| Arc::new(event))
        .collect();
    if !events.is_empty() {
        let receiver = ingest.writer.submit(events).map_err(|e| match e {
            SubmitError::Full => {
                metrics.requests_overloaded.inc();
                IngestError::Overloaded { retry_after: 1 }
            }
            SubmitError::Closed => IngestError::WriterStopped,
        })?;
        let stored = receiver.await.map_err(|_| {
            IngestError::Internal("the store writer stopped before answering".into())
        })??;
        outcome.accepted = stored.iter().filter(|s| **s).count() as u64;
        outcome.duplicates += stored.len() as u64 - outcome.accepted;
    }
    outcome.rejected.sort_by_key(|r| r.index);
    metrics.events_accepted.add(outcome.accepted);
    metrics.duplicates.add(outcome.duplicates);
    for rejection in &outcome.rejected {
        metrics.reject(rejection.code);
    }
    metrics.record_policy(&outcome.policy);
    if let Some(product) = ingest.products.at(prepared.product) {
        metrics.record_adjusted(&product.id, &outcome.adjusted.by_reason);
    }
    let rate_limited = outcome
        .rejected
        .iter()
        .any(|r| r.code == RejectCode::RateLimited);
    if outcome.accepted == 0 && outcome.duplicates == 0 && rate_limited {
        return Err(IngestError::RateLimited {
            retry_after: prepared.retry_after_secs.max(1),
            rejected: outcome.rejected,
        });
    }
    Ok(outcome)
}
