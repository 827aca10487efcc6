//! What `export_app!` calls: builds the app once per instance and
//! dispatches the host's calls to it.

use std::cell::OnceCell;
use std::rc::Rc;

use crate::app::Handler;
use crate::bindings::cello::component::types::{
    AppPolicy, CachePolicy, CorsPolicy, RateLimitKey, RateLimitKind, RateLimitPolicy,
    Route as WitRoute, RoutePolicy,
};
use crate::bindings::{Manifest, Request as WitRequest, Response as WitResponse};
use crate::{App, Request, Response};

thread_local! {
    static APP: OnceCell<Rc<App>> = const { OnceCell::new() };
}

fn app(build: fn() -> App) -> Rc<App> {
    APP.with(|cell| cell.get_or_init(|| Rc::new(build())).clone())
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
                is_async: matches!(route.handler, Handler::Async(_)),
                policy: RoutePolicy {
                    cache: route.cache.as_ref().map(|c| CachePolicy {
                        ttl_seconds: c.ttl_seconds,
                        tags: c.tags.clone(),
                        vary: c.vary.clone(),
                    }),
                    roles: route.roles.clone(),
                    scopes: route.scopes.clone(),
                    rate_limit: route.rate_limit.map(|r| RateLimitPolicy {
                        kind: if r.sliding {
                            RateLimitKind::SlidingWindow
                        } else {
                            RateLimitKind::TokenBucket
                        },
                        key: if r.by_subject {
                            RateLimitKey::Subject
                        } else {
                            RateLimitKey::ClientAddress
                        },
                        capacity: r.capacity,
                        period_seconds: r.period_seconds,
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

fn not_routed(route: u32) -> WitResponse {
    Response::json(&serde_json::json!({ "detail": format!("no handler for route {route}") }))
        .with_status(500)
        .into_wit()
}

pub fn handle(build: fn() -> App, req: WitRequest) -> WitResponse {
    let app = app(build);
    let id = req.context.request_id.clone();
    let response = match app.routes.get(req.route as usize).map(|r| &r.handler) {
        Some(Handler::Sync(handler)) => handler(Request::from_wit(req)).into_wit(),
        _ => not_routed(req.route),
    };
    with_background(response, &id)
}

pub async fn handle_async(build: fn() -> App, req: WitRequest) -> WitResponse {
    let app = app(build);
    let id = req.context.request_id.clone();
    let response = match app.routes.get(req.route as usize).map(|r| &r.handler) {
        Some(Handler::Async(handler)) => handler(Request::from_wit(req)).await.into_wit(),
        Some(Handler::Sync(handler)) => handler(Request::from_wit(req)).into_wit(),
        None => not_routed(req.route),
    };
    with_background(response, &id)
}

/// Tells the host to call `run-background` when the handler queued tasks.
fn with_background(mut response: WitResponse, request_id: &str) -> WitResponse {
    response.background = crate::background::has(request_id);
    response
}

pub async fn run_background(request_id: &str) {
    crate::background::run(request_id).await;
}

pub async fn on_start(build: fn() -> App) -> Result<(), String> {
    let app = app(build);
    match &app.on_start {
        Some(hook) => hook(),
        None => Ok(()),
    }
}

pub async fn on_stop(build: fn() -> App) {
    let app = app(build);
    if let Some(hook) = &app.on_stop {
        hook();
    }
}
