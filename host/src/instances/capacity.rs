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
use std::time::Duration;

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
        self.free_slot(Some(asking))
    }

    /// A slot if one is free now, evicting nothing: for an instance that
    /// would only spread a component's load, never worth another's warm
    /// instance.
    pub fn spare_slot(&self) -> Option<Slot> {
        self.free_slot(None)
    }

    fn free_slot(&self, asking: Option<&dyn Evict>) -> Option<Slot> {
        let evict = |pools: &Mutex<Vec<Weak<dyn Evict>>>| {
            if let Some(asking) = asking {
                evict_from(pools, asking);
            }
        };
        let Ok(component) = self.component.clone().try_acquire_owned() else {
            evict(&self.pools);
            return None;
        };
        let tenant = match &self.tenant {
            Some(tenant) => match tenant.slots.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    evict(&tenant.pools);
                    return None;
                }
            },
            None => None,
        };
        let Ok(global) = self.host.slots.clone().try_acquire_owned() else {
            evict(&self.host.pools);
            return None;
        };
        Some(self.slot_from(component, tenant, global))
    }

    /// Waits for a slot until `deadline`; fails with [`CallError::Overloaded`].
    pub async fn slot_until(&self, deadline: Instant) -> Result<Slot, CallError> {
        match tokio::time::timeout_at(deadline, self.acquire()).await {
            Ok(Some(slot)) => Ok(slot),
            _ => Err(self.reject()),
        }
    }

    /// A slot for a component about to be put in service: idle instances
    /// of other pools (the version it replaces, say) are evicted to make
    /// room, and requests in flight are waited for at most `within`. None
    /// when they held every slot that long.
    pub async fn slot_evicting(&self, asking: &dyn Evict, within: Duration) -> Option<Slot> {
        // An evicted instance frees its slot once its `on-stop` hook has
        // run; a request may take it first, so evict again after a while.
        const EVICT_AGAIN: Duration = Duration::from_millis(100);
        let deadline = Instant::now() + within;
        loop {
            if let Some(slot) = self.try_slot(asking) {
                return Some(slot);
            }
            let wait = (Instant::now() + EVICT_AGAIN).min(deadline);
            if let Ok(Some(slot)) = tokio::time::timeout_at(wait, self.acquire()).await {
                return Some(slot);
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Waits for all three permits of a slot.
    async fn acquire(&self) -> Option<Slot> {
        let component = self.component.clone().acquire_owned().await.ok()?;
        let tenant = match &self.tenant {
            Some(tenant) => Some(tenant.slots.clone().acquire_owned().await.ok()?),
            None => None,
        };
        let global = self.host.slots.clone().acquire_owned().await.ok()?;
        Some(self.slot_from(component, tenant, global))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool holding one idle instance's slot, given up when evicted.
    #[derive(Default)]
    struct OneIdle(Mutex<Option<Slot>>);

    impl Evict for OneIdle {
        fn evict_one(&self) -> bool {
            self.0.lock().unwrap().take().is_some()
        }
    }

    fn capacity(tenant: &Arc<HostCapacity>) -> Capacity {
        let metrics = ComponentMetrics::new("capacity-test");
        Capacity::new(4, Some(tenant.clone()), HostCapacity::new(8), 8, metrics)
    }

    #[tokio::test]
    async fn a_new_version_evicts_the_idle_instances_of_the_old_one() {
        let tenant = HostCapacity::new(1);
        let (old, new) = (capacity(&tenant), capacity(&tenant));
        let old_pool = Arc::new(OneIdle::default());
        old.register(Arc::downgrade(&old_pool) as _);
        *old_pool.0.lock().unwrap() = old.try_slot(&*old_pool);
        let asking = OneIdle::default();
        let slot = new.slot_evicting(&asking, Duration::from_secs(5)).await;
        assert!(slot.is_some());
        assert!(
            old_pool.0.lock().unwrap().is_none(),
            "the idle instance went"
        );
    }

    #[tokio::test]
    async fn a_new_version_waits_for_busy_instances_only_as_long_as_it_is_told() {
        let tenant = HostCapacity::new(1);
        let (old, new) = (capacity(&tenant), capacity(&tenant));
        let nothing_idle = OneIdle::default();
        let _busy = old.try_slot(&nothing_idle).expect("a free slot");
        let started = Instant::now();
        let slot = new
            .slot_evicting(&nothing_idle, Duration::from_millis(300))
            .await;
        assert!(slot.is_none());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }
}
