//! Standard `wasi:http/service@0.3.x` (p3) components, the kind
//! `wasmtime serve` and Spin 4 run, served unchanged as one catch-all route
//! beside the `wasi:http@0.2` proxies of [`crate::proxy`].
//!
//! A p3 handler is a component-model async call: it returns its response
//! and may go on writing the body (or running other tasks) afterwards, all
//! of it inside the store's event loop (`run_concurrent`). As `wasmtime
//! serve` does, one warm instance serves up to `p3-concurrency` requests at
//! once (16 by default), each a task of its own on the instance's
//! [`event_loop`]; the host's [`crate::instances::event_loops`] dispatcher
//! picks the instance. Limits and outbound grants are the p2 proxy's.
//!
//! A request keeps its own deadline: past it the request gets 504 and the
//! instance takes no more, but the requests already on it run to their own
//! ends before it is dropped. A trap fails every request in flight on the
//! instance with 500 and discards it. A client that goes away gives up its
//! place on the instance at once.
//!
//! Each request's call runs as a task group of its own, which the instance
//! follows: what its code prints names its request id, and the host calls
//! it makes belong to its trace.

mod event_loop;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, SizeHint};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument as _;
use wasmtime::AsContextMut as _;
use wasmtime::Store;
use wasmtime::component::{
    Access, Accessor, Component, Linker, Resource, TaskGroupId, TypedFunc, TypedFuncCallConcurrent,
};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};
use wasmtime_wasi_http::p3::{Request, Response};

use crate::body::{Body, RequestBody};
use crate::config::Limits;
use crate::error::CallError;
use crate::instances::Prepared;
use crate::instances::event_loops::{LoopLimits, LoopPool};
use crate::instances::state::{InstanceState, Owner};
use crate::proxy::{AfterBody, Bindings, Handling, answer, body_error};
use crate::resources::Resources;
use event_loop::{Job, Worker};

/// A loaded `wasi:http/service@0.3` component.
pub struct P3Service {
    shared: Arc<Prepared<ServicePre<InstanceState>>>,
    pool: Arc<LoopPool<Job>>,
}

/// The response body the guest writes, as the host reads it.
type GuestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// A request's body as the guest reads it: within the body limit.
type GuestRequest = http::Request<GuestBody>;

/// The response the guest gave, or the error code it answered with.
type Given = Result<hyper::Response<Sent>, ErrorCode>;

/// The guest's `wasi:http/handler.handle`, as the host calls it.
type Handle = TypedFunc<(Resource<Request>,), (Result<Resource<Response>, ErrorCode>,)>;

/// The call of [`Handle`] on one request, started.
type HandleCall = TypedFuncCallConcurrent<
    InstanceState,
    (Resource<Request>,),
    (Result<Resource<Response>, ErrorCode>,),
>;

/// What reads the request's body into the guest, until the response says
/// how it went.
type RequestIo =
    Pin<Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send + 'static>>;

impl P3Service {
    /// Prepares `component`; fails when it imports what the host lacks.
    pub fn load(
        owner: Arc<Owner>,
        component: &Component,
        linker: &Linker<InstanceState>,
        limits: Limits,
        runtime: &Resources,
    ) -> anyhow::Result<Self> {
        let shared = Prepared::new(owner, component, linker, limits, runtime, ServicePre::new)?;
        let pool = Arc::new(LoopPool::default());
        shared.capacity.register(Arc::downgrade(&pool) as _);
        Ok(Self {
            shared: Arc::new(shared),
            pool,
        })
    }

    /// Hands `request` (whose id is `request_id`) to the guest's
    /// `wasi:http/handler` on an instance with room and answers with the
    /// response it returns.
    pub async fn handle(
        &self,
        request: http::Request<RequestBody>,
        request_id: &str,
    ) -> Result<http::Response<Body>, CallError> {
        let shared = &self.shared;
        let deadline = Instant::now() + shared.limits.timeout;
        let limit = shared.limits.max_body_bytes;
        let request = request.map(|body| {
            Limited::new(body, limit)
                .map_err(move |e| body_error(e, limit))
                .boxed_unsync()
        });
        let (given, receiver) = oneshot::channel::<Given>();
        let (ended, outcome) = oneshot::channel();
        let (stay, left) = oneshot::channel();
        let job = Job {
            request,
            request_id: Arc::from(request_id),
            span: crate::telemetry::current(),
            given,
            ended,
            left,
            deadline,
        };
        let limits = LoopLimits {
            concurrency: shared.limits.p3_concurrency,
            max_requests: shared.limits.max_requests_per_instance,
        };
        let worker = self
            .pool
            .dispatch(&shared.capacity, limits, job, deadline, |slot| {
                event_loop::start(&self.pool, shared, slot)
            })
            .instrument(crate::telemetry::stage("instance checkout"))
            .await?;
        let handling = self.handling(worker, outcome, stay, deadline);
        let owner = shared.owner.clone();
        let response = answer(handling, receiver, owner, AfterBody::Forget).await?;
        // The guest writes its body after its handler returns, on the
        // instance's event loop, whose turn woke this task with the
        // response. Letting that turn end first means a small body is
        // whole when hyper first polls it: head, body and end go out in
        // one write, not two (a p3 hello: 1.31x `wasmtime serve`'s req/s
        // with this, 1.09x without, alternating rounds). A streamed body
        // only has its head wait that one turn.
        tokio::task::yield_now().await;
        Ok(response)
    }

    /// The call on `worker`, as the request sees it: it ends when the
    /// event loop says so, or fails at `deadline`. Dropped (the client
    /// gone), it drops `stay`, and the event loop drops the call.
    fn handling(
        &self,
        worker: Arc<Worker>,
        outcome: oneshot::Receiver<Result<(), CallError>>,
        stay: oneshot::Sender<()>,
        deadline: Instant,
    ) -> Handling {
        let pool = self.pool.clone();
        let owner = self.shared.owner.clone();
        let limit = self.shared.limits.timeout;
        Box::pin(async move {
            let _stay = stay;
            match tokio::time::timeout_at(deadline, outcome).await {
                Ok(Ok(Err(CallError::Timeout(_)))) | Err(_) => {
                    event_loop::expire(&pool, worker, limit);
                    Err(owner.timed_out(limit))
                }
                Ok(Ok(ended)) => ended,
                Ok(Err(_)) => Err(CallError::InstanceLost(format!(
                    "the instance of {} serving this request stopped",
                    owner.component
                ))),
            }
        })
    }

    /// Largest request body this component accepts.
    pub fn max_body_bytes(&self) -> usize {
        self.shared.limits.max_body_bytes
    }

    /// Who the component is, for logs and metrics.
    pub fn owner(&self) -> &Arc<Owner> {
        &self.shared.owner
    }

    /// What its instances are made from.
    pub(crate) fn prepared(&self) -> &Arc<Prepared<ServicePre<InstanceState>>> {
        &self.shared
    }
}

impl Bindings for Service {
    type Pre = ServicePre<InstanceState>;

    async fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<InstanceState>,
    ) -> wasmtime::Result<Self> {
        pre.instantiate_async(store).await
    }
}

/// The handler's call on one request, started inside the instance's
/// event loop.
struct Started {
    handle: Handle,
    call: HandleCall,
    request_io: RequestIo,
}

impl Started {
    /// Starts `service`'s handler on `request` in `store`: the call runs as
    /// a task group of its own, [`Self::group`].
    fn new(
        store: &mut Access<'_, InstanceState>,
        service: &Service,
        request: GuestRequest,
    ) -> wasmtime::Result<Self> {
        let hooks = store.get().http().hooks;
        let (request, request_io) = Request::from_http(hooks, request);
        let request = store.get().http().table.push(request)?;
        let handle = service.wasi_http_handler().func_handle();
        let call = handle.start_call_concurrent(store.as_context_mut(), (request,))?;
        Ok(Self {
            handle,
            call,
            request_io: Box::pin(request_io),
        })
    }

    /// The task group the call runs as.
    fn group(&self) -> TaskGroupId {
        self.call.group()
    }

    /// Waits for the call's response, gives it (or the error code it
    /// answered with) to `sender`, and returns once the response body has
    /// gone or been dropped, the guest having written it meanwhile.
    async fn serve(
        self,
        accessor: &Accessor<InstanceState>,
        sender: oneshot::Sender<Given>,
    ) -> wasmtime::Result<()> {
        let (answered,) = self
            .handle
            .finish_call_concurrent(accessor, self.call)
            .await?;
        let response = match answered {
            Ok(response) => response,
            Err(code) => {
                let _ = sender.send(Err(code));
                return Ok(());
            }
        };
        let response = accessor.with(|mut store| {
            let response = store.get().http().table.delete(response)?;
            response.into_http(&mut store, self.request_io)
        })?;
        let (done, body_gone) = oneshot::channel();
        let response = response.map(|body| Sent {
            body,
            done: Some(done),
        });
        if sender.send(Ok(response)).is_ok() {
            let _ = body_gone.await;
        }
        Ok(())
    }
}

/// The guest's response body, telling the event loop when it has ended or
/// been dropped: until then the loop runs, so the guest can write it.
pub struct Sent {
    body: GuestBody,
    done: Option<oneshot::Sender<()>>,
}

impl hyper::body::Body for Sent {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
            self.done.take();
        }
        frame
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
