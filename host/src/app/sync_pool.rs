//! Instances for `def` routes: each call holds one instance to itself, and
//! many instances run side by side, like a thread pool. Warm instances are
//! reused until they have served `max-requests-per-instance` requests or sat
//! idle for `idle-timeout`; a trap or a timeout discards one at once.

use std::pin::pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Instance, Shared, retire};
use crate::bindings::{Request, Response};
use crate::error::CallError;

/// Warm instances waiting for their next sync call.
pub(super) struct SyncPool {
    idle: Mutex<Vec<Instance>>,
    /// Signalled when an instance goes back to `idle`.
    returned: Notify,
}

impl SyncPool {
    pub(super) fn new(shared: &Arc<Shared>) -> Arc<Self> {
        let pool = Arc::new(Self {
            idle: Mutex::default(),
            returned: Notify::new(),
        });
        reap_idle(Arc::downgrade(&pool), shared.clone());
        pool
    }

    /// Runs `handle` on a warm instance or a new one. The call runs on a task
    /// of its own, so a client that hangs up does not abandon an instance
    /// halfway through a call.
    pub(super) async fn call(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        req: Request,
    ) -> Result<Response, CallError> {
        let deadline = Instant::now() + shared.limits.timeout;
        let mut instance = self.checkout(shared, deadline).await?;
        let pool = self.clone();
        let shared = shared.clone();
        let task = tokio::spawn(async move {
            let call = instance.bindings.call_handle(&mut instance.store, &req);
            // On a timeout or a trap the instance is dropped here: its state
            // can no longer be trusted.
            let response = match tokio::time::timeout_at(deadline, call).await {
                Err(_) => return Err(shared.timed_out()),
                Ok(Err(trap)) => return Err(shared.trapped(trap)),
                Ok(Ok(response)) => response,
            };
            instance.served += 1;
            pool.checkin(&shared, instance);
            Ok(response)
        });
        task.await.map_err(|e| CallError::Panic(e.to_string()))?
    }

    /// A warm instance, a new one if a slot is free, or the first of either
    /// to come free before `deadline`.
    async fn checkout(&self, shared: &Shared, deadline: Instant) -> Result<Instance, CallError> {
        if let Some(instance) = self.pop(shared) {
            return Ok(instance);
        }
        if let Some(slot) = shared.capacity.try_slot() {
            return shared.instantiate(slot, false).await;
        }
        let _queued = shared.capacity.enqueue()?;
        loop {
            let mut returned = pin!(self.returned.notified());
            returned.as_mut().enable();
            if let Some(instance) = self.pop(shared) {
                return Ok(instance);
            }
            tokio::select! {
                () = returned => continue,
                slot = shared.capacity.slot_until(deadline) => {
                    return shared.instantiate(slot?, false).await;
                }
            }
        }
    }

    fn pop(&self, shared: &Shared) -> Option<Instance> {
        let mut idle = self.idle.lock().unwrap();
        let instance = idle.pop()?;
        shared.owner.metrics.instances_idle.dec();
        Some(instance)
    }

    fn checkin(&self, shared: &Shared, mut instance: Instance) {
        if instance.served >= shared.limits.max_requests_per_instance {
            retire(instance);
            return;
        }
        instance.idle_since = Instant::now();
        self.idle.lock().unwrap().push(instance);
        shared.owner.metrics.instances_idle.inc();
        self.returned.notify_one();
    }
}

/// Retires instances idle past the component's idle timeout, until the pool
/// is dropped. The most recently used instances sit at the end of the list
/// and are reused first, so the ones at the front are the ones that age out.
fn reap_idle(pool: Weak<SyncPool>, shared: Arc<Shared>) {
    let every = (shared.limits.idle_timeout / 2).max(Duration::from_millis(500));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(pool) = pool.upgrade() else { return };
            let expired: Vec<Instance> = {
                let mut idle = pool.idle.lock().unwrap();
                let keep = idle
                    .iter()
                    .position(|i| i.idle_since.elapsed() < shared.limits.idle_timeout)
                    .unwrap_or(idle.len());
                idle.drain(..keep).collect()
            };
            for instance in expired {
                shared.owner.metrics.instances_idle.dec();
                retire(instance);
            }
        }
    });
}
