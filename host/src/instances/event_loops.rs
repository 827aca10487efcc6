//! Event-loop instances: each runs its calls inside one `run_concurrent` on
//! its store, many in flight at once, taking them from a queue of its own.
//! This is the dispatcher that picks the instance for a call, shared by an
//! app's `async def` routes ([`crate::app`]) and `wasi:http` 0.3 services
//! ([`crate::proxy_p3`]); each brings its own event loop (`J` is what one
//! call hands it).
//!
//! A call goes to the least busy instance with room, else to a new one if
//! the component has a slot free, else waits in the component's queue for
//! either. While every instance has a call in flight, a call starts another
//! one if a slot is free without evicting anything, up to one instance per
//! thread of the runtime: one event loop runs on one core at a time.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::error::CallError;
use crate::instances::capacity::{Capacity, Evict, Slot};

/// The event-loop instances of one component.
pub struct LoopPool<J> {
    /// Instances accepting calls.
    workers: Mutex<Vec<Arc<LoopWorker<J>>>>,
    /// Signalled when a call finishes, making room on an instance.
    room: Notify,
}

impl<J> Default for LoopPool<J> {
    fn default() -> Self {
        Self {
            workers: Mutex::default(),
            room: Notify::new(),
        }
    }
}

/// The dispatcher's handle on one event-loop instance.
pub struct LoopWorker<J> {
    jobs: mpsc::UnboundedSender<J>,
    /// Calls sent to it and not yet answered.
    in_flight: AtomicUsize,
    /// Calls sent to it in its life.
    accepted: AtomicU64,
    /// Set once it takes no more calls; it exits when the last one ends.
    retired: AtomicBool,
    /// Ends the instance at once, failing its calls.
    pub kill: Notify,
    /// Ends an idle instance in good order.
    pub stop: Notify,
}

impl<J> LoopWorker<J> {
    /// A worker, and the queue its event loop takes calls from.
    pub fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<J>) {
        let (jobs, queue) = mpsc::unbounded_channel();
        let worker = Arc::new(Self {
            jobs,
            in_flight: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            kill: Notify::new(),
            stop: Notify::new(),
        });
        (worker, queue)
    }

    /// True once it takes no more calls and has none left.
    pub fn done(&self) -> bool {
        self.retired.load(Ordering::Relaxed) && self.in_flight.load(Ordering::Relaxed) == 0
    }

    /// True once it takes no more calls.
    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }
}

/// How many calls one instance takes.
#[derive(Debug, Clone, Copy)]
pub struct LoopLimits {
    /// In flight at once.
    pub concurrency: usize,
    /// In its life, before it is replaced.
    pub max_requests: u64,
}

impl<J: Send + 'static> LoopPool<J> {
    /// Sends `job` to the least busy instance with room, to a new one from
    /// `start` when all are full and `capacity` has a slot free, or waits in
    /// the component's queue for either until `deadline`.
    pub async fn dispatch(
        &self,
        capacity: &Capacity,
        limits: LoopLimits,
        job: J,
        deadline: Instant,
        start: impl Fn(Slot) -> Arc<LoopWorker<J>>,
    ) -> Result<Arc<LoopWorker<J>>, CallError> {
        let mut queued = None;
        loop {
            let mut room = pin!(self.room.notified());
            room.as_mut().enable();
            {
                let mut workers = self.workers.lock().unwrap();
                let free = workers
                    .iter()
                    .filter(|w| w.in_flight.load(Ordering::Relaxed) < limits.concurrency)
                    .min_by_key(|w| w.in_flight.load(Ordering::Relaxed))
                    .cloned();
                if let Some(worker) = free {
                    // Every instance has a call in flight: another one, up
                    // to one per thread of the runtime, so that a busy
                    // component's guest code runs on every core, not on one
                    // event loop (with 32 connections on the todos read,
                    // `make bench-sql`'s PostgreSQL row went 1.7x faster).
                    if worker.in_flight.load(Ordering::Relaxed) > 0
                        && workers.len() < spread()
                        && let Some(slot) = capacity.spare_slot()
                    {
                        let worker = start(slot);
                        workers.push(worker.clone());
                        return Ok(assign(&mut workers, limits, worker, job));
                    }
                    return Ok(assign(&mut workers, limits, worker, job));
                }
                if let Some(slot) = capacity.try_slot(self) {
                    let worker = start(slot);
                    workers.push(worker.clone());
                    return Ok(assign(&mut workers, limits, worker, job));
                }
            }
            if queued.is_none() {
                queued = Some(capacity.enqueue()?);
            }
            tokio::select! {
                () = room => continue,
                slot = capacity.slot_until(deadline) => {
                    let worker = start(slot?);
                    let mut workers = self.workers.lock().unwrap();
                    workers.push(worker.clone());
                    return Ok(assign(&mut workers, limits, worker, job));
                }
            }
        }
    }

    /// Takes `worker` out of the dispatch: it gets no more calls.
    pub fn stop_accepting(&self, worker: &Arc<LoopWorker<J>>) {
        worker.retired.store(true, Ordering::Relaxed);
        self.workers
            .lock()
            .unwrap()
            .retain(|w| !Arc::ptr_eq(w, worker));
    }

    /// Removes an idle worker, under the lock so that no call can be sent to
    /// it once it has decided to go.
    pub fn retire_if_idle(&self, worker: &Arc<LoopWorker<J>>) -> bool {
        let mut workers = self.workers.lock().unwrap();
        if !worker.idle() {
            return false;
        }
        worker.retired.store(true, Ordering::Relaxed);
        workers.retain(|w| !Arc::ptr_eq(w, worker));
        true
    }

    /// A call on `worker` ended, making room for another.
    pub fn finished(&self, worker: &LoopWorker<J>) {
        worker.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.room.notify_one();
    }

    /// `worker`'s event loop ended: it takes no more calls, and a call
    /// waiting for room may start an instance in its slot.
    pub fn ended(&self, worker: &Arc<LoopWorker<J>>) {
        self.stop_accepting(worker);
        self.room.notify_one();
    }
}

/// How many instances of one component a load spreads over before calls
/// share them: one per worker thread of the runtime serving the request.
fn spread() -> usize {
    tokio::runtime::Handle::try_current().map_or(1, |runtime| runtime.metrics().num_workers())
}

/// Hands `job` to `worker`, under the pool's lock.
fn assign<J>(
    workers: &mut Vec<Arc<LoopWorker<J>>>,
    limits: LoopLimits,
    worker: Arc<LoopWorker<J>>,
    job: J,
) -> Arc<LoopWorker<J>> {
    worker.in_flight.fetch_add(1, Ordering::Relaxed);
    let accepted = worker.accepted.fetch_add(1, Ordering::Relaxed) + 1;
    if accepted >= limits.max_requests {
        worker.retired.store(true, Ordering::Relaxed);
        workers.retain(|w| !Arc::ptr_eq(w, &worker));
    }
    // A send fails only when the instance just died; dropping the job's
    // reply then tells the caller.
    let _ = worker.jobs.send(job);
    worker
}

impl<J: Send + 'static> Evict for LoopPool<J> {
    /// Retires an instance with no calls in flight.
    fn evict_one(&self) -> bool {
        let idle = self
            .workers
            .lock()
            .unwrap()
            .iter()
            .find(|w| w.idle())
            .cloned();
        match idle {
            Some(worker) if self.retire_if_idle(&worker) => {
                worker.stop.notify_one();
                true
            }
            _ => false,
        }
    }
}

/// Where the calls in flight on an event loop are answered (with an `R`),
/// kept outside the loop so that a trap, which ends the loop at once, can
/// still answer every caller.
pub struct Pending<R> {
    next: u64,
    replies: HashMap<u64, oneshot::Sender<Result<R, CallError>>>,
}

impl<R> Default for Pending<R> {
    fn default() -> Self {
        Self {
            next: 0,
            replies: HashMap::new(),
        }
    }
}

impl<R> Pending<R> {
    /// Keeps `reply` for a call; the call's id.
    pub fn add(&mut self, reply: oneshot::Sender<Result<R, CallError>>) -> u64 {
        self.next += 1;
        self.replies.insert(self.next, reply);
        self.next
    }

    /// Answers call `id` with `result`.
    pub fn answer(&mut self, id: u64, result: Result<R, CallError>) {
        if let Some(reply) = self.replies.remove(&id) {
            let _ = reply.send(result);
        }
    }

    /// Forgets call `id`, whose caller is gone.
    pub fn forget(&mut self, id: u64) {
        self.replies.remove(&id);
    }

    /// Fails every call still in flight.
    pub fn fail_all(&mut self, error: impl Fn() -> CallError) {
        for (_, reply) in self.replies.drain() {
            let _ = reply.send(Err(error()));
        }
    }

    /// How many calls are in flight.
    pub fn count(&self) -> usize {
        self.replies.len()
    }
}
