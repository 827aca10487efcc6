//! Where tenants are kept: on this host's disk ([`Store`]), or in the
//! PostgreSQL database a cluster of hosts shares ([`PgTenants`]). The
//! tenants' API writes through this one type and does not care which.

use std::sync::Arc;

use super::store::{KEPT_VERSIONS, Store};
use super::{ComponentRecord, TenantRecord, VersionRecord, blocking};
use crate::cluster::tenant_store::PgTenants;

/// The tenants' store of record.
#[derive(Clone)]
pub enum TenantStore {
    /// `STATE_DIR/tenants`, this host's alone.
    Disk(Store),
    /// The cluster's database, which every host follows.
    Postgres(Arc<PgTenants>),
}

impl TenantStore {
    /// Whether a change can be written now: the database answers (it is
    /// connected to again if need be). The disk always can.
    pub async fn writable(&self) -> Result<(), String> {
        match self {
            Self::Disk(_) => Ok(()),
            Self::Postgres(pg) => pg.writable().await,
        }
    }

    /// Whether the last write failed because the store was unreachable:
    /// the change is worth retrying later (503), not a fault (500).
    pub fn unreachable(&self) -> bool {
        match self {
            Self::Disk(_) => false,
            Self::Postgres(pg) => !pg.reachable(),
        }
    }

    /// Adds a tenant; false when one of that name exists already.
    pub async fn create_tenant(&self, record: &TenantRecord) -> Result<bool, String> {
        match self {
            Self::Disk(store) => {
                let (store, record) = (store.clone(), record.clone());
                blocking(move || store.write_tenant(&record)).await?;
                Ok(true)
            }
            Self::Postgres(pg) => pg.create_tenant(record).await,
        }
    }

    /// Replaces a tenant's record.
    pub async fn write_tenant(&self, record: &TenantRecord) -> Result<(), String> {
        match self {
            Self::Disk(store) => {
                let (store, record) = (store.clone(), record.clone());
                blocking(move || store.write_tenant(&record)).await
            }
            Self::Postgres(pg) => pg.write_tenant(record).await,
        }
    }

    /// Adds the token hash `add`, or revokes the tokens whose id is
    /// `revoke`, to `record` (this host's copy, changed already); returns
    /// the tenant's token hashes as stored, which on PostgreSQL holds what
    /// other hosts changed meanwhile.
    pub async fn change_tokens(
        &self,
        record: &TenantRecord,
        add: Option<&str>,
        revoke: Option<&str>,
    ) -> Result<Vec<String>, String> {
        match self {
            Self::Disk(_) => {
                self.write_tenant(record).await?;
                Ok(record.token_hashes.clone())
            }
            Self::Postgres(pg) => pg.change_tokens(&record.name, add, revoke).await,
        }
    }

    /// Removes a tenant and everything it uploaded.
    pub async fn delete_tenant(&self, name: &str) -> Result<(), String> {
        match self {
            Self::Disk(store) => {
                let (store, name) = (store.clone(), name.to_string());
                blocking(move || store.delete_tenant(&name)).await
            }
            Self::Postgres(pg) => pg.delete_tenant(name).await,
        }
    }

    /// Adds `uploaded` as the current version of a component whose record
    /// this host knows as `known`, keeping the last [`KEPT_VERSIONS`];
    /// returns the record as committed. On disk the number is the one
    /// after `known`'s; in the database, the database's to give.
    pub async fn add_version(
        &self,
        tenant: &str,
        name: &str,
        known: ComponentRecord,
        uploaded: VersionRecord,
        bytes: Vec<u8>,
    ) -> Result<ComponentRecord, String> {
        match self {
            Self::Disk(store) => {
                let mut record = known;
                let version = uploaded.version;
                record.versions.push(uploaded);
                record.current = version;
                if record.versions.len() > KEPT_VERSIONS {
                    let excess = record.versions.len() - KEPT_VERSIONS;
                    record.versions.drain(..excess);
                }
                let (store, t, n) = (store.clone(), tenant.to_string(), name.to_string());
                blocking(move || {
                    store.write_version(&t, &n, version, &bytes, &record)?;
                    Ok(record)
                })
                .await
            }
            Self::Postgres(pg) => pg.add_version(tenant, name, &uploaded, &bytes).await,
        }
    }

    /// Makes `version` current again; returns the record as committed.
    pub async fn set_current(
        &self,
        tenant: &str,
        name: &str,
        known: ComponentRecord,
        version: u32,
    ) -> Result<ComponentRecord, String> {
        match self {
            Self::Disk(store) => {
                let mut record = known;
                record.current = version;
                let (store, t, n) = (store.clone(), tenant.to_string(), name.to_string());
                blocking(move || {
                    store.write_component(&t, &n, &record)?;
                    Ok(record)
                })
                .await
            }
            Self::Postgres(pg) => pg.set_current(tenant, name, version).await,
        }
    }

    /// The bytes of one version.
    pub async fn read_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> Result<Vec<u8>, String> {
        match self {
            Self::Disk(store) => {
                let (store, t, n) = (store.clone(), tenant.to_string(), name.to_string());
                blocking(move || store.read_version(&t, &n, version)).await
            }
            Self::Postgres(pg) => pg.read_version(tenant, name, version).await,
        }
    }

    /// Removes a component and its versions.
    pub async fn delete_component(&self, tenant: &str, name: &str) -> Result<(), String> {
        match self {
            Self::Disk(store) => {
                let (store, t, n) = (store.clone(), tenant.to_string(), name.to_string());
                blocking(move || store.delete_component(&t, &n)).await
            }
            Self::Postgres(pg) => pg.delete_component(tenant, name).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::Quotas;

    fn uploaded(version: u32) -> VersionRecord {
        VersionRecord {
            version,
            bytes: 4,
            blake3: String::new(),
            uploaded_at: 0,
            settings: String::new(),
        }
    }

    #[tokio::test]
    async fn on_disk_an_upload_becomes_current_and_the_last_versions_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = TenantStore::Disk(Store::at(dir.path().to_path_buf()));
        let tenant = TenantRecord {
            name: "acme".into(),
            quotas: Quotas::default(),
            grants: Default::default(),
            token_hashes: Vec::new(),
        };
        assert!(store.create_tenant(&tenant).await.unwrap());
        let mut record = ComponentRecord::default();
        for version in 1..=KEPT_VERSIONS as u32 + 2 {
            let bytes = format!("v{version}!").into_bytes();
            record = store
                .add_version("acme", "shop", record, uploaded(version), bytes)
                .await
                .unwrap();
        }
        let kept: Vec<u32> = record.versions.iter().map(|v| v.version).collect();
        assert_eq!(kept, [3, 4, 5, 6, 7]);
        assert_eq!(record.current, 7);
        assert!(store.read_version("acme", "shop", 2).await.is_err());

        let record = store.set_current("acme", "shop", record, 4).await.unwrap();
        assert_eq!(record.current, 4);
        assert_eq!(store.read_version("acme", "shop", 4).await.unwrap(), b"v4!");
    }
}
