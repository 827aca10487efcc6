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
use wasmtime::Store;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};

use crate::body::{Body, RequestBody};
use crate::config::Limits;
use crate::error::CallError;
use crate::instances::state::{InstanceState, Owner};
use crate::instances::warm::Warm;
use crate::proxy::{Bindings, Instances, answer, body_error};
use crate::resources::Resources;

/// A loaded `wasi:http/service@0.3` component.
pub struct P3Service(Instances<Service>);

impl Bindings for Service {
    type Pre = ServicePre<InstanceState>;

    async fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<InstanceState>,
    ) -> wasmtime::Result<Self> {
        pre.instantiate_async(store).await
    }
}

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
        Instances::load(owner, component, linker, limits, runtime, ServicePre::new).map(Self)
    }

    /// Hands `request` to the guest's `wasi:http/handler` and answers with
    /// the response it returns.
    pub async fn handle(
        &self,
        request: http::Request<RequestBody>,
    ) -> Result<http::Response<Body>, CallError> {
        let shared = &self.0.shared;
        let deadline = Instant::now() + shared.limits.timeout;
        let mut instance = self.0.checkout(deadline).await?;
        let limit = shared.limits.max_body_bytes;
        let request =
            request.map(|body| Limited::new(body, limit).map_err(move |e| body_error(e, limit)));
        let (sender, receiver) = oneshot::channel::<Given>();
        let call = Box::pin(async move {
            let Warm {
                store, bindings, ..
            } = &mut instance;
            store
                .run_concurrent(async |accessor| serve(accessor, bindings, request, sender).await)
                .await??;
            Ok(instance)
        });
        let handling = self.0.handling(call, deadline);
        answer(handling, receiver, shared.owner.clone()).await
    }

    /// Largest request body this component accepts.
    pub fn max_body_bytes(&self) -> usize {
        self.0.shared.limits.max_body_bytes
    }

    /// Who the component is, for logs and metrics.
    pub fn owner(&self) -> &Arc<Owner> {
        &self.0.shared.owner
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
