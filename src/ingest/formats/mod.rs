//! Wire formats: one file per format, each turning a request body (already undone from its
//! `Content-Encoding`, with its content type and the product's settings) into raw events whose
//! keys are resolved onto the canonical fields, with per-item rejections. Everything after that
//! (schema, PII, geo, clock, policy, dedup, rate limit, store) is the shared pipeline.
//!
//! Adding a format: a new file here with a `static` implementing [`Format`] (its events carry
//! `Source::named("its-name")`), declared below, and one route line in `http/mod.rs`
//! (`.route(ingest::route(&FORMAT))`).

pub mod aptabase;
pub mod flat;
pub mod native;
pub mod otlp;
pub mod posthog;
pub mod sentry;

use crate::error::Rejection;
use crate::ingest::decode::FieldValue;
use crate::ingest::IngestError;
use crate::model::{Field, Source};
use crate::products::{Product, Products};

pub use aptabase::APTABASE;
pub use native::NATIVE;
pub use otlp::{OTLP_LOGS, OTLP_TRACES};
pub use posthog::POSTHOG;
pub use sentry::{SENTRY_ENVELOPE, SENTRY_STORE};

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
    /// Each item's index in the request, when the format set some of the request's items aside
    /// (PostHog's person updates, answered but not stored); `None`: item `i` is the request's
    /// item `i`.
    pub positions: Option<Vec<usize>>,
    /// An id the format's answer echoes (Sentry's event id), carried to [`crate::ingest::Outcome`].
    pub reply_id: Option<String>,
    /// What the client says it dropped before sending (Sentry's client reports), for the metrics.
    pub client_discarded: Vec<ClientDiscarded>,
}

/// Events a client reports having dropped before sending: why, of what kind, how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDiscarded {
    pub reason: String,
    pub category: String,
    pub quantity: u64,
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
    /// For bodies a format decompresses itself (PostHog's `?compression=gzip-js`).
    pub max_decompressed_bytes: usize,
}

/// The limits the formats' unit tests decode with.
#[cfg(test)]
pub(crate) const TEST_LIMITS: DecodeLimits = DecodeLimits {
    max_batch_events: 100,
    max_event_bytes: 10_000,
    max_decompressed_bytes: 100_000,
};

impl DecodeLimits {
    /// Refuses one event whose JSON text is over `max_event_bytes`.
    pub fn check_event_size(&self, event_json: &str) -> Result<(), Rejection> {
        let size = event_json.len();
        if size > self.max_event_bytes {
            return Err(Rejection::new(
                crate::error::RejectCode::EventTooLarge,
                format!(
                    "the event is {size} bytes; the limit is {}",
                    self.max_event_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// What a request carries beside its body that a format may read: its query parameters
/// (PostHog's `compression`, `beacon`), its path's parameters (Sentry's project id) and the
/// headers it asks for in [`Format::headers`] (Aptabase's `App-Key`).
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// The query string's parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The route's path parameters (`{project_id}`), by name.
    pub path: Vec<(String, String)>,
    /// (lowercase name, value) of each header the format asked for that the request carries.
    pub headers: Vec<(&'static str, String)>,
}

impl Params {
    /// The first value of query parameter `name`.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path parameter `name` of the route.
    pub fn path(&self, name: &str) -> Option<&str> {
        self.path
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of header `name` (lowercase), if the format asked for it and it was sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A request body as a format sees it.
pub struct Body<'a> {
    /// The bytes, already undone from their `Content-Encoding`.
    pub bytes: &'a [u8],
    /// The media type's essence, lowercased (`application/json`), if the request had one.
    pub content_type: Option<&'a str>,
    pub params: &'a Params,
}

pub trait Format: Sync {
    /// The format's name, for logs and metrics.
    fn name(&self) -> &'static str;

    /// The headers (lowercase) the format reads beside the body, handed to it in [`Params`].
    fn headers(&self) -> &'static [&'static str] {
        &[]
    }

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
    fn answer(
        &self,
        outcome: &crate::ingest::Outcome,
        _content_type: Option<&str>,
        _params: &Params,
    ) -> Answer {
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

/// A successful answer's body, as a format wants it; [`Answer::none`] for an answer without a
/// body (`204`).
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

impl<'a> NativeAnswer<'a> {
    fn of(outcome: &'a crate::ingest::Outcome) -> Self {
        NativeAnswer {
            accepted: outcome.accepted,
            duplicates: outcome.duplicates,
            dropped_by_policy: outcome.policy.dropped_by_policy,
            sampled_out: outcome.policy.sampled_out,
            rejected: &outcome.rejected,
            adjusted: &outcome.adjusted.listed,
            adjusted_more: outcome.adjusted.more,
        }
    }
}

/// The native answer's members beside those of another service's answer (PostHog's
/// `{"status": 1}`): what its SDKs read is there, and what became of each item too.
#[derive(serde::Serialize)]
struct ExtendedAnswer<'a, T: serde::Serialize> {
    #[serde(flatten)]
    own: T,
    #[serde(flatten)]
    native: NativeAnswer<'a>,
}

impl Answer {
    /// The native JSON answer, which formats without an answer of their own use too.
    pub fn native(outcome: &crate::ingest::Outcome) -> Answer {
        Answer::json(&NativeAnswer::of(outcome))
    }

    /// The JSON object `own` (another service's success answer) with the native answer's
    /// members added.
    pub fn extended(own: impl serde::Serialize, outcome: &crate::ingest::Outcome) -> Answer {
        Answer::json(&ExtendedAnswer {
            own,
            native: NativeAnswer::of(outcome),
        })
    }

    pub fn json(value: &impl serde::Serialize) -> Answer {
        Answer {
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// No body at all: the endpoint answers `204 No Content`.
    pub fn none() -> Answer {
        Answer {
            content_type: "",
            body: Vec::new(),
        }
    }

    pub fn is_none(&self) -> bool {
        self.content_type.is_empty() && self.body.is_empty()
    }
}
