//! How many instances a component may have alive, and the bounded queue of
//! requests waiting for one. An instance holds a [`Slot`] for its whole life:
//! one permit from its component's limit, one from its tenant's (for a
//! tenant's component) and one from the host-wide limit, all taken before it
//! is instantiated.
//!
//! Idle instances hold slots too, so a request that finds none free first
//! evicts an idle instance of another pool (its component's other pool for
//! the component limit, any component's for the host-wide one) and then
//! waits for the slot, or for an instance of its own pool to come back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::CallError;
use crate::metrics::ComponentMetrics;

/// A pool that can give up an idle instance to make room.
pub trait Evict: Send + Sync {
    /// Retires one idle instance, whose slot frees shortly; false when none
    /// is idle.
    fn evict_one(&self) -> bool;
}

/// The host-wide instance limit, and every pool that can make room in it.
pub struct HostCapacity {
    slots: Arc<Semaphore>,
    pools: Mutex<Vec<Weak<dyn Evict>>>,
}

impl HostCapacity {
    /// Room for `max_instances` instances across every component.
    pub fn new(max_instances: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(max_instances)),
            pools: Mutex::default(),
        })
    }
}

/// Asks each live pool but `asking` in turn to evict an idle instance,
/// forgetting pools that are gone.
///
/// The asking pool is skipped: an idle instance of its own is one it can
/// take instead (it looked a moment ago and had none; one that came back
/// since is found by its next look), and evicting it would only replace a
/// warm instance with a cold one, or take a lock the pool may hold.
fn evict_from(pools: &Mutex<Vec<Weak<dyn Evict>>>, asking: &dyn Evict) -> bool {
    let live: Vec<Arc<dyn Evict>> = {
        let mut pools = pools.lock().unwrap();
        pools.retain(|pool| pool.strong_count() > 0);
        pools.iter().filter_map(Weak::upgrade).collect()
    };
    live.iter()
        .filter(|pool| !std::ptr::addr_eq(Arc::as_ptr(pool), asking))
        .any(|pool| pool.evict_one())
}

/// Instance slots of one component.
pub struct Capacity {
    component: Arc<Semaphore>,
    /// The tenant's limit, shared by all its components.
    tenant: Option<Arc<HostCapacity>>,
    host: Arc<HostCapacity>,
    /// This component's pools, to evict from for the component limit.
    pools: Mutex<Vec<Weak<dyn Evict>>>,
    waiting: AtomicUsize,
    queue: usize,
    metrics: ComponentMetrics,
}

/// The right to keep one instance alive; released when dropped.
pub struct Slot {
    _component: OwnedSemaphorePermit,
    _tenant: Option<OwnedSemaphorePermit>,
    _global: OwnedSemaphorePermit,
    metrics: ComponentMetrics,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.instances_live.dec();
    }
}

/// A place in the wait queue, given up when dropped.
pub struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Capacity {
    /// `max_instances` for this component within its tenant's limit (if it
    /// belongs to one) and the host-wide limit, with room for `queue`
    /// waiting requests.
    pub fn new(
        max_instances: usize,
        tenant: Option<Arc<HostCapacity>>,
        host: Arc<HostCapacity>,
        queue: usize,
        metrics: ComponentMetrics,
    ) -> Self {
        Self {
            component: Arc::new(Semaphore::new(max_instances)),
            tenant,
            host,
            pools: Mutex::default(),
            waiting: AtomicUsize::new(0),
            queue,
            metrics,
        }
    }

    /// Registers a pool of this component's idle instances for eviction.
    pub fn register(&self, pool: Weak<dyn Evict>) {
        self.pools.lock().unwrap().push(pool.clone());
        if let Some(tenant) = &self.tenant {
            tenant.pools.lock().unwrap().push(pool.clone());
        }
        self.host.pools.lock().unwrap().push(pool);
    }

    /// A slot if one is free now. When none is, an idle instance of a pool
    /// other than `asking` is evicted so that one frees shortly for
    /// [`Capacity::slot_until`].
    pub fn try_slot(&self, asking: &dyn Evict) -> Option<Slot> {
        let Ok(component) = self.component.clone().try_acquire_owned() else {
            evict_from(&self.pools, asking);
            return None;
        };
        let tenant = match &self.tenant {
            Some(tenant) => match tenant.slots.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    evict_from(&tenant.pools, asking);
                    return None;
                }
            },
            None => None,
        };
        let Ok(global) = self.host.slots.clone().try_acquire_owned() else {
            evict_from(&self.host.pools, asking);
            return None;
        };
        Some(self.slot_from(component, tenant, global))
    }

    /// Waits for a slot until `deadline`; fails with [`CallError::Overloaded`].
    pub async fn slot_until(&self, deadline: Instant) -> Result<Slot, CallError> {
        let acquire = async {
            let component = self.component.clone().acquire_owned().await.ok()?;
            let tenant = match &self.tenant {
                Some(tenant) => Some(tenant.slots.clone().acquire_owned().await.ok()?),
                None => None,
            };
            let global = self.host.slots.clone().acquire_owned().await.ok()?;
            Some(self.slot_from(component, tenant, global))
        };
        match tokio::time::timeout_at(deadline, acquire).await {
            Ok(Some(slot)) => Ok(slot),
            _ => Err(self.reject()),
        }
    }

    /// Joins the wait queue, or fails with [`CallError::Overloaded`] when it
    /// is full.
    pub fn enqueue(&self) -> Result<Queued<'_>, CallError> {
        let before = self.waiting.fetch_add(1, Ordering::Relaxed);
        let queued = Queued(&self.waiting);
        if before >= self.queue {
            return Err(self.reject());
        }
        Ok(queued)
    }

    fn reject(&self) -> CallError {
        self.metrics.queue_rejections.inc();
        CallError::Overloaded
    }

    fn slot_from(
        &self,
        component: OwnedSemaphorePermit,
        tenant: Option<OwnedSemaphorePermit>,
        global: OwnedSemaphorePermit,
    ) -> Slot {
        self.metrics.instances_live.inc();
        Slot {
            _component: component,
            _tenant: tenant,
            _global: global,
            metrics: self.metrics.clone(),
        }
    }
}
