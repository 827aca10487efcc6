//! The call: the end of the pipeline, where the request reaches its
//! component. A `wasi:http` proxy is handed the request as it streams in;
//! a Cello app gets its whole body (413 past the component's limit, 408
//! when it arrives too slowly) as a WIT request, through the response cache
//! when the route is cacheable; an async route of an app that streams gets
//! its body as it arrives and may answer with a stream.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use tracing::Instrument as _;

use crate::app::packed::{self, Address, Fields, Packed};
use crate::app::{Answer, AppComponent};
use crate::bindings::{self, cello::component::types::Context};
use crate::body::{BoxError, RequestBody};
use crate::error::{CallError, error_response};
use crate::proxy::ProxyComponent;
use crate::response_cache::{CacheKey, Fetched};
use crate::router::{AppPath, Target};
use crate::telemetry;

use super::host_wide::AsIs;
use super::stage::{Exchange, Response, Routed};

/// Calls the component routing chose and answers with its response (or a
/// 405 for a method the path does not take).
pub async fn call(x: &mut Exchange) -> Response {
    let (target, params, app_path) = match &mut x.routed {
        Some(Routed::Found {
            target,
            params,
            app_path,
        }) => (
            target.clone(),
            std::mem::take(params),
            std::mem::take(app_path),
        ),
        Some(Routed::MethodNotAllowed { allow, .. }) => return not_allowed(allow),
        None => return error_response(StatusCode::NOT_FOUND, "Not Found"),
    };
    // With traces on, the guest sees this request's own `traceparent`
    // (a child of the caller's): the trace id it logs and passes on is
    // the one the host exports.
    telemetry::inject(&mut x.parts.headers);
    let result = match target {
        Target::Proxy(proxy) => to_proxy(x, &proxy, &app_path).await,
        Target::App {
            component,
            route,
            is_async,
        } => to_app(x, &component, route, is_async, params, app_path).await,
    };
    result.unwrap_or_else(|e| {
        let path = x.parts.uri.path();
        tracing::error!(request_id = &*x.request_id, path, "request failed: {e}");
        e.to_response()
    })
}

/// Hands the request, streaming, to a `wasi:http` component.
async fn to_proxy(
    x: &mut Exchange,
    proxy: &ProxyComponent,
    app_path: &str,
) -> Result<Response, CallError> {
    let limit = proxy.max_body_bytes();
    if declared_length(&x.parts.headers).is_some_and(|length| length > limit as u64) {
        return Ok(too_large(limit));
    }
    // The request goes to the guest whole; the exchange keeps its method
    // and URI (cheap clones) for the stages on the way out.
    let mut parts = std::mem::replace(&mut x.parts, http::Request::new(()).into_parts().0);
    x.parts.method = parts.method.clone();
    x.parts.uri = parts.uri.clone();
    if app_path.len() != parts.uri.path().len()
        && let Some(uri) = without_prefix(&parts.uri, app_path)
    {
        parts.uri = uri;
    }
    if !parts.headers.contains_key(header::HOST) {
        // HTTP/1.0 and HTTP/2 may omit Host; wasi:http needs an authority.
        parts
            .headers
            .insert(header::HOST, HeaderValue::from_static("localhost"));
    }
    let body = x.body.take().unwrap_or_else(empty_body);
    let request = http::Request::from_parts(parts, body);
    Box::pin(proxy.handle(request, &x.request_id))
        .instrument(telemetry::stage("guest call"))
        .await
}

/// Calls a Cello app's route with the whole request, through the cache
/// when the route's responses may be cached.
async fn to_app(
    x: &mut Exchange,
    component: &AppComponent,
    route: u32,
    is_async: bool,
    params: Vec<(String, String)>,
    app_path: AppPath,
) -> Result<Response, CallError> {
    let limit = component.max_body_bytes();
    let cacheable = matches!(x.parts.method, Method::GET | Method::HEAD);
    let policy = component.cache_policy(route).filter(|_| cacheable);
    if is_async && component.streams() && policy.is_none() {
        return to_streaming_app(x, component, route, params, app_path).await;
    }
    let body = x.body.take();
    let body = match read_body(body, limit, component.timeout()).await {
        Ok(collected) => collected,
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Ok(too_large(limit)),
        Err(e) if e.is::<tokio::time::error::Elapsed>() => {
            return Ok(CallError::BodyTimedOut(component.timeout()).to_response());
        }
        Err(e) => {
            let detail = format!("The request body could not be read: {e}");
            return Ok(error_response(StatusCode::BAD_REQUEST, &detail));
        }
    };
    if policy.is_none()
        && !is_async
        && component.packs()
        && let Some(packed) = packed_request(x, component, route, &params, &app_path, &body)
    {
        let response = component
            .handle_packed(packed)
            .instrument(telemetry::stage("guest call"))
            .await;
        return response.and_then(fetched).map(Fetched::into_response);
    }
    let parts = &x.parts;
    let owner = component.owner();
    let request = wit_request(x, component, route, params, app_path, body.to_vec());
    let Some(policy) = policy else {
        let response = component
            .handle(request, is_async)
            .instrument(telemetry::stage("guest call"))
            .await;
        return response.and_then(fetched).map(Fetched::into_response);
    };
    let claims = x.claims.as_deref().map(|v| &v.claims);
    let key = CacheKey::new(owner, route, &request.path, parts, policy, claims);
    let fetch = || {
        let request = request.clone();
        let call = component.handle(request, is_async);
        async move { fetched(call.instrument(telemetry::stage("guest call")).await?) }
    };
    // Boxed: the cache's future holds a whole guest call of its own, and
    // inline it would double the size of every request's future (moved by
    // value more than once).
    Box::pin(owner.cache.respond(owner, key, policy, parts, fetch))
        .instrument(telemetry::stage("cache"))
        .await
}

/// Calls an async route of an app that streams: the guest reads the body
/// as it arrives (the component's limits apply to each read) and answers
/// whole or with a stream, which goes out uncompressed, chunk by chunk.
async fn to_streaming_app(
    x: &mut Exchange,
    component: &AppComponent,
    route: u32,
    params: Vec<(String, String)>,
    app_path: AppPath,
) -> Result<Response, CallError> {
    let limit = component.max_body_bytes();
    if declared_length(&x.parts.headers).is_some_and(|length| length > limit as u64) {
        return Ok(too_large(limit));
    }
    let body = x.body.take();
    let request = wit_request(x, component, route, params, app_path, Vec::new());
    let answer = component
        .handle_streaming(request, body)
        .instrument(telemetry::stage("guest call"))
        .await?;
    match answer {
        Answer::Whole(response) => fetched(response).map(Fetched::into_response),
        Answer::Streamed(mut response) => {
            // Compressing would hold chunks back until the encoder's buffer fills.
            response.extensions_mut().insert(AsIs);
            Ok(response)
        }
    }
}

/// The request as the WIT contract carries it; boxed, as it is moved into
/// one future after another on its way to the guest.
fn wit_request(
    x: &Exchange,
    component: &AppComponent,
    route: u32,
    params: Vec<(String, String)>,
    app_path: AppPath,
    body: Vec<u8>,
) -> Box<bindings::Request> {
    let parts = &x.parts;
    Box::new(bindings::Request {
        method: parts.method.as_str().to_owned(),
        path: app_path.into_owned(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: header_pairs(&parts.headers),
        body,
        route,
        params,
        context: Context {
            request_id: x.request_id.to_string(),
            client_addr: address_text(x.peer),
            tenant: component
                .owner()
                .tenant
                .as_ref()
                .map(|t| t.name.to_string()),
            claims: x.claims.as_ref().map(|v| v.json.clone()),
        },
    })
}

/// The request packed for a `def` call, straight from the exchange: no
/// `request` record, whose strings would each be copied twice. None when a
/// part is too long to pack.
fn packed_request(
    x: &Exchange,
    component: &AppComponent,
    route: u32,
    params: &[(String, String)],
    app_path: &str,
    body: &[u8],
) -> Option<Packed> {
    let parts = &x.parts;
    let fields = Fields {
        body,
        method: parts.method.as_str(),
        path: app_path,
        query: parts.uri.query().unwrap_or(""),
        request_id: &x.request_id,
        client_addr: Address::Socket(x.peer),
        tenant: component.owner().tenant.as_ref().map(|t| &*t.name),
        claims: x.claims.as_ref().map(|v| v.json.as_str()),
        params,
    };
    let headers = &parts.headers;
    let (body_len, bytes) =
        fields.pack(packed::header_size(headers), packed::header_text(headers))?;
    Some(Packed {
        route,
        request_id: x.request_id.clone(),
        body_len,
        bytes,
    })
}

/// A request body with nothing in it.
fn empty_body() -> RequestBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A 405 listing the methods the path takes.
fn not_allowed(allow: &str) -> Response {
    let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    if let Ok(allow) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// Headers as the WIT contract carries them: names and text values (bytes
/// that are not UTF-8 read lossily).
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    (packed::header_text(headers))
        .map(|(name, value)| (name.to_owned(), value.into_owned()))
        .collect()
}

/// The whole body, at most `limit` bytes, within `timeout`: a client that
/// sends a byte now and then would otherwise hold its connection forever.
/// No body, or an empty one (a GET), sets no timer.
async fn read_body(
    body: Option<RequestBody>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BoxError> {
    use hyper::body::Body as _;
    let Some(body) = body.filter(|b| !b.is_end_stream()) else {
        return Ok(Bytes::new());
    };
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await;
    Ok(collected??.to_bytes())
}

/// A 413 for a body over `limit` bytes.
fn too_large(limit: usize) -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("The request body is larger than the {limit} bytes allowed."),
    )
}

/// The body's length as the request's `Content-Length` declares it.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// `uri` with its path replaced by `app_path` (the path without the prefix
/// the component is served under), its query kept.
fn without_prefix(uri: &http::Uri, app_path: &str) -> Option<http::Uri> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{app_path}?{query}"),
        None => app_path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.try_into().ok()?);
    http::Uri::from_parts(parts).ok()
}

/// A guest's response as HTTP parts; an invalid status or header from the
/// guest is an error (a 500), never a panic.
fn fetched(response: bindings::Response) -> Result<Fetched, CallError> {
    let status = StatusCode::from_u16(response.status)
        .map_err(|_| CallError::InvalidResponse(format!("status {}", response.status)))?;
    let headers =
        crate::app::response_headers(response.headers).map_err(CallError::InvalidResponse)?;
    Ok(Fetched {
        status,
        headers,
        body: response.body.into(),
    })
}

/// `peer` as text, as its `Display` writes it.
fn address_text(peer: SocketAddr) -> String {
    let mut text = Vec::with_capacity(21);
    packed::write_address(&mut text, peer);
    String::from_utf8(text).expect("an address is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_text_reads_as_display_does() {
        for peer in [
            "127.0.0.1:8080",
            "0.0.0.0:0",
            "255.10.0.9:65535",
            "[::1]:443",
        ] {
            let peer: SocketAddr = peer.parse().unwrap();
            assert_eq!(address_text(peer), peer.to_string());
        }
    }

    #[test]
    fn a_proxy_sees_its_path_without_the_prefix_and_with_its_query() {
        let uri: http::Uri = "/t/acme/proxy/a/b?x=1".parse().unwrap();
        assert_eq!(without_prefix(&uri, "/a/b").unwrap(), "/a/b?x=1");
        let uri: http::Uri = "http://example.test/proxy".parse().unwrap();
        assert_eq!(without_prefix(&uri, "/").unwrap(), "http://example.test/");
    }

    #[test]
    fn the_declared_length_is_read_from_content_length() {
        let mut headers = HeaderMap::new();
        assert_eq!(declared_length(&headers), None);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2048"));
        assert_eq!(declared_length(&headers), Some(2048));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("lots"));
        assert_eq!(declared_length(&headers), None);
    }

    #[test]
    fn a_guest_response_with_a_bad_status_or_header_is_an_error_not_a_panic() {
        let response = |status, headers: Vec<(&str, &str)>| bindings::Response {
            status,
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: b"ok".to_vec(),
            background: false,
        };
        let good = fetched(response(201, vec![("x-a", "1"), ("x-a", "2")])).unwrap();
        assert_eq!(good.status, StatusCode::CREATED);
        assert_eq!(good.headers.get_all("x-a").iter().count(), 2);
        assert!(fetched(response(1000, vec![])).is_err());
        assert!(fetched(response(200, vec![("bad name", "1")])).is_err());
        assert!(fetched(response(200, vec![("x-a", "line\nbreak")])).is_err());
    }
}
