//! Headers every response leaves with: the request id, and the host's
//! security headers where the response does not set its own.

use http::{HeaderName, HeaderValue};

use super::stage::{Exchange, Response, Stage};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Adds the request id and security headers.
pub struct ResponseHeaders;

impl Stage for ResponseHeaders {
    fn before(_: &mut Exchange) -> Result<Self, Response> {
        Ok(ResponseHeaders)
    }

    fn after(self, x: &mut Exchange, response: &mut Response) {
        let headers = response.headers_mut();
        for (name, value) in &x.host.security_headers {
            // One lookup, where `contains_key` then `insert` took two.
            if let http::header::Entry::Vacant(slot) = headers.entry(name) {
                slot.insert(value.clone());
            }
        }
        if let Ok(value) = HeaderValue::from_str(&x.request_id) {
            headers.insert(REQUEST_ID, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::full;
    use crate::config::HostConfig;
    use crate::pipeline::tests::Fixture;

    /// What `fixture`'s response headers stage makes of `response` for a
    /// request with `X-Request-Id: checkout-42`.
    fn through(fixture: &Fixture, mut response: Response) -> http::HeaderMap {
        let request = http::Request::get("/")
            .header("x-request-id", "checkout-42")
            .body(())
            .unwrap();
        let mut exchange = fixture.exchange(request);
        let Ok(stage) = ResponseHeaders::before(&mut exchange) else {
            panic!("response headers never answer a request");
        };
        stage.after(&mut exchange, &mut response);
        response.into_parts().0.headers
    }

    #[test]
    fn security_headers_are_added_where_the_response_has_none() {
        let headers = through(&Fixture::new(), Response::new(full("hello")));
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(!headers.contains_key("strict-transport-security"));
    }

    #[test]
    fn a_response_keeps_its_own_security_headers() {
        let mut response = Response::new(full("embeddable"));
        response
            .headers_mut()
            .insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
        let headers = through(&Fixture::new(), response);
        assert_eq!(headers.get_all("x-frame-options").iter().count(), 1);
        assert_eq!(headers["x-frame-options"], "SAMEORIGIN");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }

    #[test]
    fn every_response_carries_the_request_id() {
        let mut response = Response::new(full("hello"));
        response
            .headers_mut()
            .insert(REQUEST_ID, HeaderValue::from_static("the guest's own"));
        let headers = through(&Fixture::new(), response);
        assert_eq!(headers[REQUEST_ID], "checkout-42");
    }

    #[test]
    fn security_headers_follow_the_host_config() {
        let mut config = HostConfig::default();
        config.security_headers.hsts_max_age_s = Some(3600);
        let headers = through(&Fixture::with(&config), Response::new(full("")));
        assert_eq!(headers["strict-transport-security"], "max-age=3600");
        config.security_headers.enabled = false;
        let headers = through(&Fixture::with(&config), Response::new(full("")));
        assert!(!headers.contains_key("x-frame-options"));
        assert_eq!(headers[REQUEST_ID], "checkout-42");
    }
}
