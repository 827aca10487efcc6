//! Tenants kept in PostgreSQL, the store of record every host of a cluster
//! shares: tenants (quotas, grants, token hashes), each component's
//! versions with their bytes, and which version is current, in a schema of
//! their own (`cello_cluster`).
//!
//! Every change is one transaction that ends with a `NOTIFY` on
//! [`CHANNEL`](super::schema::CHANNEL) naming the tenant (and component and version), so that the
//! other hosts' followers ([`super::follower`]) hear of it once it is
//! committed, and not before. Version numbers are the database's to give:
//! an upload locks its component's row, so two hosts uploading the same
//! component at once get two numbers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Mutex as AsyncMutex;
use tokio_postgres::{Client, Config, IsolationLevel, NoTls, Row, Transaction};

use super::schema::{notify, prepare_schema};
use crate::tenants::store::{KEPT_VERSIONS, Stored};
use crate::tenants::{ComponentRecord, TenantRecord, VersionRecord};

/// Time to open a connection.
const CONNECT_TIME: Duration = Duration::from_secs(3);
/// Time one statement or transaction may take before the store counts as
/// unreachable (an upload's bytes included).
const ANSWER_TIME: Duration = Duration::from_secs(20);
/// The tenants' tables in one PostgreSQL database.
pub struct PgTenants {
    config: Config,
    /// The connection changes and reads go through, opened on demand.
    client: AsyncMutex<Option<Client>>,
    /// False from a failed connection until the next one succeeds.
    reachable: AtomicBool,
}

impl std::fmt::Debug for PgTenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTenants").finish_non_exhaustive()
    }
}

impl PgTenants {
    /// The store at `url`; nothing is connected yet.
    pub fn new(url: &str) -> Result<Arc<Self>, String> {
        let mut config: Config = url
            .parse()
            .map_err(|e| format!("[cluster] postgres is not a PostgreSQL URL: {e}"))?;
        // Keepalives notice a database gone silent (a network cut, not a
        // closed connection) within about half a minute.
        config
            .connect_timeout(CONNECT_TIME)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .application_name("cello-host");
        Ok(Arc::new(Self {
            config,
            client: AsyncMutex::new(None),
            reachable: AtomicBool::new(false),
        }))
    }

    /// How to connect, for the follower's own connection.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the last attempt to reach the database succeeded.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    pub(crate) fn set_reachable(&self, reachable: bool) {
        self.reachable.store(reachable, Ordering::Relaxed);
    }

    /// Runs `work` on the connection (opened, and the schema made, if
    /// need be). A failure is a sentence; one that loses the connection
    /// marks the store unreachable.
    async fn with_client<T>(
        &self,
        work: impl AsyncFnOnce(&mut Client) -> Result<T, Failure>,
    ) -> Result<T, String> {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = None;
            let opened = tokio::time::timeout(ANSWER_TIME, self.open()).await;
            match opened.unwrap_or_else(|_| Err(unreachable("it did not answer in time"))) {
                Ok(client) => *slot = Some(client),
                Err(e) => {
                    self.set_reachable(false);
                    return Err(e);
                }
            }
        }
        let client = slot.as_mut().expect("connected above");
        let done = tokio::time::timeout(ANSWER_TIME, work(client)).await;
        let done = done.unwrap_or_else(|_| {
            Err(Failure::Lost(unreachable(
                "a statement did not answer in time",
            )))
        });
        match done {
            Ok(value) => {
                self.set_reachable(true);
                Ok(value)
            }
            Err(Failure::Refused(why)) => Err(why),
            Err(Failure::Lost(why)) => {
                *slot = None;
                self.set_reachable(false);
                Err(why)
            }
        }
    }

    /// A new connection, with the schema made.
    async fn open(&self) -> Result<Client, String> {
        let client = connect(&self.config).await?;
        prepare_schema(&client).await?;
        Ok(client)
    }

    /// Checks that changes can be written now: connects if need be.
    pub async fn writable(&self) -> Result<(), String> {
        self.with_client(async |_| Ok(())).await
    }

    /// The names of every tenant.
    pub async fn tenant_names(&self) -> Result<Vec<String>, String> {
        self.with_client(async |client| {
            let rows = client
                .query("SELECT name FROM cello_cluster.tenants ORDER BY name", &[])
                .await?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
        .await
    }

    /// One tenant with its components' records (not their bytes), as one
    /// snapshot; `None` when there is no such tenant.
    pub async fn read_tenant(&self, name: &str) -> Result<Option<Stored>, String> {
        self.with_client(async |client| {
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let row = tx
                .query_opt(
                    "SELECT name, quotas::text, grants::text, token_hashes
                     FROM cello_cluster.tenants WHERE name = $1",
                    &[&name],
                )
                .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let record = tenant_record(&row)?;
            let names = tx
                .query(
                    "SELECT name FROM cello_cluster.components WHERE tenant = $1 ORDER BY name",
                    &[&name],
                )
                .await?;
            let mut components = Vec::new();
            for row in names {
                let component: String = row.get(0);
                let stored = component_record(&tx, name, &component).await?;
                components.push((component, stored));
            }
            tx.commit().await?;
            Ok(Some((record, components)))
        })
        .await
    }

    /// Adds a tenant; false when one of that name exists already.
    pub async fn create_tenant(&self, record: &TenantRecord) -> Result<bool, String> {
        let (quotas, grants) = (json(&record.quotas), json(&record.grants));
        self.with_client(async |client| {
            let tx = client.transaction().await?;
            let added = tx
                .execute(
                    "INSERT INTO cello_cluster.tenants (name, quotas, grants, token_hashes)
                     VALUES ($1, $2::text::jsonb, $3::text::jsonb, $4)
                     ON CONFLICT (name) DO NOTHING",
                    &[&record.name, &quotas, &grants, &record.token_hashes],
                )
                .await?;
            notify(&tx, &record.name, None, None).await?;
            tx.commit().await?;
            Ok(added == 1)
        })
        .await
    }

    /// Replaces a tenant's quotas and grants. Its tokens change only
    /// through [`PgTenants::change_tokens`]: written here from this host's
    /// copy, a token another host revoked meanwhile would come back.
    pub async fn write_tenant(&self, record: &TenantRecord) -> Result<(), String> {
        let (quotas, grants) = (json(&record.quotas), json(&record.grants));
        self.with_client(async |client| {
            let tx = client.transaction().await?;
            let changed = tx
                .execute(
                    "UPDATE cello_cluster.tenants
                     SET quotas = $2::text::jsonb, grants = $3::text::jsonb
                     WHERE name = $1",
                    &[&record.name, &quotas, &grants],
                )
                .await?;
            if changed == 0 {
                return Err(gone(&record.name));
            }
            notify(&tx, &record.name, None, None).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Adds the token hash `add`, or removes those whose id (first 16 hex
    /// digits) is `revoke`, in one statement whatever other hosts did
    /// meanwhile; returns the tenant's token hashes as they now are.
    pub async fn change_tokens(
        &self,
        name: &str,
        add: Option<&str>,
        revoke: Option<&str>,
    ) -> Result<Vec<String>, String> {
        self.with_client(async |client| {
            let tx = client.transaction().await?;
            let row = tx
                .query_opt(
                    "UPDATE cello_cluster.tenants
                     SET token_hashes = ARRAY(
                         SELECT h FROM unnest(token_hashes) AS h
                         WHERE $3::text IS NULL OR left(h, 16) <> $3
                     ) || CASE WHEN $2::text IS NULL THEN '{}'::text[] ELSE ARRAY[$2] END
                     WHERE name = $1
                     RETURNING token_hashes",
                    &[&name, &add, &revoke],
                )
                .await?;
            let Some(row) = row else {
                return Err(gone(name));
            };
            notify(&tx, name, None, None).await?;
            tx.commit().await?;
            Ok(row.get(0))
        })
        .await
    }

    /// Removes a tenant with its components and versions.
    pub async fn delete_tenant(&self, name: &str) -> Result<(), String> {
        self.with_client(async |client| {
            let tx = client.transaction().await?;
            tx.execute(
                "DELETE FROM cello_cluster.tenants WHERE name = $1",
                &[&name],
            )
            .await?;
            notify(&tx, name, None, None).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Adds a version of `component` (its number is the database's: the
    /// next one after every version it ever had), makes it current, keeps
    /// the last [`KEPT_VERSIONS`], and returns the component's record.
    pub async fn add_version(
        &self,
        tenant: &str,
        component: &str,
        uploaded: &VersionRecord,
        wasm: &[u8],
    ) -> Result<ComponentRecord, String> {
        self.with_client(async |client| {
            let tx = client.transaction().await?;
            let known = tx
                .query_opt(
                    "SELECT 1 FROM cello_cluster.tenants WHERE name = $1 FOR SHARE",
                    &[&tenant],
                )
                .await?;
            if known.is_none() {
                return Err(gone(tenant));
            }
            tx.execute(
                "INSERT INTO cello_cluster.components (tenant, name, current, next_version)
                 VALUES ($1, $2, 0, 1) ON CONFLICT DO NOTHING",
                &[&tenant, &component],
            )
            .await?;
            let version: i32 = tx
                .query_one(
                    "SELECT next_version FROM cello_cluster.components
                     WHERE tenant = $1 AND name = $2 FOR UPDATE",
                    &[&tenant, &component],
                )
                .await?
                .get(0);
            tx.execute(
                "INSERT INTO cello_cluster.versions
                     (tenant, component, version, bytes, blake3, uploaded_at, settings, wasm)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &tenant,
                    &component,
                    &version,
                    &(uploaded.bytes as i64),
                    &uploaded.blake3,
                    &(uploaded.uploaded_at as i64),
                    &uploaded.settings,
                    &wasm,
                ],
            )
            .await?;
            tx.execute(
                "UPDATE cello_cluster.components SET current = $3, next_version = $3 + 1
                 WHERE tenant = $1 AND name = $2",
                &[&tenant, &component, &version],
            )
            .await?;
            tx.execute(
                "DELETE FROM cello_cluster.versions
                 WHERE tenant = $1 AND component = $2 AND version <= $3",
                &[&tenant, &component, &(version - KEPT_VERSIONS as i32)],
            )
            .await?;
            let record = component_record(&tx, tenant, component).await?;
            notify(&tx, tenant, Some(component), Some(version)).await?;
            tx.commit().await?;
            Ok(record)
        })
        .await
    }

    /// Makes `version` of `component` current again; refused when it is no
    /// longer kept.
    pub async fn set_current(
        &self,
        tenant: &str,
        component: &str,
        version: u32,
    ) -> Result<ComponentRecord, String> {
        let version = version as i32;
        self.with_client(async |client| {
            let tx = client.transaction().await?;
            let changed = tx
                .execute(
                    "UPDATE cello_cluster.components SET current = $3
                     WHERE tenant = $1 AND name = $2 AND EXISTS (
                         SELECT 1 FROM cello_cluster.versions
                         WHERE tenant = $1 AND component = $2 AND version = $3)",
                    &[&tenant, &component, &version],
                )
                .await?;
            if changed == 0 {
                return Err(Failure::Refused(format!(
                    "version {version} of {component} is no longer kept (another host's upload \
                     or removal came first); list its versions again"
                )));
            }
            let record = component_record(&tx, tenant, component).await?;
            notify(&tx, tenant, Some(component), Some(version)).await?;
            tx.commit().await?;
            Ok(record)
        })
        .await
    }

    /// The bytes of one version.
    pub async fn read_version(
        &self,
        tenant: &str,
        component: &str,
        version: u32,
    ) -> Result<Vec<u8>, String> {
        self.with_client(async |client| {
            let row = client
                .query_opt(
                    "SELECT wasm FROM cello_cluster.versions
                     WHERE tenant = $1 AND component = $2 AND version = $3",
                    &[&tenant, &component, &(version as i32)],
                )
                .await?;
            row.map(|row| row.get(0)).ok_or_else(|| {
                Failure::Refused(format!(
                    "version {version} of {tenant}/{component} is no longer kept"
                ))
            })
        })
        .await
    }

    /// Removes a component and its versions.
    pub async fn delete_component(&self, tenant: &str, component: &str) -> Result<(), String> {
        self.with_client(async |client| {
            let tx = client.transaction().await?;
            tx.execute(
                "DELETE FROM cello_cluster.components WHERE tenant = $1 AND name = $2",
                &[&tenant, &component],
            )
            .await?;
            notify(&tx, tenant, Some(component), None).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}

/// Why a statement failed: the database refused it (the connection is
/// fine), or the connection is lost.
pub(super) enum Failure {
    Refused(String),
    Lost(String),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => Self::Refused(format!(
                "the tenants' store (PostgreSQL) refused the change: {}",
                db.message()
            )),
            None => Self::Lost(unreachable(&e.to_string())),
        }
    }
}

/// The sentence for a store that cannot be reached.
pub fn unreachable(why: &str) -> String {
    format!(
        "the tenants' store (PostgreSQL) is unreachable ({why}); this host keeps serving what it \
         has, retry the change once PostgreSQL is back"
    )
}

fn gone(tenant: &str) -> Failure {
    Failure::Refused(format!(
        "tenant {tenant:?} was deleted meanwhile (through another host)"
    ))
}

/// Opens a connection, its messages driven by a task of its own.
pub async fn connect(config: &Config) -> Result<Client, String> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| unreachable(&e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("records serialize")
}

fn tenant_record(row: &Row) -> Result<TenantRecord, Failure> {
    let invalid = |what: &str, e: serde_json::Error| {
        Failure::Refused(format!("the stored {what} are not valid: {e}"))
    };
    let quotas: String = row.get(1);
    let grants: String = row.get(2);
    Ok(TenantRecord {
        name: row.get(0),
        quotas: serde_json::from_str(&quotas).map_err(|e| invalid("quotas", e))?,
        grants: serde_json::from_str(&grants).map_err(|e| invalid("grants", e))?,
        token_hashes: row.get(3),
    })
}

async fn component_record(
    tx: &Transaction<'_>,
    tenant: &str,
    component: &str,
) -> Result<ComponentRecord, Failure> {
    let current: i32 = tx
        .query_one(
            "SELECT current FROM cello_cluster.components WHERE tenant = $1 AND name = $2",
            &[&tenant, &component],
        )
        .await?
        .get(0);
    let rows = tx
        .query(
            "SELECT version, bytes, blake3, uploaded_at, settings FROM cello_cluster.versions
             WHERE tenant = $1 AND component = $2 ORDER BY version",
            &[&tenant, &component],
        )
        .await?;
    let versions = rows
        .iter()
        .map(|row| VersionRecord {
            version: row.get::<_, i32>(0) as u32,
            bytes: row.get::<_, i64>(1) as u64,
            blake3: row.get(2),
            uploaded_at: row.get::<_, i64>(3) as u64,
            settings: row.get(4),
        })
        .collect();
    Ok(ComponentRecord {
        current: current as u32,
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_a_sentence_naming_the_key() {
        let refused = PgTenants::new("mysql://nope").unwrap_err();
        assert!(
            refused.starts_with("[cluster] postgres is not"),
            "{refused}"
        );
    }
}
