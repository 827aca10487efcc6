//! Headers every response leaves with: the request id, and the host's
//! security headers where the response does not set its own.

use http::{HeaderName, HeaderValue};

use super::stage::{Exchange, Response, Stage};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Adds the request id and security headers.
pub struct ResponseHeaders;

impl Stage for ResponseHeaders {
    fn before(_: &mut Exchange<'_>) -> Result<Self, Response> {
        Ok(ResponseHeaders)
    }

    fn after(self, x: &mut Exchange<'_>, response: &mut Response) {
        let headers = response.headers_mut();
        for (name, value) in &x.host.security_headers {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
        if let Ok(value) = HeaderValue::from_str(&x.request_id) {
            headers.insert(REQUEST_ID, value);
        }
    }
}
