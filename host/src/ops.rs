//! The operations listener: `/metrics` in OpenMetrics or Prometheus' text
//! format, as the scraper's `Accept` asks,
//! `/healthz` and `/readyz` for load balancers and orchestrators, and
//! `POST /cache/invalidate` for operators. It sits on its own address, apart
//! from the traffic.

use std::sync::Arc;

use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::body::{Body, full};
use crate::config::ServerSettings;
use crate::connections::accept;
use crate::error::{error_response, json_response};
use crate::metrics::Exposition;
use crate::readiness::Readiness;
use crate::response_cache::ResponseCache;

/// Serves the ops endpoints until `shutdown` resolves. `/readyz` answers
/// 503 until `ready` says the host is ready: before the traffic listener
/// opens, while tenants' components are restored, and while draining.
pub async fn serve(
    listener: TcpListener,
    settings: ServerSettings,
    ready: Arc<Readiness>,
    responses: Arc<ResponseCache>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    accept(listener, &settings, shutdown, move |req, _| {
        let ready = ready.clone();
        let responses = responses.clone();
        async move {
            if req.method() == Method::POST && req.uri().path() == "/cache/invalidate" {
                return invalidate(req, &responses).await;
            }
            answer(&req, &ready)
        }
    })
    .await
}

/// The operator's request to drop cached responses.
#[derive(Deserialize)]
struct Invalidate {
    component: String,
    tags: Vec<String>,
}

/// `POST /cache/invalidate` with `{"component": "...", "tags": [...]}`;
/// answers `{"invalidated": N}`.
async fn invalidate(
    req: http::Request<Incoming>,
    responses: &ResponseCache,
) -> http::Response<Body> {
    let body = match Limited::new(req.into_body(), 64 << 10).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &format!("unreadable body: {e}")),
    };
    let request: Invalidate = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let detail = format!("expected {{\"component\": \"...\", \"tags\": [...]}}: {e}");
            return error_response(StatusCode::UNPROCESSABLE_ENTITY, &detail);
        }
    };
    let dropped = responses.invalidate(&request.component, &request.tags);
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "invalidated": dropped }),
    )
}

fn answer(req: &http::Request<Incoming>, ready: &Readiness) -> http::Response<Body> {
    match req.uri().path() {
        "/metrics" => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let exposition = Exposition::for_accept(accept);
            let mut response = http::Response::new(full(crate::metrics::render(exposition)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(exposition.content_type()),
            );
            response
        }
        "/healthz" => http::Response::new(full("ok\n")),
        "/readyz" => match ready.not_ready() {
            None => {
                let mut text = String::from("ready\n");
                for warning in ready.warnings() {
                    text.push_str(&format!("warning: {warning}\n"));
                }
                http::Response::new(full(text))
            }
            Some(why) => error_response(StatusCode::SERVICE_UNAVAILABLE, &why),
        },
        _ => error_response(StatusCode::NOT_FOUND, "Not Found"),
    }
}
