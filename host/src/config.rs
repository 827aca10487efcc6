//! Settings: the host's config file, the sidecar `NAME.toml` next to each
//! component, and how they combine (sidecar over host defaults over
//! built-in defaults).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::capabilities::Grants;
use crate::capabilities::config::ValueSource;
use crate::capabilities::kv::KvQuota;
use crate::capabilities::outbound::OutboundSettings;
use crate::middleware::auth::AuthSettings;
use crate::middleware::rate_limit::RateLimitSettings;
use crate::middleware::{
    self, AccessLogSettings, AppPolicySettings, CompressionSettings, CorsSettings,
    SecurityHeaderSettings,
};
use crate::response_cache::policy::CachePolicy;

/// The host's config file (`--config cello.toml`). Every field is optional.
///
/// ```toml
/// [limits]                # defaults for every component; a sidecar overrides them
/// timeout-ms = 30000
///
/// [pool]
/// max-instances = 1000    # instances alive at once across all components
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostConfig {
    /// Defaults for every component's limits.
    #[serde(default)]
    pub limits: LimitSettings,
    /// The instance pool shared by all components.
    #[serde(default)]
    pub pool: PoolSettings,
    /// The response cache shared by all components.
    #[serde(default)]
    pub cache: ResponseCacheSettings,
    /// Where the key-value capability keeps its data.
    #[serde(default)]
    pub kv: KvSettings,
    /// Where the SQL capability keeps its databases, and their limits.
    #[serde(default)]
    pub sql: crate::capabilities::sql::SqlSettings,
    /// CORS for every component (a sidecar's `[cors]` replaces it).
    #[serde(default)]
    pub cors: Option<CorsSettings>,
    /// JWT auth for every component (a sidecar's `[auth]` replaces it).
    #[serde(default)]
    pub auth: Option<AuthSettings>,
    /// A rate limit for every component (a sidecar's replaces it).
    #[serde(default)]
    pub rate_limit: Option<RateLimitSettings>,
    #[serde(default)]
    pub compression: CompressionSettings,
    #[serde(default)]
    pub security_headers: SecurityHeaderSettings,
    #[serde(default)]
    pub access_log: AccessLogSettings,
    /// Which wishes apps declare in `describe()` the host honours.
    #[serde(default)]
    pub app_policy: AppPolicySettings,
    /// How tenants are reached, and their default quotas.
    #[serde(default)]
    pub tenants: TenantSettings,
    /// How guest code shares the CPU.
    #[serde(default)]
    pub execution: ExecutionSettings,
    /// How long each step of validating a new component may take.
    #[serde(default)]
    pub deploys: DeploySettings,
    /// How the listeners treat connections: timeouts and caps.
    #[serde(default)]
    pub server: ServerSettings,
    /// What `serve` does when no flag or variable says: addresses, reload,
    /// and how strict the start is.
    #[serde(default)]
    pub serve: ServeSettings,
    /// How the log is written.
    #[serde(default)]
    pub log: LogSettings,
    /// Where traces go (OpenTelemetry over OTLP), if anywhere.
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetrySettings,
    /// The servers several hosts share (PostgreSQL, Redis), if any.
    #[serde(default)]
    pub cluster: crate::cluster::ClusterSettings,
}

/// The `[serve]` table: `serve`'s flags, as config. A flag, or its
/// environment variable, wins over the table; the table over the built-in
/// default.
///
/// ```toml
/// [serve]
/// listen = "0.0.0.0:8080"        # --listen, CELLO_LISTEN
/// ops-listen = "0.0.0.0:9090"    # --ops-listen, CELLO_OPS_LISTEN
/// admin-listen = "127.0.0.1:8081" # --admin-listen, CELLO_ADMIN_LISTEN
/// watch = false                  # --no-watch, CELLO_NO_WATCH
/// allow-partial = true           # --allow-partial, CELLO_ALLOW_PARTIAL
/// allow-empty = true             # --allow-empty, CELLO_ALLOW_EMPTY
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeSettings {
    pub listen: Option<std::net::SocketAddr>,
    pub ops_listen: Option<std::net::SocketAddr>,
    pub admin_listen: Option<std::net::SocketAddr>,
    /// Pick up changes to the served files (on unless false).
    pub watch: Option<bool>,
    /// Serve what loads when some components do not, reporting the rest
    /// as not ready, instead of refusing to start.
    #[serde(default)]
    pub allow_partial: bool,
    /// Start with no components to serve (tenants only, say).
    #[serde(default)]
    pub allow_empty: bool,
}

/// The `[log]` table.
///
/// ```toml
/// [log]
/// format = "json"   # --log-format, CELLO_LOG_FORMAT; "pretty" by default
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogSettings {
    pub format: Option<crate::logging::LogFormat>,
}

/// The `[execution]` table: how guest code shares the machine's CPU (see
/// [`crate::scheduler`]).
///
/// ```toml
/// [execution]
/// demote-after-ms = 5      # guest time before a call leaves the request's thread
/// long-call-threads = 2    # threads of the long-call lane; default: one per core
/// long-call-nice = 19      # their OS priority (nice value, 0 to 19)
/// long-call-idle = false   # or the kernel's idle policy (Linux)
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExecutionSettings {
    /// Guest time a call may use on the thread that serves its request
    /// before it moves to the long-call lane, in ms.
    #[serde(default = "ExecutionSettings::default_demote_after_ms")]
    pub demote_after_ms: u64,
    /// Threads of the long-call lane; by default one per CPU core.
    pub long_call_threads: Option<usize>,
    /// The nice value of the long-call lane's threads: the higher, the more
    /// the kernel favours the threads that accept and answer requests. (On
    /// Linux 6.12 and later their time slice is 0.1 ms as well, so a
    /// request's thread waking up takes the CPU at once.)
    #[serde(default = "ExecutionSettings::default_long_call_nice")]
    pub long_call_nice: i32,
    /// Whether the long-call lane's threads run under the kernel's idle
    /// policy (`SCHED_IDLE`, Linux): the lowest weight there is, and any
    /// other thread waking up takes the CPU from them at once. Off by
    /// default: on the 2-core bench machine a quiet tenant's p99 beside a
    /// looping one was about twice as high with it (2.0 against 1.0 ms,
    /// medians of 3 alternating rounds), likely because a lane thread
    /// preempted while holding something a request's thread needs waits
    /// longest at the lowest weight.
    #[serde(default = "ExecutionSettings::default_long_call_idle")]
    pub long_call_idle: bool,
}

impl ExecutionSettings {
    fn default_demote_after_ms() -> u64 {
        5
    }

    fn default_long_call_nice() -> i32 {
        19
    }

    fn default_long_call_idle() -> bool {
        false
    }

    /// Threads of the long-call lane.
    pub fn long_call_threads(&self) -> usize {
        self.long_call_threads
            .unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
            })
            .max(1)
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !(0..=19).contains(&self.long_call_nice) {
            return Err(format!(
                "[execution] long-call-nice = {} must be from 0 to 19",
                self.long_call_nice
            ));
        }
        if self.demote_after_ms == 0 {
            return Err("[execution] demote-after-ms must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for ExecutionSettings {
    fn default() -> Self {
        Self {
            demote_after_ms: Self::default_demote_after_ms(),
            long_call_threads: None,
            long_call_nice: Self::default_long_call_nice(),
            long_call_idle: Self::default_long_call_idle(),
        }
    }
}

/// The `[deploys]` table: how long each step of validating a component
/// (an upload, a rollback, a reload, a restore) may take before it is
/// refused, in seconds. A refusal names the step and its limit.
///
/// ```toml
/// [deploys]
/// compile-timeout-s = 300   # compiling (a cache hit takes milliseconds)
/// describe-timeout-s = 10   # describe() on an instance made for it
/// start-timeout-s = 10      # on-start of the first instance
/// instance-wait-s = 3       # waiting for an instance slot the traffic holds
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct DeploySettings {
    /// Compiling cannot be interrupted: past this the caller is answered
    /// and the compiler's thread finishes on its own.
    pub compile_timeout_s: u64,
    pub describe_timeout_s: u64,
    pub start_timeout_s: u64,
    /// How long a new version's first instance waits for a slot that
    /// requests in flight hold; idle instances (of the version it
    /// replaces, say) are evicted at once.
    pub instance_wait_s: u64,
}

impl Default for DeploySettings {
    fn default() -> Self {
        Self {
            // A cold compile of a large Python component on a busy machine
            // takes a minute or more.
            compile_timeout_s: 300,
            describe_timeout_s: 10,
            start_timeout_s: 10,
            instance_wait_s: 3,
        }
    }
}

impl DeploySettings {
    pub fn compile_timeout(&self) -> Duration {
        Duration::from_secs(self.compile_timeout_s)
    }

    pub fn describe_timeout(&self) -> Duration {
        Duration::from_secs(self.describe_timeout_s)
    }

    pub fn start_timeout(&self) -> Duration {
        Duration::from_secs(self.start_timeout_s)
    }

    pub fn instance_wait(&self) -> Duration {
        Duration::from_secs(self.instance_wait_s)
    }
}

/// The `[server]` table: timeouts and caps on connections, for the traffic,
/// ops and admin listeners alike (each counts its own connections).
///
/// ```toml
/// [server]
/// header-timeout-s = 10          # to send the first request's headers
/// idle-timeout-s = 60            # with no request in flight
/// max-connections = 10000        # open at once; past it, closed at once
/// max-connections-per-ip = 256   # from one IPv4 address or IPv6 /64
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerSettings {
    /// Seconds a client has to send its first request's headers, from when
    /// the connection opens; also how long a closing connection may go
    /// without taking a byte of its response.
    #[serde(default = "ServerSettings::default_header_timeout_s")]
    pub header_timeout_s: u64,
    /// Seconds a connection may sit with no request in flight.
    #[serde(default = "ServerSettings::default_idle_timeout_s")]
    pub idle_timeout_s: u64,
    /// Connections open at once on one listener.
    #[serde(default = "ServerSettings::default_max_connections")]
    pub max_connections: usize,
    /// Connections open at once from one client address.
    #[serde(default = "ServerSettings::default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Seconds an upload to the admin API has to send its whole body.
    #[serde(default = "ServerSettings::default_upload_timeout_s")]
    pub upload_timeout_s: u64,
}

impl ServerSettings {
    fn default_header_timeout_s() -> u64 {
        10
    }
    fn default_idle_timeout_s() -> u64 {
        60
    }
    fn default_max_connections() -> usize {
        10_000
    }
    fn default_max_connections_per_ip() -> usize {
        256
    }
    fn default_upload_timeout_s() -> u64 {
        120
    }

    /// Checks what the types cannot: no zero, which would refuse everything.
    fn validate(&self) -> Result<(), String> {
        let fields = [
            ("header-timeout-s", self.header_timeout_s as usize),
            ("idle-timeout-s", self.idle_timeout_s as usize),
            ("max-connections", self.max_connections),
            ("max-connections-per-ip", self.max_connections_per_ip),
            ("upload-timeout-s", self.upload_timeout_s as usize),
        ];
        match fields.iter().find(|(_, value)| *value == 0) {
            Some((name, _)) => Err(format!(
                "[server] {name} must be at least 1; leave it out for the default"
            )),
            None => Ok(()),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            header_timeout_s: Self::default_header_timeout_s(),
            idle_timeout_s: Self::default_idle_timeout_s(),
            max_connections: Self::default_max_connections(),
            max_connections_per_ip: Self::default_max_connections_per_ip(),
            upload_timeout_s: Self::default_upload_timeout_s(),
        }
    }
}

/// The `[tenants]` table.
///
/// ```toml
/// [tenants]
/// domain = "apps.example.com"   # also serve tenant T at T.apps.example.com
/// [tenants.quotas]              # for tenants created without their own
/// memory-mb = 128
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TenantSettings {
    /// Tenants are always reached at `/t/{tenant}/...`; with a domain, at
    /// `{tenant}.{domain}` as well.
    pub domain: Option<String>,
    #[serde(default)]
    pub quotas: crate::tenants::quotas::Quotas,
}

/// Where the key-value store lives, and what a served component may keep
/// in it.
///
/// ```toml
/// [kv]
/// max-mb = 64        # per served component; tenants have their own quotas
/// max-keys = 100000
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KvSettings {
    /// The store's file; by default `kv.redb` in the state directory.
    pub path: Option<std::path::PathBuf>,
    /// MiB of keys and values one served component may keep; no limit by
    /// default.
    pub max_mb: Option<u64>,
    /// Keys one served component may keep; no limit by default.
    pub max_keys: Option<u64>,
}

impl KvSettings {
    /// The quota of each served component, if either limit is set.
    pub fn component_quota(&self) -> Option<KvQuota> {
        if self.max_mb.is_none() && self.max_keys.is_none() {
            return None;
        }
        Some(KvQuota {
            max_bytes: self
                .max_mb
                .map_or(u64::MAX, |mb| mb.saturating_mul(1 << 20)),
            max_keys: self.max_keys.unwrap_or(u64::MAX),
        })
    }
}

/// The size of the response cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ResponseCacheSettings {
    /// Bytes of responses kept, in MiB; the least used go first.
    #[serde(default = "ResponseCacheSettings::default_max_mb")]
    pub max_mb: u64,
}

impl ResponseCacheSettings {
    fn default_max_mb() -> u64 {
        64
    }
}

impl Default for ResponseCacheSettings {
    fn default() -> Self {
        Self {
            max_mb: Self::default_max_mb(),
        }
    }
}

impl HostConfig {
    /// Reads a host config file.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A host config from its text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self =
            toml::from_str(text).map_err(|e| format!("not a valid host config: {e}"))?;
        config.execution.validate()?;
        config.server.validate()?;
        config.limits.validate()?;
        Ok(config)
    }

    /// The host-wide middleware tables; `file` is where the config was read.
    pub fn middleware(&self, file: Option<&Path>) -> middleware::Settings {
        let base = file.map_or_else(|| ".".into(), middleware::base_dir);
        middleware::Settings {
            cors: self.cors.clone(),
            auth: self.auth.clone().map(|a| (a, base)),
            rate_limit: self.rate_limit.clone(),
            access_log: false,
        }
    }

    /// The key-value store's file, given the state directory.
    pub fn kv_path(&self, state_dir: &Path) -> std::path::PathBuf {
        self.kv
            .path
            .clone()
            .unwrap_or_else(|| state_dir.join("kv.redb"))
    }

    /// The limits every component starts from.
    pub fn default_limits(&self) -> Limits {
        Limits::default().with(&self.limits)
    }
}

/// Sizes of the engine's pooling allocator, all derived from one number so
/// they stay consistent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PoolSettings {
    /// Component instances alive at once across all components; requests
    /// that need another wait in their component's queue.
    #[serde(default = "PoolSettings::default_max_instances")]
    pub max_instances: u32,
    /// Use the pooling allocator (copy-on-write memory images, reused slots).
    /// When off, or when the address space cannot be reserved, instances
    /// are allocated on demand.
    #[serde(default = "PoolSettings::default_pooling")]
    pub pooling: bool,
    /// Of a retired instance's memory and tables, how many MiB its slot
    /// keeps resident for the next instance: pages the guest wrote are
    /// copied back from the memory image instead of being unmapped, so the
    /// next instance does not fault them in again. Off (0) by default: it
    /// pays off where instances are short-lived (per-request isolation).
    #[serde(default = "PoolSettings::default_keep_resident_mb")]
    pub keep_resident_mb: u32,
}

impl PoolSettings {
    fn default_max_instances() -> u32 {
        1000
    }
    fn default_pooling() -> bool {
        true
    }
    fn default_keep_resident_mb() -> u32 {
        0
    }
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_instances: Self::default_max_instances(),
            pooling: Self::default_pooling(),
            keep_resident_mb: Self::default_keep_resident_mb(),
        }
    }
}

/// The sidecar file `NAME.toml` beside `NAME.wasm`. Every field is optional.
///
/// ```toml
/// prefix = "/hello"          # serve the component's routes under /hello
///
/// [limits]
/// memory-mb = 256            # all memories of one instance together
/// timeout-ms = 5000          # per request; then 504 and the instance is discarded
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ComponentConfig {
    /// A path prefix such as `/api`; the guest sees paths without it.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Resource limits for this component.
    #[serde(default)]
    pub limits: LimitSettings,
    /// A cache policy for every GET route that declares none itself.
    #[serde(default)]
    pub cache: Option<CacheSettings>,
    /// The capabilities the component may import.
    #[serde(default)]
    pub grants: Grants,
    /// Limits on outbound HTTP, when `grants.outbound` allows any.
    #[serde(default)]
    pub outbound: OutboundSettings,
    /// Config variables: literals or `{ env = "VAR" }`.
    #[serde(default)]
    pub variables: HashMap<String, ValueSource>,
    /// Secrets, like variables but never logged.
    #[serde(default)]
    pub secrets: HashMap<String, ValueSource>,
    /// The guest's environment variables (`wasi:cli/environment`), as
    /// `wasmtime serve --env` gives them: literals or `{ env = "VAR" }`.
    /// Nothing of the host's own environment is passed otherwise.
    #[serde(default)]
    pub environment: std::collections::BTreeMap<String, ValueSource>,
    /// CORS for this component, replacing the host's.
    #[serde(default)]
    pub cors: Option<CorsSettings>,
    /// JWT auth for this component, replacing the host's.
    #[serde(default)]
    pub auth: Option<AuthSettings>,
    /// A rate limit for the whole component, replacing the host's.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSettings>,
}

impl ComponentConfig {
    /// This sidecar's middleware tables; key files are relative to `dir`.
    pub fn middleware(&self, dir: &Path) -> middleware::Settings {
        middleware::Settings {
            cors: self.cors.clone(),
            auth: self.auth.clone().map(|a| (a, dir.to_path_buf())),
            rate_limit: self.rate_limit.clone(),
            access_log: false,
        }
    }
}

/// A default cache policy, as a sidecar writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheSettings {
    pub ttl_seconds: u32,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub vary: Vec<String>,
}

impl CacheSettings {
    /// The policy, or a sentence naming the bad `vary` header.
    pub fn policy(&self) -> Result<CachePolicy, String> {
        CachePolicy::new(self.ttl_seconds, &self.tags, &self.vary)
    }
}

/// How instances are reused between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Warm instances serve many requests (up to `max-requests-per-instance`).
    Reuse,
    /// Every request gets a fresh instance, discarded after it.
    PerRequest,
}

/// Limits a config file may set; unset ones fall through to the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitSettings {
    /// Linear memory per instance, all memories together, in MiB.
    pub memory_mb: Option<u64>,
    /// Time a request may take, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Instances of this component alive at once, sync and async together.
    pub max_instances: Option<usize>,
    /// Requests that may wait for an instance; past that, 503.
    pub queue: Option<usize>,
    /// Async requests in flight on one instance at once.
    pub async_concurrency: Option<usize>,
    /// Requests in flight on one instance of a `wasi:http` 0.3 service at
    /// once.
    pub p3_concurrency: Option<usize>,
    /// Requests one instance serves before it is replaced.
    pub max_requests_per_instance: Option<u64>,
    /// Seconds an unused instance is kept warm.
    pub idle_timeout_s: Option<u64>,
    /// `reuse` (default) or `per-request`.
    pub isolation: Option<Isolation>,
    /// Largest request body accepted, in KiB.
    pub max_body_kb: Option<u64>,
    /// Warn when an async handler runs this long without awaiting, in ms.
    pub blocked_warn_ms: Option<u64>,
    /// Host resources (streams, pollables, ...) one instance may hold.
    pub max_resources: Option<usize>,
    /// Time a request's background tasks may take after its response, in ms.
    pub background_timeout_ms: Option<u64>,
    /// CPU time per request, ms: guest time summed across the call; none by
    /// default.
    pub cpu_ms: Option<u64>,
    /// Time a streamed response may go without a chunk before it is closed,
    /// in ms.
    pub stream_idle_ms: Option<u64>,
}

/// A segment of a prefix that requests can match as it is written: not
/// empty, not `.` or `..` (which clients resolve away), and made only of
/// what RFC 3986 lets a path segment carry unencoded (the router matches
/// the path as it comes, percent-escapes and all).
fn plain_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b))
}

/// A name the guest's environment can hold.
fn environment_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

impl LimitSettings {
    /// Refuses limits no request could be served under: no time, or no
    /// memory.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("timeout-ms", self.timeout_ms),
            ("memory-mb", self.memory_mb),
        ] {
            if value == Some(0) {
                return Err(format!(
                    "[limits] {name} = 0 leaves no request able to run: it must be at least 1"
                ));
            }
        }
        Ok(())
    }
}

/// Limits in force for one component after defaults are applied.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of linear memory per instance, all memories together.
    pub memory_bytes: usize,
    /// Time a request may take.
    pub timeout: Duration,
    /// Instances alive at once.
    pub max_instances: usize,
    /// Requests waiting for an instance.
    pub queue: usize,
    /// Async requests in flight on one instance.
    pub async_concurrency: usize,
    /// Requests in flight on one instance of a `wasi:http` 0.3 service.
    pub p3_concurrency: usize,
    /// Requests one instance serves.
    pub max_requests_per_instance: u64,
    /// How long an unused instance is kept.
    pub idle_timeout: Duration,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// An async handler running this long without awaiting is logged.
    pub blocked_warn: Duration,
    /// Host resources one instance may hold at once.
    pub max_resources: usize,
    /// Time a request's background tasks may take after its response.
    pub background_timeout: Duration,
    /// Guest time one request may use (an async handler: without awaiting).
    pub cpu: Option<Duration>,
    /// Time a streamed response may go without a chunk.
    pub stream_idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 512 << 20,
            timeout: Duration::from_secs(30),
            max_instances: 32,
            queue: 256,
            async_concurrency: 64,
            // As `wasmtime serve`.
            p3_concurrency: 16,
            max_requests_per_instance: 30_000,
            idle_timeout: Duration::from_secs(60),
            max_body_bytes: 10 << 20,
            blocked_warn: Duration::from_millis(100),
            max_resources: 10_000,
            background_timeout: Duration::from_secs(30),
            cpu: None,
            stream_idle: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// These limits with `settings` laid over them.
    pub fn with(&self, settings: &LimitSettings) -> Self {
        let mut limits = Self {
            memory_bytes: settings
                .memory_mb
                .map_or(self.memory_bytes, |mb| (mb as usize) << 20),
            timeout: settings
                .timeout_ms
                .map_or(self.timeout, Duration::from_millis),
            max_instances: settings.max_instances.unwrap_or(self.max_instances).max(1),
            queue: settings.queue.unwrap_or(self.queue),
            async_concurrency: settings
                .async_concurrency
                .unwrap_or(self.async_concurrency)
                .max(1),
            p3_concurrency: settings
                .p3_concurrency
                .unwrap_or(self.p3_concurrency)
                .max(1),
            max_requests_per_instance: settings
                .max_requests_per_instance
                .unwrap_or(self.max_requests_per_instance)
                .max(1),
            idle_timeout: settings
                .idle_timeout_s
                .map_or(self.idle_timeout, Duration::from_secs),
            max_body_bytes: settings
                .max_body_kb
                .map_or(self.max_body_bytes, |kb| (kb as usize) << 10),
            // At least 10 ms: a warning at every epoch tick would flood
            // the host's log, outside the guest's log budget.
            blocked_warn: settings
                .blocked_warn_ms
                .map_or(self.blocked_warn, |ms| Duration::from_millis(ms.max(10))),
            max_resources: settings.max_resources.unwrap_or(self.max_resources),
            background_timeout: settings
                .background_timeout_ms
                .map_or(self.background_timeout, Duration::from_millis),
            cpu: settings
                .cpu_ms
                .map(|ms| Duration::from_millis(ms.max(1)))
                .or(self.cpu),
            stream_idle: settings
                .stream_idle_ms
                .map_or(self.stream_idle, |ms| Duration::from_millis(ms.max(1))),
        };
        if settings.isolation == Some(Isolation::PerRequest) {
            limits.max_requests_per_instance = 1;
            limits.async_concurrency = 1;
            limits.p3_concurrency = 1;
        }
        limits
    }
}

impl ComponentConfig {
    /// Reads the sidecar for `wasm`, or the defaults when there is none.
    pub fn for_component(wasm: &Path) -> Result<Self, String> {
        let sidecar = wasm.with_extension("toml");
        let text = match std::fs::read_to_string(&sidecar) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", sidecar.display())),
        };
        let config: Self = toml::from_str(&text)
            .map_err(|e| format!("{} is not a valid sidecar: {e}", sidecar.display()))?;
        config
            .validate()
            .map_err(|e| format!("{}: {e}", sidecar.display()))?;
        Ok(config)
    }

    /// Checks what the types cannot: the prefix's form, and limits no
    /// request could be served under.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(prefix) = &self.prefix
            && (!prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains('{'))
        {
            return Err(format!(
                "prefix {prefix:?} must start with '/', not end with '/', and hold no {{param}}"
            ));
        }
        if let Some(prefix) = &self.prefix
            && let Some(segment) = prefix.split('/').skip(1).find(|s| !plain_segment(s))
        {
            return Err(format!(
                "prefix {prefix:?}: its segment {segment:?} could never match a request; \
                 between slashes a prefix holds what a URL path carries as it is: \
                 letters, digits and - . _ ~ ! $ & ' ( ) * + , ; = : @ (not '.' or '..' alone)"
            ));
        }
        if let Some(name) = self.environment.keys().find(|name| !environment_name(name)) {
            return Err(format!(
                "[environment] {name:?} is not a variable name: it must not be empty \
                 and holds no '=' or NUL"
            ));
        }
        self.limits.validate()
    }

    /// The prefix, empty when none is set.
    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or("")
    }
}
