//! The PostgreSQL server all components share: the host's own (admin)
//! connection, which makes each component's schema and role, and the
//! counts that keep the connections fair.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, Semaphore};
use tokio_postgres::{Client, Config, NoTls};

use super::super::SqlError;
use super::wire::{quoted, unreachable_database};

/// Time to open a connection.
const CONNECT_TIME: Duration = Duration::from_secs(5);
/// What the host's comment on a schema starts with; the namespace follows.
const MARK: &str = "cello namespace ";
/// The advisory lock every host takes to create or drop schemas and roles.
const PROVISIONING_LOCK: i64 = 0x63656c6c6f;

/// One PostgreSQL database, reached with the host's URL.
pub struct Server {
    admin_config: Config,
    database: String,
    /// The key each role's password is derived from: the admin URL, which
    /// the host keeps secret anyway, so every host with it agrees.
    password_key: [u8; 32],
    admin: AsyncMutex<Option<Client>>,
    /// Connections in use, across components.
    pub(super) in_use: Arc<Semaphore>,
    /// Connections one component may use at once.
    pub(super) per_component: usize,
    /// Connections kept open while idle, across components.
    pub(super) idle: Arc<Semaphore>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// The server at `url`; nothing is connected yet. `connections` may be
    /// in use at once, `per_component` of them by one component.
    pub fn new(url: &str, connections: usize, per_component: usize) -> Result<Arc<Self>, String> {
        let mut admin_config: Config = url
            .parse()
            .map_err(|e| format!("[sql] postgres is not a PostgreSQL URL: {e}"))?;
        admin_config
            .connect_timeout(CONNECT_TIME)
            .application_name("cello-host");
        let database = admin_config
            .get_dbname()
            .or(admin_config.get_user())
            .ok_or("[sql] postgres names no database: add /DATABASE to the URL")?
            .to_string();
        Ok(Arc::new(Self {
            admin_config,
            database,
            password_key: blake3::derive_key("cello sql role password", url.as_bytes()),
            admin: AsyncMutex::new(None),
            in_use: Arc::new(Semaphore::new(connections.max(1))),
            per_component: per_component.clamp(1, connections.max(1)),
            idle: Arc::new(Semaphore::new(connections.max(1))),
        }))
    }

    fn password(&self, role: &str) -> String {
        blake3::keyed_hash(&self.password_key, role.as_bytes())
            .to_hex()
            .to_string()
    }

    /// Runs `statements` on the admin connection, opened (again) if need
    /// be, in one transaction under an advisory lock: PostgreSQL refuses
    /// concurrent grants on one object ("tuple concurrently updated"), and
    /// every host of a cluster provisions in the same database.
    async fn as_admin(&self, statements: &str) -> Result<(), SqlError> {
        let mut admin = self.admin.lock().await;
        if admin.as_ref().is_none_or(Client::is_closed) {
            *admin = Some(connect(&self.admin_config).await?);
        }
        let client = admin.as_ref().expect("connected above");
        let locked = format!(
            "BEGIN; SELECT pg_advisory_xact_lock({PROVISIONING_LOCK}); {statements}; COMMIT;"
        );
        let ran = client.batch_execute(&locked).await;
        if ran.is_err() {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        if ran.as_ref().is_err_and(|_| client.is_closed()) {
            *admin = None;
        }
        ran.map_err(|e| provisioning_failed(&e))
    }

    /// Makes `schema` and its login role (both named `schema`), if they
    /// are not there, with the role reaching nothing else; idempotent.
    pub async fn provision(&self, namespace: &str, schema: &str) -> Result<(), SqlError> {
        let (role, database) = (quoted(schema), quoted(&self.database));
        let password = self.password(schema);
        let comment = format!("{MARK}{}", namespace.replace('\'', "''"));
        // The DO block makes the role only when missing; a host racing
        // another creates it once (duplicate_object is then ignored).
        let statements = format!(
            "DO $cello$ BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{schema}') THEN
                     CREATE ROLE {role};
                 END IF;
             EXCEPTION WHEN duplicate_object THEN NULL;
             END $cello$;
             ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT
                 NOREPLICATION NOBYPASSRLS PASSWORD '{password}';
             ALTER ROLE {role} SET search_path = {role};
             ALTER ROLE {role} SET TimeZone = 'UTC';
             CREATE SCHEMA IF NOT EXISTS {role};
             COMMENT ON SCHEMA {role} IS '{comment}';
             GRANT USAGE, CREATE ON SCHEMA {role} TO {role};
             REVOKE ALL ON DATABASE {database} FROM PUBLIC;
             REVOKE ALL ON SCHEMA public FROM PUBLIC;
             GRANT CONNECT ON DATABASE {database} TO {role};"
        );
        self.as_admin(&statements).await
    }

    /// Drops the schema and role of every namespace `dropped` names.
    pub async fn drop_namespaces(&self, dropped: impl Fn(&str) -> bool) -> Result<(), String> {
        let schemas = {
            let mut admin = self.admin.lock().await;
            if admin.as_ref().is_none_or(Client::is_closed) {
                *admin = Some(
                    connect(&self.admin_config)
                        .await
                        .map_err(|e| format!("{e:?}"))?,
                );
            }
            let client = admin.as_ref().expect("connected above");
            let rows = client
                .query(
                    "SELECT nspname::text, obj_description(oid, 'pg_namespace') FROM pg_namespace \
                     WHERE obj_description(oid, 'pg_namespace') LIKE 'cello namespace %'",
                    &[],
                )
                .await
                .map_err(|e| format!("cannot list the SQL schemas: {e}"))?;
            rows.iter()
                .filter(|row| {
                    let comment: String = row.get(1);
                    comment.strip_prefix(MARK).is_some_and(&dropped)
                })
                .map(|row| row.get::<_, String>(0))
                .collect::<Vec<_>>()
        };
        let database = quoted(&self.database);
        for schema in schemas {
            let role = quoted(&schema);
            let statements = format!(
                "DROP SCHEMA IF EXISTS {role} CASCADE;
                 REVOKE ALL ON DATABASE {database} FROM {role};
                 DROP ROLE IF EXISTS {role};"
            );
            self.as_admin(&statements)
                .await
                .map_err(|e| format!("cannot drop SQL schema {schema}: {e:?}"))?;
        }
        Ok(())
    }

    /// A new connection as the role of `schema`.
    pub async fn connect_as(&self, schema: &str) -> Result<Client, SqlError> {
        let mut config = self.admin_config.clone();
        config
            .user(schema)
            .password(self.password(schema))
            .dbname(&self.database)
            .application_name(schema);
        connect(&config).await
    }
}

async fn connect(config: &Config) -> Result<Client, SqlError> {
    let (client, connection) = config.connect(NoTls).await.map_err(unreachable_database)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("a PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

fn provisioning_failed(error: &tokio_postgres::Error) -> SqlError {
    match error.as_db_error() {
        Some(db) => super::wire::failed(format!(
            "cannot make the component's schema: {} (the [sql] postgres user needs CREATEROLE \
             and to own the database)",
            db.message()
        )),
        None => unreachable_database(error),
    }
}
