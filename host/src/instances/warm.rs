//! Warm instances for calls that hold an instance to themselves: a `def`
//! route of an app, or a request to a `wasi:http` proxy. Many run side by
//! side, like a thread pool. An idle instance is reused until it has served
//! `max-requests-per-instance` requests or sat idle for `idle-timeout`; one
//! whose call trapped or timed out is never checked in again, so it is
//! dropped with its call.

use std::ops::{Deref, DerefMut};
use std::pin::pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use wasmtime::Store;

use crate::config::Limits;
use crate::error::CallError;
use crate::instances::capacity::{Capacity, Evict, Slot};
use crate::instances::state::{InstanceState, Owner};

/// An instance with its store and the bindings to call it through, holding
/// one of its component's slots.
///
/// Boxed: an instance moves at every step of a call (out of the pool, into
/// the guest's future, out of it, back into the pool), and moving a box
/// copies a pointer where moving the parts copied some 400 bytes each time.
pub struct Warm<B>(Box<WarmParts<B>>);

/// What a [`Warm`] instance is made of, reached through it.
pub struct WarmParts<B> {
    pub store: Store<InstanceState>,
    pub bindings: B,
    /// Requests it has served.
    pub served: u64,
    /// When it last went idle.
    pub idle_since: Instant,
    pub slot: Slot,
}

impl<B> Warm<B> {
    pub fn new(store: Store<InstanceState>, bindings: B, slot: Slot) -> Self {
        Self(Box::new(WarmParts {
            store,
            bindings,
            served: 0,
            idle_since: Instant::now(),
            slot,
        }))
    }
}

impl<B> Deref for Warm<B> {
    type Target = WarmParts<B>;

    fn deref(&self) -> &WarmParts<B> {
        &self.0
    }
}

impl<B> DerefMut for Warm<B> {
    fn deref_mut(&mut self) -> &mut WarmParts<B> {
        &mut self.0
    }
}

/// The idle instances of one component.
pub struct WarmPool<B> {
    idle: Mutex<Vec<Warm<B>>>,
    /// Signalled when an instance goes back to `idle`.
    returned: Notify,
    owner: Arc<Owner>,
    max_requests: u64,
    /// Ends an instance that is done serving: runs its `on-stop` hook, or
    /// simply drops it.
    retire: fn(Warm<B>),
}

impl<B: Send + 'static> WarmPool<B> {
    /// An empty pool, whose instances idle past `limits.idle_timeout` are
    /// retired until the pool is dropped.
    pub fn new(owner: Arc<Owner>, limits: &Limits, retire: fn(Warm<B>)) -> Arc<Self> {
        let pool = Arc::new(Self {
            idle: Mutex::default(),
            returned: Notify::new(),
            owner,
            max_requests: limits.max_requests_per_instance,
            retire,
        });
        reap_idle(Arc::downgrade(&pool), limits.idle_timeout);
        pool
    }

    /// A warm instance, a new one from `instantiate` if `capacity` has a
    /// slot free, or the first of either to come free before `deadline`.
    pub async fn checkout<F, Fut>(
        &self,
        capacity: &Capacity,
        deadline: Instant,
        instantiate: F,
    ) -> Result<Warm<B>, CallError>
    where
        F: Fn(Slot) -> Fut,
        Fut: Future<Output = Result<Warm<B>, CallError>>,
    {
        if let Some(instance) = self.take_idle() {
            return Ok(instance);
        }
        // Instantiating is rare and its future large: boxed, so it does not
        // make every checkout's future as large.
        if let Some(slot) = capacity.try_slot(self) {
            return Box::pin(instantiate(slot)).await;
        }
        let _queued = capacity.enqueue()?;
        loop {
            let mut returned = pin!(self.returned.notified());
            returned.as_mut().enable();
            if let Some(instance) = self.take_idle() {
                return Ok(instance);
            }
            tokio::select! {
                () = returned => continue,
                slot = capacity.slot_until(deadline) => return Box::pin(instantiate(slot?)).await,
            }
        }
    }

    /// The most recently used idle instance, if there is one.
    pub fn take_idle(&self) -> Option<Warm<B>> {
        let instance = self.idle.lock().unwrap().pop()?;
        self.owner.metrics.instances_idle.dec();
        Some(instance)
    }

    /// Takes back an instance whose call ended well, or retires it once it
    /// has served its share of requests.
    pub fn checkin(&self, mut instance: Warm<B>) {
        if instance.served >= self.max_requests {
            (self.retire)(instance);
            return;
        }
        instance.idle_since = Instant::now();
        self.idle.lock().unwrap().push(instance);
        self.owner.metrics.instances_idle.inc();
        self.returned.notify_one();
    }
}

impl<B: Send + 'static> Evict for WarmPool<B> {
    /// Retires the least recently used idle instance.
    fn evict_one(&self) -> bool {
        let oldest = {
            let mut idle = self.idle.lock().unwrap();
            (!idle.is_empty()).then(|| idle.remove(0))
        };
        match oldest {
            Some(instance) => {
                self.owner.metrics.instances_idle.dec();
                (self.retire)(instance);
                true
            }
            None => false,
        }
    }
}

/// Retires instances idle past `idle_timeout`, until the pool is dropped.
/// The most recently used instances sit at the end of the list and are
/// reused first, so the ones at the front are the ones that age out.
fn reap_idle<B: Send + 'static>(pool: Weak<WarmPool<B>>, idle_timeout: Duration) {
    let every = (idle_timeout / 2).max(Duration::from_millis(500));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(pool) = pool.upgrade() else { return };
            let expired: Vec<Warm<B>> = {
                let mut idle = pool.idle.lock().unwrap();
                let keep = idle
                    .iter()
                    .position(|i| i.idle_since.elapsed() < idle_timeout)
                    .unwrap_or(idle.len());
                idle.drain(..keep).collect()
            };
            for instance in expired {
                pool.owner.metrics.instances_idle.dec();
                (pool.retire)(instance);
            }
        }
    });
}
