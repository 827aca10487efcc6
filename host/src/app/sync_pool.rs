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
use crate::capacity::Evict;
use crate::error::CallError;
use crate::state::DeadlineExceeded;

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

    /// Runs `handle` on a warm instance or a new one. If the client hangs up
    /// mid-call, the instance is dropped with the call, never reused.
    pub(super) async fn call(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        req: Request,
    ) -> Result<Response, CallError> {
        let deadline = Instant::now() + shared.limits.timeout;
        let mut instance = self.checkout(shared, deadline).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        let route = shared.route_name(req.route);
        let state = instance.store.data_mut();
        state.set_deadline(Some(left));
        state.track_call(&route, &req.context.request_id, false);
        // On a timeout or a trap the instance is dropped here: its state can
        // no longer be trusted.
        let response = match instance
            .bindings
            .call_handle(&mut instance.store, &req)
            .await
        {
            Ok(response) => response,
            Err(trap) if trap.is::<DeadlineExceeded>() => {
                return Err(shared.owner.timed_out(shared.limits.timeout));
            }
            Err(trap) => return Err(shared.owner.trapped(trap)),
        };
        let state = instance.store.data_mut();
        state.set_deadline(None);
        state.track_call(&route, &req.context.request_id, true);
        instance.served += 1;
        if response.background {
            // The instance stays checked out until its tasks are done.
            let pool = self.clone();
            let shared = shared.clone();
            let request_id = req.context.request_id.clone();
            tokio::spawn(async move {
                if let Some(instance) = shared.run_background(instance, request_id).await {
                    pool.checkin(&shared, instance);
                }
            });
        } else {
            self.checkin(shared, instance);
        }
        Ok(response)
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

    pub(super) fn checkin(&self, shared: &Shared, mut instance: Instance) {
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

impl Evict for SyncPool {
    /// Retires the least recently used idle instance.
    fn evict_one(&self) -> bool {
        let oldest = {
            let mut idle = self.idle.lock().unwrap();
            (!idle.is_empty()).then(|| idle.remove(0))
        };
        match oldest {
            Some(instance) => {
                instance.store.data().owner.metrics.instances_idle.dec();
                retire(instance);
                true
            }
            None => false,
        }
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
