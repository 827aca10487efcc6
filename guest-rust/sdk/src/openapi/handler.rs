//! [`documented`]: a route whose operation is described by its handler's
//! types.

use std::marker::PhantomData;

use super::{HandlerDoc, Operation};
use crate::handler::LocalBoxFuture;
use crate::{Handler, Request, Response};

/// A handler whose arguments are all [`OperationInput`](super::OperationInput)s and whose result
/// is an [`OperationOutput`](super::OperationOutput): its types describe its route. Implemented
/// for every `fn` and `async fn` that is a [`Handler`].
#[diagnostic::on_unimplemented(
    message = "the types of `{Self}` cannot describe its route",
    note = "each argument must implement `cello::openapi::OperationInput` and the result \
            `cello::openapi::OperationOutput`: derive `schemars::JsonSchema` for the types in \
            `Path`, `Query`, `Header` and `Json`"
)]
pub trait Describe<M> {
    /// Adds what the arguments and the result add to `op`.
    fn describe(op: &mut Operation<'_>);
}

/// The handler of a route whose OpenAPI operation its types describe: the
/// schemas of its `Path`, `Query`, `Header` and `Json` arguments, of the
/// `Json` it answers, and the responses its result may be (404 for an
/// `Option`, 204 for `()`, 422 when an argument may reject the request).
///
/// ```ignore
/// App::new("shop").get("/items/{id}", documented(read_item))
/// ```
///
/// It serves the route as `handler` does.
pub fn documented<H, M>(handler: H) -> Documented<H, M>
where
    H: Handler<M> + Describe<M>,
    M: 'static,
{
    Documented {
        handler,
        marker: PhantomData,
    }
}

/// A handler given to [`documented`].
pub struct Documented<H, M> {
    handler: H,
    marker: PhantomData<fn() -> M>,
}

/// Marks a [`Documented`] handler.
#[doc(hidden)]
pub enum ViaDocumented {}

impl<H, M> Handler<(ViaDocumented, M)> for Documented<H, M>
where
    H: Handler<M> + Describe<M>,
    M: 'static,
{
    const IS_ASYNC: bool = H::IS_ASYNC;

    fn call(&self, req: Request) -> LocalBoxFuture<'_, Response> {
        self.handler.call(req)
    }

    fn openapi() -> HandlerDoc {
        HandlerDoc {
            describe: Some(H::describe),
            ..H::openapi()
        }
    }
}

/// `Describe` for handlers of the arguments given, sync and async; the
/// handler module's `handlers!` calls it for each arity it implements.
macro_rules! describe_handlers {
    ($($arg:ident)*) => {
        impl<F, R, $($arg,)*> $crate::openapi::Describe<($crate::handler::ViaFn, $($arg,)*)> for F
        where
            F: Fn($($arg,)*) -> R,
            $($arg: $crate::openapi::OperationInput,)*
            R: $crate::openapi::OperationOutput,
        {
            fn describe(op: &mut $crate::openapi::Operation<'_>) {
                $(op.input::<$arg>();)*
                op.output::<R>();
            }
        }

        impl<F, Fut, R, $($arg,)*> $crate::openapi::Describe<($crate::handler::ViaAsyncFn, $($arg,)*)> for F
        where
            F: Fn($($arg,)*) -> Fut,
            Fut: ::std::future::Future<Output = R>,
            $($arg: $crate::openapi::OperationInput,)*
            R: $crate::openapi::OperationOutput,
        {
            fn describe(op: &mut $crate::openapi::Operation<'_>) {
                $(op.input::<$arg>();)*
                op.output::<R>();
            }
        }
    };
}

pub(crate) use describe_handlers;

// Handlers without arguments; `handlers!` makes the others.
describe_handlers!();
