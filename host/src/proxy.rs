//! Standard `wasi:http/proxy@0.2.x` components, the kind built for
//! `wasmtime serve` or Spin, served unchanged as one catch-all route.

use std::pin::Pin;
use std::sync::Arc;
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

use crate::capacity::{Capacity, Slot};
use crate::config::Limits;
use crate::error::CallError;
use crate::loader::Runtime;
use crate::server::Body;
use crate::state::{InstanceState, Owner};

/// A loaded `wasi:http/proxy` component.
pub struct ProxyComponent {
    handler: ProxyHandler<Instances>,
}

impl ProxyComponent {
    /// Prepares `component`; fails when it imports what the host lacks.
    pub fn load(
        owner: Arc<Owner>,
        component: &Component,
        linker: &Linker<InstanceState>,
        limits: Limits,
        runtime: &Runtime,
    ) -> anyhow::Result<Self> {
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| anyhow::anyhow!("cannot link: {e:#}"))?;
        let pre = wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre)
            .map_err(|e| anyhow::anyhow!("wrong exports: {e:#}"))?;
        let capacity = Capacity::new(
            limits.max_instances,
            owner.tenant.as_ref().map(|t| t.capacity.clone()),
            runtime.capacity.clone(),
            limits.queue,
            owner.metrics.clone(),
        );
        Ok(Self {
            handler: ProxyHandler::new(Instances {
                owner,
                engine: runtime.engine.clone(),
                pre: ProxyPre::P2(pre),
                capacity,
                limits,
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
        let state = self.handler.state();
        let response = match self.handler.handle((), request).await {
            Ok(response) => response,
            Err(e) if e.is::<handler::ExpirationError>() => {
                return Err(state.owner.timed_out(state.limits.timeout));
            }
            Err(e) if e.is::<CallError>() => {
                return Err(e.downcast::<CallError>().expect("checked"));
            }
            Err(e) => return Err(state.owner.trapped(e)),
        };
        Ok(response.map(|body| body.map_err(Into::into).boxed_unsync()))
    }

    /// Who the component is, for logs and metrics.
    pub fn owner(&self) -> &Arc<Owner> {
        &self.handler.state().owner
    }
}

/// Creates the instances the `ProxyHandler` runs requests on.
struct Instances {
    owner: Arc<Owner>,
    engine: Engine,
    pre: ProxyPre<InstanceState>,
    limits: Limits,
    capacity: Capacity,
}

impl HandlerState for Instances {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(
        &self,
    ) -> wasmtime::Result<handler::Instance<InstanceState, Expiry, Worker>> {
        let slot = match self.capacity.try_slot() {
            Some(slot) => slot,
            None => {
                let deadline = tokio::time::Instant::now() + self.limits.timeout;
                self.capacity.slot_until(deadline).await?
            }
        };
        let started = std::time::Instant::now();
        let state = InstanceState::new(self.owner.clone(), &self.limits);
        let mut store = state.into_store(&self.engine);
        let proxy = self.pre.instantiate_async(&mut store).await?;
        self.owner.metrics.instantiated(started.elapsed());
        Ok(handler::Instance {
            store,
            proxy,
            view: |state| state.http(),
            expiration: Expiry::new(&self.limits),
            state: Worker {
                owner: self.owner.clone(),
                timeout: self.limits.timeout,
                max_requests: self.limits.max_requests_per_instance,
                concurrency: self.limits.async_concurrency,
                _slot: slot,
            },
        })
    }
}

/// Per-instance policy: how many requests it takes, how long each may run,
/// and what to log when it goes. Holds the instance's slot.
struct Worker {
    owner: Arc<Owner>,
    timeout: Duration,
    max_requests: u64,
    /// Requests accepted at once; a wasi:http 0.2 handler runs them one
    /// after another, so more only queue on the instance.
    concurrency: usize,
    _slot: Slot,
}

impl WorkerState for Worker {
    type StoreData = InstanceState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total as u64 >= self.max_requests {
            ShouldAccept::Never
        } else if concurrent < self.concurrency {
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
        Box::pin(tokio::time::sleep(self.timeout))
    }

    fn drop(&self, _store: Store<InstanceState>, result: wasmtime::Result<()>) {
        if let Err(error) = result {
            if crate::server::SHUTTING_DOWN.load(std::sync::atomic::Ordering::Relaxed) {
                tracing::debug!(component = %self.owner.component, "instance dropped at shutdown");
                return;
            }
            tracing::error!(
                component = %self.owner.component,
                "wasi:http instance discarded: {error:#}"
            );
        }
    }
}

/// Retires an instance that sat idle, or whose request ran too long, checked
/// from outside its event loop.
struct Expiry {
    idle_timeout: Duration,
    request_timeout: Duration,
    /// The state and start the timer was last set for, and the timer, which
    /// is reset in place rather than made anew for every request.
    current: Option<(WorkerStatus, Instant)>,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Expiry {
    fn new(limits: &Limits) -> Self {
        Self {
            idle_timeout: limits.idle_timeout,
            request_timeout: limits.timeout,
            current: None,
            timer: Box::pin(tokio::time::sleep(limits.idle_timeout)),
        }
    }
}

impl WorkerExpiration for Expiry {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let this = self.get_mut();
        if this.current != Some((status, start)) {
            let limit = match status {
                WorkerStatus::Idle => this.idle_timeout,
                WorkerStatus::Requests | WorkerStatus::PostReturn => this.request_timeout,
            };
            this.timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(start + limit));
            this.current = Some((status, start));
        }
        this.timer.as_mut().poll(cx)
    }
}
