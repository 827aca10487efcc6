//! Components of the `cello:component/app` world: their routes, and the
//! instances that serve them.
//!
//! A `def` route is a plain call that holds one instance from
//! [`sync_pool`] until it returns. An `async def` route is a
//! component-model async call on an instance from [`async_pool`], where many
//! calls are in flight at once, each suspended while it awaits the host.

mod async_pool;
mod sync_pool;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use crate::bindings::{App as AppBindings, AppPre, Manifest, Request, Response};
use crate::config::Limits;
use crate::error::CallError;
use crate::state::InstanceState;
use async_pool::AsyncPool;
use sync_pool::SyncPool;

/// A loaded app component, ready to serve its routes.
pub struct AppComponent {
    inner: Arc<Shared>,
    sync_pool: SyncPool,
    async_pool: AsyncPool,
}

/// What every instance of one component is made from.
struct Shared {
    name: Arc<str>,
    engine: Engine,
    pre: AppPre<InstanceState>,
    limits: Limits,
    instantiations: AtomicU64,
}

/// An instance with its store, after `on-start` succeeded.
struct Instance {
    store: Store<InstanceState>,
    bindings: AppBindings,
}

impl AppComponent {
    /// Prepares `component` for instantiation and reads its manifest from a
    /// throwaway instance. Fails with a sentence when the component imports
    /// what the host does not provide or `describe` traps.
    pub async fn load(
        name: Arc<str>,
        engine: &Engine,
        linker: &Linker<InstanceState>,
        component: &Component,
        limits: Limits,
    ) -> anyhow::Result<(Self, Manifest)> {
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| anyhow::anyhow!("cannot link: {e:#}"))?;
        let pre = AppPre::new(pre).map_err(|e| anyhow::anyhow!("wrong exports: {e:#}"))?;
        let shared = Arc::new(Shared {
            name,
            engine: engine.clone(),
            pre,
            limits,
            instantiations: AtomicU64::new(0),
        });
        let manifest = shared.describe().await?;
        let app = Self {
            sync_pool: SyncPool::new(shared.limits.max_instances),
            async_pool: AsyncPool::new(shared.limits.clone()),
            inner: shared,
        };
        Ok((app, manifest))
    }

    /// Serves `req` on a sync (`def`) or async (`async def`) route.
    pub async fn handle(&self, req: Request, is_async: bool) -> Result<Response, CallError> {
        if is_async {
            self.async_pool.call(&self.inner, req).await
        } else {
            self.sync_pool.call(&self.inner, req).await
        }
    }

    /// How many instances this component has created since it was loaded,
    /// not counting the one `describe` ran on.
    pub fn instantiations(&self) -> u64 {
        self.inner.instantiations.load(Ordering::Relaxed)
    }

    /// Largest request body this component accepts.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.limits.max_body_bytes
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

impl Shared {
    fn new_store(&self) -> Store<InstanceState> {
        let state = InstanceState::new(self.name.clone(), self.limits.memory_bytes);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state.limiter());
        // Yield to the runtime on every epoch tick, so a busy guest never
        // holds a runtime thread for long.
        store.epoch_deadline_async_yield_and_update(1);
        store
    }

    async fn describe(&self) -> anyhow::Result<Manifest> {
        let mut store = self.new_store();
        let bindings = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| anyhow::anyhow!("cannot instantiate: {e:#}"))?;
        bindings
            .call_describe(&mut store)
            .await
            .map_err(|e| anyhow::anyhow!("describe() failed: {e:#}"))
    }

    /// A fresh instance, with its `on-start` hook run.
    async fn instantiate(&self) -> Result<Instance, CallError> {
        let mut store = self.new_store();
        let bindings = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(CallError::Instantiate)?;
        self.instantiations.fetch_add(1, Ordering::Relaxed);
        let started = store
            .run_concurrent(async |accessor| bindings.call_on_start(accessor).await)
            .await
            .and_then(|result| result)
            .map_err(CallError::Trap)?;
        started.map_err(CallError::StartFailed)?;
        Ok(Instance { store, bindings })
    }
}
