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
    pub(crate) cache: Option<Cache>,
    pub(crate) roles: Vec<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) rate_limit: Option<RateLimit>,
}

/// A request budget the host enforces per caller before the handler runs.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub(crate) sliding: bool,
    pub(crate) capacity: u32,
    pub(crate) period_seconds: u32,
    pub(crate) by_subject: bool,
}

impl RateLimit {
    /// Bursts of `capacity`, refilled over `period_seconds`.
    pub fn token_bucket(capacity: u32, period_seconds: u32) -> Self {
        Self {
            sliding: false,
            capacity,
            period_seconds,
            by_subject: false,
        }
    }

    /// At most `capacity` requests in any `window_seconds`.
    pub fn sliding_window(capacity: u32, window_seconds: u32) -> Self {
        Self {
            sliding: true,
            capacity,
            period_seconds: window_seconds,
            by_subject: false,
        }
    }

    /// Counted per JWT subject rather than per client address.
    pub fn per_subject(mut self) -> Self {
        self.by_subject = true;
        self
    }
}

/// How long the host may keep a GET route's responses, under which tags and
/// request headers: `Cache::ttl(60).tags(&["items"]).vary(&["accept-language"])`.
#[derive(Debug, Clone)]
pub struct Cache {
    pub(crate) ttl_seconds: u32,
    pub(crate) tags: Vec<String>,
    pub(crate) vary: Vec<String>,
}

impl Cache {
    /// Responses stay fresh for `seconds`.
    pub fn ttl(seconds: u32) -> Self {
        Self {
            ttl_seconds: seconds,
            tags: Vec::new(),
            vary: Vec::new(),
        }
    }

    /// Tags that [`crate::cache::invalidate`] drops the entries by.
    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Request headers whose values key separate entries.
    pub fn vary(mut self, headers: &[&str]) -> Self {
        self.vary = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        self
    }
}

/// Cross-origin rules the app asks the host for; an operator's `[cors]`
/// table wins. `Cors::origins(&["https://app.example"]).credentials()`.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    pub(crate) origins: Vec<String>,
    pub(crate) methods: Vec<String>,
    pub(crate) headers: Vec<String>,
    pub(crate) expose: Vec<String>,
    pub(crate) credentials: bool,
    pub(crate) max_age_seconds: u32,
}

impl Cors {
    /// Allows `origins` (or `&["*"]`); methods and headers default to the
    /// usual ones, the preflight is cached 600 s.
    pub fn origins(origins: &[&str]) -> Self {
        Self {
            origins: origins.iter().map(|o| o.to_string()).collect(),
            max_age_seconds: 600,
            ..Self::default()
        }
    }

    pub fn methods(mut self, methods: &[&str]) -> Self {
        self.methods = methods.iter().map(|m| m.to_ascii_uppercase()).collect();
        self
    }

    pub fn headers(mut self, headers: &[&str]) -> Self {
        self.headers = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        self
    }

    pub fn expose(mut self, headers: &[&str]) -> Self {
        self.expose = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        self
    }

    pub fn credentials(mut self) -> Self {
        self.credentials = true;
        self
    }

    pub fn max_age(mut self, seconds: u32) -> Self {
        self.max_age_seconds = seconds;
        self
    }
}

/// An app: a name and its routes, in the order they were declared.
pub struct App {
    pub(crate) name: String,
    pub(crate) routes: Vec<Route>,
    pub(crate) on_start: Option<Box<dyn Fn() -> Result<(), String>>>,
    pub(crate) on_stop: Option<Box<dyn Fn()>>,
    pub(crate) cors: Option<Cors>,
    pub(crate) access_log: bool,
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
            on_start: None,
            on_stop: None,
            cors: None,
            access_log: false,
        }
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

    /// Runs `hook` once per instance before its first request; an `Err`
    /// keeps the instance from serving (the host answers 503 and logs it).
    pub fn on_start(mut self, hook: impl Fn() -> Result<(), String> + 'static) -> Self {
        self.on_start = Some(Box::new(hook));
        self
    }

    /// Runs `hook` when the instance is retired or the host shuts down.
    pub fn on_stop(mut self, hook: impl Fn() + 'static) -> Self {
        self.on_stop = Some(Box::new(hook));
        self
    }

    method_routes! {
        "GET" => get, get_async;
        "POST" => post, post_async;
        "PUT" => put, put_async;
        "PATCH" => patch, patch_async;
        "DELETE" => delete, delete_async;
    }

    /// The route declared last needs a token holding every one of `roles`
    /// (401 without one, 403 without the roles), checked by the host.
    pub fn roles(mut self, roles: &[&str]) -> Self {
        if let Some(route) = self.routes.last_mut() {
            route.roles = roles.iter().map(|r| r.to_string()).collect();
        }
        self
    }

    /// The route declared last needs a token holding every one of `scopes`.
    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        if let Some(route) = self.routes.last_mut() {
            route.scopes = scopes.iter().map(|s| s.to_string()).collect();
        }
        self
    }

    /// A rate limit on the route declared last, enforced by the host.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        if let Some(route) = self.routes.last_mut() {
            route.rate_limit = Some(limit);
        }
        self
    }

    /// Lets the host cache the responses of the route declared last:
    /// `.get("/items", list).cached(Cache::ttl(60).tags(&["items"]))`.
    pub fn cached(mut self, policy: Cache) -> Self {
        if let Some(route) = self.routes.last_mut() {
            route.cache = Some(policy);
        }
        self
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
            cache: None,
            roles: Vec::new(),
            scopes: Vec::new(),
            rate_limit: None,
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
            cache: None,
            roles: Vec::new(),
            scopes: Vec::new(),
            rate_limit: None,
        });
        self
    }
}
