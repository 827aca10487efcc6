//! What `export_app!` calls in a component: builds the app once per
//! instance and answers the host's calls with it. Async routes come
//! through `streaming.handle` (when the host has it), sync and cached ones
//! through `handle` and `handle-async` with the body whole. A `sync` build
//! serves every route through `handle`, running async handlers to their
//! end there.

use std::cell::OnceCell;
use std::rc::Rc;

use crate::App;
#[cfg(not(feature = "sync"))]
use crate::IntoResponse;
#[cfg(not(feature = "sync"))]
use crate::bindings::cello::component::streams::{BodyReader as WitBodyReader, ResponseWriter};
use crate::bindings::cello::component::types::{
    AppPolicy, CachePolicy, CorsPolicy, RateLimitKey as WitKey, RateLimitKind, RateLimitPolicy,
    Route as WitRoute, RoutePolicy,
};
use crate::bindings::{Manifest, Request as WitRequest, Response as WitResponse};
#[cfg(not(feature = "sync"))]
use crate::body::{self, BodySlot};
#[cfg(not(feature = "sync"))]
use crate::host::{Level, log};
use crate::packed;
use crate::request::Incoming;
use crate::response::internal_error;
#[cfg(not(feature = "sync"))]
use crate::streaming::ChunkStream;
#[cfg(not(feature = "sync"))]
use crate::sys::BodyReader;
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
                // A sync build serves every route through `handle`.
                is_async: route.handler.is_async && !cfg!(feature = "sync"),
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
        method: crate::request::method(&req.method),
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
    let route = req.route;
    serve_now(build, route, incoming(req))
}

/// The `packed` export's `handle`: as `handle`, with the request read from
/// one buffer.
pub fn handle_packed(
    build: fn() -> App,
    route: u32,
    body_len: u32,
    request: Vec<u8>,
) -> WitResponse {
    match packed::read(request, body_len as usize) {
        Ok(incoming) => serve_now(build, route, incoming),
        Err(packed::Malformed(why)) => {
            let reason = format!("the host sent a request that cannot be read: {why}");
            to_wit(internal_error(&reason), "")
        }
    }
}

/// Serves a request to a sync route without suspending: a sleep or SQL
/// its extractors or stream await blocks the instance meanwhile.
#[cfg(not(feature = "sync"))]
fn serve_now(build: fn() -> App, route: u32, incoming: Incoming) -> WitResponse {
    crate::sys::in_sync_call(|| serve_blocking(build, route, incoming))
}

#[cfg(not(feature = "sync"))]
fn serve_blocking(build: fn() -> App, route: u32, incoming: Incoming) -> WitResponse {
    let app = app(build);
    let index = route as usize;
    let request = app.request(incoming);
    let id = request.request_id.clone();
    let mut response = app.serve_now(index, request);
    // A sync call cannot suspend: what a stream awaits of the host blocks
    // the instance, and a stream that waits for anything else (a future
    // nothing will wake) is the handler's mistake.
    if let Some(chunks) = response.take_chunks() {
        response = match chunks.collect_now() {
            Some(body) => response.with_body(body),
            None => internal_error(&format!(
                "{}: a sync handler's stream waited on the host; make the handler an `async fn`",
                app.routes[index].path
            )),
        };
    }
    to_wit(response, &id)
}

/// Serves a request to any route without suspending: a sync build's one
/// way in. An async handler runs to its end here; what it awaits of the
/// host (a sleep, SQL) blocks the instance meanwhile, and a streamed
/// response goes whole once its stream ends.
#[cfg(feature = "sync")]
fn serve_now(build: fn() -> App, route: u32, incoming: Incoming) -> WitResponse {
    let app = app(build);
    let index = route as usize;
    let request = app.request(incoming);
    let id = request.request_id.clone();
    let path = app.routes.get(index).map_or("?", |r| r.path.as_str());
    let waited = || {
        internal_error(&format!(
            "{path}: the handler waited on something a `sync` build cannot wait for"
        ))
    };
    let mut response = run_now(app.serve(index, request)).unwrap_or_else(waited);
    if let Some(chunks) = response.take_chunks() {
        response = match run_now(chunks.collect()) {
            Some(body) => response.with_body(body),
            None => waited(),
        };
    }
    to_wit(response, &id)
}

/// Runs `future` to its end without suspending the component: in a `sync`
/// build nothing the SDK awaits of the host suspends (each import blocks),
/// so a future that stays pending waits for what can never come, and
/// gives none.
#[cfg(feature = "sync")]
fn run_now<T>(future: impl Future<Output = T>) -> Option<T> {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    // A future that yields once to let others run is polled again.
    for _ in 0..1000 {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}

/// `on-start` in a `sync` build.
#[cfg(feature = "sync")]
pub fn on_start_now(build: fn() -> App) -> Result<(), String> {
    run_now(app(build).start()).unwrap_or_else(|| {
        Err("an on_start hook waited on something a `sync` build cannot wait for".into())
    })
}

/// `on-stop` in a `sync` build.
#[cfg(feature = "sync")]
pub fn on_stop_now(build: fn() -> App) {
    run_now(app(build).stop());
}

/// `run-background` in a `sync` build.
#[cfg(feature = "sync")]
pub fn run_background_now(request_id: &str) {
    run_now(crate::background::run(request_id));
}

#[cfg(not(feature = "sync"))]
pub async fn handle_async(build: fn() -> App, req: WitRequest) -> WitResponse {
    let app = app(build);
    let index = req.route as usize;
    let request = app.request(incoming(req));
    let id = request.request_id.clone();
    let mut response = app.serve(index, request).await;
    // A cached route's response goes whole, to be stored.
    if let Some(chunks) = response.take_chunks() {
        let body = chunks.collect().await;
        response = response.with_body(body);
    }
    to_wit(response, &id)
}

/// Serves an async route: its body read whole first, unless the handler
/// reads it as it arrives; its response returned whole, or streamed
/// through `out` (then none is returned, and the background tasks run
/// here, after the last chunk: the host ends the body when `out` is
/// dropped, so the client sees its end before they run).
#[cfg(not(feature = "sync"))]
pub async fn handle_streaming(
    build: fn() -> App,
    req: WitRequest,
    body: WitBodyReader,
    out: ResponseWriter,
) -> Option<WitResponse> {
    let app = app(build);
    let index = req.route as usize;
    let streams_body = app
        .routes
        .get(index)
        .is_some_and(|route| route.handler.streams_body);
    let mut incoming = incoming(req);
    let body = BodyReader(body);
    let slot = if streams_body {
        BodySlot::holding(body)
    } else {
        match body::read_whole(&body).await {
            Ok(whole) => incoming.body = whole,
            Err(error) => return Some(to_wit(error.into_response(), &incoming.request_id)),
        }
        BodySlot::default()
    };
    let mut request = app.request(incoming);
    request.body_slot = slot;
    let id = request.request_id.clone();
    let mut response = app.serve(index, request).await;
    let Some(chunks) = response.take_chunks() else {
        return Some(to_wit(response, &id));
    };
    let (status, headers, _) = response.into_wire();
    send(chunks, out, status, &headers).await;
    crate::background::run(&id).await;
    None
}

/// Starts the response and writes its chunks as they come. A failed write
/// (the client left, the stream sat idle) stops it: the handler's stream
/// is dropped, so its `Drop` runs.
#[cfg(not(feature = "sync"))]
async fn send(
    mut chunks: ChunkStream,
    out: ResponseWriter,
    status: u16,
    headers: &[(String, String)],
) {
    if let Err(error) = out.start(status, headers) {
        log(Level::Error, &format!("cannot start the stream: {error:?}"));
        return;
    }
    while let Some(chunk) = chunks.next().await {
        for part in write_sized(chunk) {
            if let Err(error) = out.write(part).await {
                log(Level::Info, &format!("stream stopped: {error:?}"));
                return;
            }
        }
    }
}

/// The most bytes one `write` passes to the host (its `MAX_CHUNK_HINT`):
/// the host holds what a write passes until it is sent, within a budget
/// per instance.
#[cfg(not(feature = "sync"))]
const MAX_WRITE: usize = 1 << 20;

/// `chunk` as writes of at most [`MAX_WRITE`] bytes; a small one as it is.
#[cfg(not(feature = "sync"))]
fn write_sized(chunk: Vec<u8>) -> Vec<Vec<u8>> {
    if chunk.len() <= MAX_WRITE {
        vec![chunk]
    } else {
        chunk.chunks(MAX_WRITE).map(<[u8]>::to_vec).collect()
    }
}

#[cfg(not(feature = "sync"))]
pub async fn run_background(request_id: &str) {
    crate::background::run(request_id).await;
}

#[cfg(not(feature = "sync"))]
pub async fn on_start(build: fn() -> App) -> Result<(), String> {
    app(build).start().await
}

#[cfg(not(feature = "sync"))]
pub async fn on_stop(build: fn() -> App) {
    app(build).stop().await;
}
