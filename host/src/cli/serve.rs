//! `cello-host serve` and `cello-host check`.
//!
//! `serve` binds its listeners first, so that an address in use fails at
//! once rather than after minutes of compiling; the traffic listener
//! answers 503 with `Retry-After` until the components have loaded. Then
//! the start is strict: a component that does not load stops it, naming
//! every problem, unless `--allow-partial` says to serve the others.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{CheckArgs, ServeArgs, StateArgs};
use crate::config::HostConfig;
use crate::host::{Host, HostBuilder};
use crate::loader::{LoadReport, Loaded, LoadedKind, build_router};
use crate::logging::announce;
use crate::readiness::Readiness;

/// How long a graceful shutdown waits for `on-stop` hooks.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(6);
/// Where traffic is served when nothing says otherwise.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8080,
));
/// Where the admin API listens when nothing says otherwise.
const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8081,
));

/// Binds `addr` for `what`; an address in use says what to do.
async fn bind(addr: SocketAddr, what: &str, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "cannot listen on {addr} for {what}: the address is in use; stop what \
                 holds it, or choose another with {flag}"
            )
        } else {
            anyhow::anyhow!("cannot listen on {addr} for {what}: {e}")
        }
    })
}

/// The paths as a problem names them.
fn listed(paths: &[PathBuf]) -> String {
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    paths.join(", ")
}

pub(super) async fn serve(args: ServeArgs, mut config: HostConfig) -> anyhow::Result<ExitCode> {
    let settings = config.serve.clone();
    let state = &args.state;
    let allow_partial = args.allow_partial || settings.allow_partial;
    let allow_empty = args.allow_empty || settings.allow_empty;
    if args.paths.is_empty() && !allow_empty {
        anyhow::bail!(
            "nothing to serve: name component files or directories \
             (`cello-host serve components/`), or pass --allow-empty to serve tenants only"
        );
    }
    // Bound before anything is compiled, so that a taken port fails now.
    let traffic_addr = args.listen.or(settings.listen).unwrap_or(DEFAULT_LISTEN);
    let traffic = bind(traffic_addr, "traffic", "--listen").await?;
    let traffic_bound = traffic.local_addr()?;
    let ops = match args.ops_listen.or(settings.ops_listen) {
        Some(addr) => Some(bind(addr, "ops", "--ops-listen").await?),
        None => None,
    };
    let admin = match args.admin_token {
        Some(token) => {
            let addr = args
                .admin_listen
                .or(settings.admin_listen)
                .unwrap_or(DEFAULT_ADMIN_LISTEN);
            Some((bind(addr, "the admin API", "--admin-listen").await?, token))
        }
        None => None,
    };
    config.access_log.enabled |= args.access_log;
    let host = Arc::new(host(state, config)?);
    let ready = host.ready().clone();
    // Dropped at the end, which stops the ops and admin listeners.
    let (stopped, stop) = tokio::sync::watch::channel(());
    let stop_signal = move || {
        let mut stop = stop.clone();
        async move {
            let _ = stop.changed().await;
        }
    };
    if let Some(listener) = ops {
        announce(&format!(
            "ops listening on http://{}",
            listener.local_addr()?
        ));
        tokio::spawn(crate::ops::serve(
            listener,
            host.config().server.clone(),
            ready.clone(),
            host.responses().clone(),
            stop_signal(),
        ));
    }
    // Traffic is answered from now on: 503 until the components load.
    let server = {
        let host = host.clone();
        let ready = ready.clone();
        let draining = async move {
            shutdown_signal().await;
            ready.set_serving(false);
            tracing::info!("shutting down; waiting for requests in flight");
        };
        tokio::spawn(async move { host.serve(traffic, draining).await })
    };
    let report = host.load(&args.paths).await?;
    strict_start(&args.paths, &report, allow_partial, allow_empty, &ready)?;
    announce_routes(&report.loaded);
    host.put_in_service(report.loaded)
        .await
        .map_err(|problems| {
            anyhow::anyhow!(
                "cannot serve {}:\n  {}",
                listed(&args.paths),
                problems.join("\n  ")
            )
        })?;
    // Tenants' components load in the background: the listener opens now.
    host.tenants().restore(ready.clone()).await;
    match admin {
        Some((listener, token)) => {
            announce(&format!(
                "admin listening on http://{}",
                listener.local_addr()?
            ));
            let upload_timeout = Duration::from_secs(host.config().server.upload_timeout_s);
            let admin = crate::admin::Admin::new(host.tenants().clone(), &token, upload_timeout);
            tokio::spawn(crate::admin::serve(
                listener,
                host.config().server.clone(),
                admin,
                stop_signal(),
            ));
        }
        None => tracing::info!("admin API off: set CELLO_ADMIN_TOKEN to manage tenants"),
    }
    let watch = !args.no_watch && settings.watch.unwrap_or(true);
    let _watcher = if watch {
        let loader = host.loader().clone();
        let watcher =
            crate::reload::watch(&args.paths, loader, host.registry().clone(), ready.clone());
        Some(watcher?)
    } else {
        None
    };
    ready.set_started();
    ready.set_serving(true);
    announce(&format!("listening on http://{traffic_bound}"));
    server.await??;
    host.stop(STOP_WAIT).await;
    drop(stopped);
    Ok(ExitCode::SUCCESS)
}

/// The host as the command line and config ask.
fn host(state: &StateArgs, config: HostConfig) -> anyhow::Result<Host> {
    HostBuilder::new(config, &state.state_dir)
        .config_file(state.config.clone())
        .kv_path(state.kv_path.clone())
        .sql_dir(state.sql_dir.clone())
        .tenants_dir(state.tenants_dir.clone())
        .compile_cache(!state.no_compile_cache)
        .function_cache(!state.no_function_cache)
        .build()
}

/// Refuses to start when a component did not load (unless
/// `allow_partial`, which marks each not ready instead) or when there is
/// nothing to serve (unless `allow_empty`).
fn strict_start(
    paths: &[PathBuf],
    report: &LoadReport,
    allow_partial: bool,
    allow_empty: bool,
    ready: &Readiness,
) -> anyhow::Result<()> {
    if report.loaded.is_empty() && report.problems.is_empty() {
        if !allow_empty {
            anyhow::bail!(
                "no components to serve in {}: add NAME.wasm files, or pass --allow-empty \
                 to start without any (to serve tenants only, say)",
                listed(paths)
            );
        }
        if paths.is_empty() {
            tracing::info!("no component paths given: serving tenants only");
        } else {
            tracing::warn!("no components to serve in {}", listed(paths));
        }
    }
    if report.problems.is_empty() {
        return Ok(());
    }
    if !allow_partial {
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "not serving: {} component(s) did not load:\n  {}\nFix them, or pass \
             --allow-partial to serve the others (/readyz then answers 503 naming these)",
            problems.len(),
            problems.join("\n  ")
        );
    }
    for problem in &report.problems {
        tracing::error!("not serving {problem}");
        ready.failed(&problem.component(), &problem.reason);
    }
    Ok(())
}

pub(super) async fn check(args: CheckArgs, config: HostConfig) -> anyhow::Result<ExitCode> {
    let allow_empty = args.allow_empty || config.serve.allow_empty;
    let report = host(&args.state, config)?.load(&args.paths).await?;
    let mut problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    if let Err(conflicts) = build_router(&report.loaded) {
        problems.extend(conflicts);
    }
    if report.loaded.is_empty() && problems.is_empty() {
        let paths = listed(&args.paths);
        if allow_empty {
            announce(&format!(
                "no components in {paths} (allowed by --allow-empty)"
            ));
            return Ok(ExitCode::SUCCESS);
        }
        problems.push(format!(
            "no components in {paths}: add NAME.wasm files, or pass --allow-empty"
        ));
    }
    announce_routes(&report.loaded);
    if problems.is_empty() {
        announce(&format!("{} component(s) OK", report.loaded.len()));
        Ok(ExitCode::SUCCESS)
    } else {
        for problem in &problems {
            announce(&format!("problem: {problem}"));
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Each component and its routes, a line each.
fn announce_routes(loaded: &[Loaded]) {
    for component in loaded {
        let prefix = component.config.prefix();
        match &component.kind {
            LoadedKind::App(_, manifest) => {
                announce(&format!(
                    "{} (cello app, {} routes)",
                    component.name,
                    manifest.routes.len()
                ));
                for route in &manifest.routes {
                    let methods = if route.methods.is_empty() {
                        "*".to_string()
                    } else {
                        route.methods.join(",")
                    };
                    let kind = if route.is_async { "async" } else { "sync" };
                    announce(&format!("  {methods:<7} {prefix}{} ({kind})", route.path));
                }
            }
            LoadedKind::Proxy(proxy) => {
                announce(&format!("{} ({})", component.name, proxy.world()));
                announce(&format!("  *       {prefix}/... (catch-all)"));
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
