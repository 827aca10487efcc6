//! Host-side bindings for the `cello:component/app` world in `wit/`, with
//! every capability a component may be granted, and for the optional
//! `streaming` and `packed` exports.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "app-with-capabilities",
    imports: {
        "cello:component/kv": async | trappable,
        "cello:component/outbound": async | trappable,
        "cello:component/sql": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "cello:component/streams.body-reader": crate::app::streams::BodyReader,
        "cello:component/streams.response-writer": crate::app::streams::ResponseWriter,
    },
});

/// The `streaming` export, looked up apart from the app's: components built
/// before it existed lack it and are served through `handle-async`.
pub mod streaming {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "streaming-app",
        exports: { default: async },
        with: {
            "cello:component/types": super::cello::component::types,
            "cello:component/host": super::cello::component::host,
            "cello:component/cache": super::cello::component::cache,
            "cello:component/streams": super::cello::component::streams,
        },
    });

    pub use exports::cello::component::streaming::{Guest, GuestIndices};
}

/// The `packed` export, looked up apart from the app's: a component that
/// has it gets its `def` requests in one buffer; one without it (every
/// component built before it, and Python's) through `handle`.
pub mod packed {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "packed-app",
        exports: { default: async },
        with: {
            "cello:component/types": super::cello::component::types,
            "cello:component/host": super::cello::component::host,
            "cello:component/cache": super::cello::component::cache,
        },
    });

    pub use exports::cello::component::packed::{Guest, GuestIndices};
}

/// The `sync-app` world's exports: an app whose exports are all plain
/// functions, served on the engine without concurrency support when it
/// imports no `async func` ([`crate::engine`]).
pub mod sync_app {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sync-app",
        exports: { default: async },
        with: {
            "cello:component/types": super::cello::component::types,
            "cello:component/host": super::cello::component::host,
            "cello:component/cache": super::cello::component::cache,
        },
    });
}

pub use AppWithCapabilities as App;
pub use AppWithCapabilitiesPre as AppPre;
pub use cello::component::types::{Route, RoutePolicy};
