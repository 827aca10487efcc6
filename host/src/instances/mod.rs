//! Instances: what a store holds ([`state`]), the slots instances take and
//! the queue for them ([`capacity`]), the warm instances kept for reuse
//! ([`warm`]), the dispatcher for event-loop instances ([`event_loops`]),
//! the watch on their guest code ([`blocked`]), and what every instance of
//! one component is made from ([`Prepared`]), for app and proxy components
//! alike. The pools for an app's routes are in [`crate::app`].

pub mod blocked;
pub mod capacity;
pub mod event_loops;
pub mod state;
pub mod warm;

use std::sync::Arc;

use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store};

use crate::config::Limits;
use crate::resources::Resources;
use capacity::Capacity;
use state::{InstanceState, Owner};

/// What every instance of one component is made from: its owner, engine,
/// linked and type-checked component (`P`: the bindings' `...Pre`), its
/// limits and its instance slots.
pub struct Prepared<P> {
    pub owner: Arc<Owner>,
    pub engine: Engine,
    pub pre: P,
    pub limits: Limits,
    pub capacity: Capacity,
}

impl<P> Prepared<P> {
    /// Links `component` and checks its exports with `typed` (the world's
    /// `...Pre::new`); fails with a sentence saying which went wrong.
    pub fn new(
        owner: Arc<Owner>,
        component: &Component,
        linker: &Linker<InstanceState>,
        limits: Limits,
        resources: &Resources,
        typed: impl FnOnce(InstancePre<InstanceState>) -> wasmtime::Result<P>,
    ) -> anyhow::Result<Self> {
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| anyhow::anyhow!("cannot link: {e:#}"))?;
        let pre = typed(pre).map_err(|e| anyhow::anyhow!("wrong exports: {e:#}"))?;
        let capacity = Capacity::new(
            limits.max_instances,
            owner.tenant.as_ref().map(|t| t.capacity.clone()),
            resources.capacity.clone(),
            limits.queue,
            owner.metrics.clone(),
        );
        Ok(Self {
            owner,
            engine: component.engine().clone(),
            pre,
            limits,
            capacity,
        })
    }

    /// A store for a new instance, with the component's limits.
    pub fn store(&self) -> Store<InstanceState> {
        InstanceState::new(self.owner.clone(), &self.limits).into_store(&self.engine)
    }
}

/// Runs `make`, a component's first instantiation, again when Linux
/// refused for a moment to seal its memory image.
///
/// A component's first instance makes its memory image: a memfd the kernel
/// seals. Linux may refuse the seal for a moment while pages of the new
/// file are still pinned ("cannot add seals to the memfd", seen once in a
/// loaded test run). Nothing is wrong with the component and wasmtime keeps
/// no failed image, so that error alone is tried again, three times at
/// most.
pub async fn first_instance<T, F>(mut make: impl FnMut() -> F) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    let mut tries = 0;
    loop {
        match make().await {
            Err(e) if tries < 3 && format!("{e:#}").contains("seals to the memfd") => {
                tries += 1;
                tracing::warn!("the kernel refused to seal a memory image ({e:#}); trying again");
                tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
            }
            made => return made,
        }
    }
}
