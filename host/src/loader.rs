//! Loading a directory of components: read each `NAME.wasm` and its sidecar,
//! compile (through the cache), tell which world it is, read its routes, and
//! build one router over all of them. A bad file is reported by name; the
//! caller decides whether the others may serve without it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::app::{AppComponent, WarmUpFailed};
use crate::bindings::Manifest;
use crate::capabilities::kv::KvStore;
use crate::capabilities::sql::SqlStore;
use crate::capabilities::{self, Capabilities};
use crate::compile::CompileCache;
use crate::config::{ComponentConfig, DeploySettings, HostConfig, Limits};
use crate::engine::Engines;
use crate::guest_log::GuestLogs;
use crate::instances::capacity::HostCapacity;
use crate::instances::state::{Owner, TenantScope};
use crate::middleware::{self, Middleware};
use crate::outline::Outline;
use crate::proxy::ProxyComponent;
use crate::resources::Resources;
use crate::response_cache::ResponseCache;
use crate::router::{Router, RouterBuilder};
use crate::scheduler::Scheduler;
use crate::world::World;

/// Everything needed to turn component files into servable components.
pub struct Loader {
    runtime: Resources,
    cache: CompileCache,
    limits: Limits,
    /// How long each step of validating a component may take.
    deploys: DeploySettings,
    /// The host's CORS, auth and rate-limit tables, which sidecars override.
    middleware: middleware::Settings,
    /// Which of an app's own wishes the host honours.
    app_policy: middleware::AppPolicySettings,
    /// Where guests' log lines are kept as well as logged (tests).
    guest_logs: Option<GuestLogs>,
    /// Places for compiles in progress ([`COMPILES_AT_ONCE`]).
    compiles: Arc<tokio::sync::Semaphore>,
}

/// Compiles at once on one host. Each uses every core already (wasmtime
/// compiles a component's functions in parallel), and one past its
/// timeout holds its place until its thread ends, so compiles abandoned by
/// their uploads cannot pile up and starve the host's guests of CPU.
const COMPILES_AT_ONCE: usize = 2;

/// One component that loaded.
pub struct Loaded {
    /// The file name without `.wasm`.
    pub name: String,
    pub config: ComponentConfig,
    pub kind: LoadedKind,
}

impl Loaded {
    /// Who its instances belong to.
    pub fn owner(&self) -> &Arc<Owner> {
        match &self.kind {
            LoadedKind::App(app, _) => app.owner(),
            LoadedKind::Proxy(proxy) => proxy.owner(),
        }
    }

    /// Retires its idle instances, running `on-stop`: for a component that
    /// was not put in service, or was taken out.
    pub fn retire(&self) {
        if let LoadedKind::App(app, _) = &self.kind {
            app.retire_idle();
        }
    }
}

/// Which world a loaded component implements.
pub enum LoadedKind {
    App(Arc<AppComponent>, Manifest),
    Proxy(Arc<ProxyComponent>),
}

/// Why a component's first instance did not start.
#[derive(Debug, thiserror::Error)]
pub enum NotStarted {
    /// Requests in flight held every instance slot it may use (its own
    /// limit's, its tenant's, the host's) for the whole wait.
    #[error(
        "every instance it may use was busy serving requests, and none came free within {}",
        seconds(*.0)
    )]
    Busy(Duration),
    /// `on-start` failed or ran past its time.
    #[error("{0}")]
    Failed(String),
}

/// A file that did not load, and why.
#[derive(Debug, Clone)]
pub struct Problem {
    pub file: PathBuf,
    pub reason: String,
}

impl Problem {
    /// The component the file would have been.
    pub fn component(&self) -> String {
        component_name(&self.file)
    }
}

/// A component's name: its file's name without `.wasm`.
pub fn component_name(file: &Path) -> String {
    file.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The component files `path` names: itself when it is a file, or every
/// `*.wasm` in it, in name order, when it is a directory.
pub fn component_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let metadata = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| anyhow::anyhow!("cannot read component directory {}: {e}", path.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    files.sort();
    Ok(files)
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.reason)
    }
}

/// The outcome of loading a directory.
pub struct LoadReport {
    pub loaded: Vec<Loaded>,
    pub problems: Vec<Problem>,
}

impl Loader {
    /// Keeps every guest log line of the components loaded from now on in
    /// `logs`, as well as logging it.
    pub fn capture_guest_logs(&mut self, logs: GuestLogs) {
        self.guest_logs = Some(logs);
    }

    /// The key-value store behind every component's namespace.
    pub fn kv(&self) -> &KvStore {
        &self.runtime.kv
    }

    /// The SQL databases.
    pub fn sql(&self) -> &SqlStore {
        &self.runtime.sql
    }

    /// The limits a component gets where its settings set none.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A loader that links WASI (nothing reachable unless granted),
    /// `wasi:http`, Cello's host interface, and each component's grants,
    /// with the defaults of `config` (read from `config_file`, if any).
    pub fn new(
        engines: Engines,
        cache: CompileCache,
        config: &HostConfig,
        config_file: Option<&Path>,
        responses: Arc<ResponseCache>,
        kv: KvStore,
        sql: SqlStore,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            runtime: Resources::new(
                engines,
                HostCapacity::new(config.pool.max_instances as usize),
                responses,
                kv,
                sql,
                Scheduler::new(&config.execution)?,
            ),
            cache,
            limits: config.default_limits(),
            deploys: config.deploys.clone(),
            middleware: config.middleware(config_file),
            app_policy: config.app_policy.clone(),
            guest_logs: None,
            compiles: Arc::new(tokio::sync::Semaphore::new(COMPILES_AT_ONCE)),
        })
    }

    /// Starts one instance of an app now (`on-start` must succeed) and
    /// keeps it warm: the last check before a component replaces another.
    /// On failure nothing of it is left running.
    pub async fn start(&self, loaded: &Loaded) -> Result<(), NotStarted> {
        let LoadedKind::App(app, _) = &loaded.kind else {
            return Ok(());
        };
        let deploys = &self.deploys;
        let started = app
            .warm_up(deploys.instance_wait(), deploys.start_timeout())
            .await;
        started.map_err(|failed| {
            app.retire_idle();
            match failed {
                WarmUpFailed::NoSlot => NotStarted::Busy(deploys.instance_wait()),
                WarmUpFailed::TimedOut => NotStarted::Failed(format!(
                    "on-start did not return within {}",
                    seconds(deploys.start_timeout())
                )),
                WarmUpFailed::Failed(e) => NotStarted::Failed(format!("on-start failed: {e}")),
            }
        })
    }

    /// Loads every component `paths` name: each file given, and every
    /// `*.wasm` in each directory given, in name order. Two components of
    /// one name are a problem; an unreadable path is an error.
    pub async fn load_paths(&self, paths: &[PathBuf]) -> anyhow::Result<LoadReport> {
        let mut report = LoadReport {
            loaded: Vec::new(),
            problems: Vec::new(),
        };
        let mut files: Vec<PathBuf> = Vec::new();
        for path in paths {
            files.extend(component_files(path)?);
        }
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        for file in files {
            let name = component_name(&file);
            if let Some(first) = seen.get(&name) {
                let reason = format!(
                    "a second component named {name:?} (the first is {}): rename one",
                    first.display()
                );
                report.problems.push(Problem { file, reason });
                continue;
            }
            seen.insert(name, file.clone());
            match self.load_file(&file).await {
                Ok(loaded) => report.loaded.push(loaded),
                Err(reason) => report.problems.push(Problem { file, reason }),
            }
        }
        Ok(report)
    }

    /// Loads one component file; the error is a sentence for the operator.
    pub async fn load_file(&self, file: &Path) -> Result<Loaded, String> {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or("the file name is not valid UTF-8")?
            .to_string();
        let config = ComponentConfig::for_component(file)?;
        let bytes = std::fs::read(file).map_err(|e| format!("cannot read: {e}"))?;
        let sidecar = format!("{name}.toml");
        let source = Source {
            grant_hint: format!("under [grants] in {sidecar}"),
            sidecar,
            base_dir: middleware::base_dir(file),
            name,
            bytes,
            config,
            tenant: None,
        };
        self.load(source)
            .await
            .map_err(|problems| problems.join("; "))
    }

    /// Validates and loads one component: a real component of a known
    /// world, importing only what it is granted, whose middleware tables
    /// are sound and whose `describe()` returns in time. Every problem is
    /// a sentence.
    pub async fn load(&self, source: Source) -> Result<Loaded, Vec<String>> {
        let Source {
            name,
            bytes,
            config,
            sidecar,
            grant_hint,
            base_dir,
            tenant,
        } = source;
        let one = |problem: String| vec![problem];
        check_header(&bytes).map_err(one)?;
        let default_isolation = Outline::read(&bytes).and_then(|o| o.default_isolation());
        let engines = self.runtime.engines.clone();
        let cache = self.cache.clone();
        let started = std::time::Instant::now();
        // Compiling takes seconds for a large component: off the async threads.
        // It cannot be interrupted: past the timeout the caller is answered
        // and the compiler's thread finishes on its own.
        let compile_timeout = self.deploys.compile_timeout();
        // The wait for a place counts against the timeout too.
        let deadline = tokio::time::Instant::now() + compile_timeout;
        let place = tokio::time::timeout_at(deadline, self.compiles.clone().acquire_owned())
            .await
            .map_err(|_| {
                one(format!(
                    "compiling it could not start within {}: the host was compiling \
                     {COMPILES_AT_ONCE} components already; try again",
                    seconds(compile_timeout)
                ))
            })?
            .expect("the semaphore is never closed");
        let compiled = tokio::task::spawn_blocking(move || {
            let _place = place;
            // A sync app the plain engine refuses (an `async func` in it) is
            // compiled on the concurrent one, so that the check below can
            // say in a sentence what is wrong with it.
            match engines.for_component(&bytes) {
                (engine, Some(fallback)) => cache
                    .compile(engine, &bytes)
                    .or_else(|_| cache.compile(fallback, &bytes)),
                (engine, None) => cache.compile(engine, &bytes),
            }
        });
        let component = tokio::time::timeout_at(deadline, compiled)
            .await
            .map_err(|_| {
                one(format!(
                    "compiling it did not finish within {}",
                    seconds(compile_timeout)
                ))
            })?
            .map_err(|e| one(format!("compiler task failed: {e}")))?
            .map_err(|e| one(format!("not a valid WebAssembly component: {e:#}")))?;
        let label: Arc<str> = match &tenant {
            Some(tenant) => format!("{}/{name}", tenant.name).into(),
            None => name.as_str().into(),
        };
        tracing::debug!(
            component = &*label,
            "compiled or loaded in {:?}",
            started.elapsed()
        );
        let mut limit_settings = config.limits.clone();
        if limit_settings.isolation.is_none()
            && let Some(isolation) = default_isolation
        {
            tracing::info!(
                component = &*label,
                "built by componentize-js: a fresh instance per request \
                 (`isolation = \"reuse\"` under [limits] in {sidecar} keeps them warm)"
            );
            limit_settings.isolation = Some(isolation);
        }
        let limits = self.limits.with(&limit_settings);
        let resolving = capabilities::Resolving {
            namespace: &label,
            kv: &self.runtime.kv,
            sql: &self.runtime.sql,
            outbound: &config.outbound,
            variables: &config.variables,
            secrets: &config.secrets,
        };
        let capabilities = Capabilities::grant(&config.grants, &resolving)
            .map_err(|e| one(format!("{sidecar}: {e}")))?;
        let granted = capabilities.set();
        let engine = component.engine();
        let ungranted = capabilities::ungranted_imports(engine, &component, granted, &grant_hint);
        if !ungranted.is_empty() {
            return Err(ungranted);
        }
        let linker = self
            .runtime
            .linker(engine, granted)
            .map_err(|e| one(format!("{e:#}")))?;
        let settings = self.middleware.overridden_by(&config.middleware(&base_dir));
        // Tenants take turns for the CPU as one, served components each.
        let cpu = match &tenant {
            Some(tenant) => self
                .runtime
                .scheduler
                .share(&format!("tenant {}", tenant.name)),
            None => self.runtime.scheduler.share(&format!("component {label}")),
        };
        let mut owner = Owner::new(
            label.clone(),
            self.runtime.responses.clone(),
            capabilities,
            tenant,
            cpu,
        );
        let environment = config
            .environment
            .iter()
            .map(|(name, value)| Ok((name.clone(), value.resolve("environment", name)?)))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| one(format!("{sidecar}: {e}")))?;
        if let Some(owner) = Arc::get_mut(&mut owner) {
            owner.guest_logs = self.guest_logs.clone();
            owner.environment = environment;
        }
        let middleware = |settings: &middleware::Settings| {
            Middleware::new(settings).map_err(|e| one(format!("{sidecar}: {e}")))
        };
        // Checked before describe() runs, so a bad table is reported first.
        middleware(&settings)?;
        let world = World::of(engine, &component);
        if let Some(problem) = crate::app::export_problem(&component, &world) {
            return Err(one(problem));
        }
        let kind = match world {
            World::App | World::SyncApp => {
                let default_cache = config
                    .cache
                    .as_ref()
                    .map(|c| c.policy())
                    .transpose()
                    .map_err(one)?;
                let load = AppComponent::load(
                    owner,
                    &component,
                    &linker,
                    limits,
                    default_cache,
                    &self.runtime,
                );
                let describe_timeout = self.deploys.describe_timeout();
                let (app, manifest) = tokio::time::timeout(describe_timeout, load)
                    .await
                    .map_err(|_| {
                        one(format!(
                            "describe() did not return within {}",
                            seconds(describe_timeout)
                        ))
                    })?
                    .map_err(|e| one(format!("{e:#}")))?;
                tracing::debug!(component = &*label, "described in {:?}", started.elapsed());
                if world == World::SyncApp {
                    log_sync_app(&label, &component);
                }
                let settings = settings.with_app(&manifest.policy, &self.app_policy);
                app.owner().set_middleware(middleware(&settings)?);
                LoadedKind::App(Arc::new(app), manifest)
            }
            World::Proxy | World::Service => {
                owner.set_middleware(middleware(&settings)?);
                let load = match world {
                    World::Proxy => ProxyComponent::load,
                    _ => ProxyComponent::load_p3,
                };
                let proxy = load(owner, &component, &linker, limits, &self.runtime)
                    .map_err(|e| one(format!("{e:#}")))?;
                let timeout = self.deploys.describe_timeout();
                tokio::time::timeout(timeout, proxy.try_instance())
                    .await
                    .map_err(|_| {
                        one(format!(
                            "instantiating did not finish within {}",
                            seconds(timeout)
                        ))
                    })?
                    .map_err(|e| one(format!("{e:#}")))?;
                LoadedKind::Proxy(Arc::new(proxy))
            }
            World::Unknown(exports) => {
                return Err(one(format!(
                    "exports neither the cello:component/app world (or sync-app) nor \
                     wasi:http/proxy nor wasi:http/service (it exports: {}{})",
                    if exports.is_empty() {
                        "nothing".into()
                    } else {
                        exports.join(", ")
                    },
                    World::missing_app_exports(&exports)
                        .map(|missing| format!("; an app would also export {missing}"))
                        .unwrap_or_default()
                )));
            }
        };
        Ok(Loaded { name, config, kind })
    }
}

/// Says which way a sync app's calls go: without component-model async
/// (the point of the world), or with it, because of what it imports.
fn log_sync_app(label: &str, component: &wasmtime::component::Component) {
    let engine = component.engine();
    if !engine.get_concurrency_support() {
        tracing::info!(
            component = label,
            "a sync app: its calls skip component-model async"
        );
        return;
    }
    let component_type = component.component_type();
    let only_there: Vec<&str> = (component_type.imports(engine))
        .map(|(name, _)| name)
        .filter(|name| !crate::engine::plain_links(name))
        .collect();
    tracing::info!(
        component = label,
        "a sync app served with component-model async: it imports {}, which only that \
         engine links",
        only_there.join(", ")
    );
}

/// One component to load, from a file or an upload.
pub struct Source {
    /// The component's name (a file name without `.wasm`).
    pub name: String,
    pub bytes: Vec<u8>,
    pub config: ComponentConfig,
    /// How problems name the settings, such as `NAME.toml`.
    pub sidecar: String,
    /// Where a missing grant is added, to finish "add `kv = true` ...".
    pub grant_hint: String,
    /// The directory key files in the settings are relative to.
    pub base_dir: PathBuf,
    /// The tenant the component belongs to, if any.
    pub tenant: Option<Arc<TenantScope>>,
}

/// Builds one router over `loaded`, or lists every route conflict.
pub fn build_router<'a>(
    loaded: impl IntoIterator<Item = &'a Loaded>,
) -> Result<Router, Vec<String>> {
    let mut builder = RouterBuilder::default();
    for component in loaded {
        let prefix = component.config.prefix();
        match &component.kind {
            LoadedKind::App(app, manifest) => {
                builder.add_app(&component.name, prefix, manifest, app)
            }
            LoadedKind::Proxy(proxy) => builder.add_proxy(&component.name, prefix, proxy),
        }
    }
    builder.build()
}

/// A duration as a refusal says it: "10 s", or "1500 ms" when not whole
/// seconds.
fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

/// Refuses anything but a binary component before the compiler sees it, with
/// a sentence that says what the file is instead.
fn check_header(bytes: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: [u8; 4] = [1, 0, 0, 0];
    const COMPONENT: [u8; 4] = [0x0d, 0, 1, 0];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err("not a WebAssembly binary (it does not start with \\0asm)".into());
    }
    match &bytes[4..8] {
        v if v == COMPONENT => Ok(()),
        v if v == CORE_MODULE => Err("a core WebAssembly module, not a component; \
             build for wasm32-wasip2 or wrap it with `wasm-tools component new`"
            .into()),
        _ => Err("a WebAssembly binary of an unknown version or layer".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_limit_reads_in_seconds_or_milliseconds() {
        assert_eq!(super::seconds(Duration::from_secs(10)), "10 s");
        assert_eq!(super::seconds(Duration::from_millis(1500)), "1500 ms");
    }
}
