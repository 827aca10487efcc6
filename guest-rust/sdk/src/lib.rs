//! Write HTTP handlers for the Cello host in Rust, the way axum does:
//! handlers are ordinary functions whose arguments are extractors.
//!
//! ```ignore
//! use cello::{App, HttpError, Json, Kv, Path, Query, StatusCode};
//!
//! async fn read_item(Path(id): Path<u64>, kv: Kv) -> Result<Json<Item>, HttpError> {
//!     kv.get_json(&format!("item:{id}"))?
//!         .map(Json)
//!         .ok_or_else(|| HttpError::not_found(format!("item {id} not found")))
//! }
//!
//! fn create_item(kv: Kv, Json(item): Json<Item>) -> anyhow::Result<(StatusCode, Json<Item>)> {
//!     kv.set_json(&format!("item:{}", item.id), &item, None)?;
//!     Ok((StatusCode::CREATED, Json(item)))
//! }
//!
//! fn app() -> App {
//!     App::new("shop")
//!         .get("/items/{id}", read_item)
//!         .post("/items", create_item)
//!         .roles(&["editor"])
//! }
//!
//! cello::export_app!(app);
//! ```
//!
//! How the crate is organised:
//! - [`App`] (`app`) holds routes, shared state and lifecycle hooks;
//!   [`Cache`], [`RateLimit`] and [`Cors`] (`policy`) are what the host
//!   enforces around them.
//! - A [`Handler`] (`handler`) is a `fn` or `async fn`; sync ones occupy
//!   their instance until they return, async ones share it while they
//!   await the host. The kind is fixed when the app is described.
//! - Extractors (`extract`, `json`): [`Path`], [`Query`], [`Header`],
//!   [`Json`], [`State`], [`Claims`], [`Request`], the capability handles
//!   [`Kv`], [`Config`], [`outbound::Client`] and [`BackgroundTasks`], and
//!   your own through [`FromRequest`]. A rejected request answers 422 in
//!   FastAPI's shape (`rejection`), like the Python SDK.
//! - [`IntoResponse`] (`response`) turns results into a [`Response`].
//! - Streams (`streaming`, `body`, [`sse`]): an `async fn` route answers
//!   with a [`StreamingResponse`] or server-sent events ([`sse::Sse`])
//!   written while the host sends them, and reads a large upload chunk by
//!   chunk with [`BodyStream`].
//! - `openapi` (feature `openapi`) serves the app's OpenAPI 3.1 document
//!   at `/openapi.json`, its schemas from the handlers' types.
//! - `sys` is the host: the component's imports on wasm32, an in-memory
//!   stand-in natively, where [`testing::TestClient`] runs handlers in
//!   `cargo test`.
//!
//! Build with `cargo build --release --target wasm32-wasip2`.

extern crate self as cello;

#[cfg(any(all(target_arch = "wasm32", feature = "allocator"), test))]
mod allocator;
mod app;
pub mod background;
mod body;
pub mod config;
mod de;
mod extract;
mod handler;
mod headers;
mod json;
pub mod kv;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod outbound;
#[cfg(any(target_arch = "wasm32", test))]
mod packed;
mod policy;
mod rejection;
mod request;
mod response;
pub mod sql;
mod sql_de;
pub mod sse;
mod streaming;
mod sys;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod runtime;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[doc(hidden)]
pub use app::AppState;
pub use app::{App, StartHook, StopHook};
pub use background::BackgroundTasks;
pub use body::{BodyError, BodyStream};
pub use config::Config;
pub use extract::{Claims, FromRequest, Header, Path, Query, State};
pub use handler::Handler;
pub use headers::Headers;
pub use json::Json;
pub use kv::{Kv, KvError};
pub use policy::{Cache, Cors, RateLimit, RateLimitKey};
pub use rejection::{FieldError, Invalid};
pub use request::Request;
pub use response::{HttpError, IntoResponse, Response};
pub use streaming::StreamingResponse;

/// The `http` crate, whose types requests and responses use.
pub use http;
pub use http::{HeaderMap, Method, StatusCode};

/// The generated bindings for the `cello:component/app` world, with every
/// capability and the `streaming` and `packed` exports; a component imports
/// only those it calls. The WIT is the crate's own copy of the contract.
#[cfg(all(target_arch = "wasm32", not(feature = "sync")))]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "streaming-app-with-capabilities",
        pub_export_macro: true,
        default_bindings_module: "::cello::bindings",
        runtime_path: "::cello::bindings::wit_bindgen::rt",
    });
    pub use ::wit_bindgen;
}

/// With the `sync` feature: the bindings for `sync-app-with-capabilities`,
/// whose exports are all plain functions and whose imports include no
/// `async func` the SDK calls.
#[cfg(all(target_arch = "wasm32", feature = "sync"))]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "sync-app-with-capabilities",
        pub_export_macro: true,
        default_bindings_module: "::cello::bindings",
        runtime_path: "::cello::bindings::wit_bindgen::rt",
    });
    pub use ::wit_bindgen;
}

#[cfg(all(
    target_arch = "wasm32",
    not(target_feature = "atomics"),
    feature = "allocator"
))]
#[global_allocator]
static ALLOCATOR: allocator::Listed<std::alloc::System> =
    allocator::Listed::new(std::alloc::System);

/// Functions the host provides to every handler.
pub mod host {
    use std::time::Duration;

    /// How much a log line matters.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Level {
        Trace,
        Debug,
        Info,
        Warn,
        Error,
    }

    /// Writes a line to the host's log, tagged with this component.
    pub fn log(level: Level, message: &str) {
        crate::sys::log(level, message);
    }

    /// Waits without blocking the instance: other async requests on it run
    /// meanwhile. In a `sync` build it blocks the instance instead.
    pub async fn sleep(duration: Duration) {
        crate::sys::sleep(duration.as_millis().min(u32::MAX as u128) as u32).await;
    }
}

/// The host's response cache.
pub mod cache {
    /// Drops this component's cached responses tagged with any of `tags`;
    /// returns how many were dropped (0 natively).
    pub fn invalidate(tags: &[&str]) -> u32 {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        crate::sys::cache_invalidate(&tags)
    }
}

/// What both builds of `export_app!` export alike, after the app's own
/// exports: `packed`, the component's exports themselves, and natively a
/// check of `$build`'s type.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_app_rest {
    ($build:path) => {
        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::exports::cello::component::packed::Guest for __CelloApp {
            fn handle(
                route: u32,
                body_len: u32,
                request: ::std::vec::Vec<u8>,
            ) -> $crate::bindings::Response {
                $crate::runtime::handle_packed($build, route, body_len, request)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export!(__CelloApp with_types_in $crate::bindings);

        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> $crate::App = $build;
    };
}

/// Exports the app built by `$build` (a `fn() -> App`) as this component.
/// Natively (tests) it exports nothing.
#[cfg(not(feature = "sync"))]
#[macro_export]
macro_rules! export_app {
    ($build:path) => {
        #[cfg(target_arch = "wasm32")]
        struct __CelloApp;

        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::Guest for __CelloApp {
            fn describe() -> $crate::bindings::Manifest {
                $crate::runtime::describe($build)
            }
            fn handle(req: $crate::bindings::Request) -> $crate::bindings::Response {
                $crate::runtime::handle($build, req)
            }
            async fn handle_async(req: $crate::bindings::Request) -> $crate::bindings::Response {
                $crate::runtime::handle_async($build, req).await
            }
            async fn on_start() -> ::core::result::Result<(), ::std::string::String> {
                $crate::runtime::on_start($build).await
            }
            async fn on_stop() {
                $crate::runtime::on_stop($build).await
            }
            async fn run_background(request_id: ::std::string::String) {
                $crate::runtime::run_background(&request_id).await
            }
        }

        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::exports::cello::component::streaming::Guest for __CelloApp {
            async fn handle(
                req: $crate::bindings::Request,
                body: $crate::bindings::cello::component::streams::BodyReader,
                out: $crate::bindings::cello::component::streams::ResponseWriter,
            ) -> ::core::option::Option<$crate::bindings::Response> {
                $crate::runtime::handle_streaming($build, req, body, out).await
            }
        }

        $crate::__export_app_rest!($build);
    };
}

/// Exports the app built by `$build` (a `fn() -> App`) as this component,
/// built with the `sync` feature: every export a plain function. Each
/// request holds its instance until its handler returns, `async fn`
/// handlers included, and a streamed response goes whole once its stream
/// ends. Natively (tests) it exports nothing.
#[cfg(feature = "sync")]
#[macro_export]
macro_rules! export_app {
    ($build:path) => {
        #[cfg(target_arch = "wasm32")]
        struct __CelloApp;

        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::Guest for __CelloApp {
            fn describe() -> $crate::bindings::Manifest {
                $crate::runtime::describe($build)
            }
            fn handle(req: $crate::bindings::Request) -> $crate::bindings::Response {
                $crate::runtime::handle($build, req)
            }
            fn on_start() -> ::core::result::Result<(), ::std::string::String> {
                $crate::runtime::on_start_now($build)
            }
            fn on_stop() {
                $crate::runtime::on_stop_now($build)
            }
            fn run_background(request_id: ::std::string::String) {
                $crate::runtime::run_background_now(&request_id)
            }
        }

        $crate::__export_app_rest!($build);
    };
}
