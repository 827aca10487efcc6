//! The request a handler receives.

use http::Method;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::body::BodySlot;
use crate::headers::Headers;
use crate::{FromRequest, Response};

/// An HTTP request, as routed by the host. Take it whole as a handler's
/// argument, or take only the parts a handler needs with extractors.
#[derive(Clone)]
pub struct Request {
    pub method: Method,
    /// The path, without the component's prefix.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// The headers, read as a [`HeaderMap`] (`req.headers.get("accept")`).
    pub headers: Headers,
    pub body: Vec<u8>,
    /// Values of the route's `{name}` segments, percent-decoded.
    pub params: Vec<(String, String)>,
    /// The id the host gave this request (also in `x-request-id`).
    pub request_id: String,
    /// The client's `ip:port`.
    pub client_addr: String,
    /// The tenant the component belongs to, when a tenant uploaded it.
    pub tenant: Option<String>,
    /// The verified JWT claims, as JSON, when the host authenticated the caller.
    pub claims_json: Option<String>,
    pub(crate) state: AppState,
    /// The host's reader of the body, on a route that streams it.
    pub(crate) body_slot: BodySlot,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// What the host (or the test client) knows of a request, as plain text.
pub(crate) struct Incoming {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) request_id: String,
    pub(crate) client_addr: String,
    pub(crate) tenant: Option<String>,
    pub(crate) claims: Option<String>,
}

/// The request's method; GET for text that is not a method (the host
/// sends only valid ones).
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) fn method(text: &str) -> Method {
    Method::from_bytes(text.as_bytes()).unwrap_or(Method::GET)
}

impl Request {
    pub(crate) fn new(incoming: Incoming, state: AppState) -> Self {
        let headers = Headers::from_wire(incoming.headers);
        let params = incoming
            .params
            .into_iter()
            .map(|(name, value)| {
                let decoded = match percent_encoding::percent_decode_str(&value).decode_utf8() {
                    Ok(decoded) => decoded.into_owned(),
                    Err(_) => value.clone(),
                };
                (name, decoded)
            })
            .collect();
        Self {
            method: incoming.method,
            path: incoming.path,
            query: incoming.query,
            headers,
            body: incoming.body,
            params,
            request_id: incoming.request_id,
            client_addr: incoming.client_addr,
            tenant: incoming.tenant,
            claims_json: incoming.claims,
            state,
            body_slot: BodySlot::default(),
        }
    }

    /// Runs extractor `E` on this request, as a handler argument would:
    /// how a custom extractor builds on others.
    pub async fn extract<E: FromRequest>(&self) -> Result<E, E::Rejection> {
        E::from_request(self).await
    }

    /// The verified JWT claims, when the host authenticated the caller.
    pub fn claims(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.claims_json.as_deref()?).ok()
    }

    /// The authenticated caller's subject (the `sub` claim).
    pub fn user(&self) -> Option<String> {
        Some(self.claims()?.get("sub")?.as_str()?.to_string())
    }

    /// The W3C trace id (32 hex digits) of the request's `traceparent`:
    /// with the host's traces on, the id it exports the request's spans
    /// under; otherwise the caller's, if it sent one. `None` without a
    /// valid `traceparent`.
    pub fn trace_id(&self) -> Option<&str> {
        let mut parts = self.header("traceparent")?.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let valid = version.len() == 2
            && version != "ff"
            && parts.count() >= 2
            && trace.len() == 32
            && trace
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && trace.bytes().any(|b| b != b'0');
        valid.then_some(trace)
    }

    /// The value of the path segment `{name}`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of header `name` (any case), if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get_str(name)
    }

    /// The first value of query parameter `name`, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The body as UTF-8 text (invalid bytes replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; on failure the 422 a handler can return as
    /// it is: `let item: Item = req.json()?;`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Response> {
        crate::json::parse(&self.body).map_err(crate::IntoResponse::into_response)
    }
}
