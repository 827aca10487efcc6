//! What `export_app!` calls in a component: builds the app once per
//! instance and answers the host's calls with it.

use std::cell::OnceCell;
use std::rc::Rc;

use crate::App;
use crate::bindings::cello::component::types::{
    AppPolicy, CachePolicy, CorsPolicy, RateLimitKey as WitKey, RateLimitKind, RateLimitPolicy,
    Route as WitRoute, RoutePolicy,
};
use crate::bindings::{Manifest, Request as WitRequest, Response as WitResponse};
use crate::request::Incoming;
use crate::{RateLimitKey, Response};

thread_local! {
    static APP: OnceCell<Rc<App>> = const { OnceCell::new() };
}

fn app(build: fn() -> App) -> Rc<App> {
    APP.with(|cell| cell.get_or_init(|| Rc::new(build().finalize())).clone())
}

pub fn describe(build: fn() -> App) -> Manifest {
    let app = app(build);
    Manifest {
        name: app.name.clone(),
        routes: app
            .routes
            .iter()
            .map(|route| WitRoute {
                methods: route.methods.clone(),
                path: route.path.clone(),
                is_async: route.handler.is_async,
                policy: RoutePolicy {
                    cache: route.cache.as_ref().map(|c| CachePolicy {
                        ttl_seconds: c.ttl_seconds,
                        tags: c.tags.clone(),
                        vary: c.vary.clone(),
                    }),
                    roles: route.roles.clone(),
                    scopes: route.scopes.clone(),
                    rate_limit: route.rate_limit.or(app.default_rate_limit).map(|r| {
                        RateLimitPolicy {
                            kind: if r.sliding {
                                RateLimitKind::SlidingWindow
                            } else {
                                RateLimitKind::TokenBucket
                            },
                            key: match r.key {
                                RateLimitKey::ClientAddress => WitKey::ClientAddress,
                                RateLimitKey::Subject => WitKey::Subject,
                                RateLimitKey::Tenant => WitKey::Tenant,
                            },
                            capacity: r.capacity,
                            period_seconds: r.period_seconds,
                        }
                    }),
                },
            })
            .collect(),
        policy: AppPolicy {
            cors: app.cors.as_ref().map(|c| CorsPolicy {
                allow_origins: c.origins.clone(),
                allow_methods: c.methods.clone(),
                allow_headers: c.headers.clone(),
                expose_headers: c.expose.clone(),
                allow_credentials: c.credentials,
                max_age_seconds: c.max_age_seconds,
            }),
            access_log: app.access_log,
        },
    }
}

fn incoming(req: WitRequest) -> Incoming {
    Incoming {
        method: req.method,
        path: req.path,
        query: req.query,
        headers: req.headers,
        body: req.body,
        params: req.params,
        request_id: req.context.request_id,
        client_addr: req.context.client_addr,
        tenant: req.context.tenant,
        claims: req.context.claims,
    }
}

/// The response as the host takes it, flagged when the handler queued
/// background tasks (the host then calls `run-background`).
fn to_wit(response: Response, request_id: &str) -> WitResponse {
    let (status, headers, body) = response.into_wire();
    WitResponse {
        status,
        headers,
        body,
        background: crate::background::has(request_id),
    }
}

pub fn handle(build: fn() -> App, req: WitRequest) -> WitResponse {
    let app = app(build);
    let index = req.route as usize;
    let request = app.request(incoming(req));
    let id = request.request_id.clone();
    to_wit(app.serve_now(index, request), &id)
}

pub async fn handle_async(build: fn() -> App, req: WitRequest) -> WitResponse {
    let app = app(build);
    let index = req.route as usize;
    let request = app.request(incoming(req));
    let id = request.request_id.clone();
    to_wit(app.serve(index, request).await, &id)
}

pub async fn run_background(request_id: &str) {
    crate::background::run(request_id).await;
}

pub async fn on_start(build: fn() -> App) -> Result<(), String> {
    app(build).start().await
}

pub async fn on_stop(build: fn() -> App) {
    app(build).stop().await;
}
