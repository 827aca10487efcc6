//! The `cello-host` command line: its flags, `serve` and `check`
//! ([`serve`]), and the admin API's client commands `tenant` and `push`
//! ([`remote`]).

mod remote;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::HostConfig;
use crate::logging::LogFormat;

#[derive(Parser)]
#[command(
    name = "cello-host",
    version,
    about = "Serve HTTP from WebAssembly components",
    after_help = "Every flag of `serve` and `check` can also be set by the environment \
                  variable shown with it, and most by the host config (`--config`): a \
                  flag wins over its variable, the variable over the config, the config \
                  over the built-in default."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve component files, and every component in directories.
    Serve(ServeArgs),
    /// Load every component as `serve` would, report problems, and exit
    /// non-zero if any.
    Check(CheckArgs),
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

/// A switch that its environment variable may also turn on (`1`, `true`,
/// `yes`, `on`) or leave off (`0`, `false`, `no`, `off`, empty).
fn switch() -> clap::builder::FalseyValueParser {
    clap::builder::FalseyValueParser::new()
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Component files (NAME.wasm, each with an optional NAME.toml sidecar
    /// beside it) and directories of them; none with --allow-empty, to
    /// serve tenants only.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Address to listen on for traffic [default: 127.0.0.1:8080; config:
    /// `[serve] listen`].
    #[arg(long, env = "CELLO_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address for /metrics, /healthz and /readyz; none when not given
    /// [config: `[serve] ops-listen`].
    #[arg(long, env = "CELLO_OPS_LISTEN")]
    ops_listen: Option<SocketAddr>,
    /// Address of the admin API (tenants and uploads), which is on when
    /// an operator token is set [default: 127.0.0.1:8081; config:
    /// `[serve] admin-listen`].
    #[arg(long, env = "CELLO_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// The operator's token for the admin API.
    #[arg(long, env = "CELLO_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Do not pick up changes to the served files [config: `[serve]
    /// watch = false`].
    #[arg(long, env = "CELLO_NO_WATCH", value_parser = switch())]
    no_watch: bool,
    /// Serve the components that load when others do not; /readyz answers
    /// 503 naming those that failed until they load. Without it, any
    /// component that fails stops the start [config: `[serve]
    /// allow-partial`].
    #[arg(long, env = "CELLO_ALLOW_PARTIAL", value_parser = switch())]
    allow_partial: bool,
    /// Start with no components to serve (a host for tenants only, say)
    /// [config: `[serve] allow-empty`].
    #[arg(long, env = "CELLO_ALLOW_EMPTY", value_parser = switch())]
    allow_empty: bool,
    /// Log one line per request [config: `[access-log] enabled`].
    #[arg(long, env = "CELLO_ACCESS_LOG", value_parser = switch())]
    access_log: bool,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Component files (NAME.wasm, each with an optional NAME.toml sidecar
    /// beside it) and directories of them, as `serve` takes them.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Pass with no components to check [config: `[serve] allow-empty`].
    #[arg(long, env = "CELLO_ALLOW_EMPTY", value_parser = switch())]
    allow_empty: bool,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(clap::Args)]
struct LogArgs {
    /// How log lines are written [default: pretty; config: `[log] format`].
    #[arg(long, env = "CELLO_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
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
    /// Compile every component afresh instead of using the compile cache
    /// (and the function cache beside it).
    #[arg(long, env = "CELLO_NO_COMPILE_CACHE", value_parser = switch())]
    no_compile_cache: bool,
    /// Compile every function of a component afresh instead of reusing
    /// those compiled before for other components (the compile cache
    /// still keeps whole components).
    #[arg(long, env = "CELLO_NO_FUNCTION_CACHE", value_parser = switch())]
    no_function_cache: bool,
    /// The key-value store's file (over `[kv] path` in the config; by
    /// default `kv.redb` in the state directory).
    #[arg(long, env = "CELLO_KV_PATH")]
    kv_path: Option<PathBuf>,
    /// The directory of the SQL databases (over `[sql] dir` in the config;
    /// by default `sql/` in the state directory).
    #[arg(long, env = "CELLO_SQL_DIR")]
    sql_dir: Option<PathBuf>,
    /// Where tenants and their uploads are kept (by default `tenants/` in
    /// the state directory).
    #[arg(long, env = "CELLO_TENANTS_DIR")]
    tenants_dir: Option<PathBuf>,
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
    // The config is read before the log starts, since it may say how to
    // log; a mistake in it is reported once the log is set.
    let (format, state) = match &cli.command {
        Command::Serve(args) => (args.log.log_format, Some(&args.state)),
        Command::Check(args) => (args.log.log_format, Some(&args.state)),
        Command::Tenant { .. } | Command::Push { .. } => (None, None),
    };
    let config = state.map(host_config);
    let from_config = match &config {
        Some(Ok(config)) => config.log.format,
        _ => None,
    };
    let format = format.or(from_config).unwrap_or(LogFormat::Pretty);
    // Traces are for `serve`, and only when an endpoint is set.
    let tracer = match (&cli.command, &config) {
        (Command::Serve(_), Some(Ok(config))) => crate::telemetry::init(&config.telemetry),
        _ => Ok(None),
    };
    let (tracer, not_traced) = match tracer {
        Ok(tracer) => (tracer, None),
        Err(e) => (None, Some(e)),
    };
    // Held to the end, so every line is written before the process exits.
    let _log_writer = crate::logging::init(format, tracer);
    let result = match (not_traced, cli.command, config) {
        (Some(e), _, _) | (None, _, Some(Err(e))) => Err(e),
        (None, Command::Serve(args), Some(Ok(config))) => serve::serve(args, config).await,
        (None, Command::Check(args), Some(Ok(config))) => serve::check(args, config).await,
        (None, Command::Tenant { action, remote }, _) => remote::tenant(action, &remote).await,
        (None, Command::Push { push, remote }, _) => remote::push(&push, &remote).await,
        (None, Command::Serve(_) | Command::Check(_), None) => unreachable!("read above"),
    };
    crate::telemetry::shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            match format {
                LogFormat::Json => tracing::error!("{e:#}"),
                LogFormat::Pretty => eprintln!("error: {e:#}"),
            }
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
