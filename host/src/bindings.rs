//! Host-side bindings for the `cello:component/app` world in `wit/`, with
//! every capability a component may be granted.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "app-with-capabilities",
    imports: {
        "cello:component/kv": async | trappable,
        "cello:component/sql": async | trappable,
        default: trappable,
    },
    exports: { default: async },
});

pub use AppWithCapabilities as App;
pub use AppWithCapabilitiesPre as AppPre;
pub use cello::component::types::{Route, RoutePolicy};
