//! `cello:component/kv`: a persistent key-value store, one namespace per
//! component.
//!
//! The store is one redb file under the state directory. redb is pure Rust
//! (nothing to build in C), keeps a copy-on-write B-tree with checksummed
//! commits, and makes a write transaction durable (fsync) before `commit`
//! returns: a set the guest saw succeed survives a crash, and a crash
//! mid-write leaves the previous commit intact. Write transactions are
//! serialised, which makes `increment` atomic without a lock of our own.
//!
//! A namespace dropped (its component removed, its tenant deleted) is closed
//! first: handles given out before it can no longer write, so a removed
//! component's `on-stop` cannot leave data for whoever takes its name next.
//!
//! Values carry their expiry (milliseconds since the Unix epoch, 0 for
//! none) in an 8-byte prefix; an expired value reads as absent (and is not
//! listed) until its key is written or deleted.
//!
//! What each namespace holds (bytes and keys) is counted in a second table,
//! updated in the same transaction as every write, so a quota is checked
//! without scanning the store. A quota covers a scope: a tenant's
//! namespaces together (`acme/shop`, `acme/blog` are scope `acme/`), or one
//! served component's namespace. A write that would pass it fails with a
//! sentence the guest sees. An expired value counts until it is removed:
//! when its key is written or deleted, or when a write finds its quota
//! full, which first removes what has expired (found through a third
//! table, ordered by expiry, so without a scan).
//!
//! The same grant answers `wasi:keyvalue` (see [`wasi`](self::wasi)).
//!
//! With `[cluster] redis`, the store is on Redis instead, shared by every
//! host of the cluster, with the same namespaces, limits and quotas (see
//! [`redis`](self::redis)). The store is one type over the two backends; a
//! call waits for redb on a blocking thread, and for Redis as a future.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::Instrument as _;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

mod redis;
mod tables;
mod wasi;

use tables::{EXPIRIES, Tables, USAGE, count_usage, entry_bytes};

use crate::bindings::cello::component::kv;
use crate::cluster::redis::Redis;
use wasmtime::component::{HasData, Linker};

use super::capability::{Capability, Has};

/// (namespace, key) → expiry (8 bytes, little-endian) followed by the value.
const TABLE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv");
/// Most expired values one write removes when its quota is full, so that
/// no write holds the store for long.
const RECLAIMED_PER_WRITE: usize = 10_000;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most keys one `list-keys` returns.
pub const MAX_LISTED: usize = 10_000;

/// The host's key-value store, shared by every component. A file is
/// opened on first use, so a host whose components hold no `kv` grant (or
/// `cello-host check`) never touches it.
#[derive(Clone)]
pub struct KvStore {
    backend: Backend,
    /// Each tenant's quota, by scope (`acme/`).
    quotas: Arc<RwLock<HashMap<String, KvQuota>>>,
    /// The quota of each served component's namespace, if any.
    component_quota: Option<KvQuota>,
    /// Whether each namespace handed out may still write, by name; a
    /// dropped namespace's flag is cleared and forgotten, so the next
    /// handle of that name starts afresh.
    writable: Arc<Mutex<HashMap<Arc<str>, Arc<AtomicBool>>>>,
}

/// Where the store keeps its values.
#[derive(Clone)]
enum Backend {
    /// One redb file on this host's disk.
    Redb {
        path: Arc<PathBuf>,
        db: Arc<OnceLock<Result<Database, String>>>,
    },
    /// The cluster's Redis, which every host shares.
    Redis(Arc<Redis>),
}

/// What one scope may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    /// Bytes of keys and values together.
    pub max_bytes: u64,
    pub max_keys: u64,
}

/// The scope a namespace's quota covers: its tenant's (`acme/` for
/// `acme/shop`), or the namespace itself for a served component.
fn scope_of(namespace: &str) -> &str {
    namespace
        .find('/')
        .map_or(namespace, |slash| &namespace[..=slash])
}

/// The scope of every namespace of `tenant`.
pub fn tenant_scope(tenant: &str) -> String {
    format!("{tenant}/")
}

/// One component's view of the store.
#[derive(Clone)]
pub struct KvNamespace {
    store: KvStore,
    namespace: Arc<str>,
    writable: Arc<AtomicBool>,
}

impl KvStore {
    /// The store kept in the file `path`.
    pub fn at(path: &Path) -> Self {
        Self::with_backend(Backend::Redb {
            path: Arc::new(path.to_path_buf()),
            db: Arc::default(),
        })
    }

    /// The store kept on the cluster's `redis`.
    pub fn on_redis(redis: Arc<Redis>) -> Self {
        Self::with_backend(Backend::Redis(redis))
    }

    fn with_backend(backend: Backend) -> Self {
        Self {
            backend,
            quotas: Arc::default(),
            component_quota: None,
            writable: Arc::default(),
        }
    }

    /// This store, with `quota` for each served component's namespace.
    pub fn with_component_quota(mut self, quota: Option<KvQuota>) -> Self {
        self.component_quota = quota;
        self
    }

    /// Sets (or, with `None`, lifts) the quota of a tenant's `scope`; it
    /// applies to the next write.
    pub fn set_quota(&self, scope: &str, quota: Option<KvQuota>) {
        let mut quotas = self.quotas.write().unwrap();
        match quota {
            Some(quota) => quotas.insert(scope.to_string(), quota),
            None => quotas.remove(scope),
        };
    }

    fn quota_of(&self, scope: &str) -> Option<KvQuota> {
        if scope.ends_with('/') {
            self.quotas.read().unwrap().get(scope).copied()
        } else {
            self.component_quota
        }
    }

    /// Opens (or creates) the file now; the error is a sentence. A store
    /// on Redis has no file: Redis is reached call by call.
    pub fn open(&self) -> Result<(), String> {
        match &self.backend {
            Backend::Redb { .. } => self.redb().map(drop),
            Backend::Redis(_) => Ok(()),
        }
    }

    /// The redb file, opened on first use.
    fn redb(&self) -> Result<&Database, String> {
        match &self.backend {
            Backend::Redb { path, db } => {
                db.get_or_init(|| open(path)).as_ref().map_err(Clone::clone)
            }
            Backend::Redis(_) => Err("the key-value store is on Redis, not in a file".into()),
        }
    }

    /// Closes the namespace `name` (a removed component's) and deletes
    /// its keys; returns how many there were.
    pub fn drop_namespace(&self, name: &str) -> Result<usize, String> {
        self.drop_where(name, |namespace| namespace == name)
    }

    /// Closes every namespace whose name starts with `prefix` (a deleted
    /// tenant's, `tenant/`) and deletes their keys.
    pub fn drop_namespaces_under(&self, prefix: &str) -> Result<usize, String> {
        self.drop_where(prefix, |namespace| namespace.starts_with(prefix))
    }

    /// Closes and empties the namespaces `dropped` picks, all sorting at
    /// or after `from` and next to one another.
    fn drop_where(&self, from: &str, dropped: impl Fn(&str) -> bool) -> Result<usize, String> {
        // Closed before the write begins: a guest write that commits first
        // is deleted here, and one that begins after sees the flag.
        self.writable.lock().unwrap().retain(|name, writable| {
            let keep = !dropped(name);
            if !keep {
                writable.store(false, Ordering::SeqCst);
            }
            keep
        });
        if let Backend::Redis(redis) = &self.backend {
            // Called on a blocking thread (a tenant's removal): wait there.
            return tokio::runtime::Handle::current().block_on(async {
                let mut removed = 0;
                for namespace in redis::namespaces(redis).await? {
                    if dropped(&namespace) {
                        removed += self.on_redis_as(redis, &namespace).clear().await?;
                    }
                }
                Ok(removed)
            });
        }
        let db = self.redb()?;
        let write = db.begin_write().map_err(internal)?;
        let removed = {
            let mut tables = Tables::open(&write).map_err(internal)?;
            let keys: Vec<(String, String)> = tables
                .data
                .range((from, "")..)
                .map_err(internal)?
                .map_while(|entry| {
                    let (key, _) = entry.ok()?;
                    let (namespace, key) = key.value();
                    dropped(namespace).then(|| (namespace.to_string(), key.to_string()))
                })
                .collect();
            for (namespace, key) in &keys {
                tables.remove(namespace, key).map_err(internal)?;
            }
            keys.len()
        };
        write.commit().map_err(internal)?;
        Ok(removed)
    }

    /// `namespace` of the store on `redis`, with its scope's quota.
    fn on_redis_as<'a>(&self, redis: &'a Redis, namespace: &'a str) -> redis::RedisNamespace<'a> {
        redis::RedisNamespace {
            redis,
            namespace,
            quota: self.quota_of(scope_of(namespace)),
        }
    }

    /// The namespace `name`, which no other name can see into.
    pub fn namespace(&self, name: &str) -> KvNamespace {
        let mut writable = self.writable.lock().unwrap();
        let flag = writable
            .entry(name.into())
            .or_insert_with(|| Arc::new(AtomicBool::new(true)));
        KvNamespace {
            store: self.clone(),
            namespace: name.into(),
            writable: flag.clone(),
        }
    }
}

fn open(path: &Path) -> Result<Database, String> {
    let fail = |e: &dyn std::fmt::Display| {
        format!("cannot open the key-value store {}: {e}", path.display())
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    }
    let db = Database::create(path).map_err(|e| fail(&e))?;
    let write = db.begin_write().map_err(|e| fail(&e))?;
    let tables: Vec<String> = write
        .list_tables()
        .map_err(|e| fail(&e))?
        .map(|table| table.name().to_string())
        .collect();
    let has = |name: &str| tables.iter().any(|table| table == name);
    write.open_table(TABLE).map_err(|e| fail(&e))?;
    if !has(USAGE.name()) || !has(EXPIRIES.name()) {
        count_usage(&write).map_err(|e| fail(&e))?;
    }
    write.commit().map_err(|e| fail(&e))?;
    Ok(db)
}

impl std::fmt::Debug for KvNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KvNamespace({})", self.namespace)
    }
}

/// A failure the guest sees as the error of its call.
type KvResult<T> = Result<T, String>;

impl KvNamespace {
    pub fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>> {
        check_key(key)?;
        let read = self.store.redb()?.begin_read().map_err(internal)?;
        let table = read.open_table(TABLE).map_err(internal)?;
        let value = table.get((&*self.namespace, key)).map_err(internal)?;
        Ok(value.and_then(|v| live(v.value()).map(<[u8]>::to_vec)))
    }

    pub fn set(&self, key: &str, value: &[u8], ttl_seconds: Option<u32>) -> KvResult<()> {
        let expires = match check_set(key, value, ttl_seconds)? {
            0 => 0,
            ttl_ms => now_ms() + ttl_ms,
        };
        let mut stored = Vec::with_capacity(8 + value.len());
        stored.extend_from_slice(&expires.to_le_bytes());
        stored.extend_from_slice(value);
        self.write(|tables| self.put(tables, key, &stored))
    }

    pub fn delete(&self, key: &str) -> KvResult<bool> {
        check_key(key)?;
        self.write(|tables| Ok(tables.remove(&self.namespace, key)? == Some(true)))
    }

    pub fn list_keys(&self, prefix: &str) -> KvResult<Vec<String>> {
        let read = self.store.redb()?.begin_read().map_err(internal)?;
        let table = read.open_table(TABLE).map_err(internal)?;
        let mut keys = Vec::new();
        for entry in table
            .range((&*self.namespace, prefix)..)
            .map_err(internal)?
        {
            let (key, value) = entry.map_err(internal)?;
            let (namespace, key) = key.value();
            if namespace != &*self.namespace || !key.starts_with(prefix) {
                break;
            }
            if live(value.value()).is_some() {
                if keys.len() == MAX_LISTED {
                    return Err(format!(
                        "more than {MAX_LISTED} keys start with {prefix:?}; use a longer prefix"
                    ));
                }
                keys.push(key.to_string());
            }
        }
        Ok(keys)
    }

    pub fn increment(&self, key: &str, delta: i64) -> KvResult<i64> {
        check_key(key)?;
        self.write(|tables| {
            let (current, expires) = match tables.data.get((&*self.namespace, key))? {
                Some(stored) => match live(stored.value()) {
                    Some(value) => (parse_counter(key, value)?, expiry(stored.value())),
                    None => (0, 0),
                },
                None => (0, 0),
            };
            let next = current.checked_add(delta).ok_or_else(|| {
                WriteError::Guest(format!("{key:?} would overflow a 64-bit integer"))
            })?;
            let mut stored = expires.to_le_bytes().to_vec();
            stored.extend_from_slice(next.to_string().as_bytes());
            self.put(tables, key, &stored)?;
            Ok(next)
        })
    }

    /// Stores `stored` under `key` if the scope's quota has room for it,
    /// and counts it. A write that does not grow the scope always succeeds.
    fn put(&self, tables: &mut Tables<'_>, key: &str, stored: &[u8]) -> Result<(), WriteError> {
        let scope = scope_of(&self.namespace);
        if let Some(quota) = self.store.quota_of(scope)
            && let Some(refusal) = self.refusal(tables, quota, key, stored)?
        {
            // Expired values count until removed: remove them, and look again.
            if tables.reclaim(now_ms(), RECLAIMED_PER_WRITE)? == 0 {
                return Err(WriteError::Guest(refusal));
            }
            if let Some(refusal) = self.refusal(tables, quota, key, stored)? {
                return Err(WriteError::Guest(refusal));
            }
        }
        tables.insert(&self.namespace, key, stored)?;
        Ok(())
    }

    /// Why storing `stored` under `key` would pass `quota`, if it would.
    fn refusal(
        &self,
        tables: &Tables<'_>,
        quota: KvQuota,
        key: &str,
        stored: &[u8],
    ) -> Result<Option<String>, redb::StorageError> {
        let old = tables
            .data
            .get((&*self.namespace, key))?
            .map(|old| entry_bytes(key, old.value()));
        let scope = scope_of(&self.namespace);
        let used = tables.used(scope)?;
        let grown = entry_bytes(key, stored).saturating_sub(old.unwrap_or(0));
        Ok(over_quota(scope, quota, used, grown, old.is_none()))
    }

    /// Refuses a write through a handle of a namespace that was dropped.
    fn check_writable(&self) -> KvResult<()> {
        if !self.writable.load(Ordering::SeqCst) {
            return Err("this component has been removed; its key-value data is gone".into());
        }
        Ok(())
    }

    /// This namespace on the cluster's Redis, when the store is there.
    fn on_redis(&self) -> Option<redis::RedisNamespace<'_>> {
        match &self.store.backend {
            Backend::Redis(redis) => Some(self.store.on_redis_as(redis, &self.namespace)),
            Backend::Redb { .. } => None,
        }
    }

    /// Runs `change` in one durable write transaction.
    fn write<T>(
        &self,
        change: impl FnOnce(&mut Tables<'_>) -> Result<T, WriteError>,
    ) -> KvResult<T> {
        let write = self.store.redb()?.begin_write().map_err(internal)?;
        self.check_writable()?;
        let result = {
            let mut tables = Tables::open(&write).map_err(internal)?;
            change(&mut tables)
        };
        match result {
            Ok(value) => {
                write.commit().map_err(internal)?;
                Ok(value)
            }
            Err(WriteError::Guest(message)) => Err(message),
            Err(WriteError::Storage(e)) => Err(internal(e)),
        }
    }
}

/// Why growing `scope`, which holds `used` (bytes, keys), by `grown`
/// bytes (and a key, when `is_new`) would pass `quota`, if it would.
fn over_quota(
    scope: &str,
    quota: KvQuota,
    (bytes, keys): (u64, u64),
    grown: u64,
    is_new: bool,
) -> Option<String> {
    let (raise, bytes_key, keys_key) = if scope.ends_with('/') {
        ("ask the operator to raise the tenant's", "kv-mb", "kv-keys")
    } else {
        ("raise the host config's [kv]", "max-mb", "max-keys")
    };
    if grown > 0 && bytes.saturating_add(grown) > quota.max_bytes {
        return Some(format!(
            "the key-value quota of {} bytes is full ({bytes} stored, this write needs \
             {grown} more); delete keys, or {raise} {bytes_key} quota",
            quota.max_bytes,
        ));
    }
    if is_new && keys >= quota.max_keys {
        return Some(format!(
            "the key-value quota of {} keys is full; delete keys, or {raise} {keys_key} quota",
            quota.max_keys,
        ));
    }
    None
}

/// What the guest sees when `scope` has no room: [`over_quota`]'s reason.
fn quota_refusal(
    scope: &str,
    quota: KvQuota,
    used: (u64, u64),
    grown: u64,
    is_new: bool,
) -> String {
    over_quota(scope, quota, used, grown, is_new)
        .unwrap_or_else(|| "the key-value quota is full; delete keys".into())
}

/// Why a write failed: the guest's mistake, or the store's.
enum WriteError {
    Guest(String),
    Storage(redb::StorageError),
}

impl From<redb::StorageError> for WriteError {
    fn from(e: redb::StorageError) -> Self {
        Self::Storage(e)
    }
}

fn check_key(key: &str) -> KvResult<()> {
    if key.is_empty() {
        return Err("the key is empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "key of {} bytes is over the limit of {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    Ok(())
}

/// Checks a set of `value` under `key`; its TTL in milliseconds (0: none).
fn check_set(key: &str, value: &[u8], ttl_seconds: Option<u32>) -> KvResult<u64> {
    check_key(key)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "value of {} bytes is over the limit of {MAX_VALUE_BYTES}",
            value.len()
        ));
    }
    match ttl_seconds {
        Some(0) => Err("ttl-seconds must be positive".into()),
        Some(ttl) => Ok(u64::from(ttl) * 1000),
        None => Ok(0),
    }
}

fn parse_counter(key: &str, value: &[u8]) -> Result<i64, WriteError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| WriteError::Guest(format!("{key:?} does not hold an integer")))
}

fn expiry(stored: &[u8]) -> u64 {
    stored
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()))
}

/// The value, unless it has expired.
fn live(stored: &[u8]) -> Option<&[u8]> {
    let expires = expiry(stored);
    (expires == 0 || expires > now_ms()).then(|| stored.get(8..).unwrap_or_default())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A storage failure: logged in full, reported to the guest in a sentence.
fn internal(error: impl std::fmt::Display) -> String {
    tracing::error!("key-value store error: {error}");
    format!("the key-value store failed: {error}")
}

/// The key-value capability: `kv = true` under `[grants]` gives the
/// component its own namespace of the host's store.
pub struct Kv;

impl Capability for Kv {
    const INTERFACES: &'static [&'static str] = &[
        "cello:component/kv",
        "wasi:keyvalue/store",
        "wasi:keyvalue/atomics",
        "wasi:keyvalue/batch",
    ];
    const HOW_TO_GRANT: &'static str = "kv = true";
    type Grant = bool;
    type Granted = KvNamespace;

    fn is_granted(grant: &bool) -> bool {
        *grant
    }

    fn add_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        kv::add_to_linker::<T, KvAccess>(linker, |state| KvView(state.granted(), state.call_span()))
    }

    /// Every function of its interface is a plain one.
    fn add_sync_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        Self::add_to_linker(linker)
    }

    fn add_standard_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wasi::add_to_linker(linker)
    }
}

/// How the host functions reach a store's namespace.
struct KvAccess;

impl HasData for KvAccess {
    type Data<'a> = KvView<'a>;
}

/// A store's namespace, as its host functions see it (linked only when
/// granted, so present), and the trace span of the call using it.
pub struct KvView<'a>(Option<&'a KvNamespace>, tracing::Span);

impl KvView<'_> {
    fn kv(&self) -> wasmtime::Result<KvNamespace> {
        self.0
            .cloned()
            .ok_or_else(|| wasmtime::Error::msg("kv called without the kv grant"))
    }
}

/// Runs a store operation off the async runtime's threads: a commit waits
/// for the disk.
async fn blocking<T: Send + 'static>(
    op: impl FnOnce() -> KvResult<T> + Send + 'static,
) -> wasmtime::Result<KvResult<T>> {
    Ok(tokio::task::spawn_blocking(op).await?)
}

/// What a host call waits for: the guest's result, or a host failure (a
/// blocking task lost) that traps.
type KvCall<T> = wasmtime::Result<KvResult<T>>;

// Each call goes to Redis as a future when the store is there, and to
// redb on a blocking thread otherwise, in the trace span of a host call
// under `parent`. Both `cello:component/kv` and `wasi:keyvalue` call these.
impl KvNamespace {
    /// The trace span of one call (`kv get`, ...) on this namespace.
    fn span(&self, parent: &tracing::Span, name: &str) -> tracing::Span {
        let system = if self.on_redis().is_some() {
            "redis"
        } else {
            "redb"
        };
        parent.in_scope(|| crate::telemetry::host_call(name, system))
    }

    async fn call_get(self, parent: &tracing::Span, key: String) -> KvCall<Option<Vec<u8>>> {
        let span = self.span(parent, "kv get");
        let call = async move {
            if let Some(redis) = self.on_redis() {
                return Ok(match check_key(&key) {
                    Ok(()) => redis.get(&key).await,
                    Err(e) => Err(e),
                });
            }
            blocking(move || self.get(&key)).await
        };
        call.instrument(span).await
    }

    async fn call_set(
        self,
        parent: &tracing::Span,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u32>,
    ) -> KvCall<()> {
        let span = self.span(parent, "kv set");
        let call = async move {
            if let Some(redis) = self.on_redis() {
                let checked = check_set(&key, &value, ttl_seconds);
                return Ok(
                    match checked.and_then(|ttl| Ok((ttl, self.check_writable()?))) {
                        Ok((ttl_ms, ())) => redis.set(&key, &value, ttl_ms).await,
                        Err(e) => Err(e),
                    },
                );
            }
            blocking(move || self.set(&key, &value, ttl_seconds)).await
        };
        call.instrument(span).await
    }

    async fn call_delete(self, parent: &tracing::Span, key: String) -> KvCall<bool> {
        let span = self.span(parent, "kv delete");
        let call = async move {
            if let Some(redis) = self.on_redis() {
                return Ok(match check_key(&key).and_then(|()| self.check_writable()) {
                    Ok(()) => redis.delete(&key).await,
                    Err(e) => Err(e),
                });
            }
            blocking(move || self.delete(&key)).await
        };
        call.instrument(span).await
    }

    async fn call_list_keys(self, parent: &tracing::Span, prefix: String) -> KvCall<Vec<String>> {
        let span = self.span(parent, "kv list");
        let call = async move {
            if let Some(redis) = self.on_redis() {
                return Ok(redis.list_keys(&prefix).await);
            }
            blocking(move || self.list_keys(&prefix)).await
        };
        call.instrument(span).await
    }

    async fn call_increment(self, parent: &tracing::Span, key: String, delta: i64) -> KvCall<i64> {
        let span = self.span(parent, "kv increment");
        let call = async move {
            if let Some(redis) = self.on_redis() {
                return Ok(match check_key(&key).and_then(|()| self.check_writable()) {
                    Ok(()) => redis.increment(&key, delta).await,
                    Err(e) => Err(e),
                });
            }
            blocking(move || self.increment(&key, delta)).await
        };
        call.instrument(span).await
    }
}

impl kv::Host for KvView<'_> {
    async fn get(&mut self, key: String) -> KvCall<Option<Vec<u8>>> {
        self.kv()?.call_get(&self.1, key).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_seconds: Option<u32>) -> KvCall<()> {
        self.kv()?.call_set(&self.1, key, value, ttl_seconds).await
    }

    async fn delete(&mut self, key: String) -> KvCall<bool> {
        self.kv()?.call_delete(&self.1, key).await
    }

    async fn list_keys(&mut self, prefix: String) -> KvCall<Vec<String>> {
        self.kv()?.call_list_keys(&self.1, prefix).await
    }

    async fn increment(&mut self, key: String, delta: i64) -> KvCall<i64> {
        self.kv()?.call_increment(&self.1, key, delta).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_namespace_refuses_writes_from_handles_given_out_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = KvStore::at(&dir.path().join("kv.redb"));
        let old = store.namespace("acme/shop");
        old.set("k", b"v", None).unwrap();
        assert_eq!(store.drop_namespace("acme/shop"), Ok(1));
        assert!(old.set("k", b"late", None).is_err());
        assert!(old.increment("n", 1).is_err());
        let next = store.namespace("acme/shop");
        assert_eq!(next.get("k"), Ok(None));
        next.set("k", b"new", None).unwrap();
        assert_eq!(next.get("k"), Ok(Some(b"new".to_vec())));
    }

    #[test]
    fn dropping_a_tenant_empties_its_namespaces_and_no_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = KvStore::at(&dir.path().join("kv.redb"));
        for name in ["acme/a", "acme/b", "acme-two/a", "acm/a", "acme"] {
            store.namespace(name).set("k", b"v", None).unwrap();
        }
        assert_eq!(store.drop_namespaces_under("acme/"), Ok(2));
        for (name, kept) in [
            ("acme/a", false),
            ("acme/b", false),
            ("acme-two/a", true),
            ("acm/a", true),
            ("acme", true),
        ] {
            let value = store.namespace(name).get("k").unwrap();
            assert_eq!(value.is_some(), kept, "{name}");
        }
    }

    fn store(dir: &tempfile::TempDir) -> KvStore {
        KvStore::at(&dir.path().join("kv.redb"))
    }

    #[test]
    fn a_tenants_namespaces_share_one_scope() {
        assert_eq!(scope_of("acme/shop"), "acme/");
        assert_eq!(scope_of("acme/blog"), "acme/");
        assert_eq!(scope_of("shop"), "shop");
    }

    #[test]
    fn a_write_past_the_byte_quota_fails_and_deleting_frees_room() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        store.set_quota(
            "acme/",
            Some(KvQuota {
                max_bytes: 100,
                max_keys: 10,
            }),
        );
        let (shop, blog) = (store.namespace("acme/shop"), store.namespace("acme/blog"));
        shop.set("a", &[0; 50], None).unwrap();
        let refused = blog.set("b", &[0; 50], None).unwrap_err();
        assert!(refused.contains("quota of 100 bytes is full"), "{refused}");
        // Another tenant, and a served component, are not counted.
        store
            .namespace("globex/shop")
            .set("b", &[0; 90], None)
            .unwrap();
        store.namespace("acme").set("b", &[0; 90], None).unwrap();
        // A rewrite that does not grow always succeeds.
        shop.set("a", &[1; 50], None).unwrap();
        assert!(shop.delete("a").unwrap());
        blog.set("b", &[0; 50], None).unwrap();
    }

    #[test]
    fn a_new_key_past_the_key_quota_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).with_component_quota(Some(KvQuota {
            max_bytes: u64::MAX,
            max_keys: 1,
        }));
        let shop = store.namespace("shop");
        shop.increment("n", 1).unwrap();
        shop.increment("n", 1).unwrap();
        let refused = shop.set("m", b"v", None).unwrap_err();
        assert!(refused.contains("quota of 1 keys is full"), "{refused}");
        assert!(shop.delete("n").unwrap());
        shop.set("m", b"v", None).unwrap();
    }

    /// Stores a value under `key` that expired long ago.
    fn set_expired(namespace: &KvNamespace, key: &str) {
        let mut stored = 1u64.to_le_bytes().to_vec();
        stored.extend_from_slice(b"old");
        namespace
            .write(|tables| Ok(tables.insert(&namespace.namespace, key, &stored)?))
            .unwrap();
    }

    #[test]
    fn a_full_quota_first_removes_expired_values_of_any_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        store.set_quota(
            "acme/",
            Some(KvQuota {
                max_bytes: 1000,
                max_keys: 2,
            }),
        );
        let shop = store.namespace("acme/shop");
        set_expired(&shop, "session-1");
        set_expired(&shop, "session-2");
        set_expired(&store.namespace("globex/shop"), "session");
        shop.set("a", b"v", None).unwrap();
        shop.set("b", b"v", None).unwrap();
        assert_eq!(shop.get("a").unwrap().as_deref(), Some(&b"v"[..]));
        let refused = shop.set("c", b"v", None).unwrap_err();
        assert!(refused.contains("quota of 2 keys is full"), "{refused}");
        let remaining = shop.write(|tables| Ok(tables.reclaim(u64::MAX, 100)?));
        assert_eq!(remaining, Ok(0), "every expired value was removed");
    }

    #[test]
    fn rewriting_a_value_without_a_ttl_keeps_it_from_being_reclaimed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let shop = store.namespace("shop");
        shop.set("a", b"v", Some(60)).unwrap();
        shop.set("a", b"kept", None).unwrap();
        shop.set("b", b"v", Some(60)).unwrap();
        assert!(shop.delete("b").unwrap());
        let removed = shop.write(|tables| Ok(tables.reclaim(u64::MAX, 100)?));
        assert_eq!(removed, Ok(0));
        assert_eq!(shop.get("a").unwrap().as_deref(), Some(&b"kept"[..]));
    }

    #[test]
    fn a_store_written_before_usage_was_counted_is_counted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let old = store(&dir);
        old.namespace("acme/shop").set("a", &[0; 50], None).unwrap();
        let write = old.redb().unwrap().begin_write().unwrap();
        write.delete_table(USAGE).unwrap();
        write.commit().unwrap();
        drop(old);

        let reopened = store(&dir);
        reopened.set_quota(
            "acme/",
            Some(KvQuota {
                max_bytes: 100,
                max_keys: 10,
            }),
        );
        let refused = reopened.namespace("acme/shop").set("b", &[0; 50], None);
        assert!(refused.is_err(), "{refused:?}");
    }
}
