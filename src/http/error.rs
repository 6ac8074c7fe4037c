//! The HTTP layer's error: what handlers return. Its own variants are the request-level
//! problems only HTTP knows (parameters, tokens, routes); any domain error that implements
//! [`ErrorCode`] converts into it with `?`. Every answer is the JSON body of DESIGN §8, with the
//! code and status from the one table in `crate::error`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::error::{Code, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("invalid policy: `{field}` {reason}")]
    InvalidPolicy { field: String, reason: String },
    #[error("{0}")]
    Conflict(String),
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter { name: String, reason: String },
    #[error("an admin token is required: send `Authorization: Bearer TOKEN`")]
    MissingToken,
    #[error("the admin token is not valid")]
    InvalidToken,
    #[error("this action needs the `admin` role; token `{0}` has the `viewer` role")]
    Forbidden(String),
    #[error("this action spans every product; token `{0}` is scoped to some products only")]
    NeedsAllProducts(String),
    #[error("origin `{0}` may not call this endpoint from a browser: it is not in the product's cors_origins")]
    CorsOriginNotAllowed(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the server is not ready: {0}")]
    NotReady(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// A domain error, already reduced to its code and sentence.
    #[error("{message}")]
    Domain {
        code: Code,
        message: String,
        details: Option<serde_json::Value>,
        retry_after: Option<u64>,
    },
}

impl<E: ErrorCode> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError::Domain {
            code: e.error_code(),
            message: e.message(),
            details: e.details(),
            retry_after: e.retry_after(),
        }
    }
}

impl ApiError {
    pub fn code(&self) -> Code {
        match self {
            ApiError::InvalidJson(_) => Code::InvalidJson,
            ApiError::InvalidBody(_) => Code::InvalidBody,
            ApiError::InvalidPolicy { .. } => Code::InvalidPolicy,
            ApiError::Conflict(_) => Code::Conflict,
            ApiError::InvalidParameter { .. } => Code::InvalidParameter,
            ApiError::MissingToken => Code::MissingToken,
            ApiError::InvalidToken => Code::InvalidToken,
            ApiError::Forbidden(_) | ApiError::NeedsAllProducts(_) => Code::Forbidden,
            ApiError::CorsOriginNotAllowed(_) => Code::CorsOriginNotAllowed,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::MethodNotAllowed => Code::MethodNotAllowed,
            ApiError::PayloadTooLarge { .. } => Code::PayloadTooLarge,
            ApiError::NotReady(_) => Code::NotReady,
            ApiError::Internal(_) => Code::Internal,
            ApiError::Domain { code, .. } => *code,
        }
    }

    /// A JSON request body that could not be read: `invalid_json` when it is not JSON,
    /// `invalid_body` (prefixed with `expected`) when it is JSON of the wrong shape.
    pub fn json_body(err: serde_json::Error, expected: &str) -> Self {
        match err.classify() {
            serde_json::error::Category::Data => {
                ApiError::InvalidBody(format!("expected {expected}: {err}"))
            }
            _ => ApiError::InvalidJson(err.to_string()),
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
            ApiError::PayloadTooLarge { limit } => Some(serde_json::json!({ "limit": limit })),
            ApiError::CorsOriginNotAllowed(origin) => Some(serde_json::json!({ "origin": origin })),
            ApiError::Domain { details, .. } => details.clone(),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::NotReady(_) => Some(1),
            ApiError::Domain { retry_after, .. } => *retry_after,
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
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<serde_json::Value>,
}

/// The JSON error body for `code` with `message`.
pub fn error_body(code: Code, message: &str, details: Option<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&ErrorBody {
        error: ErrorPayload {
            code: code.name(),
            message,
            details,
        },
    })
    .unwrap_or_else(|_| br#"{"error":{"code":"internal","message":"error"}}"#.to_vec())
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if matches!(self, ApiError::MissingToken | ApiError::InvalidToken) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.content_type("application/json").body(error_body(
            self.code(),
            &self.to_string(),
            self.details(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_unique_name_and_an_error_status() {
        let mut names = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(names.insert(code.name()), "{} twice", code.name());
            assert!(code.status() >= 400, "{}", code.name());
            assert!(StatusCode::from_u16(code.status()).is_ok());
        }
    }

    #[test]
    fn domain_errors_keep_code_details_and_retry() {
        let e: ApiError = crate::error::StoreError::WriterGone.into();
        assert_eq!(e.code(), Code::Internal);
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            e.to_string(),
            "internal error: store: the writer has stopped"
        );
        let e: ApiError = crate::search::SearchError::Query {
            message: "unknown field".into(),
            position: 3,
        }
        .into();
        assert_eq!(e.code(), Code::InvalidQuery);
        assert_eq!(e.to_string(), "invalid query at position 3: unknown field");
        assert_eq!(e.details().unwrap()["position"], 3);
        let e: ApiError = crate::search::SearchError::Closed.into();
        assert_eq!(e.retry_after(), Some(1));
    }
}
