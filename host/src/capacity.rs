//! How many instances a component may have alive, and the bounded queue of
//! requests waiting for one. An instance holds a [`Slot`] for its whole life:
//! one permit from its component's limit and one from the host-wide limit,
//! both taken before it is instantiated.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::CallError;
use crate::metrics::ComponentMetrics;

/// Instance slots of one component.
pub struct Capacity {
    component: Arc<Semaphore>,
    global: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    metrics: ComponentMetrics,
}

/// The right to keep one instance alive; released when dropped.
pub struct Slot {
    _component: OwnedSemaphorePermit,
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
    /// `max_instances` for this component within the host-wide `global`
    /// limit, with room for `queue` waiting requests.
    pub fn new(
        max_instances: usize,
        global: Arc<Semaphore>,
        queue: usize,
        metrics: ComponentMetrics,
    ) -> Self {
        Self {
            component: Arc::new(Semaphore::new(max_instances)),
            global,
            waiting: AtomicUsize::new(0),
            queue,
            metrics,
        }
    }

    /// A slot if one is free now.
    pub fn try_slot(&self) -> Option<Slot> {
        let component = self.component.clone().try_acquire_owned().ok()?;
        let global = self.global.clone().try_acquire_owned().ok()?;
        Some(self.slot_from(component, global))
    }

    /// Waits for a slot until `deadline`; fails with [`CallError::Overloaded`].
    pub async fn slot_until(&self, deadline: Instant) -> Result<Slot, CallError> {
        let acquire = async {
            let component = self.component.clone().acquire_owned().await.ok()?;
            let global = self.global.clone().acquire_owned().await.ok()?;
            Some(self.slot_from(component, global))
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

    fn slot_from(&self, component: OwnedSemaphorePermit, global: OwnedSemaphorePermit) -> Slot {
        self.metrics.instances_live.inc();
        Slot {
            _component: component,
            _global: global,
            metrics: self.metrics.clone(),
        }
    }
}
