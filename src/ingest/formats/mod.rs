//! Wire formats: one file per format, each turning a request body (already undone from its
//! `Content-Encoding`, with its content type and the product's settings) into raw events whose
//! keys are resolved onto the canonical fields, with per-item rejections. Everything after that
//! (schema, PII, geo, clock, policy, dedup, rate limit, store) is the shared pipeline.
//!
//! Adding a format: a new file here with a `static` implementing [`Format`] (its events carry
//! `Source::named("its-name")`), declared below, and one route line in `http/mod.rs`
//! (`.route(ingest::route(&FORMAT))`).

pub mod flat;
pub mod native;
pub mod otlp;

use crate::error::Rejection;
use crate::ingest::decode::FieldValue;
use crate::ingest::IngestError;
use crate::model::{Field, Source};
use crate::products::{Product, Products};

pub use native::NATIVE;
pub use otlp::{OTLP_LOGS, OTLP_TRACES};

/// What a key of a raw event stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A canonical field (by its name, a wire alias or the product's flat mapping).
    Field(Field),
    /// An object of further keys, each a dimension or metric (`dims`, `metrics`, `tags`, ...).
    Extras,
    /// The error object (`domain`/`type`, `code`, `message`, `stack`).
    Error,
    /// Any other key: a dimension or metric if the product's schema keeps it.
    Extra,
}

/// One event as its format sent it, keys resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    /// (key as sent, what it stands for, value), in the order sent.
    pub fields: Vec<(String, Key, FieldValue)>,
    pub source: Source,
}

/// A decoded request: the product it is for, the client's send time if it gave one (epoch ms),
/// and each item of the request as a raw event or the reason it is not one.
#[derive(Debug, Default)]
pub struct RawBatch {
    /// Index of the product in the registry.
    pub product: usize,
    pub sent_at: Option<i64>,
    pub items: Vec<Result<RawEvent, Rejection>>,
}

/// What a request says about its product: a name (`?product=` or a path segment) and an ingest
/// key, either or both absent. A format tells the product from these, and may also look into the
/// body (OTLP's `service.name`).
#[derive(Debug, Clone, Default)]
pub struct ProductRequest {
    pub name: Option<String>,
    pub key: Option<String>,
}

impl ProductRequest {
    /// The product, from the request alone or with a `service.name` the body gave.
    pub fn resolve<'p>(
        &self,
        products: &'p Products,
        service_name: Option<&str>,
    ) -> Result<&'p Product, IngestError> {
        Ok(products.resolve_or_service(self.name.as_deref(), self.key.as_deref(), service_name)?)
    }
}

/// The limits a format applies while decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_batch_events: usize,
    pub max_event_bytes: usize,
}

/// A request body as a format sees it.
pub struct Body<'a> {
    /// The bytes, already undone from their `Content-Encoding`.
    pub bytes: &'a [u8],
    /// The media type's essence, lowercased (`application/json`), if the request had one.
    pub content_type: Option<&'a str>,
}

pub trait Format: Sync {
    /// The format's name, for logs and metrics.
    fn name(&self) -> &'static str;

    /// Refuses a content type the format does not read (`415`).
    fn check_content_type(&self, content_type: Option<&str>) -> Result<(), IngestError>;

    /// Decodes one request body and tells its product. A malformed item is a rejection in the
    /// batch; only a body that cannot be read as a whole is an error.
    fn decode(
        &self,
        body: Body<'_>,
        products: &Products,
        product: &ProductRequest,
        limits: &DecodeLimits,
    ) -> Result<RawBatch, IngestError>;

    /// The body of the answer to a request whose events were taken in (`content_type`: the
    /// request's).
    fn answer(&self, outcome: &crate::ingest::Outcome, _content_type: Option<&str>) -> Answer {
        Answer::native(outcome)
    }

    /// The body of an error answer, where the format has its own (`None`: the JSON error body).
    fn error_answer(
        &self,
        _code: crate::error::Code,
        _message: &str,
        _content_type: Option<&str>,
    ) -> Option<Answer> {
        None
    }
}

/// A successful answer's body, as a format wants it.
pub struct Answer {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The native answer: what was stored, what was a duplicate, what a policy removed, each
/// rejected event with its index and reason, and each field dropped or changed.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct NativeAnswer<'a> {
    accepted: u64,
    duplicates: u64,
    /// Dropped by a collection policy (not an error: do not retry).
    dropped_by_policy: u64,
    /// Removed by server-side sampling (not an error: do not retry).
    sampled_out: u64,
    rejected: &'a [Rejection],
    /// Fields of the events taken in that were dropped or changed, and why (when any were).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    adjusted: &'a [crate::ingest::adjusted::Adjusted],
    /// How many more than `adjusted` lists (when it is cut).
    #[serde(skip_serializing_if = "is_zero")]
    adjusted_more: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Answer {
    /// The native JSON answer, which formats without an answer of their own use too.
    pub fn native(outcome: &crate::ingest::Outcome) -> Answer {
        let answer = NativeAnswer {
            accepted: outcome.accepted,
            duplicates: outcome.duplicates,
            dropped_by_policy: outcome.policy.dropped_by_policy,
            sampled_out: outcome.policy.sampled_out,
            rejected: &outcome.rejected,
            adjusted: &outcome.adjusted.listed,
            adjusted_more: outcome.adjusted.more,
        };
        Answer {
            content_type: "application/json",
            body: serde_json::to_vec(&answer).unwrap_or_default(),
        }
    }
}
