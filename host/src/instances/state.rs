//! What a store holds for one component instance: its WASI context, its
//! resources, its memory budget, and who it is (for logs and metrics).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::component::{ResourceTable, TaskGroupId};
use wasmtime::{ResourceLimiter, Store, StoreHookState, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capabilities::outbound::OutboundHooks;
use crate::capabilities::{Capabilities, HasCapabilities, StoreState};
use crate::config::Limits;
use crate::engine::{EPOCH_TICK, TICKS};
use crate::error::CallError;
use crate::guest_log::{CallsInFlight, GuestLogs, GuestOutput, LogBudget, RunningCall};
use crate::instances::blocked::{BlockedWatch, EventLoopKind};
use crate::metrics::ComponentMetrics;
use crate::middleware::Middleware;
use crate::response_cache::ResponseCache;
use crate::scheduler::{CpuShare, GuestFuture, Ran, Stopped, ask_to_move};

/// Who an instance belongs to, shared by all its instances.
pub struct Owner {
    /// The component's name, for logs.
    pub component: Arc<str>,
    /// Unique to this load of the component in this process: a new
    /// version, a reload or a re-created tenant's component is a new
    /// generation, and nothing one stored in the response cache reaches
    /// another.
    pub generation: u64,
    pub metrics: ComponentMetrics,
    /// The host's response cache, where this component's entries live.
    pub cache: Arc<ResponseCache>,
    /// What the component was granted.
    pub capabilities: Capabilities,
    /// The tenant it belongs to; none for a component of the served directory.
    pub tenant: Option<Arc<TenantScope>>,
    /// Where its guest calls take their turns for the CPU.
    pub cpu: CpuShare,
    /// CORS, auth and rate limits around it, set once its manifest is read.
    middleware: OnceLock<Middleware>,
    /// Where its log lines are kept as well as logged, when the host keeps
    /// them (tests).
    pub guest_logs: Option<GuestLogs>,
    /// Its environment variables, from the sidecar's `[environment]`.
    pub environment: Vec<(String, String)>,
    /// How much its instances may log, together.
    pub log_budget: Arc<LogBudget>,
}

/// What the components of one tenant share: its name (for the guest's
/// context and rate-limit keys) and its instance limit.
pub struct TenantScope {
    pub name: Arc<str>,
    pub capacity: Arc<crate::instances::capacity::HostCapacity>,
}

impl Owner {
    /// The owner of `component`'s instances.
    pub fn new(
        component: Arc<str>,
        cache: Arc<ResponseCache>,
        capabilities: Capabilities,
        tenant: Option<Arc<TenantScope>>,
        cpu: CpuShare,
    ) -> Arc<Self> {
        static GENERATIONS: AtomicU64 = AtomicU64::new(0);
        Arc::new(Self {
            metrics: ComponentMetrics::new(&component),
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            component,
            cache,
            capabilities,
            tenant,
            cpu,
            middleware: OnceLock::new(),
            guest_logs: None,
            environment: Vec::new(),
            log_budget: Arc::default(),
        })
    }

    /// Its instance's output `stream` (`stdout` or `stderr`), which writes
    /// lines of the host's log naming the call of `calls` that wrote them.
    fn output(&self, stream: &'static str, calls: &Arc<CallsInFlight>) -> GuestOutput {
        GuestOutput::new(
            stream,
            self.component.clone(),
            calls.clone(),
            self.guest_logs.clone(),
            self.log_budget.clone(),
        )
    }

    /// CORS, auth and rate limits around the component.
    pub fn middleware(&self) -> &Middleware {
        self.middleware.get_or_init(Middleware::default)
    }

    /// Sets the middleware, once, before the component serves.
    pub fn set_middleware(&self, middleware: Middleware) {
        let _ = self.middleware.set(middleware);
    }

    /// Counts a request over its time limit and makes its error.
    pub fn timed_out(&self, limit: Duration) -> CallError {
        self.metrics.timeouts.inc();
        CallError::Timeout(limit)
    }

    /// Runs guest code (a call, an instance's start or stop) under the
    /// component's CPU share: once it has run long it leaves the request's
    /// thread for the long-call lane.
    pub async fn run_guest<T: Send + 'static>(
        &self,
        guest: GuestFuture<T>,
    ) -> Result<T, CallError> {
        Ok(self.run_guest_timed(guest).await?.out)
    }

    /// As [`Self::run_guest`], and says whether the guest ran long.
    pub async fn run_guest_timed<T: Send + 'static>(
        &self,
        guest: GuestFuture<T>,
    ) -> Result<Ran<T>, CallError> {
        self.cpu.run(guest).await.map_err(|Stopped::LaneClosed| {
            CallError::InstanceLost("the host is shutting down".into())
        })
    }

    /// The error for a call that trapped: past its time limit (`timeout`),
    /// past its CPU limit, or another trap; counted.
    pub fn call_failed(&self, trap: wasmtime::Error, timeout: Duration) -> CallError {
        if trap.is::<DeadlineExceeded>() {
            return self.timed_out(timeout);
        }
        if let Some(CpuExceeded(limit)) = trap.downcast_ref::<CpuExceeded>() {
            self.metrics.timeouts.inc();
            return CallError::CpuExceeded(*limit);
        }
        self.trapped(trap)
    }

    /// Counts a trap and makes its error.
    pub fn trapped(&self, trap: wasmtime::Error) -> CallError {
        self.metrics.traps.inc();
        CallError::Trap(trap)
    }
}

/// Per-instance host state, the `T` of every `Store<T>`.
pub struct InstanceState {
    pub owner: Arc<Owner>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    table: ResourceTable,
    /// What the capabilities keep for this store: dropped with it, which
    /// rolls back the SQL transactions it left open.
    capability_state: StoreState,
    memory: MemoryBudget,
    watch: Option<BlockedWatch>,
    /// The epoch tick by which the current sync call must end.
    deadline: Option<u64>,
    /// Epoch ticks seen while guest code ran, since the current call began:
    /// its guest time, in ticks.
    ran_ticks: u64,
    /// Guest time after which the call moves to the long-call lane, in ticks.
    move_after_ticks: u64,
    /// The CPU limit of one call (`cpu-ms`), and the same in ticks.
    cpu: Option<(Duration, u64)>,
    /// The calls in flight on the instance, shared with its output streams.
    calls: Arc<CallsInFlight>,
    /// The bytes its streamed responses' `write` calls hold on the host.
    pub stream_writes: Arc<crate::app::streams::HeldWrites>,
}

/// The trap a sync call gets when it runs past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the call ran past its deadline")]
pub struct DeadlineExceeded;

impl HasCapabilities for InstanceState {
    fn capabilities(&self) -> &Capabilities {
        &self.owner.capabilities
    }

    fn capabilities_and_table(&mut self) -> (&Capabilities, &mut ResourceTable) {
        (&self.owner.capabilities, &mut self.table)
    }

    fn capabilities_and_state(&mut self) -> (&Capabilities, &mut StoreState) {
        (&self.owner.capabilities, &mut self.capability_state)
    }

    fn call_span(&self) -> tracing::Span {
        if !crate::telemetry::on() {
            return tracing::Span::none();
        }
        self.calls.current_span()
    }
}

impl InstanceState {
    /// State with nothing reachable: no preopened directories, no network,
    /// no environment; stdout and stderr are lines of the host's log. The guest may
    /// hold at most `limits.max_resources` host resources, ask for at most
    /// 1 MiB of random bytes at once, and send headers of at most 64 KiB.
    pub fn new(owner: Arc<Owner>, limits: &Limits) -> Self {
        let calls = Arc::new(CallsInFlight::default());
        let wasi = WasiCtx::builder()
            .stdout(owner.output("stdout", &calls))
            .stderr(owner.output("stderr", &calls))
            .envs(&owner.environment)
            .max_random_size(1 << 20)
            .build();
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(64 << 10);
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_resources);
        let move_after_ticks = owner.cpu.move_after_ticks(EPOCH_TICK);
        Self {
            hooks: OutboundHooks::new(owner.capabilities.outbound.clone(), calls.clone()),
            owner,
            wasi,
            http,
            table,
            capability_state: StoreState::default(),
            memory: MemoryBudget {
                limit: limits.memory_bytes,
                used: 0,
            },
            watch: None,
            deadline: None,
            ran_ticks: 0,
            move_after_ticks,
            cpu: limits.cpu.map(|limit| (limit, ticks_in(limit))),
            calls,
            stream_writes: Arc::default(),
        }
    }

    /// Makes the next epoch tick at or after `timeout` from now trap the
    /// running call with [`DeadlineExceeded`]; `None` clears it. Cheaper on
    /// the request path than a timer: the check rides on the tick the store
    /// takes anyway.
    /// Setting one begins a call: its guest time counts from zero.
    pub fn set_deadline(&mut self, timeout: Option<Duration>) {
        if timeout.is_some() {
            self.ran_ticks = 0;
        }
        self.deadline = timeout.map(|t| TICKS.load(Ordering::Relaxed) + ticks_in(t));
    }

    /// A store for this state with the host's policies installed: the
    /// memory budget, and a yield to the runtime on every epoch tick so a
    /// busy guest never holds a runtime thread and deadlines can fire.
    pub fn into_store(self, engine: &wasmtime::Engine) -> Store<Self> {
        let mut store = Store::new(engine, self);
        store.limiter(|state| &mut state.memory);
        store.epoch_deadline_callback(|mut ctx: StoreHookState<'_, Self>| {
            let state = ctx.data_mut();
            state.ran_ticks += 1;
            // An event loop serves many calls: what counts is how long its
            // guest code has run without awaiting. A call: its whole time.
            let ran = match &mut state.watch {
                Some(watch) => watch.on_tick(&state.owner, &state.calls)?,
                None => {
                    if let Some((limit, ticks)) = state.cpu
                        && state.ran_ticks >= ticks
                    {
                        return Err(CpuExceeded(limit).into());
                    }
                    state.ran_ticks
                }
            };
            if ran >= state.move_after_ticks {
                ask_to_move();
            }
            if state
                .deadline
                .is_some_and(|deadline| TICKS.load(Ordering::Relaxed) >= deadline)
            {
                return Err(DeadlineExceeded.into());
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store.set_epoch_deadline(1);
        store
    }

    /// Watches an event-loop instance of `kind` for guest code that runs
    /// longer than `threshold` without awaiting, and logs it: the Python
    /// "event loop blocked" warning, seen from the host.
    ///
    /// With a CPU limit, guest code that runs that long without awaiting
    /// traps the instance with [`CpuExceeded`]: on an event loop no request
    /// can be told apart, and the loop serves nobody else meanwhile.
    ///
    /// It goes with [`Self::follow_calls`], whose hook tells it when the
    /// store switched from one call's code to another's.
    pub fn watch_blocking(store: &mut Store<Self>, threshold: Duration, kind: EventLoopKind) {
        let cpu = store.data().cpu;
        store.data_mut().watch = Some(BlockedWatch::new(kind, threshold, cpu));
        store.call_hook(|mut ctx, hook| {
            let Self { watch, calls, .. } = ctx.data_mut();
            if let Some(watch) = watch {
                watch.on_transition(hook, calls.switches());
            }
            Ok(())
        });
    }

    /// Follows which of the concurrent calls on an event-loop instance
    /// runs, so that what a call logs names its request (see
    /// [`Self::track_concurrent_call`]).
    pub fn follow_calls(store: &mut Store<Self>) {
        let calls = store.data().calls.clone();
        store.task_group_hook(RunningCall(calls));
    }

    /// Records that the call for request `request_id` on `route` started
    /// (or, with `done`, ended), so log lines and blocked-loop warnings can
    /// name it.
    pub fn track_call(&mut self, route: &Arc<str>, request_id: &str, done: bool) {
        if done {
            self.calls.end(request_id);
        } else {
            self.calls.start(route, request_id.into());
        }
    }

    /// [`Self::track_call`]'s start, for an id held shared: kept, not copied.
    pub fn call_started(&mut self, route: &Arc<str>, request_id: Arc<str>) {
        self.calls.start(route, request_id);
    }

    /// Records that a concurrent call started, running as task group
    /// `group`: on an instance that follows its calls, it can be told apart
    /// from the others in flight, and its code runs in its trace `span`.
    /// It ends as [`Self::track_call`] says.
    pub fn track_concurrent_call(
        &mut self,
        route: &Arc<str>,
        request_id: &str,
        group: TaskGroupId,
        span: tracing::Span,
    ) {
        self.calls.start_concurrent(route, request_id, group, span);
    }

    /// Forgets every call in flight.
    pub fn calls_clear(&mut self) {
        self.calls.clear();
    }

    /// The route and request id of the call running now: the one in flight,
    /// or on an instance that follows its calls, the one whose code runs.
    pub fn current_call(&self) -> Option<(Arc<str>, Arc<str>)> {
        self.calls.current()
    }
}

/// `limit` in epoch ticks, at least one.
pub(super) fn ticks_in(limit: Duration) -> u64 {
    (limit.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64).max(1)
}

/// Caps the linear memory of an instance, all its memories together.
struct MemoryBudget {
    limit: usize,
    used: usize,
}

impl ResourceLimiter for MemoryBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let after = self.used - current.min(self.used) + desired;
        if after > self.limit {
            return Ok(false);
        }
        self.used = after;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The trap an event-loop instance gets when guest code runs past the
/// component's `cpu-ms` without awaiting.
#[derive(Debug, thiserror::Error)]
#[error("guest code ran past its {0:?} CPU limit without awaiting")]
pub struct CpuExceeded(pub Duration);

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.hooks,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}
