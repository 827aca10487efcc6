//! Outbound HTTP within the sidecar's allow-list (`outbound = [...]` under
//! `[grants]`). Calls are async: they free the instance for other requests
//! meanwhile, so they belong in `async fn` handlers. Where nothing can
//! suspend the instance (a `sync` build, a sync handler's stream or
//! extractor) the same call blocks it until the response is in. Natively,
//! requests go to the stub given to `TestClient::with_outbound`.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::{FromRequest, Request, sys};

/// Why an outbound request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Outside the allow-list, or not a valid URL.
    Denied(String),
    /// No complete response in time.
    Timeout,
    /// The connection failed.
    Failed(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Denied(why) => write!(f, "denied: {why}"),
            Self::Timeout => f.write_str("timed out"),
            Self::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

impl std::error::Error for SendError {}

/// The response to an outbound request, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply with `status` and `body`, as a test's stub makes one.
    pub fn new(status: StatusCode, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn from_wire(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Self {
        let mut map = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                map.append(name, value);
            }
        }
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            headers: map,
            body,
        }
    }

    /// The first value of header `name`, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.body)
    }
}

/// A request to send: `OutgoingRequest::get(url).header(..).send().await`.
#[derive(Debug, Clone)]
pub struct OutgoingRequest {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) timeout_ms: Option<u32>,
}

impl OutgoingRequest {
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: None,
        }
    }

    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    pub fn put(url: &str) -> Self {
        Self::new("PUT", url)
    }

    pub fn delete(url: &str) -> Self {
        Self::new("DELETE", url)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON body, with its content type.
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("a serialisable value");
        self.header("content-type", "application/json").body(body)
    }

    /// A shorter timeout than the component's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(timeout.as_millis().min(u32::MAX as u128) as u32);
        self
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    pub fn request_body(&self) -> &[u8] {
        &self.body
    }

    pub async fn send(self) -> Result<Reply, SendError> {
        sys::outbound_send(self).await
    }
}

/// `GET url`.
pub async fn get(url: &str) -> Result<Reply, SendError> {
    OutgoingRequest::get(url).send().await
}

/// Outbound HTTP, as a handler argument: `async fn h(http: Client)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client;

impl Client {
    pub fn get(&self, url: &str) -> OutgoingRequest {
        OutgoingRequest::get(url)
    }

    pub fn post(&self, url: &str) -> OutgoingRequest {
        OutgoingRequest::post(url)
    }

    pub fn request(&self, method: &str, url: &str) -> OutgoingRequest {
        OutgoingRequest::new(method, url)
    }
}

impl FromRequest for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request(_req: &Request) -> Result<Self, Self::Rejection> {
        Ok(Client)
    }
}
