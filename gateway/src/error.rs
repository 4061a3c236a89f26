//! Typed HTTP errors of the API: a status code and a JSON body `{"error","detail"}`.
//!
//! Owns the mapping from engine errors to status codes. Does not log: handlers and the trace
//! layer do.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::engine_control::{AdminError, SubmitError};

/// JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable error code, snake_case.
    pub error: String,
    /// Human-readable detail.
    pub detail: String,
}

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {code}: {detail}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: &'static str,
    /// Human-readable detail.
    pub detail: String,
}

impl ApiError {
    /// An error with this status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
        }
    }

    /// 400.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 404 for an unknown race (or rider).
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 503 when a long-lived connection (WebSocket or SSE stream) finds its cap reached.
    pub fn too_many_connections() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "connection cap reached",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_string(),
            detail: self.detail,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        let detail = e.to_string();
        match e {
            AdminError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", detail),
            AdminError::Invalid(_) => ApiError::bad_request("invalid_request", detail),
            AdminError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", detail),
            AdminError::Internal(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "engine_error", detail)
            }
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        let detail = e.to_string();
        match e {
            SubmitError::Unauthorized => {
                ApiError::new(StatusCode::UNAUTHORIZED, "bad_token", detail)
            }
            SubmitError::Invalid(_) => ApiError::bad_request("invalid_positions", detail),
            SubmitError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
            }
        }
    }
}
