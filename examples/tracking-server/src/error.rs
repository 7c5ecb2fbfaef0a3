//! MLflow's error bodies: `{"error_code": "...", "message": "..."}` with the matching status.

use std::fmt;

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::StatusCode;

/// MLflow's `error_code` values that this server produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A named experiment, run or metric does not exist (404).
    ResourceDoesNotExist,
    /// An experiment with that name already exists (400).
    ResourceAlreadyExists,
    /// A missing, malformed or out-of-range request field (400).
    InvalidParameterValue,
    /// No such endpoint on this server (404).
    EndpointNotFound,
    /// Something went wrong inside the server (500).
    InternalError,
}

impl ErrorCode {
    /// The string MLflow puts in `error_code`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            Self::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            Self::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            Self::EndpointNotFound => "ENDPOINT_NOT_FOUND",
            Self::InternalError => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status MLflow answers with for this code.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::ResourceDoesNotExist | Self::EndpointNotFound => StatusCode::NOT_FOUND,
            Self::ResourceAlreadyExists | Self::InvalidParameterValue => StatusCode::BAD_REQUEST,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An MLflow API error: a code and a human-readable message.
///
/// As a response it becomes the code's status with MLflow's JSON body, which the MLflow
/// client turns into an `MlflowException` carrying the same `error_code`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    #[must_use]
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `RESOURCE_DOES_NOT_EXIST`.
    #[must_use]
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceDoesNotExist, message)
    }

    /// `INVALID_PARAMETER_VALUE`.
    #[must_use]
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterValue, message)
    }

    /// MLflow's wording for a required field that is absent.
    #[must_use]
    pub fn missing(field: &str) -> Self {
        Self::invalid(format!("Missing value for required parameter '{field}'."))
    }

    /// The error code.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error_code": self.code.as_str(),
            "message": self.message,
        });
        (self.code.status(), Json(body)).into_response()
    }
}
