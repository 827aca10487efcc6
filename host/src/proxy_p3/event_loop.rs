//! The event loop of one p3 instance: a task that owns the instance and
//! runs the requests the dispatcher sends it, each a `wasi:http/handler`
//! call of its own inside one `run_concurrent`, up to `p3-concurrency` at
//! once. A call ends when its response body has gone.
//!
//! Each call is recorded on the instance, under its request's id, while it
//! runs: the instance follows which call's task group runs, so what each
//! one prints names its own request.
//!
//! Past its deadline a call is dropped (its guest task is abandoned in the
//! store, as `wasmtime serve` does), and the instance takes no more: it
//! ends once the calls still on it have ended. A guest that never yields
//! keeps the loop from seeing deadlines, so [`expire`] also kills the
//! instance from outside once every call on it is past its deadline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use wasmtime::Store;
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};

use super::{Given, GuestRequest, Started};
use crate::error::CallError;
use crate::instances::Prepared;
use crate::instances::blocked::EventLoopKind;
use crate::instances::capacity::Slot;
use crate::instances::event_loops::{LoopPool, LoopWorker, Pending};
use crate::instances::state::InstanceState;

/// The dispatcher's handle on one p3 instance.
pub(super) type Worker = LoopWorker<Job>;

type Shared = Prepared<ServicePre<InstanceState>>;

/// One request waiting for, or running on, an instance.
pub(super) struct Job {
    pub request: GuestRequest,
    /// The request's id, which what its call prints carries.
    pub request_id: Arc<str>,
    /// The trace span the call runs in (none when traces are off): the
    /// event loop runs on a task of its own, so it is carried here.
    pub span: tracing::Span,
    /// Where the guest's response goes.
    pub given: oneshot::Sender<Given>,
    /// Told when the call ends: its body gone, or how it failed.
    pub ended: oneshot::Sender<Result<(), CallError>>,
    /// Resolves when the request's side drops it: the client went away.
    pub left: oneshot::Receiver<()>,
    pub deadline: Instant,
}

/// Starts an instance in `slot` and its event loop; calls sent before it is
/// up wait in its queue.
pub(super) fn start(pool: &Arc<LoopPool<Job>>, shared: &Arc<Shared>, slot: Slot) -> Arc<Worker> {
    let (worker, queue) = Worker::new();
    let event_loop = EventLoop {
        pool: pool.clone(),
        shared: shared.clone(),
        worker: worker.clone(),
        queue,
    };
    // An event loop whose guest code hogs it moves to the long-call lane.
    let owner = shared.owner.clone();
    let run = Box::pin(event_loop.run(slot));
    tokio::spawn(async move { owner.run_guest(run).await });
    worker
}

/// A call on `worker` ran past its deadline: the instance takes no more,
/// and is killed once every call on it is past its own (`limit` from now),
/// should its guest never let the loop end them one by one.
pub(super) fn expire(pool: &LoopPool<Job>, worker: Arc<Worker>, limit: Duration) {
    if worker.retired() && worker.done() {
        return;
    }
    pool.stop_accepting(&worker);
    tokio::spawn(async move {
        tokio::time::sleep(limit).await;
        worker.kill.notify_one();
    });
}

/// The task that owns one instance and runs its calls.
struct EventLoop {
    pool: Arc<LoopPool<Job>>,
    shared: Arc<Shared>,
    worker: Arc<Worker>,
    queue: mpsc::UnboundedReceiver<Job>,
}

/// How an event loop ended.
enum End {
    /// Retired, or every call ended after one ran past its deadline: the
    /// instance is dropped.
    Done,
    /// The guest trapped; every call in flight fails with it.
    Trapped(wasmtime::Error),
    /// Killed from outside, every call on it past its deadline.
    Killed,
}

/// How one call ended.
enum Ended {
    /// Its response body has gone.
    Served,
    /// It trapped, taking the instance with it.
    Trapped(wasmtime::Error),
    /// It ran past its deadline.
    Expired,
    /// Its client went away.
    Left,
}

type CallFuture<'a> = std::pin::Pin<Box<dyn Future<Output = (u64, Ended)> + Send + 'a>>;

impl EventLoop {
    /// Runs the instance's calls until it is done; `slot` goes with it.
    async fn run(mut self, slot: Slot) {
        let _slot = slot;
        let (mut store, service) = match self.instantiate().await {
            Ok(instance) => instance,
            Err(error) => return self.fail_queued(error),
        };
        let pending = Mutex::new(Pending::<()>::default());
        let end = self.serve(&mut store, &service, &pending).await;
        self.pool.ended(&self.worker);
        // Calls still queued here fail when their replies drop with the queue.
        self.queue.close();
        let mut pending = pending.into_inner().unwrap();
        let owner = &self.shared.owner;
        let component = &owner.component;
        match end {
            End::Done => {}
            End::Trapped(trap) => {
                let in_flight = pending.count();
                let failed = owner.call_failed(trap, self.shared.limits.timeout);
                tracing::error!(
                    %component,
                    "wasi:http 0.3 instance discarded, with the {in_flight} requests in flight \
                     on it: {failed}"
                );
                pending.fail_all(|| same(&failed));
            }
            End::Killed => {
                tracing::error!(
                    %component,
                    "wasi:http 0.3 instance discarded: its requests ran past their time limit"
                );
                pending.fail_all(|| {
                    CallError::InstanceLost(
                        "its instance was discarded: a request on it ran past its time limit"
                            .into(),
                    )
                });
            }
        }
    }

    /// A fresh instance, watched for guest code that runs long without
    /// awaiting (and held to `cpu-ms` that way), following which call runs.
    async fn instantiate(&self) -> Result<(Store<InstanceState>, Service), CallError> {
        let started = std::time::Instant::now();
        let shared = &self.shared;
        let mut store = shared.store();
        let blocked_warn = shared.limits.blocked_warn;
        InstanceState::watch_blocking(&mut store, blocked_warn, EventLoopKind::P3Service);
        InstanceState::follow_calls(&mut store);
        let service = shared
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(CallError::Instantiate)?;
        shared.owner.metrics.instantiated(started.elapsed());
        Ok((store, service))
    }

    async fn serve(
        &mut self,
        store: &mut Store<InstanceState>,
        service: &Service,
        pending: &Mutex<Pending<()>>,
    ) -> End {
        let Self {
            pool,
            shared,
            worker,
            queue,
        } = self;
        let idle_timeout = shared.limits.idle_timeout;
        let timeout = shared.limits.timeout;
        let event_loop = store.run_concurrent(async |accessor| {
            let mut calls: FuturesUnordered<CallFuture<'_>> = FuturesUnordered::new();
            let mut expired = false;
            loop {
                tokio::select! {
                    Some((id, ended)) = calls.next(), if !calls.is_empty() => {
                        match ended {
                            Ended::Served => pending.lock().unwrap().answer(id, Ok(())),
                            Ended::Left => pending.lock().unwrap().forget(id),
                            Ended::Expired => {
                                expired = true;
                                pool.stop_accepting(worker);
                                let late = Err(CallError::Timeout(timeout));
                                pending.lock().unwrap().answer(id, late);
                            }
                            Ended::Trapped(trap) => return End::Trapped(trap),
                        }
                        pool.finished(worker);
                        // Calls sent but not yet received count as in flight,
                        // so none is left behind in the queue.
                        if worker.done() {
                            return End::Done;
                        }
                    }
                    job = queue.recv() => {
                        let Some(job) = job else {
                            return End::Done;
                        };
                        let Job { request, request_id, span, given, ended, left, deadline } = job;
                        if expired {
                            // Sent just before the instance stopped taking
                            // calls: it fails as its instance's loss.
                            drop(ended);
                            pool.finished(worker);
                            if worker.done() {
                                return End::Done;
                            }
                            continue;
                        }
                        let id = pending.lock().unwrap().add(ended);
                        // A proxy has no routes: its calls go by their paths.
                        let route: Arc<str> = Arc::from(request.uri().path());
                        // Started here, to learn the call's task group: what
                        // its code prints while that group runs names it.
                        let started = accessor.with(|mut store| {
                            let started = Started::new(&mut store, service, request)?;
                            let state = store.data_mut();
                            state.track_concurrent_call(&route, &request_id, started.group(), span);
                            wasmtime::Result::Ok(started)
                        });
                        calls.push(Box::pin(async move {
                            let ended = match started {
                                Ok(started) => tokio::select! {
                                    biased;
                                    served = started.serve(accessor, given) => match served {
                                        Ok(()) => Ended::Served,
                                        Err(trap) => Ended::Trapped(trap),
                                    },
                                    () = tokio::time::sleep_until(deadline) => Ended::Expired,
                                    _ = left => Ended::Left,
                                },
                                Err(trap) => Ended::Trapped(trap),
                            };
                            // However it ended, nothing its code prints now
                            // is this request's.
                            accessor.with(|mut store| {
                                store.data_mut().track_call(&route, &request_id, true);
                            });
                            (id, ended)
                        }));
                    }
                    () = worker.stop.notified(), if calls.is_empty() => {
                        if worker.done() {
                            return End::Done;
                        }
                    }
                    () = tokio::time::sleep(idle_timeout), if calls.is_empty() => {
                        if pool.retire_if_idle(worker) {
                            return End::Done;
                        }
                    }
                }
            }
        });
        // A guest that spins never lets the event loop poll its own futures,
        // so the kill is raced from outside it; the epoch yield lets this
        // select run, and dropping the loop abandons the guest mid-call.
        tokio::select! {
            biased;
            () = worker.kill.notified() => End::Killed,
            outcome = event_loop => outcome.unwrap_or_else(End::Trapped),
        }
    }

    /// Instantiation failed: every caller already queued here gets the error.
    fn fail_queued(mut self, error: CallError) {
        tracing::error!(
            component = %self.shared.owner.component,
            "cannot start an instance: {error}"
        );
        self.pool.stop_accepting(&self.worker);
        self.queue.close();
        while let Ok(job) = self.queue.try_recv() {
            let _ = job.ended.send(Err(error.again()));
        }
        self.pool.ended(&self.worker);
    }
}

/// The same failure for another call in flight on the trapped instance.
fn same(failed: &CallError) -> CallError {
    match failed {
        CallError::Trap(trap) => CallError::Trap(wasmtime::Error::msg(format!("{trap:#}"))),
        CallError::CpuExceeded(limit) => CallError::CpuExceeded(*limit),
        other => other.again(),
    }
}
