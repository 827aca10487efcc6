//! The `cello-host` command line: `serve` and `check`, and the admin API's
//! client commands `tenant` and `push` ([`remote`]).

mod remote;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;

use crate::capabilities::kv::KvStore;
use crate::compile::CompileCache;
use crate::config::HostConfig;
use crate::loader::{Loaded, LoadedKind, Loader, build_router};
use crate::registry::Registry;
use crate::response_cache::ResponseCache;
use crate::tenants::Tenants;
use crate::tenants::store::Store;

/// How long a graceful shutdown waits for `on-stop` hooks.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(6);

#[derive(Parser)]
#[command(
    name = "cello-host",
    version,
    about = "Serve HTTP from WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every component in DIR.
    Serve {
        /// Directory of NAME.wasm files with optional NAME.toml sidecars.
        dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Address for /metrics, /healthz and /readyz; none when not given.
        #[arg(long)]
        ops_listen: Option<SocketAddr>,
        /// Address of the admin API (tenants and uploads), which is on when
        /// an operator token is set.
        #[arg(long, default_value = "127.0.0.1:8081")]
        admin_listen: SocketAddr,
        /// The operator's token for the admin API.
        #[arg(long, env = "CELLO_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// Do not pick up changes to DIR while serving.
        #[arg(long)]
        no_watch: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Load every component in DIR, report problems, and exit non-zero if any.
    Check {
        dir: PathBuf,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Manage tenants through a running host's admin API.
    Tenant {
        #[command(subcommand)]
        action: remote::TenantAction,
        #[command(flatten)]
        remote: remote::RemoteArgs,
    },
    /// Upload a component for a tenant through the admin API.
    Push {
        #[command(flatten)]
        push: remote::PushArgs,
        #[command(flatten)]
        remote: remote::RemoteArgs,
    },
}

#[derive(clap::Args)]
struct StateArgs {
    /// The host's config file: default limits for every component, and the
    /// instance pool.
    #[arg(long, env = "CELLO_CONFIG")]
    config: Option<PathBuf>,
    /// Where the host keeps its state; compiled components go in `cache/`.
    #[arg(long, env = "CELLO_STATE_DIR", default_value = ".cello")]
    state_dir: PathBuf,
    /// Compile every component afresh instead of using the compile cache.
    #[arg(long)]
    no_compile_cache: bool,
    /// The key-value store's file (over `[kv] path` in the config; by
    /// default `kv.redb` in the state directory).
    #[arg(long, env = "CELLO_KV_PATH")]
    kv_path: Option<PathBuf>,
    /// Where tenants and their uploads are kept (by default `tenants/` in
    /// the state directory).
    #[arg(long, env = "CELLO_TENANTS_DIR")]
    tenants_dir: Option<PathBuf>,
}

impl StateArgs {
    fn kv(&self, config: &HostConfig) -> KvStore {
        let store = match &self.kv_path {
            Some(path) => KvStore::at(path),
            None => KvStore::at(&config.kv_path(&self.state_dir)),
        };
        store.with_component_quota(config.kv.component_quota())
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    // Held to the end, so every line is written before the process exits.
    let _log_writer = crate::logging::init(matches!(cli.log_format, LogFormat::Json));
    let result = match cli.command {
        Command::Serve {
            dir,
            listen,
            ops_listen,
            admin_listen,
            admin_token,
            no_watch,
            state,
        } => {
            let listeners = Listeners {
                traffic: listen,
                ops: ops_listen,
                admin: admin_token.map(|token| (admin_listen, token)),
            };
            serve(&dir, listeners, !no_watch, &state).await
        }
        Command::Check { dir, state } => check(&dir, &state).await,
        Command::Tenant { action, remote } => remote::tenant(action, &remote).await,
        Command::Push { push, remote } => remote::push(&push, &remote).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The host config, with its middleware tables checked now so a mistake
/// there is reported against the file, not against every component.
fn host_config(state: &StateArgs) -> anyhow::Result<HostConfig> {
    let Some(path) = &state.config else {
        return Ok(HostConfig::default());
    };
    let config = HostConfig::from_file(path).map_err(anyhow::Error::msg)?;
    crate::middleware::Middleware::new(&config.middleware(Some(path)))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(config)
}

/// A loader with the engine and compile cache `state` asks for.
fn loader(
    state: &StateArgs,
    config: &HostConfig,
    responses: Arc<ResponseCache>,
    kv: KvStore,
) -> anyhow::Result<Loader> {
    let engines = crate::engine::Engines::new(&config.pool)?;
    tracing::debug!("engine ready");
    let cache = if state.no_compile_cache {
        CompileCache::disabled()
    } else {
        CompileCache::in_dir(state.state_dir.join("cache"))
    };
    Loader::new(
        engines,
        cache,
        config,
        state.config.as_deref(),
        responses,
        kv,
    )
}

/// Where `serve` listens.
struct Listeners {
    traffic: SocketAddr,
    ops: Option<SocketAddr>,
    /// The admin API's address and the operator's token, when it is on.
    admin: Option<(SocketAddr, String)>,
}

async fn serve(
    dir: &Path,
    listeners: Listeners,
    watch: bool,
    state: &StateArgs,
) -> anyhow::Result<ExitCode> {
    let config = host_config(state)?;
    let responses = ResponseCache::new(config.cache.max_mb << 20);
    let ready = Arc::new(crate::ops::Readiness::default());
    // Dropped at the end, which stops the ops and admin listeners.
    let (stopped, stop) = tokio::sync::watch::channel(());
    let stop_signal = move || {
        let mut stop = stop.clone();
        async move {
            let _ = stop.changed().await;
        }
    };
    if let Some(addr) = listeners.ops {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for ops"))?;
        println!("ops listening on http://{}", listener.local_addr()?);
        tokio::spawn(crate::ops::serve(
            listener,
            config.server.clone(),
            ready.clone(),
            responses.clone(),
            stop_signal(),
        ));
    }
    let kv = state.kv(&config);
    let loader = Arc::new(loader(state, &config, responses, kv.clone())?);
    let report = loader.load_dir(dir).await?;
    for problem in &report.problems {
        tracing::error!("skipped {problem}");
    }
    if report.loaded.iter().any(|l| l.config.grants.kv) {
        kv.open().map_err(anyhow::Error::msg)?;
    }
    print_routes(&report.loaded);
    let registry = Registry::new(config.tenants.domain.clone());
    let main = report
        .loaded
        .into_iter()
        .map(|loaded| (loaded.name.clone(), Arc::new(loaded)))
        .collect();
    registry
        .change(
            |served| {
                served.main = main;
            },
            async { Ok(()) },
        )
        .await
        .map_err(|refused| {
            anyhow::anyhow!(
                "cannot serve {}:\n  {}",
                dir.display(),
                refused.problems().join("\n  ")
            )
        })?;
    let store = Store::at(
        state
            .tenants_dir
            .clone()
            .unwrap_or_else(|| state.state_dir.join("tenants")),
    );
    let tenants = Arc::new(Tenants::new(
        loader.clone(),
        registry.clone(),
        store,
        config.tenants.quotas.clone(),
    ));
    // Tenants' components load in the background: the listener opens now.
    tenants.restore(ready.clone()).await;
    match &listeners.admin {
        Some((addr, token)) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for the admin API"))?;
            println!("admin listening on http://{}", listener.local_addr()?);
            let admin = crate::admin::Admin::new(tenants, token);
            let settings = config.server.clone();
            tokio::spawn(crate::admin::serve(
                listener,
                settings,
                admin,
                stop_signal(),
            ));
        }
        None => tracing::info!("admin API off: set CELLO_ADMIN_TOKEN to manage tenants"),
    }
    let _watcher = if watch {
        Some(crate::reload::watch(dir, loader, registry.clone())?)
    } else {
        None
    };
    let listener = TcpListener::bind(listeners.traffic)
        .await
        .with_context(|| format!("cannot listen on {}", listeners.traffic))?;
    ready.set_serving(true);
    println!("listening on http://{}", listener.local_addr()?);
    let draining = async {
        shutdown_signal().await;
        ready.set_serving(false);
        tracing::info!("shutting down; waiting for requests in flight");
    };
    let front = Arc::new(crate::server::Front::new(&config));
    crate::server::serve(listener, &config.server, registry.clone(), front, draining).await?;
    crate::app::retire_all(&registry.served().await.apps(), STOP_WAIT).await;
    drop(stopped);
    Ok(ExitCode::SUCCESS)
}

async fn check(dir: &Path, state: &StateArgs) -> anyhow::Result<ExitCode> {
    let config = host_config(state)?;
    let responses = ResponseCache::new(config.cache.max_mb << 20);
    let loader = loader(state, &config, responses, state.kv(&config))?;
    let report = loader.load_dir(dir).await?;
    let mut problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    if let Err(conflicts) = build_router(&report.loaded) {
        problems.extend(conflicts);
    }
    print_routes(&report.loaded);
    if problems.is_empty() {
        println!("{} component(s) OK", report.loaded.len());
        Ok(ExitCode::SUCCESS)
    } else {
        for problem in &problems {
            println!("problem: {problem}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn print_routes(loaded: &[Loaded]) {
    for component in loaded {
        let prefix = component.config.prefix();
        match &component.kind {
            LoadedKind::App(_, manifest) => {
                println!(
                    "{} (cello app, {} routes)",
                    component.name,
                    manifest.routes.len()
                );
                for route in &manifest.routes {
                    let methods = if route.methods.is_empty() {
                        "*".to_string()
                    } else {
                        route.methods.join(",")
                    };
                    let kind = if route.is_async { "async" } else { "sync" };
                    println!("  {methods:<7} {prefix}{} ({kind})", route.path);
                }
            }
            LoadedKind::Proxy(_) => {
                println!("{} (wasi:http proxy)", component.name);
                println!("  *       {prefix}/... (catch-all)");
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
