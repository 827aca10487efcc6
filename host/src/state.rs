//! What a store holds for one component instance: its WASI context, its
//! resources, and who it is (for logs).

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Per-instance host state, the `T` of every `Store<T>`.
pub struct InstanceState {
    /// The component's name, for log lines the guest writes.
    pub component: Arc<str>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: DenyOutbound,
    table: ResourceTable,
    limits: StoreLimits,
}

impl InstanceState {
    /// State with nothing reachable: no preopened directories, no network,
    /// no environment; stdout and stderr go to the host's.
    pub fn new(component: Arc<str>, memory_limit: usize) -> Self {
        let wasi = WasiCtx::builder().inherit_stdout().inherit_stderr().build();
        Self {
            component,
            wasi,
            http: WasiHttpCtx::new(),
            hooks: DenyOutbound,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_limit)
                .trap_on_grow_failure(false)
                .build(),
        }
    }

    /// The limiter the store consults when the guest grows memory or tables.
    pub fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.hooks,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

/// Outbound HTTP is a capability; until a component is granted it, every
/// request the guest sends is refused with `HTTP-request-denied`.
struct DenyOutbound;

impl WasiHttpHooks for DenyOutbound {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
