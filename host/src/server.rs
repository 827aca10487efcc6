//! The HTTP front: accepts connections (HTTP/1.1 and HTTP/2), turns each
//! request into a call on the component the router picks, and shuts down
//! gracefully, letting requests in flight finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::bindings::{self, cello::component::types::Context};
use crate::error::{error_response, full};
use crate::router::{RouteMatch, Router, Target};

/// Any error a response body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the host sends.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

static REQUEST_IDS: AtomicU64 = AtomicU64::new(0);
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and waits for open requests to finish.
pub async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = service_fn(move |req| {
            let router = router.clone();
            async move { Ok::<_, Infallible>(handle(&router, req, peer).await) }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down; waiting for requests in flight");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(())
}

/// Answers one request.
async fn handle(
    router: &Router,
    req: http::Request<Incoming>,
    peer: SocketAddr,
) -> http::Response<Body> {
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(new_request_id);
    let mut response = route(router, req, peer, &request_id).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

async fn route(
    router: &Router,
    req: http::Request<Incoming>,
    peer: SocketAddr,
    request_id: &str,
) -> http::Response<Body> {
    let path = req.uri().path().to_string();
    let (target, params, app_path) = match router.at(req.method(), &path) {
        RouteMatch::Found {
            target,
            params,
            app_path,
        } => (target.clone(), params, app_path),
        RouteMatch::NotFound => return error_response(StatusCode::NOT_FOUND, "Not Found"),
        RouteMatch::MethodNotAllowed { allow } => {
            let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            if let Ok(allow) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            return response;
        }
    };
    match target {
        Target::Proxy(proxy) => {
            let mut req = req;
            if !req.headers().contains_key(header::HOST) {
                // HTTP/1.0 and HTTP/2 may omit Host; wasi:http needs an authority.
                req.headers_mut()
                    .insert(header::HOST, HeaderValue::from_static("localhost"));
            }
            match proxy.handle(req).await {
                Ok(response) => response,
                Err(e) => {
                    tracing::error!(request_id, %path, "wasi:http component failed: {e}");
                    error_response(e.status(), "Internal Server Error")
                }
            }
        }
        Target::App {
            component,
            route,
            is_async,
        } => {
            let (parts, body) = req.into_parts();
            let limit = component.max_body_bytes();
            let body = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return error_response(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("The request body is larger than the {limit} bytes allowed."),
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
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect(),
                body: body.to_vec(),
                route,
                params,
                context: Context {
                    request_id: request_id.to_string(),
                    client_addr: peer.to_string(),
                    tenant: None,
                    claims: None,
                },
            };
            match component.handle(request, is_async).await {
                Ok(response) => into_http(response, component.name()),
                Err(e) => {
                    tracing::error!(
                        component = component.name(),
                        request_id,
                        %path,
                        "request failed: {e}"
                    );
                    let detail = match e.status() {
                        StatusCode::SERVICE_UNAVAILABLE => "Service Unavailable",
                        _ => "Internal Server Error",
                    };
                    error_response(e.status(), detail)
                }
            }
        }
    }
}

/// A guest's response as an HTTP response; an invalid status or header from
/// the guest is a 500, never a panic.
fn into_http(response: bindings::Response, component: &str) -> http::Response<Body> {
    let mut builder = http::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder.body(full(response.body)).unwrap_or_else(|e| {
        tracing::error!(component, "guest returned an invalid response: {e}");
        error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
    })
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
    format!("{:012x}-{n:08x}", start & 0xffff_ffff_ffff)
}
