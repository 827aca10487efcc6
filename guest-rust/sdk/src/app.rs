//! Declaring routes.

use std::future::Future;
use std::pin::Pin;

use crate::{IntoResponse, Request, Response};

pub(crate) type SyncHandler = Box<dyn Fn(Request) -> Response>;
pub(crate) type AsyncHandler = Box<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Response>>>>;

pub(crate) enum Handler {
    Sync(SyncHandler),
    Async(AsyncHandler),
}

pub(crate) struct Route {
    pub(crate) methods: Vec<String>,
    pub(crate) path: String,
    pub(crate) handler: Handler,
}

/// An app: a name and its routes, in the order they were declared.
pub struct App {
    pub(crate) name: String,
    pub(crate) routes: Vec<Route>,
}

macro_rules! method_routes {
    ($($method:literal => $sync:ident, $async_:ident;)*) => {
        $(
            #[doc = concat!("Serves `", $method, " path` with a sync handler.")]
            pub fn $sync<R: IntoResponse>(self, path: &str, handler: impl Fn(Request) -> R + 'static) -> Self {
                self.route(&[$method], path, handler)
            }

            #[doc = concat!("Serves `", $method, " path` with an async handler.")]
            pub fn $async_<F, R>(self, path: &str, handler: impl Fn(Request) -> F + 'static) -> Self
            where
                F: Future<Output = R> + 'static,
                R: IntoResponse,
            {
                self.route_async(&[$method], path, handler)
            }
        )*
    };
}

impl App {
    /// An app with no routes yet; `name` shows in the host's logs.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            routes: Vec::new(),
        }
    }

    method_routes! {
        "GET" => get, get_async;
        "POST" => post, post_async;
        "PUT" => put, put_async;
        "PATCH" => patch, patch_async;
        "DELETE" => delete, delete_async;
    }

    /// Serves `path` for each of `methods` (empty: every method) with a sync
    /// handler. `{name}` segments in `path` become [`Request::param`]s.
    pub fn route<R: IntoResponse>(
        mut self,
        methods: &[&str],
        path: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.routes.push(Route {
            methods: methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            path: path.to_string(),
            handler: Handler::Sync(Box::new(move |req| handler(req).into_response())),
        });
        self
    }

    /// Serves `path` for each of `methods` with an async handler.
    pub fn route_async<F, R>(
        mut self,
        methods: &[&str],
        path: &str,
        handler: impl Fn(Request) -> F + 'static,
    ) -> Self
    where
        F: Future<Output = R> + 'static,
        R: IntoResponse,
    {
        self.routes.push(Route {
            methods: methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            path: path.to_string(),
            handler: Handler::Async(Box::new(move |req| {
                let response = handler(req);
                Box::pin(async move { response.await.into_response() })
            })),
        });
        self
    }
}
