//! The one table of error codes: every whole-request error (`ApiError`) and every per-event
//! rejection (`RejectCode`) has a stable snake_case code and, for requests, an HTTP status.
//! Handlers return `ApiError`; this module turns it into the JSON body of DESIGN §8.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// A request that cannot be served as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("the body could not be decoded: {0}")]
    InvalidEncoding(String),
    #[error(
        "no product given: send the product's ingest key in X-Telemetry-Key or add ?product=ID"
    )]
    MissingProduct,
    #[error("unknown product `{0}`")]
    UnknownProduct(String),
    #[error("invalid query at position {position}: {message}")]
    InvalidQuery { message: String, position: usize },
    #[error("invalid policy: `{field}` {reason}")]
    InvalidPolicy { field: String, reason: String },
    #[error("{0}")]
    Conflict(String),
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter { name: String, reason: String },
    #[error("product `{0}` requires an ingest key in the X-Telemetry-Key header")]
    MissingIngestKey(String),
    #[error("the ingest key is not valid for this product")]
    InvalidIngestKey,
    #[error("an admin token is required: send `Authorization: Bearer TOKEN`")]
    MissingToken,
    #[error("the admin token is not valid")]
    InvalidToken,
    #[error("this action needs the `admin` role; token `{0}` has the `viewer` role")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the batch has {count} events; the limit is {limit}")]
    BatchTooLarge { count: usize, limit: usize },
    #[error("unsupported content type `{0}`: send application/json")]
    UnsupportedMediaType(String),
    #[error("unsupported content encoding `{0}`: send gzip or no encoding")]
    UnsupportedEncoding(String),
    #[error("rate limit exceeded; retry after {retry_after} s")]
    RateLimited {
        retry_after: u64,
        rejected: Vec<Rejection>,
    },
    #[error("the server is busy; retry after {retry_after} s")]
    Overloaded { retry_after: u64 },
    #[error("the server is not ready: {0}")]
    NotReady(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The stable code clients and tests match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::InvalidEncoding(_) => "invalid_encoding",
            ApiError::MissingProduct => "missing_product",
            ApiError::UnknownProduct(_) => "unknown_product",
            ApiError::InvalidQuery { .. } => "invalid_query",
            ApiError::InvalidPolicy { .. } => "invalid_policy",
            ApiError::Conflict(_) => "conflict",
            ApiError::InvalidParameter { .. } => "invalid_parameter",
            ApiError::MissingIngestKey(_) => "missing_ingest_key",
            ApiError::InvalidIngestKey => "invalid_ingest_key",
            ApiError::MissingToken => "missing_token",
            ApiError::InvalidToken => "invalid_token",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::BatchTooLarge { .. } => "batch_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::UnsupportedEncoding(_) => "unsupported_encoding",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::NotReady(_) => "not_ready",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn invalid_parameter(name: &str, reason: impl Into<String>) -> Self {
        ApiError::InvalidParameter {
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            ApiError::InvalidParameter { name, .. } => {
                Some(serde_json::json!({ "parameter": name }))
            }
            ApiError::InvalidPolicy { field, reason } => {
                Some(serde_json::json!({ "field": field, "reason": reason }))
            }
            ApiError::InvalidQuery { position, .. } => {
                Some(serde_json::json!({ "parameter": "q", "position": position }))
            }
            ApiError::PayloadTooLarge { limit } => Some(serde_json::json!({ "limit": limit })),
            ApiError::BatchTooLarge { count, limit } => {
                Some(serde_json::json!({ "count": count, "limit": limit }))
            }
            ApiError::RateLimited { rejected, .. } => {
                Some(serde_json::json!({ "accepted": 0, "rejected": rejected }))
            }
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after, .. } | ApiError::Overloaded { retry_after } => {
                Some(*retry_after)
            }
            ApiError::NotReady(_) => Some(1),
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorPayload<'a>,
}

#[derive(Serialize)]
struct ErrorPayload<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<serde_json::Value>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidBody(_)
            | ApiError::InvalidEncoding(_)
            | ApiError::MissingProduct
            | ApiError::UnknownProduct(_)
            | ApiError::InvalidQuery { .. }
            | ApiError::InvalidPolicy { .. }
            | ApiError::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::MissingIngestKey(_)
            | ApiError::InvalidIngestKey
            | ApiError::MissingToken
            | ApiError::InvalidToken => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } | ApiError::BatchTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMediaType(_) | ApiError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded { .. } | ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if matches!(self, ApiError::MissingToken | ApiError::InvalidToken) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(ErrorBody {
            error: ErrorPayload {
                code: self.code(),
                message: self.to_string(),
                details: self.details(),
            },
        })
    }
}

/// The code for an error response that did not come from `ApiError` (actix's own rejections).
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        431 => "headers_too_large",
        500.. => "internal",
        _ => "bad_request",
    }
}

/// Why one event of a batch was not stored. The batch itself still succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    InvalidEvent,
    EventTooLarge,
    MissingName,
    UnknownEvent,
    MissingField,
    InvalidField,
    PiiDetected,
    RateLimited,
}

impl RejectCode {
    pub const ALL: [RejectCode; 8] = [
        RejectCode::InvalidEvent,
        RejectCode::EventTooLarge,
        RejectCode::MissingName,
        RejectCode::UnknownEvent,
        RejectCode::MissingField,
        RejectCode::InvalidField,
        RejectCode::PiiDetected,
        RejectCode::RateLimited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::InvalidEvent => "invalid_event",
            RejectCode::EventTooLarge => "event_too_large",
            RejectCode::MissingName => "missing_name",
            RejectCode::UnknownEvent => "unknown_event",
            RejectCode::MissingField => "missing_field",
            RejectCode::InvalidField => "invalid_field",
            RejectCode::PiiDetected => "pii_detected",
            RejectCode::RateLimited => "rate_limited",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One rejected event in an ingest response.
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    pub index: usize,
    pub code: RejectCode,
    pub message: String,
}

impl Rejection {
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        Rejection {
            index: 0,
            code,
            message: message.into(),
        }
    }
}

/// Errors of the durable store, surfaced as `500 internal` (they are never the client's fault).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Redb(String),
    #[error("store: encoding an event failed: {0}")]
    Codec(String),
    #[error("store: the writer has stopped")]
    WriterGone,
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(e.to_string())
            }
        }
    )*};
}
redb_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}
