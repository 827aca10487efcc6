//! Host-side bindings for the `cello:component/app` world in `wit/`.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "app",
    imports: { default: trappable },
    exports: { default: async },
});

pub use cello::component::types::{Route, RoutePolicy};
