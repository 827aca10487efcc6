//! The linker a component is instantiated with: WASI (nothing reachable
//! unless granted), wasi:http 0.2 and, on the concurrent engine, 0.3 (their
//! outgoing requests refused without an outbound grant), the standard
//! interfaces of the capabilities granted (`wasi:config/store`,
//! `wasi:keyvalue`), Cello's `host`, `cache` and `streams`, and the
//! capabilities the component was granted.

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi_http::WasiHttpView;

use crate::bindings::cello::component as cello;
use crate::capabilities::{self, GrantSet};
use crate::instances::state::InstanceState;

/// A linker offering `granted`. On an engine without concurrency support,
/// WASI, wasi:http, the granted standard interfaces, and what a sync app
/// may import: Cello's functions that are not an `async func` (`host`'s
/// `log` but not its `sleep`, `sql`'s `-blocking` twins).
pub fn linker(engine: &Engine, granted: GrantSet) -> anyhow::Result<Linker<InstanceState>> {
    use wasmtime_wasi_http::p2::bindings::http as wasi_http;
    type Http = wasmtime_wasi_http::WasiHttp;
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let options = wasmtime_wasi_http::p2::bindings::LinkOptions::default();
    wasi_http::types::add_to_linker::<_, Http>(
        &mut linker,
        &options.into(),
        <InstanceState as WasiHttpView>::http,
    )?;
    wasi_http::outgoing_handler::add_to_linker::<_, Http>(
        &mut linker,
        <InstanceState as WasiHttpView>::http,
    )?;
    capabilities::add_standard_to_linker(&mut linker, granted)?;
    fn this(state: &mut InstanceState) -> &mut InstanceState {
        state
    }
    if !engine.get_concurrency_support() {
        // What a sync app may import: Cello's functions that are not an
        // `async func` (`host` but its `sleep`), and such of capabilities'.
        cello::types::add_to_linker::<_, HasSelf<_>>(&mut linker, this)?;
        cello::cache::add_to_linker::<_, HasSelf<_>>(&mut linker, this)?;
        linker.instance("cello:component/host@0.1.0")?.func_wrap(
            "log",
            |mut store, (level, message): (cello::host::Level, String)| {
                cello::host::Host::log(store.data_mut(), level, message)
            },
        )?;
        capabilities::add_to_linker(&mut linker, granted)?;
        return Ok(linker);
    }
    // wasi:http@0.3 and the WASI 0.3 interfaces its components import;
    // the same context, hooks and grants as 0.2.
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    cello::types::add_to_linker::<_, HasSelf<_>>(&mut linker, this)?;
    cello::host::add_to_linker::<_, HasSelf<_>>(&mut linker, this)?;
    cello::cache::add_to_linker::<_, HasSelf<_>>(&mut linker, this)?;
    cello::streams::add_to_linker::<_, HasSelf<_>>(&mut linker, this)?;
    capabilities::add_to_linker(&mut linker, granted)?;
    Ok(linker)
}
