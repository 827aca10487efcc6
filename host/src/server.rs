//! The HTTP front: serves connections (HTTP/1.1 and HTTP/2, accepted by
//! [`crate::connections`]) and hands each request to the
//! [`crate::pipeline`], under a trace span; on shutdown, stops accepting
//! and lets requests in flight finish.

use std::sync::Arc;

use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tracing::Instrument as _;

use crate::body::BodyError;
use crate::config::ServerSettings;
use crate::connections::accept;
use crate::pipeline::{self, HostWide};
use crate::registry::Registry;
use crate::telemetry;

/// Serves what `registry` holds on `listener` until `shutdown` resolves,
/// then stops accepting and waits for open requests to finish.
pub async fn serve(
    listener: TcpListener,
    settings: &ServerSettings,
    registry: Arc<Registry>,
    host: Arc<HostWide>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    accept(listener, settings, shutdown, move |request, peer| {
        let routes = registry.routes();
        let host = host.clone();
        // None when traces are off; then instrumenting costs a branch.
        let span =
            telemetry::request_span(request.headers(), request.method(), request.uri().path());
        let recorded = span.clone();
        let request = request.map(|body| body.map_err(|e| BodyError(e.into())).boxed_unsync());
        // Boxed as it is made, before anything wraps it: the pipeline's
        // state machine is kilobytes, and the span's wrapper and hyper would
        // otherwise copy it, each time it moves, before its first poll.
        let answer = Box::pin(pipeline::handle(host, routes, request, peer));
        let answer = async move {
            let response = answer.await;
            recorded.record("http.response.status_code", response.status().as_u16());
            response
        };
        answer.instrument(span)
    })
    .await
}
