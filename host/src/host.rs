//! The host put together from its config: engines, compile cache, the
//! key-value store, the loader, the route registry, tenants and the request
//! pipeline. The one place they are wired: `cello-host serve`, the bench
//! and the tests all build a [`Host`] with a [`HostBuilder`].
//!
//! A host answers requests over a socket ([`Host::serve`]) or in-process
//! ([`Host::handle`], what [`crate::testing::TestHost`] uses).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::body::RequestBody;
use crate::capabilities::kv::KvStore;
use crate::capabilities::sql::SqlStore;
use crate::cluster::invalidations;
use crate::cluster::rate_limits::SharedLimits;
use crate::cluster::redis::Redis;
use crate::cluster::tenant_store::PgTenants;
use crate::compile::CompileCache;
use crate::config::HostConfig;
use crate::engine::Engines;
use crate::guest_log::GuestLogs;
use crate::loader::{LoadReport, Loaded, Loader};
use crate::pipeline::{self, HostWide, Response};
use crate::readiness::Readiness;
use crate::registry::Registry;
use crate::response_cache::ResponseCache;
use crate::tenants::store::Store;
use crate::tenants::{TenantStore, Tenants};

/// Says how to build a [`Host`]: its config, and where it keeps what it
/// writes.
pub struct HostBuilder {
    config: HostConfig,
    config_file: Option<PathBuf>,
    state_dir: PathBuf,
    kv_path: Option<PathBuf>,
    sql_dir: Option<PathBuf>,
    tenants_dir: Option<PathBuf>,
    compile_cache: bool,
    function_cache: bool,
    guest_logs: Option<GuestLogs>,
}

impl HostBuilder {
    /// A host with `config`, writing under `state_dir` (compile cache,
    /// key-value store, tenants).
    pub fn new(config: HostConfig, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            config,
            config_file: None,
            state_dir: state_dir.into(),
            kv_path: None,
            sql_dir: None,
            tenants_dir: None,
            compile_cache: true,
            function_cache: true,
            guest_logs: None,
        }
    }

    /// The file the config was read from: relative paths in it (key files,
    /// say) start from its directory.
    pub fn config_file(mut self, file: Option<PathBuf>) -> Self {
        self.config_file = file;
        self
    }

    /// The key-value store's file, instead of the one under the state dir.
    pub fn kv_path(mut self, path: Option<PathBuf>) -> Self {
        self.kv_path = path;
        self
    }

    /// The directory of the SQL databases, instead of `STATE_DIR/sql`.
    pub fn sql_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.sql_dir = dir;
        self
    }

    /// Where tenants are kept, instead of `STATE_DIR/tenants`.
    pub fn tenants_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.tenants_dir = dir;
        self
    }

    /// Whether compiled components are kept on disk between starts.
    pub fn compile_cache(mut self, on: bool) -> Self {
        self.compile_cache = on;
        self
    }

    /// Whether compiled functions are shared between components (on disk
    /// beside the compile cache, and only with it).
    pub fn function_cache(mut self, on: bool) -> Self {
        self.function_cache = on;
        self
    }

    /// Keeps every guest log line (and stdout/stderr line) in `logs`, as
    /// well as logging it.
    pub fn guest_logs(mut self, logs: GuestLogs) -> Self {
        self.guest_logs = Some(logs);
        self
    }

    /// The host, with nothing in service yet.
    pub fn build(self) -> anyhow::Result<Host> {
        let config = self.config;
        let kv_path = self
            .kv_path
            .unwrap_or_else(|| config.kv_path(&self.state_dir));
        let ready = Arc::new(Readiness::default());
        let redis = config
            .cluster
            .redis_url()
            .and_then(|url| url.map(|url| Redis::new(&url, ready.clone())).transpose())
            .map_err(anyhow::Error::msg)?;
        let kv = match &redis {
            Some(redis) => KvStore::on_redis(redis.clone()),
            None => KvStore::at(&kv_path),
        };
        let kv = kv.with_component_quota(config.kv.component_quota());
        let sql_dir = self
            .sql_dir
            .unwrap_or_else(|| config.sql.dir(&self.state_dir));
        let sql_backend = config.sql.backend(sql_dir).map_err(anyhow::Error::msg)?;
        let sql = SqlStore::new(sql_backend, config.sql.limits());
        let cache = if self.compile_cache {
            let cache = CompileCache::in_dir(self.state_dir.join("cache"));
            if self.function_cache {
                cache.with_functions()
            } else {
                cache
            }
        } else {
            CompileCache::disabled()
        };
        let functions = cache
            .functions()
            .map(|functions| functions as Arc<dyn wasmtime::CacheStore>);
        let engines = Engines::new(&config.pool, functions)?;
        let responses = ResponseCache::new(config.cache.max_mb << 20);
        let mut loader = Loader::new(
            engines,
            cache,
            &config,
            self.config_file.as_deref(),
            responses.clone(),
            kv,
            sql,
        )?;
        if let Some(logs) = self.guest_logs {
            loader.capture_guest_logs(logs);
        }
        let loader = Arc::new(loader);
        let registry = Registry::new(config.tenants.domain.clone());
        let tenants_dir = self
            .tenants_dir
            .unwrap_or_else(|| self.state_dir.join("tenants"));
        let store = match config.cluster.postgres_url().map_err(anyhow::Error::msg)? {
            Some(url) => TenantStore::Postgres(PgTenants::new(&url).map_err(anyhow::Error::msg)?),
            None => TenantStore::Disk(Store::at(tenants_dir)),
        };
        let tenants = Arc::new(Tenants::new(
            loader.clone(),
            registry.clone(),
            store,
            config.tenants.quotas.clone(),
        ));
        let mut pipeline = HostWide::new(&config, ready.clone());
        if let Some(redis) = redis {
            pipeline.shared_limits = Some(Arc::new(SharedLimits::new(redis.clone())));
            invalidations::start(redis, responses.clone());
        }
        let pipeline = Arc::new(pipeline);
        Ok(Host {
            config,
            loader,
            registry,
            pipeline,
            ready,
            responses,
            tenants,
        })
    }
}

/// A host: what it serves, and how it answers.
pub struct Host {
    config: HostConfig,
    loader: Arc<Loader>,
    registry: Arc<Registry>,
    pipeline: Arc<HostWide>,
    ready: Arc<Readiness>,
    responses: Arc<ResponseCache>,
    tenants: Arc<Tenants>,
}

impl Host {
    /// The config it was built with.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Turns `.wasm` files and sidecars (files, or directories of them)
    /// into components, without serving them: see [`Host::put_in_service`].
    pub async fn load(&self, paths: &[PathBuf]) -> anyhow::Result<LoadReport> {
        self.loader.load_paths(paths).await
    }

    /// Serves `loaded` as the host's own components (beside the tenants'),
    /// replacing those served before; the error lists every route conflict
    /// or store that would not open.
    pub async fn put_in_service(&self, loaded: Vec<Loaded>) -> Result<(), Vec<String>> {
        if loaded.iter().any(|l| l.config.grants.kv) {
            self.loader.kv().open().map_err(|e| vec![e])?;
        }
        let main = loaded
            .into_iter()
            .map(|loaded| (loaded.name.clone(), Arc::new(loaded)))
            .collect();
        self.registry
            .change(|served| served.main = main, async { Ok(()) })
            .await
            .map_err(|refused| refused.problems())
    }

    /// Answers one request in-process, as if it came from `peer`.
    pub async fn handle(&self, request: http::Request<RequestBody>, peer: SocketAddr) -> Response {
        let routes = self.registry.routes();
        pipeline::handle(self.pipeline.clone(), routes, request, peer).await
    }

    /// Serves requests on `listener` until `shutdown` resolves, then lets
    /// those in flight finish.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let registry = self.registry.clone();
        let pipeline = self.pipeline.clone();
        crate::server::serve(listener, &self.config.server, registry, pipeline, shutdown).await
    }

    /// Runs every app's `on-stop` hook (waiting at most `within`) and lets
    /// its instances go.
    pub async fn stop(&self, within: Duration) {
        crate::app::retire_all(&self.registry.served().await.apps(), within).await;
    }

    /// Whether it is started, serving, and which components failed.
    pub fn ready(&self) -> &Arc<Readiness> {
        &self.ready
    }

    /// The tenants and their uploads.
    pub fn tenants(&self) -> &Arc<Tenants> {
        &self.tenants
    }

    /// What turns files and uploads into components.
    pub fn loader(&self) -> &Arc<Loader> {
        &self.loader
    }

    /// What is in service.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The response cache every component shares.
    pub fn responses(&self) -> &Arc<ResponseCache> {
        &self.responses
    }
}
