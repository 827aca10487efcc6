//! The app: its routes with their handlers and policies, its shared state
//! and its lifecycle hooks.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::rc::Rc;

use crate::handler::{BoxedHandler, Handler, LocalBoxFuture, ViaAsyncFn, ViaFn};
use crate::request::Incoming;
use crate::{Cache, Cors, RateLimit, Request, Response};

/// Values shared by every request an instance serves, one per type.
/// Public only because hooks are handed it.
#[derive(Clone, Default)]
pub struct AppState(Rc<RefCell<HashMap<TypeId, Rc<dyn Any>>>>);

impl AppState {
    pub(crate) fn get<T: Clone + 'static>(&self) -> Option<T> {
        let values = self.0.borrow();
        values.get(&TypeId::of::<T>())?.downcast_ref::<T>().cloned()
    }

    fn insert<T: 'static>(&self, value: T) {
        if TypeId::of::<T>() != TypeId::of::<()>() {
            self.0
                .borrow_mut()
                .insert(TypeId::of::<T>(), Rc::new(value));
        }
    }
}

pub(crate) struct Route {
    pub(crate) methods: Vec<String>,
    pub(crate) path: String,
    pub(crate) handler: Rc<BoxedHandler>,
    pub(crate) cache: Option<Cache>,
    pub(crate) roles: Vec<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) rate_limit: Option<RateLimit>,
    /// What the OpenAPI document says of the route beyond its policies.
    #[cfg(feature = "openapi")]
    pub(crate) doc: crate::openapi::RouteDoc,
}

/// A hook run once per instance before its first request: a `fn` or
/// `async fn` returning `Result<T, E>`. `T` becomes [`crate::State`]
/// (`()` for none); an `Err` keeps the instance from serving.
pub trait StartHook<M>: 'static {
    #[doc(hidden)]
    fn run(&self, state: AppState) -> LocalBoxFuture<'static, Result<(), String>>;
}

impl<F, T, E> StartHook<(ViaFn, T)> for F
where
    F: Fn() -> Result<T, E> + 'static,
    T: 'static,
    E: Display,
{
    fn run(&self, state: AppState) -> LocalBoxFuture<'static, Result<(), String>> {
        let result = self().map(|value| state.insert(value));
        let result = result.map_err(|e| e.to_string());
        Box::pin(async move { result })
    }
}

impl<F, Fut, T, E> StartHook<(ViaAsyncFn, T)> for F
where
    F: Fn() -> Fut + 'static,
    Fut: Future<Output = Result<T, E>> + 'static,
    T: 'static,
    E: Display,
{
    fn run(&self, state: AppState) -> LocalBoxFuture<'static, Result<(), String>> {
        let future = self();
        Box::pin(async move {
            let value = future.await.map_err(|e| e.to_string())?;
            state.insert(value);
            Ok(())
        })
    }
}

/// A hook run when an instance is retired: a `fn()` or `async fn()`.
pub trait StopHook<M>: 'static {
    #[doc(hidden)]
    fn run(&self) -> LocalBoxFuture<'static, ()>;
}

impl<F: Fn() + 'static> StopHook<ViaFn> for F {
    fn run(&self) -> LocalBoxFuture<'static, ()> {
        self();
        Box::pin(async {})
    }
}

impl<F, Fut> StopHook<ViaAsyncFn> for F
where
    F: Fn() -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    fn run(&self) -> LocalBoxFuture<'static, ()> {
        Box::pin(self())
    }
}

type BoxedStart = Box<dyn Fn(AppState) -> LocalBoxFuture<'static, Result<(), String>>>;
type BoxedStop = Box<dyn Fn() -> LocalBoxFuture<'static, ()>>;

/// An app: a name and its routes, in the order they were declared.
///
/// ```ignore
/// App::new("shop")
///     .get("/items/{id}", read_item)
///     .post("/items", create_item)
///     .roles(&["editor"])
/// ```
pub struct App {
    pub(crate) name: String,
    pub(crate) routes: Vec<Route>,
    on_start: Vec<BoxedStart>,
    on_stop: Vec<BoxedStop>,
    pub(crate) cors: Option<Cors>,
    pub(crate) access_log: bool,
    pub(crate) default_rate_limit: Option<RateLimit>,
    pub(crate) state: AppState,
    #[cfg(feature = "openapi")]
    pub(crate) openapi: crate::openapi::OpenApi,
}

macro_rules! method_routes {
    ($($method:literal => $name:ident, $legacy:ident;)*) => {
        $(
            #[doc = concat!("Serves `", $method, " path` with `handler`, a `fn` or `async fn` ",
                "taking extractors. `{name}` segments of `path` are path parameters.")]
            pub fn $name<H: Handler<M>, M: 'static>(self, path: &str, handler: H) -> Self {
                self.route(&[$method], path, handler)
            }

            #[doc(hidden)]
            pub fn $legacy<H: Handler<M>, M: 'static>(self, path: &str, handler: H) -> Self {
                self.route(&[$method], path, handler)
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
            on_start: Vec::new(),
            on_stop: Vec::new(),
            cors: None,
            access_log: false,
            default_rate_limit: None,
            state: AppState::default(),
            #[cfg(feature = "openapi")]
            openapi: crate::openapi::OpenApi::default(),
        }
    }

    /// The name given to [`App::new`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Shares `value` with every request, as [`crate::State<T>`].
    pub fn with_state<T: Clone + 'static>(self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Asks the host to answer CORS for every route (the operator's
    /// `[cors]`, if any, wins).
    pub fn cors(mut self, cors: Cors) -> Self {
        self.cors = Some(cors);
        self
    }

    /// Asks the host for an access log line per request to this app.
    pub fn access_log(mut self) -> Self {
        self.access_log = true;
        self
    }

    /// Runs `hook` once per instance before its first request, with the
    /// capabilities available. It may be sync or async; the value it
    /// returns becomes [`crate::State`], and an `Err` keeps the instance
    /// from serving (the host answers 503 and logs it).
    pub fn on_start<H: StartHook<M>, M>(mut self, hook: H) -> Self {
        self.on_start
            .push(Box::new(move |state: AppState| hook.run(state)));
        self
    }

    /// Applies `migrations` (see [`crate::migrations!`]) to the component's
    /// SQL database before each instance's first request, ahead of the
    /// `on_start` hooks: each runs once, in its own transaction. One that
    /// fails keeps the version from serving (the old one goes on).
    pub fn migrations(mut self, migrations: &'static [crate::sql::Migration]) -> Self {
        let apply: BoxedStart = Box::new(move |_| {
            Box::pin(async move {
                crate::sql::migrate(migrations)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
        });
        self.on_start.insert(0, apply);
        self
    }

    /// Runs `hook` (sync or async) when the instance is retired or the host
    /// shuts down.
    pub fn on_stop<H: StopHook<M>, M>(mut self, hook: H) -> Self {
        self.on_stop.push(Box::new(move || hook.run()));
        self
    }

    /// The rate limit of every route that declares none of its own.
    pub fn default_rate_limit(mut self, limit: RateLimit) -> Self {
        self.default_rate_limit = Some(limit);
        self
    }

    method_routes! {
        "GET" => get, get_async;
        "POST" => post, post_async;
        "PUT" => put, put_async;
        "PATCH" => patch, patch_async;
        "DELETE" => delete, delete_async;
    }

    /// Serves `path` for each of `methods` (empty: every method).
    pub fn route<H: Handler<M>, M: 'static>(
        mut self,
        methods: &[&str],
        path: &str,
        handler: H,
    ) -> Self {
        self.routes.push(Route {
            methods: methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            path: path.to_string(),
            handler: Rc::new(BoxedHandler::new(handler)),
            cache: None,
            roles: Vec::new(),
            scopes: Vec::new(),
            rate_limit: None,
            #[cfg(feature = "openapi")]
            doc: crate::openapi::RouteDoc::new(H::openapi()),
        });
        self
    }

    #[doc(hidden)]
    pub fn route_async<H: Handler<M>, M: 'static>(
        self,
        methods: &[&str],
        path: &str,
        handler: H,
    ) -> Self {
        self.route(methods, path, handler)
    }

    /// Serves every route of `other` under `prefix` (`"/admin"`), with
    /// its policies; its state and hooks join this app's.
    pub fn nest(mut self, prefix: &str, other: App) -> Self {
        let prefix = prefix.trim_end_matches('/');
        for mut route in other.routes {
            route.path = match route.path.as_str() {
                "/" if !prefix.is_empty() => prefix.to_string(),
                path => format!("{prefix}{path}"),
            };
            self.routes.push(route);
        }
        let theirs = std::mem::take(&mut *other.state.0.borrow_mut());
        self.state.0.borrow_mut().extend(theirs);
        self.on_start.extend(other.on_start);
        self.on_stop.extend(other.on_stop);
        self
    }

    pub(crate) fn last_route(&mut self) -> &mut Route {
        self.routes
            .last_mut()
            .expect("declare a route before its policies: .get(path, handler).roles(...)")
    }

    /// The route declared last needs a token holding every one of `roles`
    /// (401 without one, 403 without the roles), checked by the host.
    pub fn roles(mut self, roles: &[&str]) -> Self {
        self.last_route().roles = roles.iter().map(|r| r.to_string()).collect();
        self
    }

    /// The route declared last needs a token holding every one of `scopes`.
    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.last_route().scopes = scopes.iter().map(|s| s.to_string()).collect();
        self
    }

    /// A rate limit on the route declared last, enforced by the host.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.last_route().rate_limit = Some(limit);
        self
    }

    /// Lets the host cache the responses of the route declared last:
    /// `.get("/items", list).cached(Cache::ttl(60).tags(&["items"]))`.
    pub fn cached(mut self, policy: Cache) -> Self {
        self.last_route().cache = Some(policy);
        self
    }

    /// The app as it is served: its own routes, then those the SDK adds
    /// (the OpenAPI document's, with the `openapi` feature). The component
    /// and the test client serve it; an app need not call it.
    pub(crate) fn finalize(self) -> Self {
        #[cfg(feature = "openapi")]
        return crate::openapi::serve_document(self);
        #[cfg(not(feature = "openapi"))]
        self
    }

    pub(crate) fn request(&self, incoming: Incoming) -> Request {
        Request::new(incoming, self.state.clone())
    }

    /// Runs route `index`'s handler; a sync one without suspending.
    pub(crate) async fn serve(&self, index: usize, req: Request) -> Response {
        match self.routes.get(index) {
            Some(route) if route.handler.is_async => route.handler.call(req).await,
            Some(route) => route.handler.call_now(req, &route.path),
            None => crate::response::internal_error(&format!("no handler for route {index}")),
        }
    }

    /// Runs a sync route's handler (the host's `handle` call).
    #[cfg_attr(any(not(target_arch = "wasm32"), feature = "sync"), allow(dead_code))]
    pub(crate) fn serve_now(&self, index: usize, req: Request) -> Response {
        match self.routes.get(index) {
            Some(route) => route.handler.call_now(req, &route.path),
            None => crate::response::internal_error(&format!("no handler for route {index}")),
        }
    }

    pub(crate) async fn start(&self) -> Result<(), String> {
        for hook in &self.on_start {
            hook(self.state.clone()).await?;
        }
        Ok(())
    }

    pub(crate) async fn stop(&self) {
        for hook in &self.on_stop {
            hook().await;
        }
    }
}
