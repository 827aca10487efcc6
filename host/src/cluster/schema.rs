//! The tenants' tables in PostgreSQL, made on start when missing, and the
//! notices every change announces on [`CHANNEL`] once it is committed.

use tokio_postgres::{Client, Transaction};

use super::tenant_store::Failure;

/// The channel every change is announced on.
pub const CHANNEL: &str = "cello_cluster";
/// The advisory lock hosts take to create the schema: several start at once.
const SCHEMA_LOCK: i64 = 0x6365_6c6c_6f01;

/// The tables, made when missing.
const SCHEMA: &str = "
    CREATE SCHEMA IF NOT EXISTS cello_cluster;
    CREATE TABLE IF NOT EXISTS cello_cluster.tenants (
        name text PRIMARY KEY,
        quotas jsonb NOT NULL,
        grants jsonb NOT NULL,
        token_hashes text[] NOT NULL DEFAULT '{}'
    );
    CREATE TABLE IF NOT EXISTS cello_cluster.components (
        tenant text NOT NULL REFERENCES cello_cluster.tenants (name) ON DELETE CASCADE,
        name text NOT NULL,
        current integer NOT NULL,
        next_version integer NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    CREATE TABLE IF NOT EXISTS cello_cluster.versions (
        tenant text NOT NULL,
        component text NOT NULL,
        version integer NOT NULL,
        bytes bigint NOT NULL,
        blake3 text NOT NULL,
        uploaded_at bigint NOT NULL,
        settings text NOT NULL,
        wasm bytea NOT NULL,
        PRIMARY KEY (tenant, component, version),
        FOREIGN KEY (tenant, component)
            REFERENCES cello_cluster.components (tenant, name) ON DELETE CASCADE
    );";

/// Makes the schema and its tables if missing, under an advisory lock:
/// `CREATE ... IF NOT EXISTS` races with itself across connections.
pub(super) async fn prepare_schema(client: &Client) -> Result<(), String> {
    let statements =
        format!("BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); {SCHEMA} COMMIT;");
    let made = client.batch_execute(&statements).await;
    if let Err(e) = made {
        let _ = client.batch_execute("ROLLBACK").await;
        let why = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        };
        return Err(format!(
            "cannot make the tenants' tables in PostgreSQL ({why}); the [cluster] postgres \
             URL's role needs CREATE on its database"
        ));
    }
    Ok(())
}

/// Announces a change, delivered when (and only if) `tx` commits.
pub(super) async fn notify(
    tx: &Transaction<'_>,
    tenant: &str,
    component: Option<&str>,
    version: Option<i32>,
) -> Result<(), Failure> {
    let payload = serde_json::json!({
        "tenant": tenant, "component": component, "version": version,
    });
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&CHANNEL, &payload.to_string()],
    )
    .await?;
    Ok(())
}

/// The tenant a notification names.
pub fn notified_tenant(payload: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    value["tenant"].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_names_its_tenant() {
        let payload = r#"{"tenant":"acme","component":"shop","version":3}"#;
        assert_eq!(notified_tenant(payload).as_deref(), Some("acme"));
        assert_eq!(notified_tenant("not json"), None);
    }
}
