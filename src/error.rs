//! The one table of error codes. Every error an answer can carry has a stable snake_case code
//! and an HTTP status, listed once in [`codes!`] below. Domain modules return their own typed
//! errors (`thiserror`) and implement [`ErrorCode`] to say which code each variant is; they never
//! name HTTP. The HTTP layer (`http::error`) turns any of them into the JSON body of DESIGN §8.
//! Per-event rejections inside a successful batch (`RejectCode`), the reasons a field of an
//! accepted event was dropped or changed (`AdjustReason`) and the store's errors live here too,
//! as every layer uses them.

use serde::Serialize;

/// Declares [`Code`]: one line per code, `Variant = "snake_case_name", http_status;`.
macro_rules! codes {
    ($($variant:ident = $name:literal, $status:literal;)*) => {
        /// A stable error code: what clients and tests match on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }

            /// The HTTP status an answer with this code has.
            pub fn status(self) -> u16 {
                match self {
                    $(Code::$variant => $status,)*
                }
            }
        }
    };
}

codes! {
    InvalidJson = "invalid_json", 400;
    InvalidBody = "invalid_body", 400;
    InvalidEncoding = "invalid_encoding", 400;
    MissingProduct = "missing_product", 400;
    UnknownProduct = "unknown_product", 400;
    InvalidQuery = "invalid_query", 400;
    InvalidPolicy = "invalid_policy", 400;
    InvalidParameter = "invalid_parameter", 400;
    BadRequest = "bad_request", 400;
    MissingIngestKey = "missing_ingest_key", 401;
    InvalidIngestKey = "invalid_ingest_key", 401;
    MissingToken = "missing_token", 401;
    InvalidToken = "invalid_token", 401;
    Unauthorized = "unauthorized", 401;
    Forbidden = "forbidden", 403;
    CorsOriginNotAllowed = "cors_origin_not_allowed", 403;
    NotFound = "not_found", 404;
    MethodNotAllowed = "method_not_allowed", 405;
    RequestTimeout = "request_timeout", 408;
    Conflict = "conflict", 409;
    PayloadTooLarge = "payload_too_large", 413;
    BatchTooLarge = "batch_too_large", 413;
    UnsupportedMediaType = "unsupported_media_type", 415;
    UnsupportedEncoding = "unsupported_encoding", 415;
    HeadersTooLarge = "headers_too_large", 431;
    RateLimited = "rate_limited", 429;
    Overloaded = "overloaded", 503;
    NotReady = "not_ready", 503;
    DiskFull = "disk_full", 503;
    Internal = "internal", 500;
}

impl Code {
    /// The code for an error answer made without one (actix's own rejections), by its status.
    pub fn for_status(status: u16) -> Code {
        match status {
            401 => Code::Unauthorized,
            403 => Code::Forbidden,
            404 => Code::NotFound,
            405 => Code::MethodNotAllowed,
            408 => Code::RequestTimeout,
            413 => Code::PayloadTooLarge,
            415 => Code::UnsupportedMediaType,
            431 => Code::HeadersTooLarge,
            500.. => Code::Internal,
            _ => Code::BadRequest,
        }
    }
}

/// A typed error that knows its code. `Display` is the human sentence of the answer.
pub trait ErrorCode: std::error::Error {
    fn error_code(&self) -> Code;

    /// The answer's human sentence; `Display` unless the error words it differently for clients.
    fn message(&self) -> String {
        self.to_string()
    }

    /// Structured details for the answer's `details` member.
    fn details(&self) -> Option<serde_json::Value> {
        None
    }

    /// Seconds a client should wait before retrying (`Retry-After`).
    fn retry_after(&self) -> Option<u64> {
        match self.error_code() {
            Code::NotReady => Some(1),
            _ => None,
        }
    }
}

/// Why one event of a batch was not stored. The batch itself still succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
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

/// Why ingest dropped or changed one field of an event it took in (the ingest answer's
/// `adjusted`, the `fields_adjusted_total` metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdjustReason {
    /// A key the product's strict schema does not list: dropped.
    UnknownKey,
    /// A key open mode cannot keep (empty, over 64 bytes, or other than letters, digits, `_`,
    /// `-`, `.`): dropped.
    InvalidKey,
    /// A value of another type than the schema's for the key: dropped.
    WrongType,
    /// An enum value off its list: stored as `"other"`.
    OffList,
    /// A value that misses the key's pattern: dropped.
    Pattern,
    /// A value carrying personal data, with the `drop` action for fields: dropped.
    PiiDropped,
    /// A context object nested deeper than the limit: dropped.
    TooDeep,
    /// A dimension past the most one event keeps: dropped.
    TooMany,
    /// A value longer than the limit: cut.
    Truncated,
}

impl AdjustReason {
    pub const ALL: [AdjustReason; 9] = [
        AdjustReason::UnknownKey,
        AdjustReason::InvalidKey,
        AdjustReason::WrongType,
        AdjustReason::OffList,
        AdjustReason::Pattern,
        AdjustReason::PiiDropped,
        AdjustReason::TooDeep,
        AdjustReason::TooMany,
        AdjustReason::Truncated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AdjustReason::UnknownKey => "unknown_key",
            AdjustReason::InvalidKey => "invalid_key",
            AdjustReason::WrongType => "wrong_type",
            AdjustReason::OffList => "off_list",
            AdjustReason::Pattern => "pattern",
            AdjustReason::PiiDropped => "pii_dropped",
            AdjustReason::TooDeep => "too_deep",
            AdjustReason::TooMany => "too_many",
            AdjustReason::Truncated => "truncated",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One rejected event in an ingest response.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    Io(std::io::Error),
    /// The disk holding the data dir is full: nothing was written; retry once space is free.
    #[error("store: the disk holding the data dir is full; nothing of this request was stored")]
    DiskFull,
}

/// Seconds a client is asked to wait before retrying after `disk_full`.
pub const DISK_FULL_RETRY_SECS: u64 = 10;

fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) // ENOSPC
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        if is_disk_full(&e) {
            StoreError::DiskFull
        } else {
            StoreError::Io(e)
        }
    }
}

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        match e {
            redb::StorageError::Io(io) => io.into(),
            other => StoreError::Redb(other.to_string()),
        }
    }
}

/// redb's errors: the storage errors inside them keep their meaning (a full disk), the rest
/// become their message.
macro_rules! redb_errors {
    ($($t:ident),*) => {$(
        impl From<redb::$t> for StoreError {
            fn from(e: redb::$t) -> Self {
                match e {
                    redb::$t::Storage(storage) => storage.into(),
                    other => StoreError::Redb(other.to_string()),
                }
            }
        }
    )*};
}
redb_errors!(DatabaseError, TransactionError, TableError, CommitError);

impl From<redb::SetDurabilityError> for StoreError {
    fn from(e: redb::SetDurabilityError) -> Self {
        StoreError::Redb(e.to_string())
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Io(io) => io.into(),
            other => StoreError::Redb(other.to_string()),
        }
    }
}

impl ErrorCode for StoreError {
    fn error_code(&self) -> Code {
        match self {
            StoreError::DiskFull => Code::DiskFull,
            _ => Code::Internal,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        matches!(self, StoreError::DiskFull).then_some(DISK_FULL_RETRY_SECS)
    }

    fn message(&self) -> String {
        format!("internal error: {self}")
    }
}
