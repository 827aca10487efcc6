//! The host's own files: a request under `/_cello/` is answered here,
//! before routing, from the files built into the binary
//! ([`crate::host_files`]): gzipped when the client takes it, as built, and
//! never compressed again per request. The request id and the security
//! headers apply to them as to any response.

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::body::full;
use crate::error::error_response;
use crate::host_files;

use super::host_wide::AsIs;
use super::stage::{Exchange, Response, Stage};

/// How long a browser may use a file without asking again. Not a year and
/// `immutable`: the URLs carry no version (a component built with any SDK
/// must find them on any host), so a new host's files must reach browsers
/// within a day. After that a request with the file's tag gets a 304.
const CACHE_CONTROL: HeaderValue = HeaderValue::from_static("public, max-age=86400");

/// Answers every request under `/_cello/`; lets every other request on.
pub struct HostFiles;

impl Stage for HostFiles {
    fn before(x: &mut Exchange) -> Result<Self, Response> {
        if x.parts.uri.path().starts_with(host_files::PATH) {
            Err(answer(&x.parts))
        } else {
            Ok(HostFiles)
        }
    }

    fn after(self, _: &mut Exchange, _: &mut Response) {}
}

/// The file a request under `/_cello/` asks for, a 304 when the client has
/// it already, or why not (404, 405).
fn answer(request: &http::request::Parts) -> Response {
    let Some((file, version)) = host_files::find(request.uri.path()) else {
        return error_response(StatusCode::NOT_FOUND, "Not Found");
    };
    if !matches!(request.method, Method::GET | Method::HEAD) {
        let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        let allow = HeaderValue::from_static("GET, HEAD");
        response.headers_mut().insert(header::ALLOW, allow);
        return response;
    }
    let gzip = file.gzip.filter(|_| accepts_gzip(&request.headers));
    // Each encoding is a representation of its own, with a tag of its own.
    let (bytes, etag) = match gzip {
        Some(gzip) => (gzip, format!("\"{version}-gzip\"")),
        None => (file.bytes, format!("\"{version}\"")),
    };
    let unchanged = request
        .headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    let (status, body) = if unchanged {
        (StatusCode::NOT_MODIFIED, full(""))
    } else if request.method == Method::HEAD {
        (StatusCode::OK, full(""))
    } else {
        (StatusCode::OK, full(bytes))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.extensions_mut().insert(AsIs);
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::try_from(etag).expect("hex"));
    headers.insert(header::CACHE_CONTROL, CACHE_CONTROL);
    if file.gzip.is_some() {
        let vary = HeaderValue::from_static("accept-encoding");
        headers.insert(header::VARY, vary);
    }
    if status == StatusCode::OK {
        let content_type = HeaderValue::from_static(file.content_type);
        headers.insert(header::CONTENT_TYPE, content_type);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        if gzip.is_some() {
            let encoding = HeaderValue::from_static("gzip");
            headers.insert(header::CONTENT_ENCODING, encoding);
        }
    }
    response
}

/// Whether `Accept-Encoding` takes gzip: named, or else `*`, with a
/// weight above 0.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut any = None;
    let codings = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for coding in codings {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let weight = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            return weight > 0.0;
        }
        if name == "*" {
            any = Some(weight > 0.0);
        }
    }
    any.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::pipeline::tests::{Fixture, detail};

    const BUNDLE: &str = "/_cello/swagger-ui/swagger-ui-bundle.js";

    /// What the stage answers `request`, or `None` when it lets it on.
    fn answered(request: http::Request<()>) -> Option<Response> {
        let fixture = Fixture::new();
        let mut exchange = fixture.exchange(request);
        HostFiles::before(&mut exchange).err()
    }

    fn get(path: &str) -> http::request::Builder {
        http::Request::get(path)
    }

    #[tokio::test]
    async fn swagger_ui_is_served_with_its_type_tag_and_a_days_caching() {
        let response = answered(get(BUNDLE).body(()).unwrap()).expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=86400");
        assert!(headers.contains_key(header::ETAG));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(headers[header::CONTENT_LENGTH], body.len().to_string());
        assert!(body.starts_with(b"/*!"), "not the bundle");
    }

    #[tokio::test]
    async fn a_client_that_takes_gzip_gets_the_file_gzipped_and_tagged_apart() {
        let plain = answered(get(BUNDLE).body(()).unwrap()).unwrap();
        let zipped = get(BUNDLE).header(header::ACCEPT_ENCODING, "br, gzip;q=0.5");
        let response = answered(zipped.body(()).unwrap()).unwrap();
        let headers = response.headers().clone();
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
        assert_eq!(headers[header::VARY], "accept-encoding");
        assert_ne!(headers[header::ETAG], plain.headers()[header::ETAG]);
        assert!(response.extensions().get::<AsIs>().is_some());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(headers[header::CONTENT_LENGTH], body.len().to_string());
        assert!(body.starts_with(&[0x1f, 0x8b]), "not gzip");
    }

    #[test]
    fn gzip_is_taken_when_named_or_under_a_star_without_a_zero_weight() {
        let takes = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
            accepts_gzip(&headers)
        };
        assert!(takes("gzip, deflate, br, zstd"));
        assert!(takes("GZIP;q=0.1"));
        assert!(takes("br, *"));
        assert!(!takes("br, zstd"));
        assert!(!takes("gzip;q=0, *"));
        assert!(!takes("*;q=0"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn a_client_with_the_current_file_gets_304() {
        let first = answered(get(BUNDLE).body(()).unwrap()).unwrap();
        let tag = first.headers()[header::ETAG].clone();
        let again = get(BUNDLE).header(header::IF_NONE_MATCH, tag.clone());
        let response = answered(again.body(()).unwrap()).unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[header::ETAG], tag);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty());
        let stale = get(BUNDLE).header(header::IF_NONE_MATCH, "\"0\"");
        let response = answered(stale.body(()).unwrap()).unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn an_unknown_file_is_404_and_a_post_is_405() {
        let missing = answered(get("/_cello/swagger-ui/index.html").body(()).unwrap()).unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(detail(missing).await, "Not Found");
        let post = http::Request::post(BUNDLE).body(()).unwrap();
        let refused = answered(post).unwrap();
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(refused.headers()[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn every_other_path_goes_on_to_routing() {
        for path in ["/", "/docs", "/_cellophane", "/t/acme/_cello/x"] {
            assert!(answered(get(path).body(()).unwrap()).is_none(), "{path}");
        }
    }
}
