//! Tenants: parties sharing one host, each with its own components, quotas,
//! capability grants and tokens, managed over the admin API
//! ([`crate::admin`]) and kept on disk ([`store`]) or, for a cluster of
//! hosts, in PostgreSQL ([`backend`]), whose changes every host follows
//! ([`follow`]).
//!
//! An upload is validated in full before anything changes — size, a real
//! component of a known world, imports within the tenant's grants,
//! `describe()` and `on-start`, routes free among the tenant's other
//! components — then written down, then swapped in through the
//! [`Registry`]. A failure at any step leaves the previous version serving.

pub mod backend;
mod follow;
pub mod quotas;
mod restore;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::middleware::rate_limit::Limiter;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedMutexGuard;

use crate::capabilities::Grants;
use crate::capabilities::config::ValueSource;
use crate::capabilities::kv::tenant_scope;
use crate::config::{ComponentConfig, LimitSettings, Limits};
use crate::instances::capacity::HostCapacity;
use crate::instances::state::TenantScope;
use crate::loader::{Loaded, LoadedKind, Loader, NotStarted, Source};
use crate::metrics::ComponentMetrics;
use crate::registry::{ChangeRefused, Registry, TenantApps};
pub use backend::TenantStore;
pub use quotas::{QuotaChanges, Quotas};
use store::KEPT_VERSIONS;

/// Largest settings text (the sidecar TOML sent with an upload), in bytes.
pub const MAX_SETTINGS_BYTES: usize = 64 << 10;

/// A tenant as stored: its quotas and grants, and its tokens' hashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TenantRecord {
    pub name: String,
    pub quotas: Quotas,
    pub grants: Grants,
    /// BLAKE3 hashes of the tenant's tokens, hex; the tokens themselves are
    /// shown once and never stored.
    #[serde(default)]
    pub token_hashes: Vec<String>,
}

/// A component's versions, and which one serves.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ComponentRecord {
    pub current: u32,
    pub versions: Vec<VersionRecord>,
}

/// One uploaded version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VersionRecord {
    pub version: u32,
    pub bytes: u64,
    /// BLAKE3 of the component bytes, hex.
    pub blake3: String,
    /// Seconds since the Unix epoch.
    pub uploaded_at: u64,
    /// The sidecar settings it was uploaded with (TOML).
    pub settings: String,
}

impl ComponentRecord {
    pub(crate) fn current(&self) -> Option<&VersionRecord> {
        self.versions.iter().find(|v| v.version == self.current)
    }
}

impl VersionRecord {
    /// What it counts against the size quotas: the component and its
    /// settings.
    fn size(&self) -> u64 {
        self.bytes + self.settings.len() as u64
    }
}

/// A refusal: an HTTP status, a sentence, and every problem found.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub error: String,
    pub problems: Vec<String>,
}

impl Refusal {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            problems: Vec::new(),
        }
    }

    fn with(status: StatusCode, error: impl Into<String>, problems: Vec<String>) -> Self {
        Self {
            status,
            error: error.into(),
            problems,
        }
    }

    /// A 422 saying `error`.
    fn unprocessable(error: String) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, error)
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

/// A tenant in memory.
#[derive(Clone)]
struct Tenant {
    record: TenantRecord,
    scope: Arc<TenantScope>,
    components: BTreeMap<String, ComponentRecord>,
}

/// One tenant as the API holds it: what it is now, and the lock its
/// changes take.
struct Entry {
    /// Held for the whole of a change to this tenant (an upload validating
    /// for seconds, say), so its changes apply one at a time; changes to
    /// other tenants, and every read, go on meanwhile.
    changing: Arc<tokio::sync::Mutex<()>>,
    /// The tenant as it is now: read in a moment, replaced when a change
    /// ends.
    now: std::sync::Mutex<Tenant>,
    /// Set when the tenant is deleted, for changes that waited on it.
    deleted: AtomicBool,
}

impl Entry {
    fn new(tenant: Tenant) -> Arc<Self> {
        Arc::new(Self {
            changing: Arc::default(),
            now: std::sync::Mutex::new(tenant),
            deleted: AtomicBool::new(false),
        })
    }

    /// A copy of the tenant as it is now.
    fn tenant(&self) -> Tenant {
        self.now.lock().unwrap().clone()
    }

    fn view(&self) -> TenantView {
        view(&self.now.lock().unwrap())
    }

    /// Records the outcome of a change.
    fn set(&self, change: impl FnOnce(&mut Tenant)) {
        change(&mut self.now.lock().unwrap());
    }
}

/// A change under way to one tenant, holding the tenant's lock.
struct Change {
    entry: Arc<Entry>,
    _lock: OwnedMutexGuard<()>,
}

/// Every tenant, and what changes them.
pub struct Tenants {
    loader: Arc<Loader>,
    registry: Arc<Registry>,
    store: TenantStore,
    /// Every tenant by name; locked for a moment, never across an await.
    tenants: std::sync::RwLock<BTreeMap<String, Arc<Entry>>>,
    /// Held while a tenant is created, so that two creations of one name
    /// cannot both succeed.
    creating: tokio::sync::Mutex<()>,
    /// Each tenant's token hashes, apart from `tenants` so that checking a
    /// token never waits for an upload to compile.
    tokens: std::sync::RwLock<BTreeMap<String, Vec<blake3::Hash>>>,
    /// The quotas a tenant gets when created without its own.
    pub default_quotas: Quotas,
}

/// What a successful upload or rollback reports.
#[derive(Debug, Serialize)]
pub struct Deployed {
    pub tenant: String,
    pub component: String,
    pub version: u32,
    pub routes: Vec<String>,
}

/// A tenant as the API shows it.
#[derive(Debug, Serialize)]
pub struct TenantView {
    pub name: String,
    pub quotas: Quotas,
    pub grants: Grants,
    pub tokens: usize,
    pub components: BTreeMap<String, ComponentView>,
}

#[derive(Debug, Serialize)]
pub struct ComponentView {
    pub version: u32,
    pub bytes: u64,
}

/// What an operator may set on a tenant.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TenantChanges {
    /// Laid over the current quotas (at creation, the host's defaults).
    pub quotas: Option<QuotaChanges>,
    pub grants: Option<Grants>,
}

impl Tenants {
    /// Tenants kept in `store`, loaded through `loader` and served by
    /// `registry`.
    pub fn new(
        loader: Arc<Loader>,
        registry: Arc<Registry>,
        store: TenantStore,
        default_quotas: Quotas,
    ) -> Self {
        Self {
            loader,
            registry,
            store,
            tenants: std::sync::RwLock::default(),
            creating: tokio::sync::Mutex::default(),
            tokens: std::sync::RwLock::default(),
            default_quotas,
        }
    }

    /// The tenant named `name`.
    fn entry(&self, name: &str) -> Result<Arc<Entry>, Refusal> {
        let tenants = self.tenants.read().unwrap();
        tenants.get(name).cloned().ok_or_else(|| no_tenant(name))
    }

    /// Starts a change to tenant `name`: waits for its change under way,
    /// if any (never for another tenant's), and holds its lock.
    async fn lock_tenant(&self, name: &str) -> Result<Change, Refusal> {
        let entry = self.entry(name)?;
        let lock = entry.changing.clone().lock_owned().await;
        if entry.deleted.load(Ordering::Acquire) {
            return Err(no_tenant(name));
        }
        Ok(Change { entry, _lock: lock })
    }

    /// Creates a tenant.
    pub async fn create(&self, name: &str, settings: TenantChanges) -> Result<TenantView, Refusal> {
        check_name("tenant", name)?;
        let _creating = self.creating.lock().await;
        if self.tenants.read().unwrap().contains_key(name) {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                format!("tenant {name} exists already"),
            ));
        }
        let quotas = match settings.quotas {
            Some(changes) => self
                .default_quotas
                .merged(changes)
                .map_err(Refusal::unprocessable)?,
            None => self.default_quotas.clone(),
        };
        let record = TenantRecord {
            name: name.to_string(),
            quotas,
            grants: settings.grants.unwrap_or_default(),
            token_hashes: Vec::new(),
        };
        check_grants(&record.grants)?;
        let apps = TenantApps {
            components: BTreeMap::new(),
            limiter: limiter(&record.quotas),
            restoring: false,
        };
        // Written first: in a cluster, another host may have made the
        // tenant before this one heard of it.
        let created = self.store.create_tenant(&record).await;
        if !created.map_err(|e| self.not_written("not created", e))? {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                format!("tenant {name} exists already (made through another host)"),
            ));
        }
        self.registry
            .change(
                |served| {
                    served.tenants.insert(name.to_string(), apps);
                },
                async { Ok(()) },
            )
            .await
            .map_err(|refused| self.not_made("not created", refused))?;
        let tenant = Tenant {
            scope: scope(&record),
            record,
            components: BTreeMap::new(),
        };
        let view = view(&tenant);
        self.set_store_quotas(&tenant.record);
        self.remember_tokens(&tenant.record);
        let entry = Entry::new(tenant);
        self.tenants
            .write()
            .unwrap()
            .insert(name.to_string(), entry);
        tracing::info!(tenant = name, "tenant created");
        Ok(view)
    }

    /// Every tenant.
    pub async fn list(&self) -> Vec<TenantView> {
        let tenants = self.tenants.read().unwrap();
        tenants.values().map(|entry| entry.view()).collect()
    }

    /// One tenant.
    pub async fn get(&self, name: &str) -> Result<TenantView, Refusal> {
        self.entry(name).map(|entry| entry.view())
    }

    /// Changes a tenant's quotas or grants. The request-rate quota applies
    /// at once; the others, and grants, to components uploaded or rolled
    /// back from now on (components serving keep what they were loaded with).
    pub async fn update(&self, name: &str, settings: TenantChanges) -> Result<TenantView, Refusal> {
        let change = self.lock_tenant(name).await?;
        let tenant = change.entry.tenant();
        let mut record = tenant.record.clone();
        if let Some(changes) = settings.quotas {
            record.quotas = record
                .quotas
                .merged(changes)
                .map_err(Refusal::unprocessable)?;
        }
        if let Some(grants) = settings.grants {
            check_grants(&grants)?;
            record.grants = grants;
        }
        let limiter = limiter(&record.quotas);
        self.registry
            .change(
                |served| {
                    if let Some(apps) = served.tenants.get_mut(name) {
                        apps.limiter = limiter;
                    }
                },
                self.store.write_tenant(&record),
            )
            .await
            .map_err(|refused| self.not_made("not changed", refused))?;
        // The tokens as this host knows them now: the change wrote none.
        record.token_hashes = change.entry.tenant().record.token_hashes.clone();
        self.set_record(&change, record);
        Ok(change.entry.view())
    }

    /// Puts a tenant's changed record in force here: quotas, tokens, and
    /// the instance limit its components share.
    fn set_record(&self, change: &Change, record: TenantRecord) {
        self.set_store_quotas(&record);
        self.remember_tokens(&record);
        change.entry.set(|tenant| {
            if record.quotas.max_instances != tenant.record.quotas.max_instances {
                tenant.scope = scope(&record);
            }
            tenant.record = record;
        });
    }

    /// Deletes a tenant: its components stop serving (requests in flight
    /// finish), its files and its key-value data are removed.
    pub async fn delete(&self, name: &str) -> Result<(), Refusal> {
        let change = self.lock_tenant(name).await?;
        self.store
            .delete_tenant(name)
            .await
            .map_err(|e| self.not_written("not deleted", e))?;
        self.forget_tenant(change).await;
        Ok(())
    }

    /// Takes a deleted tenant out of service here (requests in flight
    /// finish) and removes what this host keeps for it.
    async fn forget_tenant(&self, change: Change) {
        let tenant = change.entry.tenant();
        let name = tenant.record.name.as_str();
        let removed = self
            .registry
            .change(
                |served| {
                    served.tenants.remove(name);
                },
                async { Ok(()) },
            )
            .await;
        if let Err(refused) = removed {
            let refused = refused.problems().join("; ");
            tracing::error!(tenant = name, "not taken out of service: {refused}");
        }
        // A tenant created again under this name starts empty: every
        // namespace of the tenant, those of failed uploads too, and its
        // components' metric series.
        let kv = self.loader.kv().clone();
        let prefix = format!("{name}/");
        if let Err(e) = blocking(move || kv.drop_namespaces_under(&prefix)).await {
            tracing::warn!(tenant = name, "key-value data not removed: {e}");
        }
        for component in tenant.components.keys() {
            ComponentMetrics::forget(&format!("{name}/{component}"));
        }
        self.loader.kv().set_quota(&tenant_scope(name), None);
        if let Err(e) = self
            .loader
            .sql()
            .drop_namespaces_under(&tenant_scope(name))
            .await
        {
            tracing::warn!(tenant = name, "SQL databases not removed: {e}");
        }
        self.loader.sql().set_quota(&tenant_scope(name), None);
        change.entry.deleted.store(true, Ordering::Release);
        self.tenants.write().unwrap().remove(name);
        self.tokens.write().unwrap().remove(name);
        tracing::info!(tenant = name, "tenant deleted");
    }

    /// Issues a new token for a tenant; only its hash is kept.
    pub async fn issue_token(&self, name: &str) -> Result<String, Refusal> {
        let change = self.lock_tenant(name).await?;
        let tenant = change.entry.tenant();
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(Refusal::internal)?;
        // Not a hash, but 32 bytes all the same: blake3's hex writes them.
        let token = format!("ct_{name}.{}", blake3::Hash::from_bytes(secret).to_hex());
        let mut record = tenant.record.clone();
        let hash = blake3::hash(token.as_bytes()).to_hex().to_string();
        record.token_hashes.push(hash.clone());
        record.token_hashes = self
            .store
            .change_tokens(&record, Some(&hash), None)
            .await
            .map_err(|e| self.not_written("no token issued", e))?;
        self.remember_tokens(&record);
        change.entry.set(|tenant| tenant.record = record);
        Ok(token)
    }

    /// The ids of `name`'s tokens ([`token_id`]), in the order issued.
    pub async fn token_ids(&self, name: &str) -> Result<Vec<String>, Refusal> {
        let tenant = self.entry(name)?.tenant();
        Ok(tenant
            .record
            .token_hashes
            .iter()
            .map(|h| id_of_hash(h))
            .collect())
    }

    /// Revokes `name`'s token with id `id`: it authenticates nothing from
    /// now on, on this host and (through the tenant store) every other.
    pub async fn revoke_token(&self, name: &str, id: &str) -> Result<(), Refusal> {
        let change = self.lock_tenant(name).await?;
        let tenant = change.entry.tenant();
        let mut record = tenant.record.clone();
        let before = record.token_hashes.len();
        record.token_hashes.retain(|hash| id_of_hash(hash) != id);
        if record.token_hashes.len() == before {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                format!("tenant {name} has no token with id {id:?}"),
            ));
        }
        record.token_hashes = self
            .store
            .change_tokens(&record, None, Some(id))
            .await
            .map_err(|e| self.not_written("the token was not revoked", e))?;
        self.remember_tokens(&record);
        change.entry.set(|tenant| tenant.record = record);
        tracing::info!(tenant = name, token = id, "token revoked");
        Ok(())
    }

    /// The tenant a token belongs to, if it is one of its tokens.
    pub fn authenticate(&self, token: &str) -> Option<String> {
        let (name, _) = token.strip_prefix("ct_")?.split_once('.')?;
        let hash = blake3::hash(token.as_bytes());
        let tokens = self.tokens.read().unwrap();
        // `blake3::Hash` compares in constant time.
        tokens.get(name)?.contains(&hash).then(|| name.to_string())
    }

    /// Puts the tenant's key-value and SQL quotas in force, at once.
    fn set_store_quotas(&self, record: &TenantRecord) {
        let scope = tenant_scope(&record.name);
        self.loader.kv().set_quota(&scope, Some(record.quotas.kv()));
        self.loader
            .sql()
            .set_quota(&scope, Some(record.quotas.sql()));
    }

    fn remember_tokens(&self, record: &TenantRecord) {
        let hashes = record
            .token_hashes
            .iter()
            .filter_map(|h| blake3::Hash::from_hex(h).ok())
            .collect();
        let mut tokens = self.tokens.write().unwrap();
        tokens.insert(record.name.clone(), hashes);
    }

    /// Validates and deploys a new version of `name`; on any problem the
    /// previous version keeps serving.
    pub async fn upload(
        &self,
        tenant_name: &str,
        name: &str,
        bytes: Vec<u8>,
        settings: String,
    ) -> Result<Deployed, Refusal> {
        check_name("component", name)?;
        let change = self.lock_tenant(tenant_name).await?;
        let tenant = change.entry.tenant();
        let quotas = &tenant.record.quotas;
        let mut problems = Vec::new();
        let mut too_large = false;
        let settings_fit = settings.len() <= MAX_SETTINGS_BYTES;
        if !settings_fit {
            too_large = true;
            problems.push(format!(
                "the settings are {} bytes, over the limit of {MAX_SETTINGS_BYTES}; keep the \
                 sidecar to the keys the component needs",
                settings.len()
            ));
        }
        let size = (bytes.len() + settings.len()) as u64;
        let over = size_problems(&tenant, name, size);
        too_large |= !over.is_empty();
        problems.extend(over);
        if !tenant.components.contains_key(name) && tenant.components.len() >= quotas.max_components
        {
            problems.push(format!(
                "the tenant has {} components already, its limit",
                quotas.max_components
            ));
        }
        let parsed = settings_fit
            .then(|| parse_settings(&settings, quotas, self.loader.limits(), Uploaded::Now));
        let config = match parsed {
            Some(Ok(config)) => Some(config),
            Some(Err(found)) => {
                problems.extend(found);
                None
            }
            None => None,
        };
        let refuse = |problems| {
            let status = if too_large {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            Refusal::with(status, format!("{name} was not deployed"), problems)
        };
        let (Some(config), true) = (config, problems.is_empty()) else {
            return Err(refuse(problems));
        };
        // Not worth validating (compiling) what cannot be written down.
        self.writable().await?;
        let record = tenant.components.get(name).cloned().unwrap_or_default();
        let version = record.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        let uploaded = VersionRecord {
            version,
            bytes: bytes.len() as u64,
            blake3: blake3::hash(&bytes).to_hex().to_string(),
            uploaded_at: now(),
            settings,
        };
        let loaded = self
            .load(&tenant, name, bytes.clone(), config)
            .await
            .map_err(|(status, problems)| {
                Refusal::with(status, format!("{name} was not deployed"), problems)
            })?;
        // The version as committed: in a cluster, its number is the
        // database's to give.
        let mut committed = None;
        let commit = async {
            let added = self
                .store
                .add_version(tenant_name, name, record, uploaded, bytes);
            committed = Some(added.await?);
            Ok(())
        };
        let mut deployed = self
            .swap(tenant_name, name, version, loaded, commit)
            .await?;
        let record = committed.expect("committed before the swap");
        deployed.version = record.current;
        let version = record.current;
        change.entry.set(|tenant| {
            tenant.components.insert(name.to_string(), record);
        });
        tracing::info!(tenant = tenant_name, component = name, version, "deployed");
        Ok(deployed)
    }

    /// A component's versions.
    pub async fn versions(&self, tenant: &str, name: &str) -> Result<ComponentRecord, Refusal> {
        let entry = self.entry(tenant)?;
        let tenant = entry.now.lock().unwrap();
        tenant
            .components
            .get(name)
            .cloned()
            .ok_or_else(|| no_component(name))
    }

    /// Serves `version` of a component again (by default the one before the
    /// current one), after validating it as an upload is validated.
    pub async fn rollback(
        &self,
        tenant_name: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Deployed, Refusal> {
        let change = self.lock_tenant(tenant_name).await?;
        let tenant = change.entry.tenant();
        let record = tenant
            .components
            .get(name)
            .cloned()
            .ok_or_else(|| no_component(name))?;
        let target = match version {
            Some(v) => record.versions.iter().find(|r| r.version == v),
            None => record
                .versions
                .iter()
                .filter(|r| r.version < record.current)
                .max_by_key(|r| r.version),
        }
        .cloned()
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::NOT_FOUND,
                match version {
                    Some(v) => {
                        format!("{name} has no version {v} (kept: the last {KEPT_VERSIONS})")
                    }
                    None => format!("{name} has no version before {}", record.current),
                },
            )
        })?;
        // A version kept from before is held to today's quotas, as an
        // upload is: small current versions rolled back to large kept ones
        // would pass max-total-mb otherwise.
        let over = size_problems(&tenant, name, target.size());
        if !over.is_empty() {
            let error = format!("version {} is too large for the tenant now", target.version);
            return Err(Refusal::with(StatusCode::PAYLOAD_TOO_LARGE, error, over));
        }
        self.writable().await?;
        let loaded = self.load_version(&tenant, name, &target).await?;
        let mut committed = None;
        let commit = async {
            let set = self
                .store
                .set_current(tenant_name, name, record, target.version);
            committed = Some(set.await?);
            Ok(())
        };
        let deployed = self
            .swap(tenant_name, name, target.version, loaded, commit)
            .await?;
        let record = committed.expect("committed before the swap");
        change.entry.set(|tenant| {
            tenant.components.insert(name.to_string(), record);
        });
        tracing::info!(
            tenant = tenant_name,
            component = name,
            version = target.version,
            "rolled back"
        );
        Ok(deployed)
    }

    /// Takes a component out of service and deletes its versions.
    pub async fn remove(&self, tenant_name: &str, name: &str) -> Result<(), Refusal> {
        let change = self.lock_tenant(tenant_name).await?;
        if !change.entry.tenant().components.contains_key(name) {
            return Err(no_component(name));
        }
        self.store
            .delete_component(tenant_name, name)
            .await
            .map_err(|e| self.not_written("not removed", e))?;
        self.forget_component(&change, name).await;
        Ok(())
    }

    /// Takes a removed component out of service here and removes what
    /// this host keeps for it.
    async fn forget_component(&self, change: &Change, name: &str) {
        let tenant_name = change.entry.tenant().record.name;
        let tenant_name = tenant_name.as_str();
        let removed = self
            .registry
            .change(
                |served| {
                    if let Some(apps) = served.tenants.get_mut(tenant_name) {
                        apps.components.remove(name);
                    }
                },
                async { Ok(()) },
            )
            .await;
        if let Err(refused) = removed {
            let refused = refused.problems().join("; ");
            tracing::error!(
                tenant = tenant_name,
                "{name} not taken out of service: {refused}"
            );
        }
        change.entry.set(|tenant| {
            tenant.components.remove(name);
        });
        let label = format!("{tenant_name}/{name}");
        let kv = self.loader.kv().clone();
        let namespace = label.clone();
        if let Err(e) = blocking(move || kv.drop_namespace(&namespace)).await {
            tracing::warn!(component = %label, "key-value data not removed: {e}");
        }
        if let Err(e) = self.loader.sql().drop_namespace(&label).await {
            tracing::warn!(component = %label, "SQL database not removed: {e}");
        }
        ComponentMetrics::forget(&label);
        tracing::info!(tenant = tenant_name, component = name, "removed");
    }

    /// Puts `loaded` in service as `name`, once `commit` has written it
    /// down; a route conflict or a failed write refuses it.
    async fn swap(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
        loaded: Loaded,
        commit: impl Future<Output = Result<(), String>>,
    ) -> Result<Deployed, Refusal> {
        let routes = routes_of(&loaded);
        let loaded = Arc::new(loaded);
        let candidate = loaded.clone();
        let changed = self
            .registry
            .change(
                |served| {
                    let apps = served.tenants.entry(tenant.to_string()).or_default();
                    apps.components.insert(name.to_string(), candidate);
                },
                commit,
            )
            .await;
        if let Err(refused) = changed {
            loaded.retire();
            let status = match refused {
                ChangeRefused::Conflicts(_) => StatusCode::CONFLICT,
                ChangeRefused::NotWritten(_) => self.write_failure_status(),
            };
            let error = format!("{name} was not deployed");
            return Err(Refusal::with(status, error, refused.problems()));
        }
        Ok(Deployed {
            tenant: tenant.to_string(),
            component: name.to_string(),
            version,
            routes,
        })
    }

    /// Loads a stored version again (at start, or for a rollback).
    async fn load_version(
        &self,
        tenant: &Tenant,
        name: &str,
        version: &VersionRecord,
    ) -> Result<Loaded, Refusal> {
        let bytes = self
            .store
            .read_version(&tenant.record.name, name, version.version)
            .await
            .map_err(|e| self.not_written("its stored bytes could not be read", e))?;
        // What the store gave back is the version the record names: not
        // damaged, nor another upload's under a reused number.
        if blake3::hash(&bytes).to_hex().as_str() != version.blake3 {
            return Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "the stored bytes of version {} do not match its record (BLAKE3)",
                    version.version
                ),
            ));
        }
        let config = parse_settings(
            &version.settings,
            &tenant.record.quotas,
            self.loader.limits(),
            Uploaded::Before,
        )
        .map_err(|p| {
            Refusal::with(
                StatusCode::UNPROCESSABLE_ENTITY,
                "its settings are no longer valid",
                p,
            )
        })?;
        self.load(tenant, name, bytes, config)
            .await
            .map_err(|(status, problems)| {
                let error = format!("version {} does not load", version.version);
                Refusal::with(status, error, problems)
            })
    }

    /// Loads a component for `tenant` with its grants and quotas, and
    /// starts one instance (`on-start` must succeed). A failure is a
    /// status (422 for the component's fault, 503 while the tenant's
    /// traffic holds every instance) and the problems found.
    async fn load(
        &self,
        tenant: &Tenant,
        name: &str,
        bytes: Vec<u8>,
        mut config: ComponentConfig,
    ) -> Result<Loaded, (StatusCode, Vec<String>)> {
        let record = &tenant.record;
        config.grants = record.grants.clone();
        let source = Source {
            name: name.to_string(),
            bytes,
            config,
            sidecar: "the settings".into(),
            grant_hint: format!(
                "to tenant {}'s grants (an operator sets them with PATCH /v1/tenants/{})",
                record.name, record.name
            ),
            base_dir: ".".into(),
            tenant: Some(tenant.scope.clone()),
        };
        let loaded = self
            .loader
            .load(source)
            .await
            .map_err(|problems| (StatusCode::UNPROCESSABLE_ENTITY, problems))?;
        match self.loader.start(&loaded).await {
            Ok(()) => Ok(loaded),
            Err(busy @ NotStarted::Busy(_)) => Err((
                StatusCode::SERVICE_UNAVAILABLE,
                vec![format!(
                    "tenant {} is at its instance limit (max-instances = {}): {busy}; retry \
                     when its traffic eases, or ask the operator to raise max-instances",
                    record.name, record.quotas.max_instances
                )],
            )),
            Err(NotStarted::Failed(why)) => Err((StatusCode::UNPROCESSABLE_ENTITY, vec![why])),
        }
    }
}

/// Whether settings come with an upload, or were stored with a version
/// accepted before (restored, rolled back to, or followed).
#[derive(Clone, Copy, PartialEq)]
enum Uploaded {
    Now,
    Before,
}

/// The settings of an upload: a sidecar (TOML), restricted for tenants.
/// Grants come from the operator; values come from the settings, not the
/// host's environment; keys are inline, not host files; and limits stay
/// within the tenant's quotas (an unset one is the lower of the host's
/// default, `defaults`, and the quota). A stored version's
/// `trusted-proxies` is dropped rather than refused.
fn parse_settings(
    text: &str,
    quotas: &Quotas,
    defaults: &Limits,
    uploaded: Uploaded,
) -> Result<ComponentConfig, Vec<String>> {
    let mut config: ComponentConfig = toml::from_str(text)
        .map_err(|e| vec![format!("the settings are not a valid sidecar: {e}")])?;
    let mut problems = Vec::new();
    if let Err(e) = config.validate() {
        problems.push(e);
    }
    let grants = &config.grants;
    if grants.any() {
        problems.push(
            "[grants] cannot be set by a tenant; the operator grants capabilities to the tenant"
                .into(),
        );
    }
    let values = (config.variables.iter().map(|entry| ("variables", entry)))
        .chain(config.secrets.iter().map(|entry| ("secrets", entry)))
        .chain(
            config
                .environment
                .iter()
                .map(|entry| ("environment", entry)),
        );
    for (section, (key, value)) in values {
        if matches!(value, ValueSource::Env { .. }) {
            problems.push(format!(
                "[{section}] {key} reads the host's environment, which tenants cannot; \
                 give the value itself"
            ));
        }
    }
    if let Some(auth) = &config.auth {
        if auth.public_key_file.is_some() || auth.jwks_file.is_some() {
            problems.push(
                "[auth] public-key-file and jwks-file read the host's files, which tenants \
                 cannot; use a secret"
                    .into(),
            );
        }
        if matches!(auth.secret, Some(ValueSource::Env { .. })) {
            problems
                .push("[auth] secret reads the host's environment, which tenants cannot".into());
        }
    }
    if let Some(limit) = config.rate_limit.as_mut()
        && !limit.trusted_proxies.is_empty()
    {
        match uploaded {
            Uploaded::Now => problems.push(
                "[rate-limit] trusted-proxies names which proxies' X-Forwarded-For the host \
                 believes, which only the operator may"
                    .into(),
            ),
            // Accepted before tenants were refused it: served on, the
            // host's proxies in its place.
            Uploaded::Before => {
                tracing::warn!(
                    "a stored version's [rate-limit] trusted-proxies is ignored: the host's apply"
                );
                limit.trusted_proxies.clear();
            }
        }
    }
    problems.extend(cap_limits(&mut config.limits, quotas, defaults));
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// A token's id, to name it when revoking it: the first 16 hex digits of
/// its hash, which the host keeps (the token itself it never keeps).
pub fn token_id(token: &str) -> String {
    id_of_hash(&blake3::hash(token.as_bytes()).to_hex())
}

fn id_of_hash(hash: &str) -> String {
    hash.chars().take(16).collect()
}

/// What is wrong with `tenant`'s component `name` taking `size` bytes
/// (with its settings): over `max-component-mb`, or, with the tenant's
/// other components as they are, over `max-total-mb`.
fn size_problems(tenant: &Tenant, name: &str, size: u64) -> Vec<String> {
    let quotas = &tenant.record.quotas;
    let mut problems = Vec::new();
    if size > quotas.max_component_mb << 20 {
        problems.push(format!(
            "the component and its settings are {size} bytes, over the tenant's limit of \
             {} MiB per component",
            quotas.max_component_mb
        ));
    }
    let others: u64 = tenant
        .components
        .iter()
        .filter(|(n, _)| n.as_str() != name)
        .filter_map(|(_, c)| c.current().map(VersionRecord::size))
        .sum();
    if others + size > quotas.max_total_mb << 20 {
        problems.push(format!(
            "with this component the tenant's components and their settings would take {} \
             bytes, over its limit of {} MiB in all",
            others + size,
            quotas.max_total_mb
        ));
    }
    problems
}

/// Holds each `[limits]` key a tenant may set to its quota: one above it
/// is a problem naming the key, its value and the quota; an unset one
/// becomes the lower of the host's default and the quota.
fn cap_limits(limits: &mut LimitSettings, quotas: &Quotas, defaults: &Limits) -> Vec<String> {
    let mut problems = Vec::new();
    let mut cap = |key: &str, asked: Option<u64>, default: u64, quota: u64| -> Option<u64> {
        match asked {
            Some(asked) if asked > quota => {
                problems.push(format!(
                    "[limits] {key} = {asked} is over the tenant's quota of {quota}; \
                     set it to {quota} or less, or ask the operator to raise the quota"
                ));
                Some(quota)
            }
            Some(asked) => Some(asked),
            None => Some(default.min(quota)),
        }
    };
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let count = |n: usize| n as u64;
    let d = defaults;
    let l = limits;
    let q = quotas;
    l.memory_mb = cap(
        "memory-mb",
        l.memory_mb,
        count(d.memory_bytes >> 20),
        q.memory_mb,
    );
    l.timeout_ms = cap("timeout-ms", l.timeout_ms, ms(d.timeout), q.timeout_ms);
    l.cpu_ms = cap("cpu-ms", l.cpu_ms, d.cpu.map_or(u64::MAX, ms), q.cpu_ms);
    l.max_body_kb = cap(
        "max-body-kb",
        l.max_body_kb,
        count(d.max_body_bytes >> 10),
        q.max_body_kb,
    );
    l.idle_timeout_s = cap(
        "idle-timeout-s",
        l.idle_timeout_s,
        d.idle_timeout.as_secs(),
        q.idle_timeout_s,
    );
    l.background_timeout_ms = cap(
        "background-timeout-ms",
        l.background_timeout_ms,
        ms(d.background_timeout),
        q.background_timeout_ms,
    );
    l.stream_idle_ms = cap(
        "stream-idle-ms",
        l.stream_idle_ms,
        ms(d.stream_idle),
        q.stream_idle_ms,
    );
    let mut cap_count = |key: &str, asked: Option<usize>, default: usize, quota: usize| {
        cap(key, asked.map(count), count(default), count(quota)).map(|n| n as usize)
    };
    l.max_instances = cap_count(
        "max-instances",
        l.max_instances,
        d.max_instances,
        q.max_instances,
    );
    l.queue = cap_count("queue", l.queue, d.queue, q.queue);
    l.async_concurrency = cap_count(
        "async-concurrency",
        l.async_concurrency,
        d.async_concurrency,
        q.async_concurrency,
    );
    l.p3_concurrency = cap_count(
        "p3-concurrency",
        l.p3_concurrency,
        d.p3_concurrency,
        q.p3_concurrency,
    );
    l.max_resources = cap_count(
        "max-resources",
        l.max_resources,
        d.max_resources,
        q.max_resources,
    );
    problems
}

/// Refuses grants the host could never honour.
fn check_grants(grants: &Grants) -> Result<(), Refusal> {
    grants
        .check()
        .map_err(|e| Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, format!("grants: {e}")))
}

/// Tenant and component names are DNS labels: they appear in paths and
/// host names.
fn check_name(what: &str, name: &str) -> Result<(), Refusal> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{what} name {name:?} must be 1 to 63 lowercase letters, digits or '-', \
                 not starting or ending with '-'"
            ),
        ))
    }
}

fn scope(record: &TenantRecord) -> Arc<TenantScope> {
    Arc::new(TenantScope {
        name: record.name.as_str().into(),
        capacity: HostCapacity::new(record.quotas.max_instances),
    })
}

fn limiter(quotas: &Quotas) -> Option<Arc<Limiter>> {
    Limiter::tenant_quota(quotas.requests_per_second).map(Arc::new)
}

fn view(tenant: &Tenant) -> TenantView {
    TenantView {
        name: tenant.record.name.clone(),
        quotas: tenant.record.quotas.clone(),
        grants: tenant.record.grants.clone(),
        tokens: tenant.record.token_hashes.len(),
        components: tenant
            .components
            .iter()
            .filter_map(|(name, c)| {
                let current = c.current()?;
                Some((
                    name.clone(),
                    ComponentView {
                        version: current.version,
                        bytes: current.bytes,
                    },
                ))
            })
            .collect(),
    }
}

/// The routes a component answers, for the upload's report.
fn routes_of(loaded: &Loaded) -> Vec<String> {
    let prefix = loaded.config.prefix();
    match &loaded.kind {
        LoadedKind::App(_, manifest) => manifest
            .routes
            .iter()
            .map(|r| format!("{} {prefix}{}", r.methods.join(","), r.path))
            .collect(),
        LoadedKind::Proxy(_) => vec![format!("* {prefix}/...")],
    }
}

impl Tenants {
    /// A refusal for a change not written: 503 while the store is
    /// unreachable (worth a retry), 500 otherwise.
    fn not_written(&self, what: &str, problem: String) -> Refusal {
        self.failed_write(what, vec![problem])
    }

    /// The refusal for a change the registry did not make.
    fn not_made(&self, what: &str, refused: ChangeRefused) -> Refusal {
        self.failed_write(what, refused.problems())
    }

    fn failed_write(&self, what: &str, problems: Vec<String>) -> Refusal {
        let status = self.write_failure_status();
        let error = if status == StatusCode::SERVICE_UNAVAILABLE {
            format!("{what}: the tenants' store is unreachable; retry once it is back")
        } else {
            what.to_string()
        };
        Refusal::with(status, error, problems)
    }

    fn write_failure_status(&self) -> StatusCode {
        if self.store.unreachable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }

    /// Refuses a change at once (503) while the store cannot take it.
    async fn writable(&self) -> Result<(), Refusal> {
        self.store.writable().await.map_err(|problem| {
            Refusal::with(
                StatusCode::SERVICE_UNAVAILABLE,
                "the tenants' store is unreachable; nothing was changed",
                vec![problem],
            )
        })
    }
}

fn no_tenant(name: &str) -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        format!("there is no tenant named {name:?}"),
    )
}

fn no_component(name: &str) -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        format!("there is no component named {name:?}"),
    )
}

/// Runs file I/O off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("the writer task failed: {e}"))?
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_over_its_quota_is_a_problem_naming_it() {
        let mut limits = LimitSettings {
            queue: Some(300),
            max_body_kb: Some(10),
            ..LimitSettings::default()
        };
        let problems = cap_limits(&mut limits, &Quotas::default(), &Limits::default());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("[limits] queue = 300 is over the tenant's quota of 256"),
            "{problems:?}"
        );
        assert_eq!(limits.max_body_kb, Some(10));
    }

    #[test]
    fn an_unset_limit_is_the_lower_of_default_and_quota() {
        let mut limits = LimitSettings::default();
        let defaults = Limits {
            queue: 16,
            ..Limits::default()
        };
        assert!(cap_limits(&mut limits, &Quotas::default(), &defaults).is_empty());
        assert_eq!(limits.queue, Some(16));
        assert_eq!(limits.memory_mb, Some(128));
        // No CPU limit by default: the quota's.
        assert_eq!(limits.cpu_ms, Some(10_000));
    }

    #[test]
    fn merged_quotas_keep_what_is_not_named() {
        let quotas = Quotas {
            memory_mb: 32,
            ..Quotas::default()
        };
        let changes = serde_json::json!({ "kv-keys": 5 });
        let merged = quotas.merged(changes.as_object().unwrap().clone()).unwrap();
        assert_eq!((merged.memory_mb, merged.kv_keys), (32, 5));
        let unknown = serde_json::json!({ "memroy-mb": 5 });
        let refused = quotas
            .merged(unknown.as_object().unwrap().clone())
            .unwrap_err();
        assert!(refused.contains("unknown field `memroy-mb`"), "{refused}");
    }

    #[test]
    fn quotas_no_request_could_run_under_are_refused() {
        for name in ["timeout-ms", "memory-mb"] {
            let changes = serde_json::json!({ name: 0 });
            let refused = Quotas::default()
                .merged(changes.as_object().unwrap().clone())
                .unwrap_err();
            let sentence = format!("quotas: {name} = 0 leaves none of the tenant's requests");
            assert!(refused.contains(&sentence), "{refused}");
        }
    }
}
