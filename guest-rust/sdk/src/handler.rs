//! Handlers: ordinary `fn`s and `async fn`s (or closures) whose arguments
//! are extractors and whose result is [`IntoResponse`]. Which of the two a
//! handler is decides how the host calls its route, once, at load: a sync
//! one occupies its instance until it returns; many async ones share an
//! instance while they await the host.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use serde_json::Value;

use crate::rejection::problems_response;
use crate::response::internal_error;
use crate::{FromRequest, IntoResponse, Request, Response};

pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A function that serves a route. Implemented for every `fn` and
/// `async fn` of up to 12 extractor arguments; `M` tells the two kinds
/// apart and is always inferred.
pub trait Handler<M>: 'static {
    /// True for `async fn` handlers.
    #[doc(hidden)]
    const IS_ASYNC: bool;

    /// True when an argument reads the body as it arrives.
    #[doc(hidden)]
    const STREAMS_BODY: bool = false;

    #[doc(hidden)]
    fn call(&self, req: Request) -> LocalBoxFuture<'_, Response>;

    /// What the route's OpenAPI operation learns from the handler: its
    /// name, and with [`crate::openapi::documented`] its types.
    #[cfg(feature = "openapi")]
    #[doc(hidden)]
    fn openapi() -> crate::openapi::HandlerDoc
    where
        Self: Sized,
    {
        crate::openapi::HandlerDoc::named(std::any::type_name::<Self>())
    }
}

/// Marks a handler that returns its response.
#[doc(hidden)]
pub enum ViaFn {}

/// Marks a handler that returns a future of its response.
#[doc(hidden)]
pub enum ViaAsyncFn {}

/// 422 problems kept while the other arguments are extracted, so that one
/// answer lists them all (as the Python SDK's does).
#[derive(Default)]
pub(crate) struct Problems(Vec<Value>);

impl Problems {
    /// The value; or `None`, keeping a 422's problems; or the response a
    /// rejection that is not a 422 answers with at once.
    pub(crate) fn keep<T, R: IntoResponse>(
        &mut self,
        result: Result<T, R>,
    ) -> Result<Option<T>, Response> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(rejection) => {
                let problems = rejection.into_response().problems()?;
                self.0.extend(problems);
                Ok(None)
            }
        }
    }

    /// The 422 listing every problem kept, if any.
    pub(crate) fn answer(self) -> Option<Response> {
        (!self.0.is_empty()).then(|| problems_response(self.0))
    }
}

impl<F, R> Handler<(ViaFn,)> for F
where
    F: Fn() -> R + 'static,
    R: IntoResponse,
{
    const IS_ASYNC: bool = false;

    fn call(&self, _req: Request) -> LocalBoxFuture<'_, Response> {
        let response = self().into_response();
        Box::pin(async move { response })
    }
}

impl<F, Fut, R> Handler<(ViaAsyncFn,)> for F
where
    F: Fn() -> Fut + 'static,
    Fut: Future<Output = R> + 'static,
    R: IntoResponse,
{
    const IS_ASYNC: bool = true;

    fn call(&self, _req: Request) -> LocalBoxFuture<'_, Response> {
        let future = self();
        Box::pin(async move { future.await.into_response() })
    }
}

/// Extracts every argument, the last one taking the request whole; on a
/// rejection, returns the response from the enclosing async block.
macro_rules! extract_arguments {
    ($req:ident; $($arg:ident)*; $last:ident) => {
        let mut problems = Problems::default();
        $(
            let $arg = match problems.keep($arg::from_request(&$req).await) {
                Ok(value) => value,
                Err(response) => return response,
            };
        )*
        let $last = match problems.keep($last::from_request_owned($req).await) {
            Ok(value) => value,
            Err(response) => return response,
        };
        if let Some(response) = problems.answer() {
            return response;
        }
        $(let $arg = $arg.expect("extracted");)*
        let $last = $last.expect("extracted");
    };
}

macro_rules! handlers {
    ($($arg:ident)*; $last:ident) => {
        impl<F, R, $($arg,)* $last> Handler<(ViaFn, $($arg,)* $last)> for F
        where
            F: Fn($($arg,)* $last) -> R + 'static,
            R: IntoResponse + 'static,
            $($arg: FromRequest,)*
            $last: FromRequest,
        {
            const IS_ASYNC: bool = false;
            const STREAMS_BODY: bool = $($arg::STREAMS_BODY ||)* $last::STREAMS_BODY;

            #[allow(non_snake_case)]
            fn call(&self, req: Request) -> LocalBoxFuture<'_, Response> {
                Box::pin(async move {
                    extract_arguments!(req; $($arg)*; $last);
                    self($($arg,)* $last).into_response()
                })
            }
        }

        impl<F, Fut, R, $($arg,)* $last> Handler<(ViaAsyncFn, $($arg,)* $last)> for F
        where
            F: Fn($($arg,)* $last) -> Fut + 'static,
            Fut: Future<Output = R> + 'static,
            R: IntoResponse + 'static,
            $($arg: FromRequest,)*
            $last: FromRequest,
        {
            const IS_ASYNC: bool = true;
            const STREAMS_BODY: bool = $($arg::STREAMS_BODY ||)* $last::STREAMS_BODY;

            #[allow(non_snake_case)]
            fn call(&self, req: Request) -> LocalBoxFuture<'_, Response> {
                Box::pin(async move {
                    extract_arguments!(req; $($arg)*; $last);
                    self($($arg,)* $last).await.into_response()
                })
            }
        }

        #[cfg(feature = "openapi")]
        crate::openapi::describe_handlers!($($arg)* $last);
    };
}

handlers!(; T1);
handlers!(T1; T2);
handlers!(T1 T2; T3);
handlers!(T1 T2 T3; T4);
handlers!(T1 T2 T3 T4; T5);
handlers!(T1 T2 T3 T4 T5; T6);
handlers!(T1 T2 T3 T4 T5 T6; T7);
handlers!(T1 T2 T3 T4 T5 T6 T7; T8);
handlers!(T1 T2 T3 T4 T5 T6 T7 T8; T9);
handlers!(T1 T2 T3 T4 T5 T6 T7 T8 T9; T10);
handlers!(T1 T2 T3 T4 T5 T6 T7 T8 T9 T10; T11);
handlers!(T1 T2 T3 T4 T5 T6 T7 T8 T9 T10 T11; T12);

/// A handler with its kind erased, as a route holds it.
pub(crate) struct BoxedHandler {
    pub(crate) is_async: bool,
    /// An argument reads the body as it arrives: it is not read whole first.
    #[cfg_attr(any(not(target_arch = "wasm32"), feature = "sync"), allow(dead_code))]
    pub(crate) streams_body: bool,
    inner: Box<dyn ErasedHandler>,
}

trait ErasedHandler {
    fn call(&self, req: Request) -> LocalBoxFuture<'_, Response>;
}

struct Erased<H, M>(H, std::marker::PhantomData<fn() -> M>);

impl<H: Handler<M>, M: 'static> ErasedHandler for Erased<H, M> {
    fn call(&self, req: Request) -> LocalBoxFuture<'_, Response> {
        self.0.call(req)
    }
}

impl BoxedHandler {
    pub(crate) fn new<H: Handler<M>, M: 'static>(handler: H) -> Self {
        Self {
            is_async: H::IS_ASYNC,
            streams_body: H::STREAMS_BODY,
            inner: Box::new(Erased(handler, std::marker::PhantomData)),
        }
    }

    pub(crate) fn call(&self, req: Request) -> LocalBoxFuture<'_, Response> {
        self.inner.call(req)
    }

    /// Runs a sync route's handler to its end without suspending, as the
    /// host's sync `handle` call requires.
    pub(crate) fn call_now(&self, req: Request, path: &str) -> Response {
        let mut future = self.call(req);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(response) => response,
            Poll::Pending => internal_error(&format!(
                "{path}: a sync handler's extractor waited on the host; \
                 make the handler an `async fn`"
            )),
        }
    }
}
