//! Standard `wasi:http` components, the kind built for `wasmtime serve` or
//! Spin, served unchanged as one catch-all route: `wasi:http/proxy@0.2.x`
//! here, `wasi:http/service@0.3.x` in [`crate::proxy_p3`]. Both answer
//! through [`answer`]: the response goes out as soon as the guest gives it,
//! and its body streams while the guest writes it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Frame, SizeHint};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument as _;
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p3::bindings::Service;

use crate::body::{Body, BodyError, BoxError, RequestBody};
use crate::config::Limits;
use crate::error::CallError;
use crate::instances::capacity::Slot;
use crate::instances::state::{InstanceState, Owner};
use crate::instances::warm::{Warm, WarmParts, WarmPool};
use crate::instances::{Prepared, first_instance};
use crate::proxy_p3::P3Service;
use crate::resources::Resources;

/// A loaded `wasi:http` component of either version.
pub enum ProxyComponent {
    /// `wasi:http/proxy@0.2.x`.
    P2(P2Proxy),
    /// `wasi:http/service@0.3.x`.
    P3(P3Service),
}

impl ProxyComponent {
    /// Prepares a `wasi:http/proxy@0.2.x` component; fails when it imports
    /// what the host lacks.
    pub fn load(
        owner: Arc<Owner>,
        component: &Component,
        linker: &Linker<InstanceState>,
        limits: Limits,
        runtime: &Resources,
    ) -> anyhow::Result<Self> {
        let instances = Instances::load(owner, component, linker, limits, runtime, ProxyPre::new);
        instances.map(|instances| Self::P2(P2Proxy(instances)))
    }

    /// Prepares a `wasi:http/service@0.3.x` component.
    pub fn load_p3(
        owner: Arc<Owner>,
        component: &Component,
        linker: &Linker<InstanceState>,
        limits: Limits,
        runtime: &Resources,
    ) -> anyhow::Result<Self> {
        P3Service::load(owner, component, linker, limits, runtime).map(Self::P3)
    }

    /// Hands `request` to the guest and answers with the response it gives;
    /// what the guest prints meanwhile carries `request_id`.
    pub async fn handle(
        &self,
        request: http::Request<RequestBody>,
        request_id: &str,
    ) -> Result<http::Response<Body>, CallError> {
        match self {
            Self::P2(proxy) => proxy.handle(request, request_id).await,
            Self::P3(service) => service.handle(request, request_id).await,
        }
    }

    /// Which kind it is, as the host announces it.
    pub fn world(&self) -> &'static str {
        match self {
            Self::P2(_) => "wasi:http proxy",
            Self::P3(_) => "wasi:http 0.3 service",
        }
    }

    /// Largest request body this component accepts.
    pub fn max_body_bytes(&self) -> usize {
        match self {
            Self::P2(proxy) => proxy.0.shared.limits.max_body_bytes,
            Self::P3(service) => service.max_body_bytes(),
        }
    }

    /// Who the component is, for logs and metrics.
    pub fn owner(&self) -> &Arc<Owner> {
        match self {
            Self::P2(proxy) => &proxy.0.shared.owner,
            Self::P3(service) => service.owner(),
        }
    }

    /// Makes one instance and lets it go: a component whose settings leave
    /// no room for an instance (a memory limit below what it declares)
    /// fails its load here, as an app fails its `describe()`, rather than
    /// every request once it is served.
    pub async fn try_instance(&self) -> anyhow::Result<()> {
        match self {
            Self::P2(proxy) => try_instance::<Proxy>(&proxy.0.shared).await,
            Self::P3(service) => try_instance::<Service>(service.prepared()).await,
        }
    }
}

/// One instance of `shared`, made and dropped under its CPU share: the
/// component's first ([`first_instance`]).
async fn try_instance<B: Bindings>(shared: &Arc<Prepared<B::Pre>>) -> anyhow::Result<()> {
    first_instance(|| {
        let shared = shared.clone();
        async move {
            let owner = shared.owner.clone();
            let made = Box::pin(async move {
                let mut store = shared.store();
                B::instantiate(&shared.pre, &mut store).await.map(drop)
            });
            owner
                .run_guest(made)
                .await
                .map_err(|e| anyhow::anyhow!("instantiating did not finish: {e}"))?
                .map_err(|e| anyhow::anyhow!("cannot instantiate: {e:#}"))
        }
    })
    .await
}

/// A loaded `wasi:http/proxy@0.2` component. A request holds one warm instance
/// from its pool until the guest's `handle` returns, as a `def` route does;
/// the response goes out as soon as the guest sets it, and its body streams
/// while the guest writes it.
pub struct P2Proxy(Instances<Proxy>);

/// The guest's call, running to its end on its own instance: the instance
/// goes back to the pool after a clean return.
pub(crate) type Handling = Pin<Box<dyn Future<Output = Result<(), CallError>> + Send>>;

/// A guest's call on an instance it holds, handing the instance back when
/// it returns well.
pub(crate) type Call<B> = Pin<Box<dyn Future<Output = wasmtime::Result<Warm<B>>> + Send>>;

/// The response the guest set (or the error code it answered with), or the
/// sign that it dropped its way to answer without using it.
type Set<B, E> = Result<Result<hyper::Response<B>, E>, oneshot::error::RecvError>;

/// Whichever comes first while a request is handled.
enum First<B, E> {
    /// The call ended; any response it set was sent before.
    Ended(Result<(), CallError>),
    /// The guest set its response (or dropped the outparam) and is still
    /// running.
    Set(Set<B, E>),
}

/// The bindings of a `wasi:http` world, made from its `...Pre`.
pub(crate) trait Bindings: Sized + Send + 'static {
    type Pre: Send + Sync + 'static;

    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<InstanceState>,
    ) -> impl Future<Output = wasmtime::Result<Self>> + Send;
}

impl Bindings for Proxy {
    type Pre = ProxyPre<InstanceState>;

    async fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<InstanceState>,
    ) -> wasmtime::Result<Self> {
        pre.instantiate_async(store).await
    }
}

/// The warm instances of one `wasi:http@0.2` component (a p3 service keeps
/// its own event loops, see [`crate::proxy_p3`]), and what they are made
/// from: one request holds one instance at a time.
pub(crate) struct Instances<B: Bindings> {
    pub(crate) shared: Arc<Prepared<B::Pre>>,
    pool: Arc<WarmPool<B>>,
}

impl<B: Bindings> Instances<B> {
    /// Prepares `component`, its exports checked by `typed`; fails when it
    /// imports what the host lacks.
    pub(crate) fn load(
        owner: Arc<Owner>,
        component: &Component,
        linker: &Linker<InstanceState>,
        limits: Limits,
        runtime: &Resources,
        typed: impl FnOnce(InstancePre<InstanceState>) -> wasmtime::Result<B::Pre>,
    ) -> anyhow::Result<Self> {
        let shared = Prepared::new(owner, component, linker, limits, runtime, typed)?;
        let pool = WarmPool::new(shared.owner.clone(), &shared.limits, drop);
        shared.capacity.register(Arc::downgrade(&pool) as _);
        Ok(Self {
            shared: Arc::new(shared),
            pool,
        })
    }

    /// A warm instance for a request due by `deadline`, or a new one if a
    /// slot comes free first; its call's deadline is set.
    pub(crate) async fn checkout(&self, deadline: Instant) -> Result<Warm<B>, CallError> {
        let shared = &self.shared;
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
        Ok(instance)
    }

    /// Runs `call` under the component's CPU share and until `deadline`;
    /// the instance goes back to the pool when it returns well.
    pub(crate) fn handling(&self, call: Call<B>, deadline: Instant) -> Handling {
        let pool = self.pool.clone();
        let owner = self.shared.owner.clone();
        let limit = self.shared.limits.timeout;
        let call = Box::pin(async move {
            match call.await {
                Ok(mut instance) => {
                    instance.store.data_mut().set_deadline(None);
                    instance.served += 1;
                    pool.checkin(instance);
                    Ok(())
                }
                Err(trap) => Err(owner.call_failed(trap, limit)),
            }
        });
        let owner = self.shared.owner.clone();
        let call = async move { owner.run_guest(call).await? };
        // The epoch deadline stops a guest that computes too long; this one
        // stops a guest that waits too long.
        let owner = self.shared.owner.clone();
        Box::pin(async move {
            tokio::time::timeout_at(deadline, call)
                .await
                .unwrap_or_else(|_| Err(owner.timed_out(limit)))
        })
    }
}

impl P2Proxy {
    /// Hands `request` (whose id is `request_id`) to the guest's
    /// `incoming-handler` and answers with the response it sets.
    pub async fn handle(
        &self,
        request: http::Request<RequestBody>,
        request_id: &str,
    ) -> Result<http::Response<Body>, CallError> {
        let shared = &self.0.shared;
        let deadline = Instant::now() + shared.limits.timeout;
        let mut instance = self.0.checkout(deadline).await?;
        // A proxy has no routes: its calls go by their paths. What the
        // guest prints until its call returns names the request; an
        // instance whose call fails is dropped with the record.
        let route: Arc<str> = Arc::from(request.uri().path());
        let request_id: Arc<str> = Arc::from(request_id);
        instance
            .store
            .data_mut()
            .track_call(&route, &request_id, false);
        let (sender, receiver) = oneshot::channel();
        let mut http = instance.store.data_mut().http();
        let limit = shared.limits.max_body_bytes;
        let request =
            request.map(|body| Limited::new(body, limit).map_err(move |e| body_error(e, limit)));
        let resources = http
            .new_incoming_request(Scheme::Http, request)
            .and_then(|req| Ok((req, http.new_response_outparam(sender)?)));
        let (req, out) = resources.map_err(CallError::Trap)?;
        let call = Box::pin(async move {
            let WarmParts {
                store, bindings, ..
            } = &mut *instance;
            let handler = bindings.wasi_http_incoming_handler();
            handler.call_handle(&mut *store, req, out).await?;
            instance
                .store
                .data_mut()
                .track_call(&route, &request_id, true);
            Ok(instance)
        });
        let handling = self.0.handling(call, deadline);
        let owner = shared.owner.clone();
        answer(handling, receiver, owner, AfterBody::Finish).await
    }
}

/// What becomes of a call still running when its response body has ended.
#[derive(Clone, Copy)]
pub(crate) enum AfterBody {
    /// It runs to its end on a task of its own (a p2 call hands its
    /// instance back when it returns), and how it failed is logged.
    Finish,
    /// It is let go: the event loop that runs it (p3) learns from the body
    /// itself that the body has gone, and logs its instance's failures.
    Forget,
}

/// Answers with the response the guest gives on `receiver` while
/// `handling` runs its call: the call goes along with the body, which the
/// guest is still writing.
pub(crate) async fn answer<B, E>(
    mut handling: Handling,
    mut receiver: oneshot::Receiver<Result<hyper::Response<B>, E>>,
    owner: Arc<Owner>,
    after: AfterBody,
) -> Result<http::Response<Body>, CallError>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
    E: std::fmt::Debug,
{
    let first = std::future::poll_fn(|cx| {
        if let Poll::Ready(ended) = handling.as_mut().poll(cx) {
            return Poll::Ready(First::Ended(ended));
        }
        Pin::new(&mut receiver).poll(cx).map(First::Set)
    })
    .await;
    match first {
        First::Ended(Err(failed)) => Err(failed),
        First::Ended(Ok(())) => {
            let set = receiver.try_recv().map_err(|_| never_set())?;
            respond(set, None)
        }
        First::Set(Ok(set)) => respond(set, Some((handling, owner, after))),
        // The guest dropped its way to answer without using it; its call
        // says why, or it ends without a response.
        First::Set(Err(_)) => {
            handling.await?;
            Err(never_set())
        }
    }
}

/// A fresh instance of `shared` in `slot`.
async fn instantiate<B: Bindings>(
    shared: &Prepared<B::Pre>,
    slot: Slot,
) -> Result<Warm<B>, CallError> {
    let started = std::time::Instant::now();
    let mut store = shared.store();
    let bindings = B::instantiate(&shared.pre, &mut store)
        .await
        .map_err(CallError::Instantiate)?;
    shared.owner.metrics.instantiated(started.elapsed());
    Ok(Warm::new(store, bindings, slot))
}

/// Lets a call run to its end after its response has gone, logging how it
/// failed if it does.
fn finish_apart(handling: Handling, owner: Arc<Owner>) {
    tokio::spawn(async move {
        if let Err(failed) = handling.await {
            log_after_response(&owner, &failed);
        }
    });
}

fn log_after_response(owner: &Owner, failed: &CallError) {
    let component = &owner.component;
    tracing::error!(%component, "wasi:http handler failed after its response: {failed}");
}

/// Why a request body stopped, as wasi:http tells the guest: past `limit`
/// bytes it is the body-size error, and the guest reads no further.
pub(crate) fn body_error(error: BoxError, limit: usize) -> wasmtime_wasi_http::Error {
    if error.is::<LengthLimitError>() {
        return wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit as u64));
    }
    // A connection's error comes wrapped, as every request body's does.
    let error = match error.downcast::<BodyError>() {
        Ok(wrapped) => wrapped.0,
        Err(other) => other,
    };
    match error.downcast::<hyper::Error>() {
        Ok(hyper) => wasmtime_wasi_http::Error::Hyper(*hyper),
        Err(other) => wasmtime_wasi_http::Error::InternalError(Some(other.to_string())),
    }
}

fn never_set() -> CallError {
    CallError::InvalidResponse("the guest never called `response-outparam.set`".into())
}

/// The response the guest set; a call still running (with its component)
/// goes along with the body, which it is still writing, or on its own when
/// the guest answered with an error code.
fn respond<B, E>(
    set: Result<hyper::Response<B>, E>,
    running: Option<(Handling, Arc<Owner>, AfterBody)>,
) -> Result<http::Response<Body>, CallError>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
    E: std::fmt::Debug,
{
    match set {
        Ok(response) => Ok(response.map(|body| match running {
            Some((handling, owner, after)) => Driven {
                body,
                handling: Some(handling),
                owner,
                after,
            }
            .boxed_unsync(),
            None => body.map_err(Into::into).boxed_unsync(),
        })),
        Err(code) => {
            if let Some((handling, owner, _)) = running {
                finish_apart(handling, owner);
            }
            Err(CallError::InvalidResponse(format!(
                "the guest answered with an error: {code:?}"
            )))
        }
    }
}

/// A response body the guest is still writing: polling it also drives the
/// guest's call, which ends the body with an error if it traps or times
/// out, and is dropped with the body (its instance with it) if the client
/// goes away.
struct Driven<B> {
    body: B,
    handling: Option<Handling>,
    owner: Arc<Owner>,
    after: AfterBody,
}

impl<B> hyper::body::Body for Driven<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(handling) = &mut self.handling
            && let Poll::Ready(ended) = handling.as_mut().poll(cx)
        {
            self.handling = None;
            if let Err(failed) = ended {
                return Poll::Ready(Some(Err(failed.into())));
            }
        }
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        if frame.is_none()
            && let Some(mut handling) = self.handling.take()
        {
            // The body is whole: a call that ends with it (its instance back
            // in the pool before the client can ask again) ends here; what
            // the guest does after it does not hold the response open.
            match handling.as_mut().poll(cx) {
                Poll::Ready(Err(failed)) => log_after_response(&self.owner, &failed),
                Poll::Ready(Ok(())) => {}
                Poll::Pending => match self.after {
                    AfterBody::Finish => finish_apart(handling, self.owner.clone()),
                    AfterBody::Forget => drop(handling),
                },
            }
        }
        Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
