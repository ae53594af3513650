//! The agent's HTTP server: the executor API, the operator API, the legacy
//! JSON endpoints and the files endpoints.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use corral_api::codec::Encoding;

use crate::agent::{Agent, CallError};

pub mod executor;
pub mod files;
pub mod legacy;
pub mod operator;
pub mod volumes;

#[cfg(test)]
mod tests;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Every route of the agent.
pub fn router(agent: Arc<Agent>) -> Router {
    // Executor event streams are never compressed; the rest is when the
    // client asks (operator tools send `Accept-Encoding: gzip`).
    let executor_api = Router::new().route("/api/v1/executor", post(executor::handle));
    Router::new()
        .route("/api/v1", post(operator::handle))
        .route("/state", get(legacy::state))
        .route("/state.json", get(legacy::state))
        .route("/slave(1)/state", get(legacy::state))
        .route("/slave(1)/state.json", get(legacy::state))
        .route("/metrics/snapshot", get(legacy::metrics))
        .route("/monitor/statistics", get(legacy::monitor_statistics))
        .route("/monitor/statistics.json", get(legacy::monitor_statistics))
        .route("/health", get(legacy::health))
        .route("/version", get(legacy::version))
        .route("/files/browse", get(files::browse))
        .route("/files/browse.json", get(files::browse))
        .route("/files/read", get(files::read))
        .route("/files/read.json", get(files::read))
        .route("/files/download", get(files::download))
        .route("/files/download.json", get(files::download))
        .route("/volumes", get(volumes::list))
        .route("/volumes/writeback", post(volumes::write_back))
        .layer(tower_http::compression::CompressionLayer::new())
        .merge(executor_api)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(agent)
}

/// An HTTP error: a status and a plain-text message.
#[derive(Debug)]
pub struct ApiError {
    /// Status code.
    pub status: StatusCode,
    /// Message body.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::BadRequest(m) => ApiError::bad_request(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.message,
        )
            .into_response()
    }
}

/// The request's encoding: missing Content-Type -> 400, other -> 415.
pub fn request_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::bad_request(
            "Expecting 'Content-Type' to be present",
        ));
    };
    let text = value.to_str().unwrap_or("");
    Encoding::from_content_type(text).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Expecting 'Content-Type' of {} or {}",
                corral_api::APPLICATION_JSON,
                corral_api::APPLICATION_PROTOBUF
            ),
        )
    })
}

/// The response encoding from `Accept` (missing -> `default`); 406 when
/// nothing acceptable is offered.
pub fn response_encoding(headers: &HeaderMap, default: Encoding) -> Result<Encoding, ApiError> {
    let accept = headers
        .get(header::ACCEPT)
        .map(|v| v.to_str().unwrap_or(""));
    Encoding::negotiate(accept, default).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Expecting 'Accept' to allow {} or {}",
                corral_api::APPLICATION_JSON,
                corral_api::APPLICATION_PROTOBUF
            ),
        )
    })
}

/// A JSON response in Mesos' compact, ASCII-only form.
pub fn json_response(value: &serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, corral_api::APPLICATION_JSON)],
        corral_api::codec::json_bytes(value),
    )
        .into_response()
}
