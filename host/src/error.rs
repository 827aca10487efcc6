//! Errors that become HTTP responses, turned into responses in one place.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::server::Body;

/// Why a call into a guest produced no response.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The instance could not be created.
    #[error("cannot instantiate: {0:#}")]
    Instantiate(wasmtime::Error),
    /// The guest's `on-start` hook returned an error.
    #[error("on-start failed: {0}")]
    StartFailed(String),
    /// The guest trapped; its instance was discarded.
    #[error("guest trapped: {0:#}")]
    Trap(wasmtime::Error),
    /// The instance serving the call went away before answering.
    #[error("{0}")]
    InstanceLost(String),
    /// The host task running the call panicked.
    #[error("host task failed: {0}")]
    Panic(String),
}

impl CallError {
    /// The same failure for another caller (guest errors are not `Clone`).
    pub fn again(&self) -> Self {
        match self {
            Self::StartFailed(message) => Self::StartFailed(message.clone()),
            other => Self::InstanceLost(other.to_string()),
        }
    }

    /// The status a client sees for this failure.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::StartFailed(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A JSON error response, `{"detail": "..."}`, the shape FastAPI uses.
pub fn error_response(status: StatusCode, detail: &str) -> http::Response<Body> {
    let body = serde_json::json!({ "detail": detail }).to_string();
    let mut response = http::Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A response body from bytes in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
