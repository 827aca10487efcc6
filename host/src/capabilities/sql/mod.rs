//! `cello:component/sql`: a SQL database of the component's own.
//!
//! By default each component (each tenant's component) has its own SQLite
//! file under the state directory, `sql/NAME.sqlite` or
//! `sql/TENANT/NAME.sqlite`: no statement reaches another's file (see
//! [`sqlite`] for what a statement may do). With `[sql] postgres = URL`
//! each has a schema of its own on that server instead, reached through a
//! role of its own (see [`postgres`]). A [`Database`] is either; the WIT
//! functions do not tell them apart. A database's size quota and each statement's time limit come
//! from the host config's `[sql]` table, or, for a tenant's components,
//! from the tenant's quotas. A refused statement is an `error` the guest
//! sees, never a trap.
//!
//! Every function is an `async func` (an async handler awaits it while its
//! instance serves others) with a `-blocking` twin for sync handlers; both
//! run the same code here.

mod database;
pub mod postgres;
pub mod sqlite;
mod transactions;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use serde::Deserialize;
use tracing::Instrument as _;
use wasmtime::component::{Accessor, HasData, Linker};

use crate::bindings::cello::component::sql;
pub use crate::bindings::cello::component::sql::{
    Error as SqlError, Executed, Migration, Rows, Value,
};
pub use database::Database;

use super::capability::{Capability, Has};
use super::config::ValueSource;

/// Largest result one query returns, in bytes.
pub const MAX_RESULT_BYTES: usize = 16 << 20;

/// The host config's `[sql]` table.
///
/// ```toml
/// [sql]
/// max-mb = 256                  # per served component; tenants have quotas
/// query-timeout-ms = 5000
/// transaction-timeout-ms = 10000
/// # PostgreSQL instead of SQLite files, the URL written here or read
/// # from the host's environment:
/// postgres = { env = "CELLO_SQL_POSTGRES" }
/// connections = 16                # in use at once, across components
/// connections-per-component = 4
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SqlSettings {
    /// Where the databases are kept; by default `sql/` in the state
    /// directory.
    pub dir: Option<PathBuf>,
    /// MiB one served component's database may grow to; no limit by
    /// default.
    pub max_mb: Option<u64>,
    /// Time one statement may run, ms; 5000 by default.
    pub query_timeout_ms: Option<u64>,
    /// Time a transaction may stay open, ms; 10000 by default. Past it the
    /// host rolls it back.
    pub transaction_timeout_ms: Option<u64>,
    /// A PostgreSQL URL (`postgres://USER:PASSWORD@HOST/DATABASE`): each
    /// component gets a schema there instead of a SQLite file. The user
    /// makes the schemas and roles: a superuser, or one with CREATEROLE
    /// that owns the database.
    pub postgres: Option<ValueSource>,
    /// PostgreSQL connections in use at once, across components; 16 by
    /// default.
    pub connections: Option<usize>,
    /// PostgreSQL connections one component may use at once; 4 by default.
    pub connections_per_component: Option<usize>,
}

impl SqlSettings {
    /// The limits of each served component's database.
    pub fn limits(&self) -> SqlLimits {
        SqlLimits {
            max_bytes: self.max_mb.map(|mb| mb.saturating_mul(1 << 20)),
            query_timeout: Duration::from_millis(self.query_timeout_ms.unwrap_or(5_000)),
            transaction_timeout: Duration::from_millis(
                self.transaction_timeout_ms.unwrap_or(10_000),
            ),
            max_result_bytes: MAX_RESULT_BYTES,
        }
    }

    /// The directory of the databases, given the state directory.
    pub fn dir(&self, state_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| state_dir.join("sql"))
    }

    /// Where the databases are kept: the PostgreSQL server if the table
    /// names one, or else SQLite files in `dir`.
    pub fn backend(&self, dir: PathBuf) -> Result<Backend, String> {
        let Some(url) = &self.postgres else {
            return Ok(Backend::Sqlite(dir));
        };
        let url = url.resolve("sql", "postgres")?;
        let server = postgres::Server::new(
            &url,
            self.connections.unwrap_or(16),
            self.connections_per_component.unwrap_or(4),
        )?;
        Ok(Backend::Postgres(server))
    }
}

/// Where the databases are kept.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A SQLite file per component in this directory.
    Sqlite(PathBuf),
    /// A schema per component on this server.
    Postgres(Arc<postgres::Server>),
}

/// What one database may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLimits {
    /// The size the database may grow to, in bytes.
    pub max_bytes: Option<u64>,
    /// Time one statement may run, and wait for the database.
    pub query_timeout: Duration,
    /// Time a transaction may stay open.
    pub transaction_timeout: Duration,
    /// Bytes one query may return.
    pub max_result_bytes: usize,
}

/// A tenant's quota for each of its components' databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlQuota {
    pub max_bytes: u64,
    pub query_timeout: Duration,
}

/// Every component's database, by namespace (`name`, or `tenant/name`).
#[derive(Clone)]
pub struct SqlStore {
    backend: Backend,
    /// The limits of a served component's database.
    defaults: SqlLimits,
    /// Each tenant's quota, by scope (`acme/`).
    quotas: Arc<RwLock<HashMap<String, SqlQuota>>>,
    /// The databases in use; components of one namespace (two versions,
    /// while one replaces the other) share one.
    open: Arc<Mutex<HashMap<Arc<str>, Weak<Database>>>>,
}

impl SqlStore {
    /// The databases kept in `backend`.
    pub fn new(backend: Backend, defaults: SqlLimits) -> Self {
        Self {
            backend,
            defaults,
            quotas: Arc::default(),
            open: Arc::default(),
        }
    }

    /// The database of `namespace`, shared with whoever uses it already;
    /// its file is opened on the first statement.
    pub fn database(&self, namespace: &str) -> Arc<Database> {
        let mut open = self.open.lock().unwrap();
        open.retain(|_, database| database.strong_count() > 0);
        if let Some(database) = open.get(namespace).and_then(Weak::upgrade) {
            return database;
        }
        let namespace: Arc<str> = namespace.into();
        let limits = self.limits_of(&namespace);
        let database = match &self.backend {
            Backend::Sqlite(dir) => {
                let path = path_of(dir, &namespace);
                Database::Sqlite(sqlite::Database::new(namespace.clone(), path, limits))
            }
            Backend::Postgres(server) => Database::Postgres(postgres::Database::new(
                namespace.clone(),
                server.clone(),
                limits,
            )),
        };
        let database = Arc::new(database);
        open.insert(namespace, Arc::downgrade(&database));
        database
    }

    /// Sets (or with `None` removes) the quota of every database of the
    /// tenant whose scope is `scope` (`acme/`); in force at once.
    pub fn set_quota(&self, scope: &str, quota: Option<SqlQuota>) {
        {
            let mut quotas = self.quotas.write().unwrap();
            match quota {
                Some(quota) => quotas.insert(scope.to_string(), quota),
                None => quotas.remove(scope),
            };
        }
        for (namespace, database) in self.open.lock().unwrap().iter() {
            if let Some(database) = database.upgrade()
                && namespace.starts_with(scope)
            {
                database.set_limits(self.limits_of(namespace));
            }
        }
    }

    fn limits_of(&self, namespace: &str) -> SqlLimits {
        let scope = namespace.find('/').map(|slash| &namespace[..=slash]);
        let quota = scope.and_then(|scope| self.quotas.read().unwrap().get(scope).copied());
        match quota {
            Some(quota) => SqlLimits {
                max_bytes: Some(quota.max_bytes),
                query_timeout: quota.query_timeout,
                ..self.defaults
            },
            None => self.defaults,
        }
    }

    /// Closes and deletes the database of `namespace`: whoever takes the
    /// name next starts empty.
    pub async fn drop_namespace(&self, namespace: &str) -> Result<(), String> {
        self.close(|name| name == namespace).await;
        match &self.backend {
            Backend::Sqlite(dir) => {
                let path = path_of(dir, namespace);
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    remove(Path::new(&file), |p| std::fs::remove_file(p))?;
                }
                Ok(())
            }
            Backend::Postgres(server) => server.drop_namespaces(|name| name == namespace).await,
        }
    }

    /// Closes and deletes every database of the tenant whose scope is
    /// `scope` (`acme/`).
    pub async fn drop_namespaces_under(&self, scope: &str) -> Result<(), String> {
        self.close(|name| name.starts_with(scope)).await;
        match &self.backend {
            Backend::Sqlite(dir) => remove(&dir.join(scope), |p| std::fs::remove_dir_all(p)),
            Backend::Postgres(server) => {
                server.drop_namespaces(|name| name.starts_with(scope)).await
            }
        }
    }

    async fn close(&self, dropped: impl Fn(&str) -> bool) {
        let closing: Vec<_> = {
            let mut open = self.open.lock().unwrap();
            let names: Vec<_> = open.keys().filter(|n| dropped(n)).cloned().collect();
            names
                .iter()
                .filter_map(|n| open.remove(n)?.upgrade())
                .collect()
        };
        for database in closing {
            database.close().await;
        }
    }
}

fn path_of(dir: &Path, namespace: &str) -> PathBuf {
    dir.join(format!("{namespace}.sqlite"))
}

impl Value {
    /// About how many bytes it takes in a result.
    fn size(&self) -> usize {
        16 + match self {
            Value::Text(t) | Value::Json(t) => t.len(),
            Value::Blob(b) => b.len(),
            _ => 0,
        }
    }
}

/// Removes `path` with `remove`; a path already gone is fine.
fn remove(path: &Path, remove: fn(&Path) -> std::io::Result<()>) -> Result<(), String> {
    match remove(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot remove {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

impl SqlError {
    /// The error, its sentence prefixed by `what` ("migration 001: ...").
    pub fn context(self, what: &str) -> Self {
        match self {
            Self::Invalid(m) => Self::Invalid(format!("{what}: {m}")),
            Self::Constraint(m) => Self::Constraint(format!("{what}: {m}")),
            Self::Quota(m) => Self::Quota(format!("{what}: {m}")),
            Self::Timeout(m) => Self::Timeout(format!("{what}: {m}")),
            Self::Failed(m) => Self::Failed(format!("{what}: {m}")),
            Self::NoTransaction => Self::NoTransaction,
        }
    }

    /// What went wrong, in a sentence.
    pub fn sentence(&self) -> &str {
        match self {
            Self::Invalid(m)
            | Self::Constraint(m)
            | Self::Quota(m)
            | Self::Timeout(m)
            | Self::Failed(m) => m,
            Self::NoTransaction => "no such transaction",
        }
    }
}

/// The SQL capability: `sql = true` under `[grants]` gives the component
/// a database of its own.
pub struct Sql;

impl Capability for Sql {
    const INTERFACES: &'static [&'static str] = &["cello:component/sql"];
    const HOW_TO_GRANT: &'static str = "sql = true";
    type Grant = bool;
    type Granted = Arc<Database>;

    fn is_granted(grant: &bool) -> bool {
        *grant
    }

    fn add_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        sql::add_to_linker::<T, SqlAccess>(linker, view)
    }

    /// The `-blocking` twins alone, wrapped by hand: the generated
    /// `add_to_linker` links the `async func`s too, which the engine without
    /// concurrency support cannot hold.
    fn add_sync_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        use sql::Host as _;
        let mut functions = linker.instance("cello:component/sql@0.1.0")?;
        functions.func_wrap_async(
            "query-blocking",
            |mut store, (statement, params, tx): (String, Vec<Value>, Option<u64>)| {
                Box::new(async move {
                    let mut database = view(store.data_mut());
                    Ok((database.query_blocking(statement, params, tx).await?,))
                })
            },
        )?;
        functions.func_wrap_async(
            "execute-blocking",
            |mut store, (statement, params, tx): (String, Vec<Value>, Option<u64>)| {
                Box::new(async move {
                    let mut database = view(store.data_mut());
                    Ok((database.execute_blocking(statement, params, tx).await?,))
                })
            },
        )?;
        functions.func_wrap_async("begin-blocking", |mut store, (): ()| {
            Box::new(async move { Ok((view(store.data_mut()).begin_blocking().await?,)) })
        })?;
        functions.func_wrap_async("commit-blocking", |mut store, (tx,): (u64,)| {
            Box::new(async move { Ok((view(store.data_mut()).commit_blocking(tx).await?,)) })
        })?;
        functions.func_wrap_async("rollback-blocking", |mut store, (tx,): (u64,)| {
            Box::new(async move { Ok((view(store.data_mut()).rollback_blocking(tx).await?,)) })
        })?;
        functions.func_wrap_async(
            "migrate-blocking",
            |mut store, (migrations,): (Vec<Migration>,)| {
                Box::new(async move {
                    let mut database = view(store.data_mut());
                    Ok((database.migrate_blocking(migrations).await?,))
                })
            },
        )?;
        Ok(())
    }
}

/// What the host functions of `state` see of its database.
fn view<T: Has<Sql>>(state: &mut T) -> SqlView<'_> {
    let span = state.call_span();
    let (database, kept) = state.granted_with_state();
    SqlView(database, span, &mut kept.transactions)
}

/// The transactions a store began and has not ended. Dropped with the
/// store (its call was cut, its instance ended), it rolls them back at
/// once, rather than leaving each to hold its connection (on SQLite, the
/// database) until `transaction-timeout-ms`.
#[derive(Default)]
pub struct Begun(Vec<(Arc<Database>, u64)>);

/// Transactions a store may keep track of; past it the oldest is left to
/// the time limit (a guest that begins and never ends them).
const BEGUN_KEPT: usize = 64;

impl Begun {
    fn began(&mut self, database: &Arc<Database>, id: u64) {
        if self.0.len() >= BEGUN_KEPT {
            self.0.remove(0);
        }
        self.0.push((database.clone(), id));
    }

    fn ended(&mut self, id: u64) {
        self.0.retain(|(_, open)| *open != id);
    }
}

impl Drop for Begun {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        // Without a runtime (the host is stopping) the time limit still
        // rolls them back.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for (database, id) in self.0.drain(..) {
            runtime.spawn(async move {
                if database.finish(id, "ROLLBACK").await.is_ok() {
                    tracing::warn!(
                        "a SQL transaction was open when its instance ended: rolled back"
                    );
                }
            });
        }
    }
}

/// How the host functions reach a store's database.
struct SqlAccess;

impl HasData for SqlAccess {
    type Data<'a> = SqlView<'a>;
}

/// A store's database, as its host functions see it (linked only when
/// granted, so present), the trace span of the call using it, and the
/// transactions the store began.
pub struct SqlView<'a>(Option<&'a Arc<Database>>, tracing::Span, &'a mut Begun);

impl SqlView<'_> {
    fn database(&self) -> wasmtime::Result<Arc<Database>> {
        self.0
            .cloned()
            .ok_or_else(|| wasmtime::Error::msg("sql called without the sql grant"))
    }
}

/// The database of the store `accessor` reaches, and the calling guest
/// call's trace span.
fn database<U>(
    accessor: &Accessor<U, SqlAccess>,
) -> wasmtime::Result<(Arc<Database>, tracing::Span)> {
    accessor.with(|mut access| {
        let view = access.get();
        Ok((view.database()?, view.1.clone()))
    })
}

type Answer<T> = wasmtime::Result<Result<T, SqlError>>;

/// The `-blocking` twins, for sync handlers.
impl sql::Host for SqlView<'_> {
    async fn query_blocking(
        &mut self,
        statement: String,
        params: Vec<Value>,
        transaction: Option<u64>,
    ) -> Answer<Rows> {
        let db = self.database()?;
        let ran = db.query(statement, params, transaction);
        Ok(ran.instrument(self.1.clone()).await)
    }

    async fn execute_blocking(
        &mut self,
        statement: String,
        params: Vec<Value>,
        transaction: Option<u64>,
    ) -> Answer<Executed> {
        let db = self.database()?;
        let ran = db.execute(statement, params, transaction);
        Ok(ran.instrument(self.1.clone()).await)
    }

    async fn begin_blocking(&mut self) -> Answer<u64> {
        let db = self.database()?;
        let began = db.begin().instrument(self.1.clone()).await;
        if let Ok(id) = began {
            self.2.began(&db, id);
        }
        Ok(began)
    }

    async fn commit_blocking(&mut self, transaction: u64) -> Answer<()> {
        let db = self.database()?;
        self.2.ended(transaction);
        Ok(db
            .finish(transaction, "COMMIT")
            .instrument(self.1.clone())
            .await)
    }

    async fn rollback_blocking(&mut self, transaction: u64) -> Answer<()> {
        let db = self.database()?;
        self.2.ended(transaction);
        Ok(db
            .finish(transaction, "ROLLBACK")
            .instrument(self.1.clone())
            .await)
    }

    async fn migrate_blocking(&mut self, migrations: Vec<Migration>) -> Answer<u32> {
        let db = self.database()?;
        Ok(db.migrate(migrations).instrument(self.1.clone()).await)
    }
}

impl<U> sql::HostWithStore<U> for SqlAccess {
    async fn query(
        accessor: &Accessor<U, Self>,
        statement: String,
        params: Vec<Value>,
        transaction: Option<u64>,
    ) -> Answer<Rows> {
        let (db, span) = database(accessor)?;
        Ok(db
            .query(statement, params, transaction)
            .instrument(span)
            .await)
    }

    async fn execute(
        accessor: &Accessor<U, Self>,
        statement: String,
        params: Vec<Value>,
        transaction: Option<u64>,
    ) -> Answer<Executed> {
        let (db, span) = database(accessor)?;
        Ok(db
            .execute(statement, params, transaction)
            .instrument(span)
            .await)
    }

    async fn begin(accessor: &Accessor<U, Self>) -> Answer<u64> {
        let (db, span) = database(accessor)?;
        let began = db.begin().instrument(span).await;
        if let Ok(id) = began {
            accessor.with(|mut access| access.get().2.began(&db, id));
        }
        Ok(began)
    }

    async fn commit(accessor: &Accessor<U, Self>, transaction: u64) -> Answer<()> {
        let (db, span) = database(accessor)?;
        accessor.with(|mut access| access.get().2.ended(transaction));
        Ok(db.finish(transaction, "COMMIT").instrument(span).await)
    }

    async fn rollback(accessor: &Accessor<U, Self>, transaction: u64) -> Answer<()> {
        let (db, span) = database(accessor)?;
        accessor.with(|mut access| access.get().2.ended(transaction));
        Ok(db.finish(transaction, "ROLLBACK").instrument(span).await)
    }

    async fn migrate(accessor: &Accessor<U, Self>, migrations: Vec<Migration>) -> Answer<u32> {
        let (db, span) = database(accessor)?;
        Ok(db.migrate(migrations).instrument(span).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &tempfile::TempDir) -> SqlStore {
        SqlStore::new(
            Backend::Sqlite(dir.path().into()),
            SqlSettings::default().limits(),
        )
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    async fn run(db: &Database, statement: &str, params: Vec<Value>) -> Result<Executed, SqlError> {
        db.execute(statement.into(), params, None).await
    }

    async fn notes(db: &Database) {
        let made =
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL UNIQUE, meta JSON)";
        run(db, made, vec![]).await.unwrap();
    }

    #[tokio::test]
    async fn a_read_past_the_inline_budget_ends_on_a_blocking_thread_and_a_write_is_not_run_twice()
    {
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("shop");
        notes(&db).await;
        // Far longer than the 2 ms a read may take on the calling thread.
        let long = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 300000) \
                    SELECT count(*) FROM n";
        let counted = db.query(long.into(), vec![], None).await.unwrap();
        assert!(matches!(counted.rows[0][0], Value::Integer(300_000)));
        // A write through `query` runs once, on a blocking thread.
        let added = db
            .query(
                "INSERT INTO notes (body) VALUES (?) RETURNING id".into(),
                vec![text("once")],
                None,
            )
            .await
            .unwrap();
        assert!(matches!(added.rows[0][0], Value::Integer(1)));
        let count = db
            .query("SELECT count(*) FROM notes".into(), vec![], None)
            .await
            .unwrap();
        assert!(matches!(count.rows[0][0], Value::Integer(1)));
    }

    #[tokio::test]
    async fn a_kept_statement_sees_the_schema_change_and_a_refused_one_stays_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("shop");
        notes(&db).await;
        let all = || db.query("SELECT * FROM notes".into(), vec![], None);
        assert_eq!(all().await.unwrap().columns, ["id", "body", "meta"]);
        run(&db, "ALTER TABLE notes ADD COLUMN tag TEXT", vec![])
            .await
            .unwrap();
        assert_eq!(all().await.unwrap().columns, ["id", "body", "meta", "tag"]);
        // A schema change rolled back is undone for kept statements too.
        let tx = db.begin().await.unwrap();
        let alter = "ALTER TABLE notes ADD COLUMN gone TEXT";
        db.execute(alter.into(), vec![], Some(tx)).await.unwrap();
        let inside = db.query("SELECT * FROM notes".into(), vec![], Some(tx));
        assert_eq!(inside.await.unwrap().columns.len(), 5);
        db.finish(tx, "ROLLBACK").await.unwrap();
        assert_eq!(all().await.unwrap().columns, ["id", "body", "meta", "tag"]);
        for _ in 0..2 {
            let refused = db.query("PRAGMA max_page_count = 1".into(), vec![], None);
            assert!(matches!(refused.await, Err(SqlError::Invalid(_))));
        }
    }

    #[tokio::test]
    async fn rows_come_back_typed_with_parameters_in_any_style() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("shop");
        notes(&db).await;
        let added = run(
            &db,
            "INSERT INTO notes (body, meta) VALUES (?, ?)",
            vec![text("a"), Value::Json("{}".into())],
        )
        .await
        .unwrap();
        assert_eq!((added.rows_affected, added.last_insert_id), (1, Some(1)));
        run(&db, "INSERT INTO notes (body) VALUES ($1)", vec![text("b")])
            .await
            .unwrap();
        let rows = db
            .query("SELECT id, body, meta, 1.5 AS r, x'00ff' AS b FROM notes WHERE body = $2 OR id = $1 ORDER BY id".into(), vec![Value::Integer(1), text("b")], None)
            .await
            .unwrap();
        assert_eq!(rows.columns, ["id", "body", "meta", "r", "b"]);
        assert_eq!(rows.rows.len(), 2);
        assert!(
            matches!(&rows.rows[0][..], [Value::Integer(1), Value::Text(a), Value::Json(m), Value::Real(r), Value::Blob(b)]
            if a == "a" && m == "{}" && *r == 1.5 && b == &[0, 255]),
            "{:?}",
            rows.rows
        );
        let updated = run(&db, "UPDATE notes SET body = body || '!'", vec![])
            .await
            .unwrap();
        assert_eq!((updated.rows_affected, updated.last_insert_id), (2, None));
    }

    #[tokio::test]
    async fn an_insert_names_its_row_after_migrations_wrote_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("shop");
        let create = Migration {
            name: "001".into(),
            statements: "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)".into(),
        };
        db.migrate(vec![create]).await.unwrap();
        let added = run(&db, "INSERT INTO notes (body) VALUES ('a')", vec![])
            .await
            .unwrap();
        assert_eq!(added.last_insert_id, Some(1));
    }

    #[tokio::test]
    async fn bad_statements_are_errors_with_a_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("shop");
        notes(&db).await;
        let err = |r: Result<Executed, SqlError>| r.unwrap_err();
        assert!(
            matches!(err(run(&db, "SELEC 1", vec![]).await), SqlError::Invalid(m) if m.contains("syntax"))
        );
        assert!(
            matches!(err(run(&db, "INSERT INTO notes (body) VALUES (?)", vec![]).await), SqlError::Invalid(m) if m.contains("takes 1 parameter"))
        );
        assert!(
            matches!(err(run(&db, "INSERT INTO notes (body) VALUES (:b)", vec![text("x")]).await), SqlError::Invalid(m) if m.contains("named parameter"))
        );
        assert!(
            matches!(err(run(&db, "SELECT 1; DROP TABLE notes", vec![]).await), SqlError::Invalid(m) if m.contains("one statement"))
        );
        run(&db, "INSERT INTO notes (body) VALUES ('x')", vec![])
            .await
            .unwrap();
        assert!(
            matches!(err(run(&db, "INSERT INTO notes (body) VALUES ('x')", vec![]).await), SqlError::Constraint(m) if m.contains("UNIQUE"))
        );
    }

    #[tokio::test]
    async fn a_statement_cannot_reach_another_file_or_lift_its_quota() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("acme/shop");
        notes(&db).await;
        run(&db, "INSERT INTO notes (body) VALUES ('kept')", vec![])
            .await
            .unwrap();
        let other = dir.path().join("other.sqlite");
        for statement in [
            format!("ATTACH DATABASE '{}' AS other", other.display()),
            format!("VACUUM INTO '{}'", other.display()),
            "PRAGMA max_page_count = 1000000000".to_string(),
            "PRAGMA writable_schema = ON".to_string(),
            "SELECT load_extension('x')".to_string(),
        ] {
            let refused = run(&db, &statement, vec![]).await.unwrap_err();
            assert!(
                matches!(refused, SqlError::Invalid(_)),
                "{statement}: {refused:?}"
            );
        }
        assert!(!other.exists());
        let rows = db
            .query("SELECT body FROM notes".into(), vec![], None)
            .await;
        assert!(matches!(&rows, Ok(r) if r.rows.len() == 1), "{rows:?}");
        assert!(dir.path().join("acme/shop.sqlite").exists());
    }

    #[tokio::test]
    async fn a_write_past_the_size_quota_fails_and_the_database_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::new(
            Backend::Sqlite(dir.path().into()),
            SqlLimits {
                max_bytes: Some(64 << 10),
                ..SqlSettings::default().limits()
            },
        );
        let db = store.database("shop");
        run(&db, "CREATE TABLE blobs (b BLOB)", vec![])
            .await
            .unwrap();
        let mut full = None;
        for _ in 0..32 {
            if let Err(e) = run(
                &db,
                "INSERT INTO blobs VALUES (?)",
                vec![Value::Blob(vec![7; 8 << 10])],
            )
            .await
            {
                full = Some(e);
                break;
            }
        }
        assert!(matches!(full, Some(SqlError::Quota(m)) if m.contains("quota")));
        let rows = db
            .query("SELECT count(*) FROM blobs".into(), vec![], None)
            .await
            .unwrap();
        assert!(matches!(rows.rows[0][0], Value::Integer(n) if n > 0));
        // A tenant's quota is in force at once.
        store.set_quota(
            "acme/",
            Some(SqlQuota {
                max_bytes: 1 << 20,
                query_timeout: Duration::from_millis(50),
            }),
        );
        let tenant = store.database("acme/shop");
        let slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
        let cut = tenant.query(slow.into(), vec![], None).await.unwrap_err();
        assert!(
            matches!(&cut, SqlError::Timeout(m) if m.contains("50 ms")),
            "{cut:?}"
        );
    }

    #[tokio::test]
    async fn a_transaction_commits_or_rolls_back_and_is_rolled_back_past_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::new(
            Backend::Sqlite(dir.path().into()),
            SqlLimits {
                transaction_timeout: Duration::from_millis(200),
                ..SqlSettings::default().limits()
            },
        );
        let db = store.database("shop");
        notes(&db).await;
        let count = async |db: &Database| match db
            .query("SELECT count(*) FROM notes".into(), vec![], None)
            .await
            .unwrap()
            .rows[0][0]
        {
            Value::Integer(n) => n,
            _ => unreachable!(),
        };
        let tx = db.begin().await.unwrap();
        db.execute(
            "INSERT INTO notes (body) VALUES ('kept')".into(),
            vec![],
            Some(tx),
        )
        .await
        .unwrap();
        db.finish(tx, "COMMIT").await.unwrap();
        let tx = db.begin().await.unwrap();
        db.execute(
            "INSERT INTO notes (body) VALUES ('dropped')".into(),
            vec![],
            Some(tx),
        )
        .await
        .unwrap();
        db.finish(tx, "ROLLBACK").await.unwrap();
        assert_eq!(count(&db).await, 1);
        assert!(matches!(
            db.finish(tx, "COMMIT").await,
            Err(SqlError::NoTransaction)
        ));
        // Left open, it is rolled back and the database is free again.
        let tx = db.begin().await.unwrap();
        db.execute(
            "INSERT INTO notes (body) VALUES ('forgotten')".into(),
            vec![],
            Some(tx),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(count(&db).await, 1);
        assert!(matches!(
            db.finish(tx, "COMMIT").await,
            Err(SqlError::NoTransaction)
        ));
    }

    #[tokio::test]
    async fn migrations_apply_once_in_order_and_a_changed_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("shop");
        let m = |name: &str, statements: &str| Migration {
            name: name.into(),
            statements: statements.into(),
        };
        let first = vec![
            m(
                "001",
                "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
            ),
            m(
                "002",
                "ALTER TABLE notes ADD COLUMN done INTEGER NOT NULL DEFAULT 0; CREATE INDEX notes_done ON notes (done);",
            ),
        ];
        assert_eq!(db.migrate(first.clone()).await.unwrap(), 2);
        assert_eq!(db.migrate(first.clone()).await.unwrap(), 0);
        let mut failing = first.clone();
        failing.push(m(
            "003",
            "CREATE TABLE tags (id INTEGER); CREATE TABLE broken (;",
        ));
        let refused = db.migrate(failing).await.unwrap_err();
        assert!(
            matches!(&refused, SqlError::Invalid(m) if m.starts_with("migration \"003\"")),
            "{refused:?}"
        );
        // The failed migration left nothing behind.
        assert!(
            db.query("SELECT * FROM tags".into(), vec![], None)
                .await
                .is_err()
        );
        let mut changed = first.clone();
        changed[0].statements.push_str(" -- edited");
        let refused = db.migrate(changed).await.unwrap_err();
        assert!(
            matches!(&refused, SqlError::Invalid(m) if m.contains("changed after it was applied")),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_dropped_namespace_is_deleted_and_its_name_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let db = store.database("acme/shop");
        notes(&db).await;
        let tx = db.begin().await.unwrap();
        store.drop_namespaces_under("acme/").await.unwrap();
        assert!(
            matches!(db.query("SELECT 1".into(), vec![], None).await, Err(SqlError::Failed(m)) if m.contains("removed"))
        );
        assert!(matches!(
            db.finish(tx, "COMMIT").await,
            Err(SqlError::NoTransaction)
        ));
        assert!(!dir.path().join("acme").exists());
        let again = store.database("acme/shop");
        assert!(
            again
                .query("SELECT * FROM notes".into(), vec![], None)
                .await
                .is_err()
        );
    }

    // What a hostile or careless tenant meets, from a review as an attacker.

    fn limited(dir: &tempfile::TempDir, limits: SqlLimits) -> SqlStore {
        SqlStore::new(Backend::Sqlite(dir.path().into()), limits)
    }

    /// Peak resident memory of this process, in bytes.
    fn peak_rss() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib << 10
    }

    #[tokio::test]
    async fn attack_temp_tables_count_against_the_size_quota() {
        // TEMP tables live outside the file and its quota: refused.
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("acme/shop");
        for statement in [
            "CREATE TEMP TABLE big (b BLOB)",
            "CREATE TABLE temp.big AS SELECT zeroblob(1000) AS b",
            "CREATE TEMP VIEW v AS SELECT 1",
        ] {
            let refused = run(&db, statement, vec![]).await;
            assert!(
                matches!(refused, Err(SqlError::Invalid(_))),
                "{statement}: {refused:?}"
            );
        }
    }

    #[tokio::test]
    async fn attack_a_wide_row_is_refused_before_it_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("acme/shop");
        // 64 columns of 16 MB: each value under SQLITE_LIMIT_LENGTH, the
        // row 1 GiB; the 16 MiB result cap is looked at after the row.
        let columns = vec!["zeroblob(16000000)"; 64].join(", ");
        let before = peak_rss();
        let refused = db
            .query(format!("SELECT {columns}"), vec![], None)
            .await
            .unwrap_err();
        let grew = peak_rss().saturating_sub(before);
        assert!(matches!(refused, SqlError::Invalid(_)), "{refused:?}");
        assert!(
            grew < 256 << 20,
            "a query capped at 16 MiB made the host's peak memory grow by {} MiB",
            grew >> 20
        );
    }

    #[tokio::test]
    async fn attack_one_function_call_honours_the_time_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        store.set_quota(
            "acme/",
            Some(SqlQuota {
                max_bytes: 1 << 20,
                query_timeout: Duration::from_millis(200),
            }),
        );
        let db = store.database("acme/shop");
        // instr() is O(haystack * needle) inside one VM step: the progress
        // handler never runs. (LIKE '%aaaa...b' and replace() alike.)
        let started = std::time::Instant::now();
        let ran = db
            .query(
                "SELECT instr(printf('%.*c', 800000, 'a'), printf('%.*c', 400000, 'a') || 'b')"
                    .into(),
                vec![],
                None,
            )
            .await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1000),
            "a statement limited to 200 ms ran {took:?} ({ran:?})"
        );
    }

    #[tokio::test]
    async fn attack_a_guest_cannot_begin_or_commit_behind_the_hosts_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("acme/shop");
        notes(&db).await;
        let began = run(&db, "BEGIN", vec![]).await;
        let tx = db.begin().await;
        assert!(
            began.is_err(),
            "a guest's BEGIN was run ({began:?}); the connection is now in a transaction no reaper knows: \
             every later write is uncommitted, and the host's begin() answers {tx:?}"
        );
    }

    #[tokio::test]
    async fn attack_a_migration_that_fails_is_not_recorded_as_applied() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("acme/shop");
        let sneaky = vec![Migration {
            name: "001".into(),
            statements: "CREATE TABLE a (x); COMMIT; CREATE TABLE b (x)".into(),
        }];
        let first = db.migrate(sneaky.clone()).await;
        let second = db.migrate(sneaky).await;
        assert!(
            first.is_ok() || second.is_err(),
            "the first migrate failed ({first:?}) yet the second found it applied ({second:?})"
        );
    }

    #[tokio::test]
    async fn attack_a_cancelled_statement_does_not_leave_the_transaction_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = limited(
            &dir,
            SqlLimits {
                transaction_timeout: Duration::from_millis(300),
                ..SqlSettings::default().limits()
            },
        );
        let db = store.database("acme/shop");
        notes(&db).await;
        let tx = db.begin().await.unwrap();
        // The request's time limit (or a client gone) drops the guest's
        // call while its statement runs on the blocking thread.
        let slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 3000000) SELECT count(*) FROM n";
        let cut = tokio::time::timeout(
            Duration::from_millis(50),
            db.query(slow.into(), vec![], Some(tx)),
        )
        .await;
        assert!(cut.is_err(), "the statement was meant to be cut");
        // Past the statement and the transaction's time.
        tokio::time::sleep(Duration::from_secs(3)).await;
        run(&db, "INSERT INTO notes (body) VALUES ('after')", vec![])
            .await
            .unwrap();
        let other = rusqlite::Connection::open(dir.path().join("acme/shop.sqlite")).unwrap();
        let durable: i64 = other
            .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
            .unwrap();
        let again = db.begin().await;
        assert!(
            durable == 1 && again.is_ok(),
            "after a cancelled statement in a transaction, a later write is not committed \
             (another connection sees {durable} rows) and begin() answers {again:?}"
        );
    }

    #[tokio::test]
    async fn attack_a_write_sqlite_rolls_back_with_its_transaction_leaves_no_statement_outside_it()
    {
        let dir = tempfile::tempdir().unwrap();
        let store = limited(
            &dir,
            SqlLimits {
                query_timeout: Duration::from_millis(200),
                ..SqlSettings::default().limits()
            },
        );
        let db = store.database("acme/shop");
        notes(&db).await;
        let tx = db.begin().await.unwrap();
        let insert = "INSERT INTO notes (body) VALUES (?)";
        let first = vec![Value::Text("first".into())];
        db.execute(insert.into(), first, Some(tx)).await.unwrap();
        // A write interrupted at its time limit: SQLite rolls back the
        // whole transaction, not just the statement.
        let slow = "INSERT INTO notes (body) WITH RECURSIVE n(i) AS \
                    (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT 'n' || i FROM n";
        let cut = db.execute(slow.into(), vec![], Some(tx)).await;
        assert!(
            matches!(&cut, Err(SqlError::Timeout(m)) if m.contains("nothing in it was committed")),
            "the interrupted write answered {cut:?}"
        );
        // The guest goes on, as if still in its transaction, then rolls it
        // back: nothing it wrote may stay.
        let later = vec![Value::Text("later".into())];
        let after = db.execute(insert.into(), later, Some(tx)).await;
        assert!(
            matches!(&after, Err(SqlError::Failed(m)) if m.contains("rolled back")),
            "a statement after SQLite rolled the transaction back answered {after:?}"
        );
        let committed = db.finish(tx, "COMMIT").await;
        assert!(
            matches!(&committed, Err(SqlError::Failed(m)) if m.contains("nothing in it was committed")),
            "its commit answered {committed:?}"
        );
        let durable = db
            .query("SELECT body FROM notes".into(), vec![], None)
            .await
            .unwrap();
        assert!(
            durable.rows.is_empty(),
            "rows of a rolled-back transaction were committed: {:?}",
            durable.rows
        );
        // The database is free, and the id is gone once ended.
        assert!(db.begin().await.is_ok());
        assert!(matches!(
            db.finish(tx, "ROLLBACK").await,
            Err(SqlError::NoTransaction)
        ));
    }

    #[tokio::test]
    async fn attack_a_guest_that_makes_sqlite_roll_back_gets_no_autocommit_and_a_short_reason() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("acme/shop");
        notes(&db).await;
        // A trigger whose message is as long as a statement may be.
        let long = "x".repeat(500_000);
        let trigger = format!(
            "CREATE TRIGGER refuse BEFORE INSERT ON notes WHEN NEW.body = 'refused' \
             BEGIN SELECT RAISE(ROLLBACK, '{long}'); END"
        );
        run(&db, &trigger, vec![]).await.unwrap();
        let insert = "INSERT INTO notes (body) VALUES (?)";
        let text = |t: &str| vec![Value::Text(t.into())];
        for (n, statement) in [
            (0, "INSERT INTO notes (body) VALUES ('refused')"),
            (1, "INSERT OR ROLLBACK INTO notes (body) VALUES ('kept')"),
        ] {
            if n == 1 {
                run(&db, "INSERT INTO notes (body) VALUES ('kept')", vec![])
                    .await
                    .unwrap();
            }
            let tx = db.begin().await.unwrap();
            db.execute(insert.into(), text(&format!("in {n}")), Some(tx))
                .await
                .unwrap();
            let rolled = db.execute(statement.into(), vec![], Some(tx)).await;
            assert!(
                matches!(&rolled, Err(e) if e.sentence().contains("nothing in it was committed")),
                "statement {n} answered {rolled:?}"
            );
            let after = db
                .execute(insert.into(), text(&format!("after {n}")), Some(tx))
                .await;
            let Err(SqlError::Failed(said)) = &after else {
                panic!("a statement after SQLite rolled back answered {after:?}");
            };
            assert!(said.len() < 1000, "the reason kept is {} bytes", said.len());
            db.finish(tx, "ROLLBACK").await.unwrap();
        }
        let rows = db
            .query("SELECT body FROM notes ORDER BY body".into(), vec![], None)
            .await
            .unwrap();
        assert!(
            matches!(&rows.rows[..], [row] if matches!(&row[..], [Value::Text(t)] if t == "kept")),
            "rows left: {:?}",
            rows.rows
        );
    }

    #[tokio::test]
    async fn attack_a_commit_waiting_on_a_statement_sqlite_rolls_back_says_nothing_was_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = limited(
            &dir,
            SqlLimits {
                query_timeout: Duration::from_millis(300),
                ..SqlSettings::default().limits()
            },
        );
        let db = Arc::new(store.database("acme/shop"));
        notes(&db).await;
        for verb in ["COMMIT", "ROLLBACK"] {
            let tx = db.begin().await.unwrap();
            let slow = "INSERT INTO notes (body) WITH RECURSIVE n(i) AS \
                        (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT 'n' || i FROM n";
            let running = tokio::spawn({
                let db = db.clone();
                async move { db.execute(slow.into(), vec![], Some(tx)).await }
            });
            // The commit (or rollback) comes while the statement runs, and
            // waits for it.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let ended = db.finish(tx, verb).await;
            assert!(running.await.unwrap().is_err());
            match verb {
                "COMMIT" => assert!(
                    matches!(&ended, Err(SqlError::Failed(m)) if m.contains("nothing in it was committed")),
                    "the waiting commit answered {ended:?}"
                ),
                _ => assert!(ended.is_ok(), "the waiting rollback answered {ended:?}"),
            }
        }
        assert!(db.begin().await.is_ok());
    }

    #[tokio::test]
    async fn a_schema_change_sqlite_rolled_back_is_not_read_from_a_kept_statement() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("acme/shop");
        notes(&db).await;
        run(&db, "INSERT INTO notes (body) VALUES ('one')", vec![])
            .await
            .unwrap();
        let tx = db.begin().await.unwrap();
        let added = "ALTER TABLE notes ADD COLUMN extra TEXT";
        db.execute(added.into(), vec![], Some(tx)).await.unwrap();
        let select = "SELECT * FROM notes";
        let inside = db.query(select.into(), vec![], Some(tx)).await.unwrap();
        assert_eq!(inside.columns.len(), 4, "{:?}", inside.columns);
        let rolled = "INSERT OR ROLLBACK INTO notes (id, body) VALUES (1, 'clash')";
        assert!(db.execute(rolled.into(), vec![], Some(tx)).await.is_err());
        let outside = db.query(select.into(), vec![], None).await;
        assert!(
            matches!(&outside, Ok(rows) if rows.columns.len() == 3 && rows.rows[0].len() == 3),
            "after the rollback the table reads {outside:?}"
        );
        db.finish(tx, "ROLLBACK").await.unwrap();
    }

    #[tokio::test]
    async fn attack_a_statement_whose_caller_stopped_waiting_frees_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = limited(
            &dir,
            SqlLimits {
                query_timeout: Duration::from_secs(30),
                ..SqlSettings::default().limits()
            },
        );
        let db = store.database("acme/shop");
        notes(&db).await;
        // The request's time limit (or a client gone) drops the guest's
        // call while its endless statement runs on the blocking thread.
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                       SELECT count(*) FROM n";
        let cut = tokio::time::timeout(
            Duration::from_millis(50),
            db.query(endless.into(), vec![], None),
        )
        .await;
        assert!(cut.is_err(), "the statement was meant to be cut");
        let started = std::time::Instant::now();
        run(&db, "INSERT INTO notes (body) VALUES ('after')", vec![])
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the next statement waited {:?} for the abandoned one (limit 30 s)",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn attack_a_migration_whose_caller_stopped_waiting_frees_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = limited(
            &dir,
            SqlLimits {
                transaction_timeout: Duration::from_secs(30),
                ..SqlSettings::default().limits()
            },
        );
        let db = store.database("acme/shop");
        let endless = vec![Migration {
            name: "001_endless".into(),
            statements: "CREATE TABLE n AS WITH RECURSIVE n(i) AS \
                         (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
                .into(),
        }];
        // An `on-start` cut by its time limit drops its migrations' call.
        let cut = tokio::time::timeout(Duration::from_millis(50), db.migrate(endless)).await;
        assert!(cut.is_err(), "the migration was meant to be cut");
        let started = std::time::Instant::now();
        notes(&db).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the next statement waited {:?} for the abandoned migration (limit 30 s)",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn attack_host_mode_does_not_reach_a_guests_trigger() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("acme/shop");
        let m = |name: &str, statements: &str| Migration {
            name: name.into(),
            statements: statements.into(),
        };
        db.migrate(vec![m("001", "CREATE TABLE spy (v)")])
            .await
            .unwrap();
        // A guest may neither hang a trigger on the host's ledger (in any
        // schema) nor touch the ledger itself.
        for statement in [
            "CREATE TEMP TRIGGER t AFTER INSERT ON main._cello_migrations BEGIN \
             INSERT INTO spy SELECT max_page_count FROM pragma_max_page_count; END",
            "CREATE TRIGGER t AFTER INSERT ON _cello_migrations BEGIN \
             INSERT INTO spy SELECT max_page_count FROM pragma_max_page_count; END",
            "DELETE FROM _cello_migrations",
            "UPDATE _CELLO_MIGRATIONS SET checksum = 'x'",
            "DROP TABLE _cello_migrations",
        ] {
            let refused = run(&db, statement, vec![]).await;
            assert!(
                matches!(refused, Err(SqlError::Invalid(_))),
                "{statement}: {refused:?}"
            );
        }
        // Reading it is fine.
        let rows = db
            .query("SELECT name FROM _cello_migrations".into(), vec![], None)
            .await
            .unwrap();
        assert_eq!(rows.rows.len(), 1);
    }

    #[tokio::test]
    async fn attack_a_temp_table_shadows_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("acme/shop");
        let one = vec![Migration {
            name: "001".into(),
            statements: "CREATE TABLE notes (x)".into(),
        }];
        db.migrate(one.clone()).await.unwrap();
        let shadow = "CREATE TEMP TABLE _cello_migrations (name TEXT PRIMARY KEY, checksum TEXT, applied_at INTEGER)";
        assert!(run(&db, shadow, vec![]).await.is_err());
        let again = db.migrate(one).await;
        assert!(matches!(again, Ok(0)), "{again:?}");
    }

    #[tokio::test]
    async fn held_no_other_file_no_shadow_table_no_schema_write() {
        let dir = tempfile::tempdir().unwrap();
        let db = store(&dir).database("acme/shop");
        notes(&db).await;
        let out = dir.path().join("out.sqlite");
        let refused = [
            "VACUUM".to_string(),
            format!("VACUUM INTO 'file:{}?mode=rwc'", out.display()),
            format!("ATTACH 'file:{}' AS o", out.display()),
            "SELECT * FROM sqlite_dbpage".to_string(),
            "UPDATE sqlite_schema SET sql = 'x'".to_string(),
            "INSERT INTO sqlite_schema VALUES ('table','x','x',0,'CREATE TABLE x(y)')".to_string(),
            "CREATE TABLE sqlite_x (y)".to_string(),
            "SELECT * FROM pragma_journal_mode".to_string(),
            "SELECT * FROM pragma_table_info('notes')".to_string(),
            "SELECT load_extension('/tmp/x')".to_string(),
            "SELECT printf('%.*c', 1000000000, 'x')".to_string(),
            "SELECT zeroblob(1000000000)".to_string(),
            "SELECT length(group_concat(zeroblob(1000000))) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n LIMIT 100) SELECT * FROM n)".to_string(),
            "CREATE VIRTUAL TABLE f USING fts5(a)".to_string(),
            "INSERT INTO f_data VALUES (99, x'00')".to_string(),
            "CREATE VIRTUAL TABLE r USING rtree(id, a, b)".to_string(),
            "INSERT INTO r_node VALUES (99, x'00')".to_string(),
            "DELETE FROM sqlite_stat1".to_string(),
        ];
        let mut report = Vec::new();
        for statement in refused {
            let got = db.query(statement.clone(), vec![], None).await;
            report.push(format!(
                "{statement:.70} => {:?}",
                got.map(|r| r.rows.len())
            ));
        }
        eprintln!("{}", report.join("\n"));
        assert!(!out.exists());
    }
}
