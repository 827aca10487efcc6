//! Responses, and everything a handler may return instead of one.

use std::convert::Infallible;

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};

use crate::headers::Headers;
use crate::host::{Level, log};
use crate::streaming::{ChunkStream, Chunks};

/// An HTTP response: a status, headers and a body, held whole or (from a
/// [`crate::StreamingResponse`] or [`crate::sse::Sse`]) still to be streamed.
#[derive(Debug, Clone)]
pub struct Response {
    // Boxed: small enough to be every handler's error type.
    inner: Box<Parts>,
}

#[derive(Debug, Clone)]
struct Parts {
    status: StatusCode,
    headers: Headers,
    body: Vec<u8>,
    /// The body still to be written, in place of `body`.
    chunks: Option<Chunks>,
    /// Set on a 422 an extractor answered, so that a handler can answer the
    /// problems of all its extractors at once.
    problems: Option<Vec<Value>>,
    /// A status the `http` crate refuses, for tests of the host.
    wire_status: Option<u16>,
}

impl Default for Response {
    fn default() -> Self {
        Self::new(StatusCode::OK)
    }
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: StatusCode) -> Self {
        Self {
            inner: Box::new(Parts {
                status,
                headers: Headers::default(),
                body: Vec::new(),
                chunks: None,
                problems: None,
                wire_status: None,
            }),
        }
    }

    /// 200 with a `text/plain` body.
    pub fn text(body: impl Into<String>) -> Self {
        Self::new(StatusCode::OK)
            .with_header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )
            .with_body(body.into())
    }

    /// 200 with an HTML body.
    pub fn html(body: impl Into<String>) -> Self {
        Self::new(StatusCode::OK)
            .with_header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )
            .with_body(body.into())
    }

    /// 200 with `value` as a JSON body.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(StatusCode::OK)
                .with_header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )
                .with_body(body),
            Err(e) => internal_error(&format!("cannot encode the response as JSON: {e}")),
        }
    }

    /// The same response with another status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.inner.status = status;
        self.inner.wire_status = None;
        self
    }

    /// The same response with one more header. A name or value that is not
    /// valid HTTP turns the response into a 500, and the reason is logged.
    pub fn with_header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: std::fmt::Display,
        V: TryInto<HeaderValue>,
        V::Error: std::fmt::Display,
    {
        match (name.try_into(), value.try_into()) {
            (Ok(name), Ok(value)) => {
                self.inner.headers.append(name, value);
                self
            }
            (Err(e), _) => internal_error(&format!("invalid response header name: {e}")),
            (_, Err(e)) => internal_error(&format!("invalid response header value: {e}")),
        }
    }

    /// The same response with another body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.inner.body = body.into();
        self.inner.chunks = None;
        self
    }

    /// The same response with a body still to be streamed.
    pub(crate) fn with_chunks(mut self, chunks: Chunks) -> Self {
        self.inner.body = Vec::new();
        self.inner.chunks = Some(chunks);
        self
    }

    /// True when the body is a stream, still to be written.
    pub fn is_streamed(&self) -> bool {
        self.inner.chunks.is_some()
    }

    /// The stream of a streamed body, leaving the response without one.
    pub(crate) fn take_chunks(&mut self) -> Option<ChunkStream> {
        self.inner.chunks.take()?.take()
    }

    /// Sends `status` as it is, even one outside 100..=999 that the `http`
    /// crate refuses: for tests of how the host handles a broken guest.
    #[doc(hidden)]
    pub fn with_unchecked_status(mut self, status: u16) -> Self {
        self.inner.wire_status = Some(status);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.inner.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.inner.headers
    }

    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.inner.headers
    }

    /// The first value of header `name`, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers.get_str(name)
    }

    /// The body held whole: empty while a streamed body is still to come.
    pub fn body(&self) -> &[u8] {
        &self.inner.body
    }

    pub fn into_body(self) -> Vec<u8> {
        self.inner.body
    }

    /// Marks a 422 as listing `problems`, to be merged with others.
    pub(crate) fn with_problems(mut self, problems: Vec<Value>) -> Self {
        self.inner.problems = Some(problems);
        self
    }

    /// The problems of a 422 an extractor answered, if this is one.
    pub(crate) fn problems(self) -> Result<Vec<Value>, Response> {
        if self.inner.problems.is_some() {
            Ok(self.inner.problems.unwrap_or_default())
        } else {
            Err(self)
        }
    }

    /// The `http` crate's response.
    pub fn into_http(self) -> http::Response<Vec<u8>> {
        let mut response = http::Response::new(self.inner.body);
        *response.status_mut() = self.inner.status;
        *response.headers_mut() = self.inner.headers.into();
        response
    }

    /// Status, headers and body as they cross to the host.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn into_wire(self) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let status = self.inner.wire_status.unwrap_or(self.inner.status.as_u16());
        (status, self.inner.headers.into_wire(), self.inner.body)
    }
}

/// A 500 whose reason goes to the log, never to the client.
pub(crate) fn internal_error(reason: &str) -> Response {
    log(Level::Error, reason);
    Response::json(&json!({ "detail": "Internal Server Error" }))
        .with_status(StatusCode::INTERNAL_SERVER_ERROR)
}

impl<B: Into<Vec<u8>>> From<http::Response<B>> for Response {
    fn from(response: http::Response<B>) -> Self {
        let (parts, body) = response.into_parts();
        let mut out = Response::new(parts.status).with_body(body);
        out.inner.headers = parts.headers.into();
        out
    }
}

/// An error a handler returns to answer `status` with `{"detail": ...}`,
/// like the Python SDK's `HTTPException`:
/// `Err(HttpError::new(StatusCode::NOT_FOUND, "item 7 not found"))`.
#[derive(Debug, Clone)]
pub struct HttpError {
    status: StatusCode,
    detail: Value,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl HttpError {
    /// `status` with `detail` as the message.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::with_detail(status, Value::String(detail.into()))
    }

    /// `status` with any JSON as the detail.
    pub fn with_detail(status: StatusCode, detail: Value) -> Self {
        Self {
            status,
            detail,
            headers: Vec::new(),
        }
    }

    /// 404 with `detail`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 400 with `detail`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// The same error with a header on its response.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Value::String(detail) => write!(f, "{}: {detail}", self.status),
            detail => write!(f, "{}: {detail}", self.status),
        }
    }
}

impl std::error::Error for HttpError {}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response =
            Response::json(&json!({ "detail": self.detail })).with_status(self.status);
        response.inner.headers.extend(self.headers);
        response
    }
}

/// What a handler may return.
pub trait IntoResponse {
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl<B: Into<Vec<u8>>> IntoResponse for http::Response<B> {
    fn into_response(self) -> Response {
        self.into()
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for std::borrow::Cow<'static, str> {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

/// Bytes, as `application/octet-stream`.
impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        Response::new(StatusCode::OK)
            .with_header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )
            .with_body(self)
    }
}

/// 204 No Content.
impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::new(StatusCode::NO_CONTENT)
    }
}

/// An empty response with the status.
impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        Response::new(self)
    }
}

/// The headers, added to the response of the value.
impl IntoResponse for HeaderMap {
    fn into_response(self) -> Response {
        let mut response = Response::new(StatusCode::OK);
        response.inner.headers = self.into();
        response
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, T) {
    fn into_response(self) -> Response {
        let response = self.1.into_response();
        // A rejection or an error inside keeps its own status.
        if response.inner.status.is_client_error() || response.inner.status.is_server_error() {
            return response;
        }
        response.with_status(self.0)
    }
}

/// `(201, Json(item))`: a status as a number, as the old API had it.
impl<T: IntoResponse> IntoResponse for (u16, T) {
    fn into_response(self) -> Response {
        match StatusCode::from_u16(self.0) {
            Ok(status) => (status, self.1).into_response(),
            Err(_) => internal_error(&format!("{} is not an HTTP status", self.0)),
        }
    }
}

impl<T: IntoResponse> IntoResponse for (HeaderMap, T) {
    fn into_response(self) -> Response {
        let mut response = self.1.into_response();
        response.inner.headers.extend(self.0);
        response
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, HeaderMap, T) {
    fn into_response(self) -> Response {
        (self.0, (self.1, self.2)).into_response()
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(value) => value.into_response(),
            Err(error) => error.into_response(),
        }
    }
}

/// `None` is 404 `{"detail": "Not Found"}`.
impl<T: IntoResponse> IntoResponse for Option<T> {
    fn into_response(self) -> Response {
        match self {
            Some(value) => value.into_response(),
            None => HttpError::not_found("Not Found").into_response(),
        }
    }
}

/// 500: the error and its causes go to the host's log, never to the client.
impl IntoResponse for anyhow::Error {
    fn into_response(self) -> Response {
        internal_error(&format!("handler failed: {self:?}"))
    }
}

impl IntoResponse for Infallible {
    fn into_response(self) -> Response {
        match self {}
    }
}
