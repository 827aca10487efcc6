//! The operations listener: `/metrics` in Prometheus' text format, and
//! `/healthz` and `/readyz` for load balancers and orchestrators. It sits on
//! its own address, apart from the traffic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderValue, StatusCode, header};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::error::{error_response, full};
use crate::server::{Body, accept};

/// Serves the ops endpoints until `shutdown` resolves. `/readyz` answers
/// 503 while `ready` is false (before loading ends, and while draining).
pub async fn serve(
    listener: TcpListener,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    accept(listener, shutdown, move |req, _peer: SocketAddr| {
        let ready = ready.clone();
        async move { answer(&req, &ready) }
    })
    .await
}

fn answer(req: &http::Request<Incoming>, ready: &AtomicBool) -> http::Response<Body> {
    match req.uri().path() {
        "/metrics" => {
            let mut response = http::Response::new(full(crate::metrics::render()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => http::Response::new(full("ok\n")),
        "/readyz" if ready.load(Ordering::Relaxed) => http::Response::new(full("ready\n")),
        "/readyz" => error_response(StatusCode::SERVICE_UNAVAILABLE, "not ready"),
        _ => error_response(StatusCode::NOT_FOUND, "Not Found"),
    }
}
