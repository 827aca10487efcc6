//! Standard `wasi:http/proxy@0.2.x` components, the kind built for
//! `wasmtime serve` or Spin, served unchanged as one catch-all route.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, StoreContextMut};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    self, HandlerState, ProxyHandler, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState,
    WorkerStatus,
};

use crate::config::Limits;
use crate::error::CallError;
use crate::server::Body;
use crate::state::InstanceState;

/// Requests one instance serves before it is replaced.
const REQUESTS_PER_INSTANCE: usize = 1;
/// How long a request may run before its instance is retired.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an idle instance is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A loaded `wasi:http/proxy` component.
pub struct ProxyComponent {
    handler: ProxyHandler<Instances>,
}

impl ProxyComponent {
    /// Prepares `component`; fails when it imports what the host lacks.
    pub fn load(
        name: Arc<str>,
        engine: &Engine,
        linker: &Linker<InstanceState>,
        component: &Component,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| anyhow::anyhow!("cannot link: {e:#}"))?;
        let pre = wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre)
            .map_err(|e| anyhow::anyhow!("wrong exports: {e:#}"))?;
        Ok(Self {
            handler: ProxyHandler::new(Instances {
                name,
                engine: engine.clone(),
                pre: ProxyPre::P2(pre),
                limits,
                instantiations: AtomicU64::new(0),
            }),
        })
    }

    /// Hands `request` to the guest's `incoming-handler`.
    pub async fn handle(
        &self,
        request: http::Request<Incoming>,
    ) -> Result<http::Response<Body>, CallError> {
        let request = request.map(|body| {
            body.map_err(wasmtime_wasi_http::Error::Hyper)
                .boxed_unsync()
        });
        let response = self
            .handler
            .handle((), request)
            .await
            .map_err(CallError::Trap)?;
        Ok(response.map(|body| body.map_err(Into::into).boxed_unsync()))
    }

    /// Instances created since load.
    pub fn instantiations(&self) -> u64 {
        self.handler.state().instantiations.load(Ordering::Relaxed)
    }
}

/// Creates the instances the `ProxyHandler` runs requests on.
struct Instances {
    name: Arc<str>,
    engine: Engine,
    pre: ProxyPre<InstanceState>,
    limits: Limits,
    instantiations: AtomicU64,
}

impl HandlerState for Instances {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(
        &self,
    ) -> wasmtime::Result<handler::Instance<InstanceState, Expiry, Worker>> {
        let state = InstanceState::new(self.name.clone(), self.limits.memory_bytes);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state.limiter());
        store.epoch_deadline_async_yield_and_update(1);
        let proxy = self.pre.instantiate_async(&mut store).await?;
        self.instantiations.fetch_add(1, Ordering::Relaxed);
        Ok(handler::Instance {
            store,
            proxy,
            view: |state| state.http(),
            expiration: Expiry::default(),
            state: Worker {
                name: self.name.clone(),
            },
        })
    }
}

/// Per-instance policy: how many requests it takes and what to log when it
/// goes.
struct Worker {
    name: Arc<str>,
}

impl WorkerState for Worker {
    type StoreData = InstanceState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= REQUESTS_PER_INSTANCE {
            ShouldAccept::Never
        } else if concurrent == 0 {
            ShouldAccept::Yes
        } else {
            ShouldAccept::No
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, InstanceState>,
        _data: (),
        _task: wasmtime::component::GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        Box::pin(tokio::time::sleep(REQUEST_TIMEOUT))
    }

    fn drop(&self, _store: Store<InstanceState>, result: wasmtime::Result<()>) {
        if let Err(error) = result {
            tracing::error!(component = %self.name, "wasi:http instance failed: {error:#}");
        }
    }
}

/// Retires an instance that sat idle, or whose request ran too long, checked
/// from outside its event loop.
#[derive(Default)]
struct Expiry {
    timer: Option<(WorkerStatus, Instant, Pin<Box<tokio::time::Sleep>>)>,
}

impl WorkerExpiration for Expiry {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let this = self.get_mut();
        let current = matches!(&this.timer, Some((s, t, _)) if *s == status && *t == start);
        if !current {
            let limit = match status {
                WorkerStatus::Idle => IDLE_TIMEOUT,
                WorkerStatus::Requests | WorkerStatus::PostReturn => REQUEST_TIMEOUT,
            };
            let deadline = tokio::time::Instant::from_std(start + limit);
            this.timer = Some((status, start, Box::pin(tokio::time::sleep_until(deadline))));
        }
        let (_, _, sleep) = this.timer.as_mut().expect("set above");
        sleep.as_mut().poll(cx)
    }
}
