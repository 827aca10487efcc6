//! Write HTTP handlers for the Cello host in Rust.
//!
//! ```ignore
//! use cello::{App, Request, Response};
//!
//! fn app() -> App {
//!     App::new("hello")
//!         .get("/hello/{name}", |req: Request| format!("Hello, {}!", req.param("name").unwrap_or("you")))
//!         .get_async("/slow", async |_req: Request| {
//!             cello::host::sleep(std::time::Duration::from_millis(10)).await;
//!             Response::text("done")
//!         })
//! }
//!
//! cello::export_app!(app);
//! ```
//!
//! Sync handlers (`get`, `post`, ...) run one at a time on an instance;
//! async handlers (`get_async`, ...) may overlap on one instance while they
//! await the host. Build with `cargo build --release --target wasm32-wasip2`.

extern crate self as cello;

mod app;
mod capabilities;
mod request;
mod response;
#[doc(hidden)]
pub mod runtime;

pub use app::{App, Cache, Cors, RateLimit};
pub use capabilities::{background, config, http, kv};
pub use request::Request;
pub use response::{IntoResponse, Json, Response};

/// The generated bindings for the `cello:component/app` world, with every
/// capability; a component imports only those it calls.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "app-with-capabilities",
        pub_export_macro: true,
        default_bindings_module: "::cello::bindings",
        runtime_path: "::cello::bindings::wit_bindgen::rt",
    });
    pub use ::wit_bindgen;
}

/// Functions the host provides to every handler.
pub mod host {
    use std::time::Duration;

    use crate::bindings::cello::component::host;
    pub use host::Level;

    /// Writes a line to the host's log, tagged with this component.
    pub fn log(level: Level, message: &str) {
        host::log(level, message);
    }

    /// Waits without blocking the instance: other async requests on it run
    /// meanwhile.
    pub async fn sleep(duration: Duration) {
        host::sleep(duration.as_millis().min(u32::MAX as u128) as u32).await;
    }
}

/// The host's response cache.
pub mod cache {
    /// Drops this component's cached responses tagged with any of `tags`;
    /// returns how many were dropped.
    pub fn invalidate(tags: &[&str]) -> u32 {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        crate::bindings::cello::component::cache::invalidate(&tags)
    }
}

/// Exports the app built by `$build` (a `fn() -> App`) as this component.
#[macro_export]
macro_rules! export_app {
    ($build:path) => {
        struct __CelloApp;

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

        $crate::bindings::export!(__CelloApp with_types_in $crate::bindings);
    };
}
