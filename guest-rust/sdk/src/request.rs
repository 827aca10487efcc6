//! The request a handler receives.

use serde::de::DeserializeOwned;

use crate::Response;
use crate::bindings;

/// An HTTP request, as routed by the host.
pub struct Request {
    /// Upper-case method, such as `GET`.
    pub method: String,
    /// The path, without the component's prefix.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Headers with lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Values of the route's `{name}` segments.
    pub params: Vec<(String, String)>,
    /// The id the host gave this request (also in `x-request-id`).
    pub request_id: String,
    /// The client's `ip:port`.
    pub client_addr: String,
    /// The verified JWT claims, as JSON, when the host authenticated the caller.
    pub claims_json: Option<String>,
}

impl Request {
    pub(crate) fn from_wit(req: bindings::Request) -> Self {
        Self {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: req.headers,
            body: req.body,
            params: req.params,
            request_id: req.context.request_id,
            client_addr: req.context.client_addr,
            claims_json: req.context.claims,
        }
    }

    /// The verified JWT claims, when the host authenticated the caller.
    pub fn claims(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.claims_json.as_deref()?).ok()
    }

    /// The authenticated caller's subject (the `sub` claim).
    pub fn user(&self) -> Option<String> {
        Some(self.claims()?.get("sub")?.as_str()?.to_string())
    }

    /// The value of the path segment `{name}`.
    pub fn param(&self, name: &str) -> Option<&str> {
        find(&self.params, name)
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        find(&self.headers, &name)
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key) == name).then(|| decode(value))
        })
    }

    /// The body as UTF-8 text (invalid bytes replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; on failure a 422 response a handler can
    /// return as it is: `let item: Item = req.json()?;`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Response> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Response::json(&serde_json::json!({ "detail": format!("Invalid JSON body: {e}") }))
                .with_status(422)
        })
    }
}

fn find<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Decodes `+` and `%XX` escapes of a query component.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
