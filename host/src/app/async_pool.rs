//! Instances for `async def` routes. Each runs an event loop (a
//! `run_concurrent` on its store) that takes calls from a queue of its own
//! and keeps up to `async-concurrency` of them in flight, each suspended
//! while it awaits the host.
//!
//! A call that outlives its deadline gets 504, and its instance is killed:
//! a task cannot be cancelled alone, and one that ran away may hold the
//! instance. The other calls on it fail with 503 and Retry-After. A
//! streaming call's deadline ends with its response's head: the stream that
//! follows is held to its idle time instead (see [`super::streams`]). The
//! time a streaming call's reads wait on the client for its request body
//! does not count against its deadline; one still waiting when the body's
//! own time is up is the client's fault: 408 for it alone, and the guest,
//! whose read fails, ends the call by itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument as _;
use wasmtime::AsContextMut;
use wasmtime_wasi::WasiView as _;

use super::streams::{self, BodyReader, Outcome, ResponseStream, ResponseWriter, Streamed};
use super::{Answer, Instance, Shared, StreamingGuest, retire};
use crate::bindings::{Request, Response};
use crate::body::RequestBody;
use crate::error::CallError;
use crate::instances::capacity::Slot;
use crate::instances::event_loops::{LoopLimits, LoopPool, LoopWorker, Pending};
use crate::instances::state::CpuExceeded;
use crate::instances::warm::WarmParts;

type Reply = oneshot::Sender<Outcome>;

/// How long a call whose client sent its body too slowly has to end by
/// itself (its read failed with `timed-out`) before its instance is killed.
const UNWIND_GRACE: Duration = Duration::from_secs(5);

/// What an async call hands its guest.
enum Call {
    /// `handle-async`: the request with its whole body.
    Whole(Request),
    /// `streaming.handle`: the request, its body to read, and a writer for
    /// the response.
    Streaming(Request, BodyReader, ResponseWriter),
}

impl Call {
    fn request(&self) -> &Request {
        match self {
            Call::Whole(req) | Call::Streaming(req, ..) => req,
        }
    }
}

/// One async call waiting for, or running on, an instance.
pub(super) struct Job {
    call: Call,
    reply: Reply,
    /// The trace span the call runs in (none when traces are off): the
    /// event loop runs on a task of its own, so it is carried here.
    span: tracing::Span,
}

/// The event-loop instances of one component.
pub(super) type AsyncPool = LoopPool<Job>;

type Worker = LoopWorker<Job>;

/// How many calls one of `shared`'s instances takes.
fn limits(shared: &Shared) -> LoopLimits {
    LoopLimits {
        concurrency: shared.limits.async_concurrency,
        max_requests: shared.limits.max_requests_per_instance,
    }
}

impl AsyncPool {
    /// Sends `req` to the least busy instance with room, starting a new
    /// instance when all are full and a slot is free, or waiting in the
    /// component's queue for either.
    pub(super) async fn call(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        req: Request,
    ) -> Result<Response, CallError> {
        let deadline = Instant::now() + shared.limits.timeout;
        let (worker, outcome) = self.start(shared, Call::Whole(req), deadline).await?;
        // Should this future be dropped (the client left), the call must
        // still end by its deadline.
        let mut outcome = self.watched(shared, &worker, outcome, deadline);
        let ended = tokio::time::timeout_at(deadline, outcome.receiver()).await;
        outcome.settle();
        match ended {
            Ok(Ok(Ok(Some(response)))) => Ok(response),
            Ok(Ok(Ok(None))) => Err(CallError::InvalidResponse("no response".into())),
            Ok(Ok(Err(error))) => Err(error),
            Ok(Err(_)) => Err(self.lost(shared)),
            Err(_) => Err(self.timed_out(shared, &worker)),
        }
    }

    /// Sends `req` to `streaming.handle`, with `body` to read as it
    /// arrives. Answers once the guest returns a whole response or starts
    /// a streamed one; the route's deadline, less the time its reads
    /// waited on the client, holds until then.
    pub(super) async fn stream(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        req: Request,
        body: Option<RequestBody>,
    ) -> Result<Answer, CallError> {
        let limits = &shared.limits;
        let deadline = Instant::now() + limits.timeout;
        let (reader, client) = BodyReader::new(body, limits.max_body_bytes, deadline);
        let (writer, ResponseStream { mut head, chunks }) = streams::response_stream();
        let call = Call::Streaming(req, reader, writer);
        let (worker, outcome) = self.start(shared, call, deadline).await?;
        let mut watched = self.watched(shared, &worker, outcome, deadline + UNWIND_GRACE);
        let first = loop {
            // The time its reads waited on the client is not the guest's:
            // it has `timeout` besides, as a `def` route has once its body
            // is in.
            let due = deadline + client.waited();
            let outcome = watched.receiver();
            let first = tokio::time::timeout_at(due, async {
                tokio::select! {
                    biased;
                    Ok(head) = &mut head => Ok(head),
                    ended = outcome => Err(ended),
                }
            });
            match first.await {
                // Late because the client is: 408 for it alone. The
                // guest's read fails with `timed-out`, and its call ends
                // by itself.
                Err(_) if client.is_waiting() => {
                    let outcome = watched.settle();
                    let why = "a call whose request body came too slowly did not end";
                    self.watch_end(shared, worker, outcome, Instant::now() + UNWIND_GRACE, why);
                    return Err(CallError::BodyTimedOut(limits.timeout));
                }
                Err(_) if deadline + client.waited() > due => continue,
                Err(_) => {
                    watched.settle();
                    return Err(self.timed_out(shared, &worker));
                }
                Ok(first) => break first,
            }
        };
        let mut outcome = watched.settle();
        let head = match first {
            Ok(head) => head,
            Err(Ok(Ok(Some(response)))) => return Ok(Answer::Whole(response)),
            Err(Ok(Ok(None))) => match head.try_recv() {
                // Started and returned at once: the chunks are all written.
                Ok(head) => {
                    let (done, ended) = oneshot::channel();
                    let _ = done.send(Ok(None));
                    outcome = ended;
                    head
                }
                Err(_) => {
                    return Err(CallError::InvalidResponse(
                        "no response: the handler neither returned one nor started one".into(),
                    ));
                }
            },
            Err(Ok(Err(error))) => return Err(error),
            Err(Err(_)) => return Err(self.lost(shared)),
        };
        // Should the body be cut off (the client left, the stream sat
        // idle), the guest's next write fails with `closed`: a healthy
        // stream writes within `stream-idle-ms`, and then has the grace
        // to end.
        let (pool, shared) = (self.clone(), shared.clone());
        let abandoned = Box::new(move |outcome| {
            let until = Instant::now() + shared.limits.stream_idle + UNWIND_GRACE;
            let why = "a streaming call whose response was cut off did not end";
            pool.watch_end(&shared, worker, outcome, until, why);
        });
        let body = Streamed::new(chunks, outcome, limits.stream_idle, abandoned);
        let mut response = http::Response::new(http_body_util::BodyExt::boxed_unsync(body));
        *response.status_mut() = head.status;
        *response.headers_mut() = head.headers;
        Ok(Answer::Streamed(response))
    }

    /// Dispatches `call` to an instance: the instance, and where its
    /// outcome comes.
    async fn start(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        call: Call,
        deadline: Instant,
    ) -> Result<(Arc<Worker>, oneshot::Receiver<Outcome>), CallError> {
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            call,
            reply,
            span: crate::telemetry::current(),
        };
        let worker = self
            .dispatch(&shared.capacity, limits(shared), job, deadline, |slot| {
                self.start_worker(shared, slot)
            })
            .instrument(crate::telemetry::stage("instance checkout"))
            .await?;
        Ok((worker, outcome))
    }

    /// The error of a call whose instance stopped under it.
    fn lost(&self, shared: &Shared) -> CallError {
        CallError::InstanceLost(format!(
            "the instance of {} serving this request stopped",
            shared.owner.component
        ))
    }

    /// A call ran past its deadline: its instance is killed, for a task
    /// cannot be cancelled alone.
    fn timed_out(&self, shared: &Shared, worker: &Arc<Worker>) -> CallError {
        self.stop_accepting(worker);
        worker.kill.notify_one();
        shared.owner.timed_out(shared.limits.timeout)
    }

    /// Lets a call nobody waits for any more (its client gave up, or its
    /// response was cut off) end by itself, while its instance serves on:
    /// if it has not by `until`, it is treated as having run past its
    /// deadline, and logged saying `why`.
    fn watch_end(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        worker: Arc<Worker>,
        outcome: oneshot::Receiver<Outcome>,
        until: Instant,
        why: &'static str,
    ) {
        let (pool, shared) = (self.clone(), shared.clone());
        let watch = async move {
            if tokio::time::timeout_at(until, outcome).await.is_err() {
                let error = pool.timed_out(&shared, &worker);
                tracing::warn!(component = %shared.owner.component, "{why}: {error}");
            }
        };
        // Dropped as the host shuts down, outside its runtime: the
        // instance goes with it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(watch);
        }
    }

    /// `outcome`, watched by its caller until settled; should the caller
    /// be dropped before (its client left), the call must still end by
    /// `until`.
    fn watched(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        worker: &Arc<Worker>,
        outcome: oneshot::Receiver<Outcome>,
        until: Instant,
    ) -> Watched {
        Watched {
            pool: self.clone(),
            shared: shared.clone(),
            worker: worker.clone(),
            outcome: Some(outcome),
            until,
        }
    }

    fn start_worker(self: &Arc<Self>, shared: &Arc<Shared>, slot: Slot) -> Arc<Worker> {
        let (worker, queue) = Worker::new();
        let event_loop = EventLoop {
            pool: self.clone(),
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
}

/// A call's outcome while its request waits for it. Dropped unsettled
/// (the request's future was dropped: the client left), it hands the
/// outcome to [`AsyncPool::watch_end`], so that the call still ends by its
/// deadline or its instance is killed: the call would otherwise keep one of
/// the instance's places, and the instance, for ever.
struct Watched {
    pool: Arc<AsyncPool>,
    shared: Arc<Shared>,
    worker: Arc<Worker>,
    outcome: Option<oneshot::Receiver<Outcome>>,
    until: Instant,
}

impl Watched {
    fn receiver(&mut self) -> &mut oneshot::Receiver<Outcome> {
        self.outcome.as_mut().expect("watched until settled")
    }

    /// The caller has dealt with the outcome, or takes it.
    fn settle(&mut self) -> oneshot::Receiver<Outcome> {
        self.outcome.take().expect("settled once")
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(outcome) = self.outcome.take() {
            let why = "a call whose client left did not end by its deadline";
            let worker = self.worker.clone();
            self.pool
                .watch_end(&self.shared, worker, outcome, self.until, why);
        }
    }
}

/// The task that owns one instance and runs its calls.
struct EventLoop {
    pool: Arc<AsyncPool>,
    shared: Arc<Shared>,
    worker: Arc<Worker>,
    queue: mpsc::UnboundedReceiver<Job>,
}

/// How an event loop ended.
enum End {
    /// Retired in good order: run `on-stop`.
    Retired,
    /// The guest trapped; every call in flight failed with it.
    Trapped(String),
    /// Guest code ran past `cpu-ms` without awaiting.
    CpuExceeded(std::time::Duration),
    /// Killed because a request on it ran past its deadline.
    Killed,
    /// Killed because a request's background tasks ran past their limit.
    BackgroundOverran,
}

impl End {
    /// How a trap ends the loop: a CPU limit says so.
    fn trapped(trap: &wasmtime::Error) -> Self {
        match trap.downcast_ref::<CpuExceeded>() {
            Some(CpuExceeded(limit)) => Self::CpuExceeded(*limit),
            None => Self::Trapped(format!("{trap:#}")),
        }
    }
}

type CallFuture<'a> = std::pin::Pin<Box<dyn Future<Output = Finished> + Send + 'a>>;
type CallResult<'a> =
    std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<Option<Response>>> + Send + 'a>>;

/// What finished on an event loop.
enum Finished {
    /// A request's handler returned (or trapped): its whole response, or
    /// none when it streamed it.
    Call(u64, Arc<str>, wasmtime::Result<Option<Response>>, String),
    /// A request's background tasks ended, or ran out of time.
    Background(String, Option<wasmtime::Result<()>>),
}

impl EventLoop {
    async fn run(mut self, slot: Slot) {
        let (mut instance, streaming) = match self.shared.start_instance(slot, true).await {
            Ok(started) => started,
            Err(error) => return self.fail_queued(error),
        };
        let pending = Mutex::new(Pending::<Option<Response>>::default());
        let end = self
            .serve(&mut instance, streaming.as_ref(), &pending)
            .await;
        self.pool.ended(&self.worker);
        // Calls still queued here fail when their replies drop with the queue.
        self.queue.close();
        let component = &self.shared.owner.component;
        let mut pending = pending.into_inner().unwrap();
        match end {
            End::Retired => retire(instance),
            End::CpuExceeded(limit) => {
                tracing::error!(
                    %component,
                    "async instance discarded: a handler ran past its {limit:?} CPU limit \
                     without awaiting"
                );
                self.shared.owner.metrics.timeouts.inc();
                pending.fail_all(|| CallError::CpuExceeded(limit));
            }
            End::Trapped(reason) => {
                tracing::error!(%component, "async instance trapped and was discarded: {reason}");
                self.shared.owner.metrics.traps.inc();
                pending.fail_all(|| CallError::Trap(wasmtime::Error::msg(reason.clone())));
            }
            End::Killed | End::BackgroundOverran => {
                let why = if matches!(end, End::Killed) {
                    "a request on it ran past its time limit"
                } else {
                    "background tasks on it ran past their time limit"
                };
                tracing::error!(%component, "async instance discarded: {why}");
                pending.fail_all(|| {
                    CallError::InstanceLost(format!("its instance was discarded: {why}"))
                });
            }
        }
    }

    async fn serve(
        &mut self,
        instance: &mut Instance,
        streaming: Option<&StreamingGuest>,
        pending: &Mutex<Pending<Option<Response>>>,
    ) -> End {
        let Self {
            pool,
            shared,
            worker,
            queue,
        } = self;
        let WarmParts {
            store, bindings, ..
        } = &mut **instance;
        let Some(bindings) = bindings.async_exports() else {
            return End::Trapped("a sync app has no async routes".into());
        };
        let idle_timeout = shared.limits.idle_timeout;
        let background_timeout = shared.limits.background_timeout;
        let background: Arc<str> = Arc::from("(background)");
        let event_loop = store.run_concurrent(async |accessor| {
            let mut calls: FuturesUnordered<CallFuture<'_>> = FuturesUnordered::new();
            loop {
                tokio::select! {
                    Some(finished) = calls.next(), if !calls.is_empty() => {
                        match finished {
                            Finished::Call(id, route, result, request_id) => {
                                accessor.with(|mut store| {
                                    store.data_mut().track_call(&route, &request_id, true);
                                });
                                match result {
                                    Ok(Some(response)) if response.background => {
                                        pending.lock().unwrap().answer(id, Ok(Some(response)));
                                        // Still in flight until its tasks end.
                                        let tasks = bindings.func_run_background();
                                        let call = accessor.with(|mut store| -> wasmtime::Result<_> {
                                            let id = (request_id.clone(),);
                                            let call = tasks.start_call_concurrent(store.as_context_mut(), id)?;
                                            let state = store.data_mut();
                                            state.track_concurrent_call(&background, &request_id, call.group(), tracing::Span::none());
                                            Ok(call)
                                        });
                                        calls.push(Box::pin(async move {
                                            let run = async { tasks.finish_call_concurrent(accessor, call?).await };
                                            let ran = tokio::time::timeout(background_timeout, run).await.ok();
                                            Finished::Background(request_id, ran)
                                        }));
                                        continue;
                                    }
                                    Ok(response) => pending.lock().unwrap().answer(id, Ok(response)),
                                    Err(trap) => return End::trapped(&trap),
                                }
                            }
                            Finished::Background(_, None) => return End::BackgroundOverran,
                            Finished::Background(_, Some(Err(trap))) => {
                                return End::Trapped(format!("background tasks: {trap:#}"));
                            }
                            Finished::Background(request_id, Some(Ok(()))) => {
                                accessor.with(|mut store| {
                                    store.data_mut().track_call(&background, &request_id, true);
                                });
                            }
                        }
                        pool.finished(worker);
                        // Calls sent but not yet received count as in flight, so
                        // none is left behind in the queue.
                        if worker.done() {
                            return End::Retired;
                        }
                    }
                    job = queue.recv() => {
                        let Some(Job { call, reply, span }) = job else { return End::Retired };
                        let req = call.request();
                        let route = shared.route_name(req.route);
                        let request_id = req.context.request_id.clone();
                        let id = pending.lock().unwrap().add(reply);
                        // Started here, to learn the call's task group: what
                        // its code logs while that group runs names it.
                        let started = match call {
                            Call::Whole(req) => {
                                let handle = bindings.func_handle_async();
                                let call = accessor.with(|mut store| -> wasmtime::Result<_> {
                                    let call = handle.start_call_concurrent(store.as_context_mut(), (req,))?;
                                    let state = store.data_mut();
                                    state.track_concurrent_call(&route, &request_id, call.group(), span);
                                    Ok(call)
                                });
                                Box::pin(async move {
                                    Ok(Some(handle.finish_call_concurrent(accessor, call?).await?.0))
                                }) as CallResult<'_>
                            }
                            Call::Streaming(req, reader, writer) => {
                                let Some(streaming) = streaming else {
                                    let why = "the instance has no `streaming` export";
                                    pending.lock().unwrap().answer(id, Err(CallError::InvalidResponse(why.into())));
                                    continue;
                                };
                                let handle = streaming.func_handle();
                                let call = accessor.with(|mut store| -> wasmtime::Result<_> {
                                    let table = store.data_mut().ctx().table;
                                    let (body, out) = (table.push(reader)?, table.push(writer)?);
                                    let call = handle.start_call_concurrent(store.as_context_mut(), (req, body, out))?;
                                    let state = store.data_mut();
                                    state.track_concurrent_call(&route, &request_id, call.group(), span);
                                    Ok(call)
                                });
                                Box::pin(async move {
                                    Ok(handle.finish_call_concurrent(accessor, call?).await?.0)
                                })
                            }
                        };
                        calls.push(Box::pin(async move {
                            Finished::Call(id, route, started.await, request_id)
                        }));
                    }
                    () = worker.stop.notified(), if calls.is_empty() => {
                        if worker.done() {
                            return End::Retired;
                        }
                    }
                    () = tokio::time::sleep(idle_timeout), if calls.is_empty() => {
                        if pool.retire_if_idle(worker) {
                            return End::Retired;
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
            outcome = event_loop => {
                outcome.unwrap_or_else(|trap| End::trapped(&trap))
            }
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
            let _ = job.reply.send(Err(error.again()));
        }
        self.pool.ended(&self.worker);
    }
}
