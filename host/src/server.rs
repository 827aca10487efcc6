//! The HTTP front: accepts connections (HTTP/1.1 and HTTP/2), turns each
//! request into a call on the component the router picks, and shuts down
//! gracefully, letting requests in flight finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use tower::{Layer, ServiceExt};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{
    And, DefaultPredicate, NotForContentType, Predicate, SizeAbove,
};
use tracing::Instrument as _;

use crate::app::RouteGuard;
use crate::bindings::{self, cello::component::types::Context};
use crate::config::ServerSettings;
use crate::connections::accept;
use crate::error::{CallError, error_response};
use crate::logging::AccessLine;
use crate::metrics::ComponentMetrics;
use crate::middleware::auth::{Refusal, Verified, authorize};
use crate::middleware::rate_limit::{Caller, Verdict};
use crate::readiness::Readiness;
use crate::registry::{Registry, Resolved, Routes, TenantRoutes};
use crate::response_cache::{Fetched, Key};
use crate::router::{RouteMatch, Target};
use crate::state::Owner;
use crate::telemetry;

/// Any error a response body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the host sends.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A response still being made, boxed so moving it moves a pointer.
type BoxedResponse = std::pin::Pin<Box<dyn Future<Output = http::Response<Body>> + Send>>;

static REQUEST_IDS: AtomicU64 = AtomicU64::new(0);

/// Set once the server stops accepting: instances dropped from then on are
/// shutdown, not failures.
pub static SHUTTING_DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the host does to every request on the way in (503 until the
/// served components have loaded) and every response on the way out:
/// security headers, compression, the access log.
pub struct Front {
    pub compression: Option<CompressionLayer<Compressible>>,
    pub security_headers: Vec<(HeaderName, HeaderValue)>,
    pub access_log: bool,
    /// Says when the served components have loaded.
    pub ready: Arc<Readiness>,
}

/// Which responses are worth compressing: large enough, and not of a type
/// that is compressed already (images, archives, event streams, gRPC).
pub type Compressible = And<And<DefaultPredicate, SizeAbove>, NotForContentType>;

impl Front {
    /// The front as the host config asks, answering 503 until `ready`
    /// says the served components have loaded.
    pub fn new(config: &crate::config::HostConfig, ready: Arc<Readiness>) -> Self {
        let compression = config.compression.enabled.then(|| {
            let predicate = DefaultPredicate::new()
                .and(SizeAbove::new(config.compression.min_bytes))
                .and(NotForContentType::const_new("application/zip"));
            CompressionLayer::new().compress_when(predicate)
        });
        Self {
            compression,
            security_headers: config.security_headers.headers(),
            access_log: config.access_log.enabled,
            ready,
        }
    }
}

/// Serves what `registry` holds on `listener` until `shutdown` resolves,
/// then stops accepting and waits for open requests to finish.
pub async fn serve(
    listener: TcpListener,
    settings: &ServerSettings,
    registry: Arc<Registry>,
    front: Arc<Front>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    accept(listener, settings, shutdown, move |req, peer| {
        let routes = registry.routes();
        let front = front.clone();
        // None when traces are off; then instrumenting costs a branch.
        let span = telemetry::request_span(req.headers(), req.method(), req.uri().path());
        let recorded = span.clone();
        async move {
            if !front.ready.started() {
                return starting();
            }
            // Without Accept-Encoding nothing would be compressed: skip the layer.
            let compress = front
                .compression
                .as_ref()
                .filter(|_| req.headers().contains_key(header::ACCEPT_ENCODING));
            let response = match compress {
                Some(layer) => {
                    let inner = tower::service_fn(|req| async {
                        Ok::<_, Infallible>(handle(&routes, &front, req, peer).await)
                    });
                    let response = layer.layer(inner).oneshot(req).await;
                    let response = response.unwrap_or_else(|never| match never {});
                    response.map(|body| body.map_err(BoxError::from).boxed_unsync())
                }
                None => handle(&routes, &front, req, peer).await,
            };
            recorded.record("http.response.status_code", response.status().as_u16());
            response
        }
        .instrument(span)
    })
    .await
}

/// Answers one request.
async fn handle(
    routes: &Routes,
    front: &Front,
    req: http::Request<Incoming>,
    peer: SocketAddr,
) -> http::Response<Body> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(new_request_id);
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let mut component = None;
    let mut route = None;
    let host = routes.by_host().then(|| {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok());
        host.or(req.uri().host()).map(str::to_owned)
    });
    let host = host.flatten();
    let looked_up = match routes.resolve(host.as_deref(), &path) {
        Resolved::Main(router) => Ok(router.at(req.method(), &path)),
        Resolved::Tenant { routes, path } => match admit(routes) {
            Ok(()) => match routes.router.at(req.method(), path) {
                RouteMatch::NotFound if routes.restoring => Err(restoring(routes)),
                found => Ok(found),
            },
            Err(refused) => Err(*refused),
        },
        Resolved::NoTenant { name, main } => match main.at(req.method(), &path) {
            RouteMatch::NotFound => Err(error_response(
                StatusCode::NOT_FOUND,
                &format!("Not Found: there is no tenant named {name:?}."),
            )),
            found => Ok(found),
        },
    };
    let mut response = match looked_up {
        Err(refused) => {
            ComponentMetrics::unrouted().answered(refused.status().as_u16(), started.elapsed());
            refused
        }
        Ok(RouteMatch::Found {
            target,
            params,
            app_path,
        }) => {
            let target = target.clone();
            let owner = target.owner().clone();
            component = Some(owner.clone());
            if let Target::App {
                component,
                route: index,
                ..
            } = &target
            {
                route = Some(component.route_path(*index));
            }
            let mut watch = AbortWatch(Some(&owner));
            let call = Call {
                params,
                app_path,
                peer,
                request_id: request_id.clone(),
                path: path.clone(),
            };
            // Boxed once here: the call's future is large (it holds the
            // guest call's), and unboxed it would be copied by every layer
            // that moves it.
            let guarded = |req| -> BoxedResponse { Box::pin(guarded(target, req, call)) };
            let response = match &owner.middleware().cors {
                Some(cors) => cors.around(req, guarded).await,
                None => guarded(req).await,
            };
            watch.0 = None;
            owner
                .metrics
                .answered(response.status().as_u16(), started.elapsed());
            response
        }
        Ok(RouteMatch::NotFound) => {
            ComponentMetrics::unrouted().answered(404, started.elapsed());
            error_response(StatusCode::NOT_FOUND, "Not Found")
        }
        Ok(RouteMatch::MethodNotAllowed { allow, owner }) => {
            ComponentMetrics::unrouted().answered(405, started.elapsed());
            let not_allowed = async |_req| {
                let mut response =
                    error_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
                if let Ok(allow) = HeaderValue::from_str(&allow) {
                    response.headers_mut().insert(header::ALLOW, allow);
                }
                response
            };
            // A CORS preflight is an OPTIONS the routes do not declare.
            match &owner.middleware().cors {
                Some(cors) => cors.around(req, not_allowed).await,
                None => not_allowed(req).await,
            }
        }
    };
    let headers = response.headers_mut();
    for (name, value) in &front.security_headers {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID, value);
    }
    if front.access_log
        || component
            .as_ref()
            .is_some_and(|o| o.middleware().access_log)
    {
        crate::logging::access(&AccessLine {
            method: method.as_str(),
            path: &path,
            status: response.status().as_u16(),
            bytes: hyper::body::Body::size_hint(response.body()).exact(),
            duration_us: started.elapsed().as_micros() as u64,
            component: component.as_ref().map(|o| &*o.component),
            route: route.as_deref(),
            request_id: &request_id,
        });
    }
    response
}

/// Refuses a request to a tenant over its requests-per-second quota.
fn admit(tenant: &TenantRoutes) -> Result<(), Box<http::Response<Body>>> {
    let Some(limiter) = &tenant.limiter else {
        return Ok(());
    };
    limiter.check().map_err(|not_until| {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Too many requests to tenant {}; try again in {seconds} s.",
                tenant.name
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        Box::new(response)
    })
}

/// The answer for a route a tenant may have once its components are
/// restored after a restart.
/// The answer while the served components are still loading.
fn starting() -> http::Response<Body> {
    let mut response = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "The host is starting: its components are still loading; try again shortly.",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn restoring(tenant: &TenantRoutes) -> http::Response<Body> {
    let mut response = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!(
            "Tenant {} is starting: its components are still being restored; try again shortly.",
            tenant.name
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Auth and rate limits, then the component.
async fn guarded(target: Target, req: http::Request<Incoming>, call: Call) -> http::Response<Body> {
    let owner = target.owner().clone();
    let middleware = owner.middleware();
    let guard = match &target {
        Target::App {
            component, route, ..
        } => component.guard(*route),
        Target::Proxy(_) => None,
    };
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let needs_token = middleware.auth.as_ref().is_some_and(|a| a.required)
        || guard.is_some_and(RouteGuard::needs_auth);
    let auth_span = telemetry::stage("auth").entered();
    let claims = match &middleware.auth {
        Some(auth) if needs_token || token.is_some() => match auth.verify(token) {
            Ok(claims) => Some(claims),
            Err(refusal) => return refused(refusal),
        },
        None if needs_token => {
            return refused(Refusal::Unauthenticated(
                "this route requires a token, but its component has no [auth] configured".into(),
            ));
        }
        _ => None,
    };
    if let (Some(guard), Some(verified)) = (guard, &claims)
        && let Err(refusal) = authorize(&verified.claims, &guard.roles, &guard.scopes)
    {
        return refused(refusal);
    }
    drop(auth_span);
    let rate_limit_span = telemetry::stage("rate limit").entered();
    let caller = Caller {
        peer: call.peer,
        headers: req.headers(),
        claims: claims.as_ref().map(|v| &v.claims),
        tenant: owner.tenant.as_ref().map(|t| &*t.name),
        trusted_proxies: &middleware.trusted_proxies,
    };
    let limiters = [
        middleware.rate_limit.as_ref(),
        guard.and_then(|g| g.limiter.as_ref()),
    ];
    let mut tightest: Option<Verdict> = None;
    for limiter in limiters.into_iter().flatten() {
        let verdict = limiter.check(&caller);
        if !verdict.allowed {
            let mut response = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Too many requests; try again in {} s.",
                    verdict.reset_s.max(1)
                ),
            );
            verdict.apply(response.headers_mut());
            return response;
        }
        if tightest
            .as_ref()
            .is_none_or(|t| verdict.remaining < t.remaining)
        {
            tightest = Some(verdict);
        }
    }
    drop(rate_limit_span);
    let mut response = dispatch(target, req, call, claims).await;
    if let Some(verdict) = tightest {
        verdict.apply(response.headers_mut());
    }
    response
}

/// A 401 with `WWW-Authenticate`, or a 403.
fn refused(refusal: Refusal) -> http::Response<Body> {
    match refusal {
        Refusal::Unauthenticated(why) => {
            let mut response =
                error_response(StatusCode::UNAUTHORIZED, &format!("Unauthorized: {why}."));
            let challenge = format!(
                "Bearer realm=\"cello\", error=\"invalid_token\", error_description=\"{}\"",
                why.replace('"', "'")
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            response
        }
        Refusal::Forbidden(why) => {
            error_response(StatusCode::FORBIDDEN, &format!("Forbidden: {why}."))
        }
    }
}

/// Counts a client abort if the request is dropped before it is answered
/// (hyper drops the future when the client hangs up).
struct AbortWatch<'a>(Option<&'a Arc<Owner>>);

impl Drop for AbortWatch<'_> {
    fn drop(&mut self) {
        if let Some(owner) = self.0 {
            owner.metrics.client_aborts.inc();
        }
    }
}

/// What the router learnt about a request.
struct Call {
    params: Vec<(String, String)>,
    app_path: String,
    peer: SocketAddr,
    request_id: String,
    path: String,
}

async fn dispatch(
    target: Target,
    req: http::Request<Incoming>,
    call: Call,
    claims: Option<Arc<Verified>>,
) -> http::Response<Body> {
    let Call {
        params,
        app_path,
        peer,
        request_id,
        path,
    } = call;
    let result = match target {
        Target::Proxy(proxy) => {
            let mut req = req;
            let limit = proxy.max_body_bytes();
            if declared_length(req.headers()).is_some_and(|length| length > limit as u64) {
                return too_large(limit);
            }
            if app_path.len() != path.len()
                && let Some(uri) = without_prefix(req.uri(), &app_path)
            {
                *req.uri_mut() = uri;
            }
            if !req.headers().contains_key(header::HOST) {
                // HTTP/1.0 and HTTP/2 may omit Host; wasi:http needs an authority.
                req.headers_mut()
                    .insert(header::HOST, HeaderValue::from_static("localhost"));
            }
            Box::pin(proxy.handle(req))
                .instrument(telemetry::stage("guest call"))
                .await
        }
        Target::App {
            component,
            route,
            is_async,
        } => {
            let (parts, body) = req.into_parts();
            let limit = component.max_body_bytes();
            let body = match read_body(body, limit, component.timeout()).await {
                Ok(collected) => collected,
                Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(limit),
                Err(e) if e.is::<tokio::time::error::Elapsed>() => {
                    return error_response(
                        StatusCode::REQUEST_TIMEOUT,
                        &format!(
                            "The request body did not arrive within {} ms; send it faster.",
                            component.timeout().as_millis()
                        ),
                    );
                }
                Err(e) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        &format!("The request body could not be read: {e}"),
                    );
                }
            };
            let request = bindings::Request {
                method: parts.method.to_string(),
                path: app_path,
                query: parts.uri.query().unwrap_or("").to_string(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        let value = match v.to_str() {
                            Ok(text) => text.to_owned(),
                            Err(_) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        };
                        (k.as_str().to_owned(), value)
                    })
                    .collect(),
                body: body.to_vec(),
                route,
                params,
                context: Context {
                    request_id: request_id.to_string(),
                    client_addr: address_text(peer),
                    tenant: component
                        .owner()
                        .tenant
                        .as_ref()
                        .map(|t| t.name.to_string()),
                    claims: claims.as_ref().map(|v| v.json.clone()),
                },
            };
            let cacheable = matches!(parts.method, Method::GET | Method::HEAD);
            match component.cache_policy(route).filter(|_| cacheable) {
                Some(policy) => {
                    let owner = component.owner();
                    let claims = claims.as_deref().map(|v| &v.claims);
                    let key = Key::new(owner, route, &request.path, &parts, policy, claims);
                    let fetch = || {
                        let request = request.clone();
                        let component = &component;
                        let call = component.handle(request, is_async);
                        async move { fetched(call.instrument(telemetry::stage("guest call")).await?) }
                    };
                    // Boxed: the cache's future holds a whole guest call
                    // of its own, and inline it would double the size of
                    // every request's future (moved by value more than once).
                    Box::pin(owner.cache.respond(owner, key, policy, &parts, fetch))
                        .instrument(telemetry::stage("cache"))
                        .await
                }
                None => {
                    let response = component
                        .handle(request, is_async)
                        .instrument(telemetry::stage("guest call"))
                        .await;
                    response.and_then(fetched).map(Fetched::into_response)
                }
            }
        }
    };
    result.unwrap_or_else(|e| {
        tracing::error!(request_id, path, "request failed: {e}");
        e.to_response()
    })
}

/// The whole body, at most `limit` bytes, within `timeout`: a client that
/// sends a byte now and then would otherwise hold its connection forever.
/// An empty body (a GET) sets no timer.
async fn read_body(body: Incoming, limit: usize, timeout: Duration) -> Result<Bytes, BoxError> {
    use hyper::body::Body as _;
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await;
    Ok(collected??.to_bytes())
}

/// A 413 for a body over `limit` bytes.
fn too_large(limit: usize) -> http::Response<Body> {
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

/// Room for the headers the host adds to a response on its way out (request
/// id, CORS, rate limits, security headers, compression), so adding them
/// does not grow the map again and again.
const HOST_HEADERS: usize = 12;

/// A guest's response as HTTP parts; an invalid status or header from the
/// guest is an error (a 500), never a panic.
fn fetched(response: bindings::Response) -> Result<Fetched, CallError> {
    let status = StatusCode::from_u16(response.status)
        .map_err(|_| CallError::InvalidResponse(format!("status {}", response.status)))?;
    let mut headers = HeaderMap::with_capacity(response.headers.len() + HOST_HEADERS);
    for (name, value) in response.headers {
        let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value))
        else {
            return Err(CallError::InvalidResponse("a header name or value".into()));
        };
        headers.append(name, value);
    }
    Ok(Fetched {
        status,
        headers,
        body: response.body.into(),
    })
}

/// `peer` as text, like its `Display` but without the formatting
/// machinery for the common IPv4 case: it is made for every request.
fn address_text(peer: SocketAddr) -> String {
    let SocketAddr::V4(v4) = peer else {
        return peer.to_string();
    };
    let mut numbers = itoa::Buffer::new();
    let mut text = String::with_capacity(21);
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        text.push_str(numbers.format(octet));
    }
    text.push(':');
    text.push_str(numbers.format(v4.port()));
    text
}

/// A request id unique within this process and unlikely to repeat across
/// restarts: start time and a counter.
fn new_request_id() -> String {
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let n = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    let mut id = String::with_capacity(21);
    push_hex(&mut id, start, 12);
    id.push('-');
    push_hex(&mut id, n, 8);
    id
}

/// Appends the low `digits` hex digits of `value`.
fn push_hex(out: &mut String, value: u64, digits: u32) {
    for shift in (0..digits).rev() {
        let nibble = (value >> (shift * 4)) & 0xf;
        out.push(char::from_digit(nibble as u32, 16).expect("a nibble is a hex digit"));
    }
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
}
