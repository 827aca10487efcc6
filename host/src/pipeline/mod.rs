//! The request pipeline: every stage a request passes between the
//! connection and its component, in order, as the one list below.
//!
//! A request goes down the list: each stage's `before` either lets it on
//! or answers it. At the bottom, [`call`] calls the component. The
//! response comes back up the list, through the `after` of every stage
//! the request passed. Compression wraps the whole (it negotiates on the
//! request's `Accept-Encoding` and wraps the response body).
//!
//! A new middleware is a module with a type implementing [`Stage`], and its
//! line in [`Stages`]. One the operator configures per component keeps its
//! settings and logic in [`crate::middleware`] (see `docs/extending.md`).

// A stage's answer is a whole response by value: it is the rare path, and
// boxing it would cost every refusal an allocation for nothing.
#![allow(clippy::result_large_err)]

pub mod access_log;
pub mod admission;
pub mod auth;
pub mod call;
pub mod cors;
pub mod host_files;
pub mod host_wide;
pub mod rate_limit;
pub mod record;
pub mod response_headers;
pub mod routing;
pub mod stage;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::Either;
use http::header;
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};

use crate::body::{BoxError, RequestBody};
use crate::registry::Routes;
pub use host_wide::HostWide;
pub use stage::{Exchange, Response, Routed, Stage};

/// Nests the stages into the type the pipeline runs: `(A, (B, ()))`.
macro_rules! stages {
    () => { () };
    ($first:ty $(, $rest:ty)* $(,)?) => { ($first, stages!($($rest),*)) };
}

/// The stages, outermost first.
pub type Stages = stages![
    record::Record,                    // metrics: every response counted; client aborts
    access_log::AccessLog,             // one line per request, when asked for
    response_headers::ResponseHeaders, // X-Request-Id and security headers, always
    admission::Admission,              // 503 until the served components have loaded
    host_files::HostFiles,             // /_cello/: the host's own files (Swagger UI)
    routing::Routing,                  // table, tenant quota, route: 404, 429, 503
    cors::Cors,                        // preflights answered; CORS headers on the way out
    auth::Auth,                        // bearer token, route roles and scopes: 401, 403
    rate_limit::RateLimits,            // component and route limits: 429, RateLimit-*
];
// Then `call::call`: the body (413, 408), the response cache, the component.

/// Answers one request: compression around the stages.
///
/// Not an `async fn`, nor is [`through_stages`]: their arguments would stay
/// in the future's state beside what they became (the request beside the
/// exchange made of it). The future owns what it needs, so the caller can
/// box it as it is made: made in another future's state instead, at that
/// one's first poll, it was copied there, and again as it was wrapped.
pub fn handle(
    host: Arc<HostWide>,
    routes: Arc<Routes>,
    request: http::Request<RequestBody>,
    peer: SocketAddr,
) -> impl Future<Output = Response> + Send + 'static {
    // Without Accept-Encoding nothing would be compressed: skip the layer.
    let compress = host
        .compression
        .as_ref()
        .filter(|_| request.headers().contains_key(header::ACCEPT_ENCODING))
        .cloned();
    let Some(layer) = compress else {
        return Either::Left(through_stages(host, routes, request, peer));
    };
    let inner = tower::service_fn(move |request: http::Request<RequestBody>| {
        let response = through_stages(host.clone(), routes.clone(), request, peer);
        async move { Ok::<_, Infallible>(response.await) }
    });
    // Boxed: inline, its state (the stages' and the encoder's) would make
    // every request's future larger.
    let response = Box::pin(layer.layer(inner).oneshot(request));
    Either::Right(async move {
        let response = response.await.unwrap_or_else(|never| match never {});
        response.map(|body| body.map_err(BoxError::from).boxed_unsync())
    })
}

/// Runs `request` through [`Stages`] and the call.
fn through_stages(
    host: Arc<HostWide>,
    routes: Arc<Routes>,
    request: http::Request<RequestBody>,
    peer: SocketAddr,
) -> impl Future<Output = Response> + Send + 'static {
    let mut exchange = Exchange::new(host, routes, request, peer);
    async move { Stages::run(&mut exchange).await }
}

/// A list of stages that can run a request, ending with the call.
pub trait Chain {
    fn run<'x>(exchange: &'x mut Exchange) -> impl Future<Output = Response> + Send + 'x;
}

impl Chain for () {
    fn run<'x>(exchange: &'x mut Exchange) -> impl Future<Output = Response> + Send + 'x {
        call::call(exchange)
    }
}

impl<S: Stage + Send, Rest: Chain> Chain for (S, Rest) {
    // Not an `async fn`: its future would then have to outlive the stage
    // types, which the compiler cannot yet prove where the host spawns it
    // (rust-lang/rust#100013).
    #[allow(clippy::manual_async_fn)]
    fn run<'x>(exchange: &'x mut Exchange) -> impl Future<Output = Response> + Send + 'x {
        async move {
            // In a block of its own: the result (a response's size) is
            // then not kept in the future's state while the rest runs.
            let stage = {
                let before = if S::WAITS && exchange.host.shared_limits.is_some() {
                    // Boxed: the wait on the cluster's counter would
                    // otherwise make every request's future larger.
                    Box::pin(S::before_async(exchange)).await
                } else {
                    S::before(exchange)
                };
                match before {
                    Err(answer) => return answer,
                    Ok(stage) => stage,
                }
            };
            let mut response = Rest::run(exchange).await;
            stage.after(exchange, &mut response);
            response
        }
    }
}

const REQUEST_ID: http::HeaderName = response_headers::REQUEST_ID;

/// The request's id: its own `X-Request-Id` when it sends a usable one,
/// else a new one.
fn request_id(headers: &http::HeaderMap) -> Arc<str> {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(new_request_id, Arc::from)
}

/// A request id unique within this process and unlikely to repeat across
/// restarts: start time and a counter.
fn new_request_id() -> Arc<str> {
    static REQUEST_IDS: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let n = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    let mut id = [b'-'; 21];
    put_hex(&mut id[..12], start);
    put_hex(&mut id[13..], n);
    Arc::from(std::str::from_utf8(&id).expect("hex digits and a dash"))
}

/// Writes the low hex digits of `value` that fit in `out`.
fn put_hex(out: &mut [u8], value: u64) {
    for (i, digit) in out.iter_mut().rev().enumerate() {
        *digit = b"0123456789abcdef"[(value >> (i * 4)) as usize & 0xf];
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use http_body_util::Empty;

    use super::*;
    use crate::config::HostConfig;
    use crate::readiness::Readiness;
    use crate::registry::Registry;

    /// What a stage sees of the host: its settings and route tables with
    /// nothing in service.
    pub(super) struct Fixture {
        pub host: Arc<HostWide>,
        pub routes: Arc<Routes>,
    }

    impl Fixture {
        pub fn new() -> Self {
            Self::with(&HostConfig::default())
        }

        pub fn with(config: &HostConfig) -> Self {
            Self {
                host: Arc::new(HostWide::new(config, Arc::new(Readiness::default()))),
                routes: Registry::new(None).routes(),
            }
        }

        /// `request`, with an empty body, on its way in.
        pub fn exchange(&self, request: http::Request<()>) -> Exchange {
            let request =
                request.map(|()| Empty::new().map_err(|never| match never {}).boxed_unsync());
            let peer = "192.0.2.1:40000".parse().unwrap();
            Exchange::new(self.host.clone(), self.routes.clone(), request, peer)
        }
    }

    /// The `detail` of an error response.
    pub(super) async fn detail(response: Response) -> String {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
        json["detail"].as_str().expect("a detail").to_string()
    }

    fn id_of(value: &[u8]) -> Arc<str> {
        let mut headers = http::HeaderMap::new();
        headers.insert(REQUEST_ID, http::HeaderValue::from_bytes(value).unwrap());
        request_id(&headers)
    }

    fn is_new_id(id: &str) -> bool {
        let (start, count) = id.split_once('-').unwrap_or_default();
        let hex = |s: &str, len| s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit());
        hex(start, 12) && hex(count, 8)
    }

    #[test]
    fn a_client_request_id_is_kept() {
        assert_eq!(&*id_of(b"checkout-42"), "checkout-42");
        let longest = "a".repeat(128);
        assert_eq!(*id_of(longest.as_bytes()), longest);
    }

    #[test]
    fn an_empty_over_long_or_binary_request_id_is_replaced() {
        let too_long = "a".repeat(129);
        for sent in [&b""[..], too_long.as_bytes(), b"caf\xe9"] {
            let id = id_of(sent);
            assert!(is_new_id(&id), "{sent:?} became {id:?}");
        }
        assert!(is_new_id(&request_id(&http::HeaderMap::new())));
    }

    #[test]
    fn new_request_ids_are_unique() {
        let ids: HashSet<Arc<str>> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| is_new_id(id)));
    }

    #[test]
    fn a_new_exchange_is_unrouted_and_carries_the_request_id() {
        let fixture = Fixture::new();
        let request = http::Request::get("/items?page=2")
            .header("x-request-id", "checkout-42")
            .body(())
            .unwrap();
        let exchange = fixture.exchange(request);
        assert_eq!(&*exchange.request_id, "checkout-42");
        assert_eq!(exchange.parts.uri.path(), "/items");
        assert!(exchange.body.is_some());
        assert!(exchange.routed.is_none() && exchange.claims.is_none());
        assert!(exchange.owner().is_none());
    }
}
