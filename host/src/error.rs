//! Errors that become HTTP responses, turned into responses in one place.

use std::borrow::Cow;
use std::time::Duration;

use http::{HeaderValue, StatusCode, header};

use crate::body::{Body, full};

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
    /// The request ran past its time limit; its instance was discarded.
    #[error("the request ran past its {0:?} limit; its instance was discarded")]
    Timeout(Duration),
    /// The request used more guest CPU time than its `cpu-ms`; its instance
    /// was discarded.
    #[error("the request used more than its {0:?} of CPU time; its instance was discarded")]
    CpuExceeded(Duration),
    /// No instance could take the request: the queue was full, or the wait
    /// outlasted the request's time limit.
    #[error("every instance is busy and the queue is full")]
    Overloaded,
    /// The instance serving the call went away before answering, because
    /// another request on it trapped or timed out.
    #[error("{0}")]
    InstanceLost(String),
    /// The guest answered with a status or header HTTP does not allow.
    #[error("the guest returned an invalid response: {0}")]
    InvalidResponse(String),
    /// The client sent the request body too slowly: it had not all come
    /// within the route's time limit. The instance serves on.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimedOut(Duration),
}

impl CallError {
    /// The same failure for another caller (guest errors are not `Clone`).
    pub fn again(&self) -> Self {
        match self {
            Self::StartFailed(message) => Self::StartFailed(message.clone()),
            other => Self::InstanceLost(other.to_string()),
        }
    }

    /// The response a client sees for this failure. Details stay in the log.
    pub fn to_response(&self) -> http::Response<Body> {
        let (status, detail): (_, Cow<str>) = match self {
            Self::StartFailed(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable".into(),
            ),
            Self::Timeout(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "The request took too long.".into(),
            ),
            Self::CpuExceeded(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The request used more CPU time than it is allowed.".into(),
            ),
            Self::Overloaded | Self::InstanceLost(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is busy; try again shortly.".into(),
            ),
            Self::Instantiate(_) | Self::Trap(_) | Self::InvalidResponse(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error".into(),
            ),
            Self::BodyTimedOut(limit) => (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "The request body did not arrive within {} ms; send it faster.",
                    limit.as_millis()
                )
                .into(),
            ),
        };
        let mut response = error_response(status, &detail);
        if matches!(self, Self::Overloaded | Self::InstanceLost(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A JSON error response, `{"detail": "..."}`, the shape FastAPI uses.
pub fn error_response(status: StatusCode, detail: &str) -> http::Response<Body> {
    json_response(status, &serde_json::json!({ "detail": detail }))
}

/// A 503 saying `detail`, with `Retry-After: 1`: for a wait that ends on
/// its own (the host starting, a tenant being restored).
pub fn unavailable(detail: &str) -> http::Response<Body> {
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, detail);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A 429 saying `detail`, with `Retry-After: seconds`.
pub fn too_many_requests(detail: &str, seconds: u64) -> http::Response<Body> {
    let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, detail);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// `value` as a JSON response with `status`.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> http::Response<Body> {
    let mut response = http::Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
