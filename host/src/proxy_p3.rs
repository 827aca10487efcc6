//! Standard `wasi:http/service@0.3.x` (p3) components, the kind
//! `wasmtime serve` and Spin 4 run, served unchanged as one catch-all route
//! beside the `wasi:http@0.2` proxies of [`crate::proxy`].
//!
//! A p3 handler is a component-model async call: it returns its response
//! and may go on writing the body (or running other tasks) afterwards, all
//! of it inside the store's event loop (`run_concurrent`). Here a request
//! holds one warm instance from its pool for that whole time, as a p2
//! request does: the instance's event loop runs the call, hands the
//! response out, and keeps running until the body has gone (or the client
//! left), then the instance goes back to the pool. Limits, deadlines and
//! outbound grants are the p2 proxy's.
//!
//! `wasmtime serve` also runs up to 16 requests at once on one p3 instance;
//! Cello does not yet: one request at a time per instance, many instances
//! side by side, which keeps a request's deadline and CPU limit its own.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, SizeHint};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument as _;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};

use crate::body::{Body, RequestBody};
use crate::config::Limits;
use crate::error::CallError;
use crate::instances::Prepared;
use crate::instances::capacity::Slot;
use crate::instances::state::{InstanceState, Owner};
use crate::instances::warm::{Warm, WarmPool};
use crate::proxy::{Handling, answer, body_error};
use crate::resources::Resources;

/// A loaded `wasi:http/service@0.3` component.
pub struct P3Service {
    shared: Arc<Shared>,
    pool: Arc<WarmPool<Service>>,
}

/// What every instance of one service component is made from.
type Shared = Prepared<ServicePre<InstanceState>>;

/// The response body the guest writes, as the host reads it.
type GuestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// The response the guest gave, or the error code it answered with.
type Given = Result<hyper::Response<Sent>, ErrorCode>;

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
        let pool = WarmPool::new(shared.owner.clone(), &shared.limits, drop);
        shared.capacity.register(Arc::downgrade(&pool) as _);
        Ok(Self {
            shared: Arc::new(shared),
            pool,
        })
    }

    /// Hands `request` to the guest's `wasi:http/handler` and answers with
    /// the response it returns.
    pub async fn handle(
        &self,
        request: http::Request<RequestBody>,
    ) -> Result<http::Response<Body>, CallError> {
        let shared = &self.shared;
        let deadline = Instant::now() + shared.limits.timeout;
        let mut instance = self
            .pool
            .checkout(&shared.capacity, deadline, |slot| {
                let shared = shared.clone();
                async move {
                    let owner = shared.owner.clone();
                    let start = Box::pin(async move { instantiate(&shared, slot).await });
                    owner.run_guest(start).await?
                }
            })
            .instrument(crate::telemetry::stage("instance checkout"))
            .await?;
        let left = deadline.saturating_duration_since(Instant::now());
        instance.store.data_mut().set_deadline(Some(left));
        instance.store.set_epoch_deadline(1);
        let limit = shared.limits.max_body_bytes;
        let request =
            request.map(|body| Limited::new(body, limit).map_err(move |e| body_error(e, limit)));
        let (sender, receiver) = oneshot::channel::<Given>();
        let pool = self.pool.clone();
        let owner = shared.owner.clone();
        let limit = shared.limits.timeout;
        let call = Box::pin(async move {
            let Warm {
                store, bindings, ..
            } = &mut instance;
            let served = store
                .run_concurrent(async |accessor| serve(accessor, bindings, request, sender).await)
                .await;
            match served.and_then(|served| served) {
                Ok(()) => {
                    instance.store.data_mut().set_deadline(None);
                    instance.served += 1;
                    pool.checkin(instance);
                    Ok(())
                }
                Err(trap) => Err(owner.call_failed(trap, limit)),
            }
        });
        let owner = shared.owner.clone();
        let call = async move { owner.run_guest(call).await? };
        // The epoch deadline stops a guest that computes too long; this one
        // stops a guest that waits too long.
        let owner = shared.owner.clone();
        let handling: Handling = Box::pin(async move {
            tokio::time::timeout_at(deadline, call)
                .await
                .unwrap_or_else(|_| Err(owner.timed_out(limit)))
        });
        answer(handling, receiver, shared.owner.clone()).await
    }

    /// Largest request body this component accepts.
    pub fn max_body_bytes(&self) -> usize {
        self.shared.limits.max_body_bytes
    }

    /// Who the component is, for logs and metrics.
    pub fn owner(&self) -> &Arc<Owner> {
        &self.shared.owner
    }
}

/// Inside the instance's event loop: calls the handler with `request`,
/// gives its response to `sender`, and returns once the response body has
/// gone or been dropped, the guest having written it meanwhile.
async fn serve(
    accessor: &wasmtime::component::Accessor<InstanceState>,
    service: &Service,
    request: http::Request<
        impl hyper::body::Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static,
    >,
    sender: oneshot::Sender<Given>,
) -> wasmtime::Result<()> {
    let (request, request_io) = accessor.with(|mut store| {
        let hooks = store.get().http().hooks;
        wasmtime_wasi_http::p3::Request::from_http(hooks, request)
    });
    let response = match service.handle(accessor, request).await? {
        Ok(response) => response,
        Err(code) => {
            let _ = sender.send(Err(code));
            return Ok(());
        }
    };
    let response = accessor.with(|mut store| response.into_http(&mut store, request_io))?;
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

/// A fresh instance of `shared` in `slot`.
async fn instantiate(shared: &Shared, slot: Slot) -> Result<Warm<Service>, CallError> {
    let started = std::time::Instant::now();
    let mut store = shared.store();
    let service = shared
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(CallError::Instantiate)?;
    shared.owner.metrics.instantiated(started.elapsed());
    Ok(Warm::new(store, service, slot))
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
