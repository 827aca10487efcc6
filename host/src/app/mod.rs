//! Components of the `cello:component/app` world: their routes, and the
//! instances that serve them.
//!
//! A `def` route is a plain call that holds one instance from
//! [`sync_pool`] until it returns. An `async def` route is a
//! component-model async call on an instance from [`async_pool`], where many
//! calls are in flight at once, each suspended while it awaits the host.
//! Both kinds take their instances' slots from one [`Capacity`]. A
//! component exporting `streaming` has its async routes served through it:
//! bodies in and out as [`streams`]. One exporting `packed` has its `def`
//! routes served through that, the request in one buffer ([`packed`]).

mod async_pool;
pub mod packed;
pub mod streams;
mod sync_pool;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::Either;
use tokio::time::Instant;
use tracing::Instrument as _;

use wasmtime::Store;
use wasmtime::component::{Component, InstancePre, Linker};

use crate::bindings::packed::{Guest as PackedGuest, GuestIndices as PackedIndices};
use crate::bindings::streaming::{Guest as StreamingGuest, GuestIndices as StreamingIndices};
use crate::bindings::sync_app::{SyncApp, SyncAppPre};
use crate::bindings::{App as AppBindings, AppPre, Manifest, Request, Response};
use crate::body::{Body, RequestBody};
use crate::config::Limits;
use crate::error::CallError;
use crate::instances::blocked::EventLoopKind;
use crate::instances::capacity::Slot;
use crate::instances::state::{InstanceState, Owner};
use crate::instances::warm::{Warm, WarmParts};
use crate::instances::{Prepared, first_instance};
use crate::middleware::rate_limit::Limiter;
use crate::resources::Resources;
use crate::response_cache::CachePolicy;
use crate::world::World;
use async_pool::AsyncPool;
use sync_pool::{DefRequest, SyncPool};

/// How long `on-start` may take before the instance is given up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `on-stop` may take when an instance is retired.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A loaded app component, ready to serve its routes.
pub struct AppComponent {
    shared: Arc<Shared>,
    sync_pool: Arc<SyncPool>,
    async_pool: Arc<AsyncPool>,
}

/// What every instance of one component is made from.
struct Shared {
    /// Owner, engine, the linked component, limits and instance slots.
    prepared: Prepared<Pre>,
    /// Route paths by index, to name routes in logs.
    routes: Vec<Arc<str>>,
    /// Each route's cache policy, by index.
    cache_policies: Vec<Option<CachePolicy>>,
    /// Each route's roles, scopes and rate limit, by index.
    guards: Vec<RouteGuard>,
    /// The `streaming` export, when the component has it.
    streaming: Option<StreamingIndices>,
    /// The `packed` export, when the component has it.
    packed: Option<PackedIndices>,
    /// Whether each `def` route's last call ran long, by index: its next
    /// call starts on the long-call lane, checkout and all, rather than on
    /// a request's thread. A guest can do a lot in one step that cannot be
    /// interrupted (a `memory.fill` of its whole memory, say); this keeps a
    /// route that did from doing it there again.
    runs_long: Vec<AtomicBool>,
}

/// What a route requires of a caller before it runs.
pub struct RouteGuard {
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    pub limiter: Option<Limiter>,
}

impl RouteGuard {
    /// True when a verified token is needed.
    pub fn needs_auth(&self) -> bool {
        !self.roles.is_empty() || !self.scopes.is_empty()
    }
}

/// An instance with its store, after `on-start` succeeded.
type Instance = Warm<AppCalls>;

/// What an instance is called through: the app's exports, and `packed`'s
/// when the component has it.
pub struct AppCalls {
    app: Exports,
    packed: Option<PackedGuest>,
}

/// How an app's instances are made, by its world.
#[derive(Clone)]
enum Pre {
    /// `app`: async exports, on the concurrent engine.
    Async(AppPre<InstanceState>),
    /// `sync-app`: plain functions, on either engine.
    Sync(SyncAppPre<InstanceState>),
}

/// An app instance's own exports, by its world.
enum Exports {
    Async(AppBindings),
    Sync(SyncApp),
}

impl Pre {
    fn instance_pre(&self) -> &InstancePre<InstanceState> {
        match self {
            Pre::Async(pre) => pre.instance_pre(),
            Pre::Sync(pre) => pre.instance_pre(),
        }
    }

    fn exports(
        &self,
        store: &mut Store<InstanceState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Exports> {
        Ok(match self {
            Pre::Async(_) => Exports::Async(AppBindings::new(store, instance)?),
            Pre::Sync(_) => Exports::Sync(SyncApp::new(store, instance)?),
        })
    }
}

impl Exports {
    async fn describe(&self, store: &mut Store<InstanceState>) -> wasmtime::Result<Manifest> {
        match self {
            Exports::Async(app) => app.call_describe(store).await,
            Exports::Sync(app) => app.call_describe(store).await,
        }
    }

    /// Runs `on-start`: the guest's refusal inside the call's result.
    async fn on_start(
        &self,
        store: &mut Store<InstanceState>,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Exports::Async(app) => {
                store
                    .run_concurrent(async |accessor| app.call_on_start(accessor).await)
                    .await?
            }
            Exports::Sync(app) => app.call_on_start(store).await,
        }
    }

    async fn on_stop(&self, store: &mut Store<InstanceState>) -> wasmtime::Result<()> {
        match self {
            Exports::Async(app) => {
                store
                    .run_concurrent(async |accessor| app.call_on_stop(accessor).await)
                    .await?
            }
            Exports::Sync(app) => app.call_on_stop(store).await,
        }
    }

    async fn run_background(
        &self,
        store: &mut Store<InstanceState>,
        request_id: String,
    ) -> wasmtime::Result<()> {
        match self {
            Exports::Async(app) => {
                store
                    .run_concurrent(async |accessor| {
                        app.call_run_background(accessor, request_id).await
                    })
                    .await?
            }
            Exports::Sync(app) => app.call_run_background(store, &request_id).await,
        }
    }
}

impl AppCalls {
    /// `handle`, on a `def` route (any route of a sync app).
    async fn call_handle(
        &self,
        store: &mut Store<InstanceState>,
        req: &Request,
    ) -> wasmtime::Result<Response> {
        match &self.app {
            Exports::Async(app) => app.call_handle(store, req).await,
            Exports::Sync(app) => app.call_handle(store, req).await,
        }
    }

    /// The async exports an event loop calls; none for a sync app.
    fn async_exports(&self) -> Option<&AppBindings> {
        match &self.app {
            Exports::Async(app) => Some(app),
            Exports::Sync(_) => None,
        }
    }
}

/// Why [`AppComponent::warm_up`] started no instance.
#[derive(Debug)]
pub enum WarmUpFailed {
    /// Requests in flight held every instance slot for the whole wait.
    NoSlot,
    /// `on-start` ran past its time.
    TimedOut,
    /// Instantiating or `on-start` failed.
    Failed(CallError),
}

impl AppComponent {
    /// Prepares `component` for instantiation and reads its manifest from a
    /// throwaway instance. Fails with a sentence when the component imports
    /// what the host does not provide or `describe` traps.
    pub async fn load(
        owner: Arc<Owner>,
        component: &Component,
        linker: &Linker<InstanceState>,
        limits: Limits,
        default_cache: Option<CachePolicy>,
        runtime: &Resources,
    ) -> anyhow::Result<(Self, Manifest)> {
        let sync = World::of(component.engine(), component) == World::SyncApp;
        let prepared = Prepared::new(owner, component, linker, limits, runtime, |pre| {
            Ok(if sync {
                Pre::Sync(SyncAppPre::new(pre)?)
            } else {
                Pre::Async(AppPre::new(pre)?)
            })
        })?;
        let streaming = exports(component, "streaming")
            .then(|| StreamingIndices::new(prepared.pre.instance_pre()))
            .transpose()
            .map_err(|e| anyhow::anyhow!("wrong `streaming` export: {e:#}"))?;
        let packed = exports(component, "packed")
            .then(|| PackedIndices::new(prepared.pre.instance_pre()))
            .transpose()
            .map_err(|e| anyhow::anyhow!("wrong `packed` export: {e:#}"))?;
        let optional = OptionalExports {
            streaming: streaming.clone(),
            packed: packed.clone(),
        };
        let mut manifest = describe(&prepared, &optional).await?;
        check_manifest(&manifest)?;
        if sync {
            // A sync app serves every route through `handle`.
            manifest.routes.iter_mut().for_each(|r| r.is_async = false);
        }
        let cache_policies = cache_policies(&manifest, default_cache)?;
        let guards = manifest
            .routes
            .iter()
            .map(|route| {
                let policy = &route.policy;
                Ok(RouteGuard {
                    roles: policy.roles.clone(),
                    scopes: policy.scopes.clone(),
                    limiter: policy
                        .rate_limit
                        .as_ref()
                        .map(Limiter::new)
                        .transpose()
                        .map_err(|e| anyhow::anyhow!("route {}: {e}", route.path))?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            prepared,
            cache_policies,
            guards,
            streaming,
            packed,
            runs_long: manifest
                .routes
                .iter()
                .map(|_| AtomicBool::new(false))
                .collect(),
            routes: manifest
                .routes
                .iter()
                .map(|r| r.path.as_str().into())
                .collect(),
        });
        let sync_pool = SyncPool::new(shared.owner.clone(), &shared.limits, retire);
        let async_pool = Arc::new(AsyncPool::default());
        shared.capacity.register(Arc::downgrade(&sync_pool) as _);
        shared.capacity.register(Arc::downgrade(&async_pool) as _);
        let app = Self {
            sync_pool,
            async_pool,
            shared,
        };
        Ok((app, manifest))
    }

    /// Serves `req` on a sync (`def`) or async (`async def`) route.
    pub async fn handle(&self, req: Box<Request>, is_async: bool) -> Result<Response, CallError> {
        if is_async {
            // Boxed, so a `def` call's future is not as large as this one's.
            Box::pin(self.async_pool.call(&self.shared, *req)).await
        } else {
            self.call_def(DefRequest::Record(req)).await
        }
    }

    /// True when the component exports `packed`: its `def` routes may be
    /// called with [`Self::handle_packed`].
    pub fn packs(&self) -> bool {
        self.shared.packed.is_some()
    }

    /// Serves `req`, packed already, on a `def` route of a component that
    /// [packs](Self::packs).
    pub fn handle_packed(
        &self,
        req: packed::Packed,
    ) -> impl Future<Output = Result<Response, CallError>> + Send + '_ {
        self.call_def(DefRequest::Packed(req))
    }

    /// Serves `req` on a `def` route: on the request's thread, or on the
    /// long-call lane when the route's last call ran long. Not an `async
    /// fn`: the call's future is the caller's to await, not made again in
    /// this one's state at its first poll (a copy of it).
    fn call_def(
        &self,
        req: DefRequest,
    ) -> impl Future<Output = Result<Response, CallError>> + Send + '_ {
        if !self.shared.runs_long(req.route()) {
            return Either::Left(sync_pool::call(&self.sync_pool, &self.shared, req));
        }
        let (pool, shared) = (self.sync_pool.clone(), self.shared.clone());
        let call = async move { sync_pool::call(&pool, &shared, req).await };
        let call = Box::pin(call.instrument(crate::telemetry::current()));
        let on_lane = self.shared.owner.cpu.run_on_lane(call);
        Either::Right(async move {
            match on_lane.await {
                Ok(ran) => ran.out,
                Err(_) => Err(CallError::InstanceLost("the host is shutting down".into())),
            }
        })
    }

    /// True when async routes are served through `streaming`: their
    /// request bodies are read by the guest as they arrive.
    pub fn streams(&self) -> bool {
        self.shared.streaming.is_some()
    }

    /// Serves `req` on an async route through `streaming`: the guest reads
    /// `body` as it arrives, and answers whole or as a stream. Before the
    /// response's head, the route's timeout applies; after it, the stream's
    /// idle time (`stream-idle-ms`).
    pub async fn handle_streaming(
        &self,
        req: Box<Request>,
        body: Option<RequestBody>,
    ) -> Result<Answer, CallError> {
        Box::pin(self.async_pool.stream(&self.shared, *req, body)).await
    }

    /// The path pattern of `route`, for logs.
    pub fn route_path(&self, route: u32) -> Arc<str> {
        self.shared.route_name(route)
    }

    /// What `route` requires of its callers.
    pub fn guard(&self, route: u32) -> Option<&RouteGuard> {
        self.shared.guards.get(route as usize)
    }

    /// The cache policy of `route`, if its responses may be cached.
    pub fn cache_policy(&self, route: u32) -> Option<&CachePolicy> {
        self.shared.cache_policies.get(route as usize)?.as_ref()
    }

    /// Largest request body this component accepts.
    pub fn max_body_bytes(&self) -> usize {
        self.shared.limits.max_body_bytes
    }

    /// Time a request may take, its body's arrival included.
    pub fn timeout(&self) -> std::time::Duration {
        self.shared.limits.timeout
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.shared.owner.component
    }

    /// Who the component is, for logs and metrics.
    pub fn owner(&self) -> &Arc<Owner> {
        &self.shared.owner
    }

    /// Starts one instance now, `on-start` and all, and keeps it warm for
    /// the first request: proof that the component can start, before it
    /// is put in service. Idle instances of other components (the version
    /// it replaces, say) make room for it; requests in flight are waited
    /// for at most `wait`, and `on-start` may take `start_timeout`.
    pub async fn warm_up(
        &self,
        wait: Duration,
        start_timeout: Duration,
    ) -> Result<(), WarmUpFailed> {
        let capacity = &self.shared.capacity;
        let slot = capacity
            .slot_evicting(&*self.sync_pool, wait)
            .await
            .ok_or(WarmUpFailed::NoSlot)?;
        let start = self.shared.instantiate(slot);
        let instance = tokio::time::timeout(start_timeout, start)
            .await
            .map_err(|_| WarmUpFailed::TimedOut)?
            .map_err(WarmUpFailed::Failed)?;
        self.sync_pool.checkin(instance);
        Ok(())
    }

    /// Retires every idle instance, running its `on-stop` hook: for a
    /// component taken out of service once its last request has ended.
    pub fn retire_idle(&self) {
        use crate::instances::capacity::Evict;
        while self.sync_pool.evict_one() {}
        while self.async_pool.evict_one() {}
    }
}

/// Retires every idle instance of `apps`, running their `on-stop` hooks,
/// and waits for the hooks to end, at most `within`: the last step of a
/// graceful shutdown, once requests have drained.
pub async fn retire_all(apps: &[Arc<AppComponent>], within: Duration) {
    for app in apps {
        app.retire_idle();
    }
    let deadline = Instant::now() + within;
    while apps
        .iter()
        .any(|app| app.shared.owner.metrics.instances_live.get() > 0)
    {
        if Instant::now() >= deadline {
            tracing::warn!("some instances did not stop within {within:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What makes `component`, an app of `world`, unservable though its
/// exports have the right names and types (wasmtime's type check does not
/// tell an `async func` from a plain one): an `async func` where the host
/// calls a plain function, or, in a sync app, an imported `async func`,
/// which a plain function can never wait on: every call of it would trap.
pub fn export_problem(component: &Component, world: &World) -> Option<String> {
    use wasmtime::component::types::ComponentItem;
    let engine = component.engine();
    let is_async =
        |item: &ComponentItem| matches!(item, ComponentItem::ComponentFunc(func) if func.async_());
    let funcs = |item: ComponentItem| match item {
        ComponentItem::ComponentInstance(instance) => instance
            .exports(engine)
            .filter(|(_, item)| is_async(&item.ty))
            .map(|(func, _)| func.to_string())
            .collect(),
        item if is_async(&item) => vec![String::new()],
        _ => Vec::new(),
    };
    let (world_name, plain): (&str, &[&str]) = match world {
        World::App => ("app", &["describe", "handle"]),
        World::SyncApp => (
            "sync-app",
            &[
                "describe",
                "handle",
                "on-start",
                "on-stop",
                "run-background",
            ],
        ),
        _ => return None,
    };
    let component_type = component.component_type();
    for (name, item) in component_type.exports(engine) {
        let checked = plain.contains(&name) || name.starts_with("cello:component/packed@");
        let async_funcs = if checked { funcs(item.ty) } else { Vec::new() };
        if let Some(func) = async_funcs.first() {
            let what = if func.is_empty() {
                name.to_string()
            } else {
                format!("{name} {func}")
            };
            return Some(format!(
                "exports `{what}` as an `async func`; in the {world_name} world it is a \
                 plain function"
            ));
        }
    }
    if *world != World::SyncApp {
        return None;
    }
    for (name, item) in component_type.imports(engine) {
        if let Some(func) = funcs(item.ty).first() {
            let what = if func.is_empty() {
                name.to_string()
            } else {
                format!("{name} {func}")
            };
            return Some(format!(
                "imports `{what}`, an `async func`, which a sync app cannot call: its \
                 exports are plain functions, which cannot wait on one. Build it against \
                 the `app` world, or call a plain function instead (SQL's `-blocking` ones)"
            ));
        }
    }
    None
}

/// True when `component` exports `cello:component/{interface}`.
fn exports(component: &Component, interface: &str) -> bool {
    let engine = component.engine();
    let prefix = format!("cello:component/{interface}@");
    component
        .component_type()
        .exports(engine)
        .any(|(name, _)| name.starts_with(&prefix))
}

/// What a streaming call answered: a whole response, or a head and the
/// body the guest goes on writing.
pub enum Answer {
    Whole(Response),
    Streamed(http::Response<Body>),
}

/// Each route's cache policy: its own, or for a GET route without one, the
/// sidecar's default.
fn cache_policies(
    manifest: &Manifest,
    default: Option<CachePolicy>,
) -> anyhow::Result<Vec<Option<CachePolicy>>> {
    manifest
        .routes
        .iter()
        .map(|route| match &route.policy.cache {
            Some(cache) => CachePolicy::new(cache.ttl_seconds, &cache.tags, &cache.vary)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("route {}: {e}", route.path)),
            None if route.methods.iter().any(|m| m == "GET") => Ok(default.clone()),
            None => Ok(None),
        })
        .collect()
}

/// The exports an app may have besides its world's, found by name: their
/// types are checked on the instance `describe` runs on.
#[derive(Clone)]
struct OptionalExports {
    streaming: Option<StreamingIndices>,
    packed: Option<PackedIndices>,
}

impl OptionalExports {
    /// Fails with a sentence naming the export whose functions do not have
    /// the contract's types: found by name only, it would otherwise fail
    /// every instance the component's requests start.
    fn check(
        &self,
        store: &mut Store<InstanceState>,
        instance: &wasmtime::component::Instance,
    ) -> anyhow::Result<()> {
        if let Some(streaming) = &self.streaming {
            (streaming.load(&mut *store, instance))
                .map_err(|e| anyhow::anyhow!("wrong `streaming` export: {e:#}"))?;
        }
        if let Some(packed) = &self.packed {
            (packed.load(&mut *store, instance))
                .map_err(|e| anyhow::anyhow!("wrong `packed` export: {e:#}"))?;
        }
        Ok(())
    }
}

/// The most routes one app may declare, and the longest path: every route
/// table is built again, with every tenant's routes, on each change.
pub const MAX_ROUTES: usize = 4096;
const MAX_PATH_BYTES: usize = 2048;

/// Refuses a manifest past [`MAX_ROUTES`] or [`MAX_PATH_BYTES`].
fn check_manifest(manifest: &Manifest) -> anyhow::Result<()> {
    if manifest.routes.len() > MAX_ROUTES {
        anyhow::bail!(
            "describe() declares {} routes, more than the {MAX_ROUTES} an app may have",
            manifest.routes.len()
        );
    }
    if let Some(route) = manifest
        .routes
        .iter()
        .find(|r| r.path.len() > MAX_PATH_BYTES)
    {
        anyhow::bail!(
            "describe() declares a route path of {} bytes, longer than the {MAX_PATH_BYTES} \
             allowed",
            route.path.len()
        );
    }
    Ok(())
}

/// Runs `describe` on an instance made for it alone, under the component's
/// CPU share: a `describe()` that loops leaves the request threads alone.
/// It is the component's first instance ([`first_instance`]); the types
/// of the `optional` exports are checked on it first.
async fn describe(
    prepared: &Prepared<Pre>,
    optional: &OptionalExports,
) -> anyhow::Result<Manifest> {
    first_instance(|| describe_once(prepared, optional.clone())).await
}

async fn describe_once(
    prepared: &Prepared<Pre>,
    optional: OptionalExports,
) -> anyhow::Result<Manifest> {
    let mut store = prepared.store();
    let pre = prepared.pre.clone();
    let owner = &prepared.owner;
    let described = Box::pin(async move {
        let instance = pre
            .instance_pre()
            .instantiate_async(&mut store)
            .await
            .map_err(|e| anyhow::anyhow!("cannot instantiate: {e:#}"))?;
        let exports = pre
            .exports(&mut store, &instance)
            .map_err(|e| anyhow::anyhow!("cannot instantiate: {e:#}"))?;
        optional.check(&mut store, &instance)?;
        exports
            .describe(&mut store)
            .await
            .map_err(|e| anyhow::anyhow!("describe() failed: {e:#}"))
    });
    owner
        .run_guest(described)
        .await
        .map_err(|e| anyhow::anyhow!("describe() did not finish: {e}"))?
}

impl std::ops::Deref for Shared {
    type Target = Prepared<Pre>;

    fn deref(&self) -> &Self::Target {
        &self.prepared
    }
}

impl Shared {
    /// A fresh instance in `slot` for `def` routes, with its `on-start` hook
    /// run under the component's CPU share.
    async fn instantiate(self: &Arc<Self>, slot: Slot) -> Result<Instance, CallError> {
        let shared = self.clone();
        let start = Box::pin(async move { shared.start_instance(slot, false).await });
        Ok(self.owner.run_guest(start).await??.0)
    }

    /// A fresh instance in `slot`, with its `on-start` hook run, and its
    /// `streaming` export if it has one. An event-loop instance (`watch`) is
    /// watched for handlers that block it.
    async fn start_instance(
        &self,
        slot: Slot,
        watch: bool,
    ) -> Result<(Instance, Option<StreamingGuest>), CallError> {
        let started = std::time::Instant::now();
        let state = InstanceState::new(self.owner.clone(), &self.limits);
        let mut store = state.into_store(&self.engine);
        if watch {
            InstanceState::watch_blocking(
                &mut store,
                self.limits.blocked_warn,
                EventLoopKind::AsyncApp,
            );
            InstanceState::follow_calls(&mut store);
        }
        let instance = self
            .pre
            .instance_pre()
            .instantiate_async(&mut store)
            .await
            .map_err(CallError::Instantiate)?;
        let bindings = (self.pre)
            .exports(&mut store, &instance)
            .map_err(CallError::Instantiate)?;
        // The optional exports, where the component has them.
        let streaming = (self.streaming.as_ref())
            .map(|indices| indices.load(&mut store, &instance))
            .transpose()
            .map_err(CallError::Instantiate)?;
        let packed = (self.packed.as_ref())
            .map(|indices| indices.load(&mut store, &instance))
            .transpose()
            .map_err(CallError::Instantiate)?;
        let start = bindings.on_start(&mut store);
        match tokio::time::timeout(START_TIMEOUT, start).await {
            Err(_) => {
                return Err(CallError::StartFailed(format!(
                    "on-start took over {START_TIMEOUT:?}"
                )));
            }
            Ok(Err(trap)) => return Err(CallError::Trap(trap)),
            Ok(Ok(Err(message))) => return Err(CallError::StartFailed(message)),
            Ok(Ok(Ok(()))) => {}
        }
        self.owner.metrics.instantiated(started.elapsed());
        let calls = AppCalls {
            app: bindings,
            packed,
        };
        Ok((Warm::new(store, calls, slot), streaming))
    }

    /// Runs the background tasks request `request_id` queued on `instance`,
    /// after its response has gone out. Returns the instance if it can be
    /// reused; one whose tasks trapped or overran the time limit is
    /// discarded. A failing task never reaches the client: its response
    /// was sent already.
    async fn run_background(&self, mut instance: Instance, request_id: String) -> Option<Instance> {
        let limit = self.limits.background_timeout;
        let state = instance.store.data_mut();
        state.set_deadline(Some(limit));
        state.track_call(&Arc::from("(background)"), &request_id, false);
        let WarmParts {
            store, bindings, ..
        } = &mut *instance;
        let run = bindings.app.run_background(store, request_id);
        let outcome = tokio::time::timeout(limit, run).await;
        let component = &self.owner.component;
        match outcome {
            Ok(Ok(())) => {
                let state = instance.store.data_mut();
                state.set_deadline(None);
                state.calls_clear();
                Some(instance)
            }
            Ok(Err(trap)) => {
                self.owner.metrics.traps.inc();
                tracing::error!(%component, "background tasks trapped: {trap:#}");
                None
            }
            Err(_) => {
                self.owner.metrics.timeouts.inc();
                tracing::error!(%component, "background tasks ran past {limit:?}; instance discarded");
                None
            }
        }
    }

    /// True when route `index`'s last call ran long.
    fn runs_long(&self, index: u32) -> bool {
        self.runs_long
            .get(index as usize)
            .is_some_and(|long| long.load(Ordering::Relaxed))
    }

    /// Notes whether a call of route `index` ran long, for where its next
    /// call starts. Written only when it changes: the flag is read by every
    /// call, on every core.
    fn ran(&self, index: u32, long: bool) {
        if let Some(flag) = self.runs_long.get(index as usize)
            && flag.load(Ordering::Relaxed) != long
        {
            flag.store(long, Ordering::Relaxed);
        }
    }

    /// The path of route `index`, for logs.
    fn route_name(&self, index: u32) -> Arc<str> {
        self.routes
            .get(index as usize)
            .cloned()
            .unwrap_or_else(|| "?".into())
    }
}

/// Retires a healthy instance: runs its `on-stop` hook (within a deadline)
/// off the request path, then frees its slot.
///
/// It runs on the long-call lane: the hook is guest code, and releasing a
/// large instance's memory takes the kernel milliseconds that should not
/// come out of a request's thread.
fn retire(mut instance: Instance) {
    let owner = instance.store.data().owner.clone();
    let cpu = owner.cpu.clone();
    cpu.spawn(Box::pin(async move {
        let WarmParts {
            store, bindings, ..
        } = &mut *instance;
        let stop = bindings.app.on_stop(store);
        let component = &owner.component;
        match tokio::time::timeout(STOP_TIMEOUT, stop).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(%component, "on-stop failed: {e:#}"),
            Err(_) => tracing::warn!(%component, "on-stop took over {STOP_TIMEOUT:?}"),
        }
        drop(instance);
    }));
}

/// The most headers a guest's response may carry. The host adds a dozen of
/// its own on the way out, and a header map holds at most 32,768.
pub const MAX_RESPONSE_HEADERS: usize = 1000;

/// The most bytes a guest's response headers may take, names and values
/// together: clients refuse far less (browsers and proxies 8 to 64 KiB),
/// and a cached response keeps them.
pub const MAX_RESPONSE_HEADER_BYTES: usize = 256 << 10;

/// Room for the headers the host adds to a response on its way out (request
/// id, CORS, rate limits, security headers, compression), so adding them
/// does not grow the map again and again.
const HOST_HEADERS: usize = 12;

/// A guest's response headers as a header map, with room for the host's;
/// an invalid name or value, or too many headers, is a sentence for the
/// guest or the log, never a panic.
pub fn response_headers(headers: Vec<(String, String)>) -> Result<http::HeaderMap, String> {
    if headers.len() > MAX_RESPONSE_HEADERS {
        return Err(format!(
            "the response has {} headers, more than the {MAX_RESPONSE_HEADERS} allowed",
            headers.len()
        ));
    }
    let bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if bytes > MAX_RESPONSE_HEADER_BYTES {
        return Err(format!(
            "the response's headers take {bytes} bytes, more than the \
             {MAX_RESPONSE_HEADER_BYTES} allowed"
        ));
    }
    let mut map = http::HeaderMap::with_capacity(headers.len() + HOST_HEADERS);
    for (name, value) in headers {
        // The value's text becomes the header's bytes, not copied: this runs
        // for every response.
        let (Ok(header), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::try_from(value),
        ) else {
            return Err(format!("header {name:?} is invalid"));
        };
        map.append(header, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component exporting the sync-app names, `async_exports` of them
    /// as `async func`s, and importing `imports` (WAT instance imports).
    fn component(async_exports: &[&str], imports: &str) -> Component {
        let mut wat = format!(
            "(component {imports}
              (core module $m
                (func (export \"f\"))
                (func (export \"g\") (result i32) (i32.const 0))
                (func (export \"cb\") (param i32 i32 i32) (result i32) (i32.const 0)))
              (core instance $i (instantiate $m))
              (type $t (func async))
              (func $f (canon lift (core func $i \"f\")))
              (func $a (type $t) (canon lift (core func $i \"g\") async (callback (core func $i \"cb\"))))"
        );
        for name in [
            "describe",
            "handle",
            "on-start",
            "on-stop",
            "run-background",
        ] {
            let func = if async_exports.contains(&name) {
                "$a"
            } else {
                "$f"
            };
            wat += &format!("(export \"{name}\" (func {func}))");
        }
        wat += ")";
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model_async(true)
            .concurrency_support(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        Component::new(&engine, wat::parse_str(&wat).unwrap()).unwrap()
    }

    #[test]
    fn an_async_func_where_a_plain_one_is_called_is_refused_naming_it() {
        let plain = component(&[], "");
        assert_eq!(export_problem(&plain, &World::SyncApp), None);
        let problem = export_problem(&component(&["handle"], ""), &World::SyncApp).unwrap();
        assert!(
            problem.contains("exports `handle` as an `async func`"),
            "{problem}"
        );
        let problem = export_problem(&component(&["on-stop"], ""), &World::SyncApp).unwrap();
        assert!(problem.contains("`on-stop`"), "{problem}");
        // The app world's hooks are async; its `handle` is not.
        assert_eq!(
            export_problem(&component(&["on-start"], ""), &World::App),
            None
        );
        let problem = export_problem(&component(&["handle"], ""), &World::App).unwrap();
        assert!(problem.contains("in the app world"), "{problem}");
    }

    #[test]
    fn a_sync_app_importing_an_async_func_is_refused_naming_it() {
        let host = "(import \"cello:component/host@0.1.0\" (instance
            (export \"log\" (func (param \"message\" string)))
            (export \"sleep\" (func async (param \"ms\" u32)))))";
        let problem = export_problem(&component(&[], host), &World::SyncApp).unwrap();
        assert!(
            problem.contains("imports `cello:component/host@0.1.0 sleep`, an `async func`"),
            "{problem}"
        );
        let log_only = "(import \"cello:component/host@0.1.0\" (instance
            (export \"log\" (func (param \"message\" string)))))";
        assert_eq!(
            export_problem(&component(&[], log_only), &World::SyncApp),
            None
        );
    }
}
