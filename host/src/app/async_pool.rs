//! Instances for `async def` routes: each instance runs an event loop (a
//! `run_concurrent` on its store) that accepts calls from a queue of its own
//! and keeps many of them in flight, each suspended while it awaits the host.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use super::{Instance, Shared};
use crate::bindings::{Request, Response};
use crate::config::Limits;
use crate::error::CallError;

/// How long an instance with nothing in flight waits for work before it is
/// retired.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

type Reply = oneshot::Sender<Result<Response, CallError>>;

/// One async call waiting for, or running on, an instance.
struct Job {
    req: Request,
    reply: Reply,
}

/// The event-loop instances of one component.
pub(super) struct AsyncPool {
    workers: Arc<Mutex<Vec<Worker>>>,
    limits: Limits,
}

/// The dispatcher's handle on one event-loop instance.
struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
    in_flight: Arc<AtomicUsize>,
}

impl AsyncPool {
    pub(super) fn new(limits: Limits) -> Self {
        Self {
            workers: Arc::default(),
            limits,
        }
    }

    /// Sends `req` to the least busy instance with room, starting a new
    /// instance when all are full and the component may have another.
    pub(super) async fn call(
        &self,
        shared: &Arc<Shared>,
        req: Request,
    ) -> Result<Response, CallError> {
        let (reply, response) = oneshot::channel();
        self.dispatch(shared, Job { req, reply });
        response.await.unwrap_or_else(|_| {
            Err(CallError::InstanceLost(format!(
                "the instance of {} serving this request stopped",
                shared.name
            )))
        })
    }

    fn dispatch(&self, shared: &Arc<Shared>, job: Job) {
        let mut workers = self.workers.lock().unwrap();
        workers.retain(|w| !w.jobs.is_closed());
        let least_busy = workers
            .iter()
            .min_by_key(|w| w.in_flight.load(Ordering::Relaxed));
        let has_room = least_busy
            .is_some_and(|w| w.in_flight.load(Ordering::Relaxed) < self.limits.async_concurrency);
        let worker = if has_room || workers.len() >= self.limits.max_instances {
            least_busy.expect("max_instances is at least one")
        } else {
            workers.push(self.start_worker(shared));
            workers.last().unwrap()
        };
        worker.in_flight.fetch_add(1, Ordering::Relaxed);
        // A send fails only when the worker just stopped; dropping the job's
        // reply then tells the caller.
        let _ = worker.jobs.send(job);
    }

    fn start_worker(&self, shared: &Arc<Shared>) -> Worker {
        let (jobs, queue) = mpsc::unbounded_channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let event_loop = EventLoop {
            shared: shared.clone(),
            workers: self.workers.clone(),
            in_flight: in_flight.clone(),
            queue,
        };
        tokio::spawn(event_loop.run());
        Worker { jobs, in_flight }
    }
}

/// The task that owns one instance and runs its calls.
struct EventLoop {
    shared: Arc<Shared>,
    workers: Arc<Mutex<Vec<Worker>>>,
    in_flight: Arc<AtomicUsize>,
    queue: mpsc::UnboundedReceiver<Job>,
}

impl EventLoop {
    async fn run(mut self) {
        let Instance {
            mut store,
            bindings,
        } = match self.shared.instantiate().await {
            Ok(instance) => instance,
            Err(error) => return self.fail_queued(error),
        };
        let in_flight = &self.in_flight;
        let workers = &self.workers;
        let queue = &mut self.queue;
        let bindings = &bindings;
        let outcome = store
            .run_concurrent(async |accessor| {
                let mut calls = FuturesUnordered::new();
                loop {
                    tokio::select! {
                        Some((reply, result)) = calls.next(), if !calls.is_empty() => {
                            in_flight.fetch_sub(1, Ordering::Relaxed);
                            let result: wasmtime::Result<Response> = result;
                            match result {
                                Ok(response) => { let _ = Reply::send(reply, Ok(response)); }
                                Err(trap) => {
                                    let message = format!("{trap:#}");
                                    let _ = Reply::send(reply, Err(CallError::Trap(trap)));
                                    return Err(message);
                                }
                            }
                        }
                        job = queue.recv() => match job {
                            Some(Job { req, reply }) => calls.push(async move {
                                (reply, bindings.call_handle_async(accessor, req).await)
                            }),
                            None => return Ok(()),
                        },
                        _ = tokio::time::sleep(IDLE_TIMEOUT), if calls.is_empty() => {
                            if retire(workers, in_flight) {
                                return Ok(());
                            }
                        }
                    }
                }
            })
            .await;
        // Whatever is still queued or in flight gets an error when its reply
        // is dropped with this task.
        queue.close();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(trap)) => tracing::error!(
                component = %self.shared.name,
                "async instance trapped and was discarded: {trap}"
            ),
            Err(trap) => tracing::error!(
                component = %self.shared.name,
                "async instance failed and was discarded: {trap:#}"
            ),
        }
    }

    /// Instantiation failed: every caller already queued here gets the error.
    fn fail_queued(mut self, error: CallError) {
        tracing::error!(component = %self.shared.name, "cannot start an instance: {error}");
        self.queue.close();
        while let Ok(job) = self.queue.try_recv() {
            let _ = job.reply.send(Err(error.again()));
        }
    }
}

/// Removes an idle worker from the pool. Done under the pool's lock, so no
/// job can be dispatched to it once it has decided to go.
fn retire(workers: &Mutex<Vec<Worker>>, in_flight: &Arc<AtomicUsize>) -> bool {
    let mut workers = workers.lock().unwrap();
    if in_flight.load(Ordering::Relaxed) != 0 {
        return false;
    }
    workers.retain(|w| !Arc::ptr_eq(&w.in_flight, in_flight));
    true
}
