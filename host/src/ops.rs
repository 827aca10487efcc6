//! The operations listener: `/metrics` in Prometheus' text format,
//! `/healthz` and `/readyz` for load balancers and orchestrators, and
//! `POST /cache/invalidate` for operators. It sits on its own address, apart
//! from the traffic.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::config::ServerSettings;
use crate::connections::accept;
use crate::error::{error_response, full, json_response};
use crate::response_cache::ResponseCache;
use crate::server::Body;

/// Whether the host is ready for traffic, and if not, what it waits for.
#[derive(Default)]
pub struct Readiness {
    /// True from when the traffic listener opens until draining starts.
    serving: AtomicBool,
    /// Components still loading, by name, for `/readyz` to name.
    loading: Mutex<BTreeSet<String>>,
}

impl Readiness {
    /// Marks the traffic listener open (true), or draining (false).
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Relaxed);
    }

    /// Notes that `what` is loading.
    pub fn loading(&self, what: String) {
        self.loading.lock().unwrap().insert(what);
    }

    /// Notes that `what` is done loading, whether it loaded or not.
    pub fn loaded(&self, what: &str) {
        self.loading.lock().unwrap().remove(what);
    }

    /// None when ready; otherwise a sentence that says what is awaited.
    pub fn not_ready(&self) -> Option<String> {
        /// Names listed at most, so the answer stays short.
        const SHOWN: usize = 10;
        if !self.serving.load(Ordering::Relaxed) {
            return Some("not ready: not serving traffic (starting or shutting down)".into());
        }
        let loading = self.loading.lock().unwrap();
        if loading.is_empty() {
            return None;
        }
        let mut names: Vec<&str> = loading.iter().take(SHOWN).map(String::as_str).collect();
        let more = format!("and {} more", loading.len().saturating_sub(SHOWN));
        if loading.len() > SHOWN {
            names.push(&more);
        }
        Some(format!(
            "not ready: still restoring {} component(s): {}",
            loading.len(),
            names.join(", ")
        ))
    }
}

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
            let mut response = http::Response::new(full(crate::metrics::render()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => http::Response::new(full("ok\n")),
        "/readyz" => match ready.not_ready() {
            None => http::Response::new(full("ready\n")),
            Some(why) => error_response(StatusCode::SERVICE_UNAVAILABLE, &why),
        },
        _ => error_response(StatusCode::NOT_FOUND, "Not Found"),
    }
}

#[cfg(test)]
mod tests {
    use super::Readiness;

    #[test]
    fn not_ready_until_serving_with_nothing_loading() {
        let ready = Readiness::default();
        assert!(ready.not_ready().unwrap().contains("not serving traffic"));
        ready.set_serving(true);
        assert_eq!(ready.not_ready(), None);
        ready.loading("acme/shop".into());
        ready.loading("globex/api".into());
        let why = ready.not_ready().unwrap();
        assert!(
            why.contains("2 component(s): acme/shop, globex/api"),
            "{why}"
        );
        ready.loaded("acme/shop");
        ready.loaded("globex/api");
        assert_eq!(ready.not_ready(), None);
        ready.set_serving(false);
        assert!(ready.not_ready().is_some());
    }

    #[test]
    fn a_long_list_of_loading_components_is_cut_short() {
        let ready = Readiness::default();
        ready.set_serving(true);
        for i in 0..25 {
            ready.loading(format!("t{i:02}/c"));
        }
        let why = ready.not_ready().unwrap();
        assert!(why.contains("25 component(s)"), "{why}");
        assert!(why.ends_with("and 15 more"), "{why}");
        assert!(!why.contains("t10/c"), "{why}");
    }
}
