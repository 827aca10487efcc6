//! One component's PostgreSQL schema, chosen by `[sql] postgres = URL`.
//!
//! **Isolation.** Each namespace has a schema and a LOGIN role of the same
//! name (`c_shop`, `t_acme__shop`, see [`wire::schema_name`]), made by the
//! host's admin connection on first use. Guest statements run only on
//! connections *logged in* as that role, with a password the host derives
//! from its secret URL; the role may use and create in its own schema and
//! nothing else (`PUBLIC` loses `CONNECT`/`TEMP` on the database and every
//! right on `public`). `SET ROLE` alone would not do: `RESET ROLE` (and
//! `SET SESSION AUTHORIZATION`, for a superuser session) always goes back
//! to the session's user. Logged in as the role, there is nothing to go
//! back to: `RESET ROLE` is a no-op, `SET ROLE`/`SET SESSION AUTHORIZATION`
//! to another role are refused, and `COPY ... PROGRAM`, `CREATE EXTENSION`
//! and server files need rights the role lacks. A `DO` block runs with the
//! role's rights. Each call is one statement on the extended protocol, so
//! `a; b` is refused. What a role can still see is the catalog's metadata
//! (other schemas' table names), as any PostgreSQL user can.
//!
//! **Fair connections.** The host keeps at most `connections` in use at
//! once, `connections-per-component` of them by one component; a statement
//! waits for one at most its time limit, then gets `timeout`. Idle
//! connections are kept (as many as `connections`, across components) to
//! be reused by the same component.
//!
//! **Limits.** Each call sets `statement_timeout` before the statement
//! (and the host cancels it a second later if the server does not); a
//! statement outside a transaction whose call is dropped (its request's
//! time limit, its client gone) is cancelled then, and its connection
//! closed. The
//! size quota is an approximation, as PostgreSQL has none per schema: the
//! size of the schema's tables with their indexes and TOAST
//! (`pg_total_relation_size`) is measured before a statement that follows
//! a write, and while over the quota statements run read-only, so writes
//! fail with `quota` and reads go on, as do statements that free space
//! (`DELETE`, `TRUNCATE`, `DROP`, `VACUUM`; a `DELETE` frees the space for
//! PostgreSQL's reuse, but the size shrinks only after `TRUNCATE`, `DROP`
//! or `VACUUM FULL`). A transaction begun under the quota may write past
//! it until it ends.
//!
//! Roles belong to the PostgreSQL cluster, not to one database: the
//! components of one Cello deployment (one URL) may share a cluster with
//! other applications, but not with another deployment's same names.

mod server;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use futures::{StreamExt, pin_mut};
use tokio::sync::{Mutex as AsyncMutex, OwnedSemaphorePermit};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};

pub use server::Server;
use wire::{
    Cell, Param, failed, frees_space, may_open_transaction, numbered_placeholders, schema_name,
    sql_error,
};

use super::transactions::Transactions;
use super::{Executed, Migration, Rows, SqlError, SqlLimits, Value};

/// Time a `BEGIN`, `COMMIT` or `ROLLBACK` may take.
const FINISH_TIME: Duration = Duration::from_secs(60);
/// Time past a statement's limit before the host cancels it itself.
const GRACE: Duration = Duration::from_secs(1);
/// Prepared statements kept per connection.
const STATEMENTS_KEPT: usize = 256;
/// The table that records which migrations were applied.
const LEDGER: &str = "_cello_migrations";

/// One component's schema.
pub struct Database {
    namespace: Arc<str>,
    schema: String,
    server: Arc<Server>,
    limits: RwLock<SqlLimits>,
    /// Connections of this component in use, at most the server's share.
    share: Arc<tokio::sync::Semaphore>,
    idle: Arc<Mutex<Vec<Idle>>>,
    provisioned: AsyncMutex<bool>,
    /// The schema's size when last measured; `None` after a write.
    size: Mutex<Option<u64>>,
    /// Serialises this host's migrations of the schema.
    migrating: AsyncMutex<()>,
    transactions: Transactions<Lease>,
    dropped: AtomicBool,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("namespace", &self.namespace)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// An open connection, as the component's role.
struct Connection {
    client: Client,
    statements: HashMap<String, Statement>,
    /// Whether a transaction block may be open: the last guest statement
    /// run outside a transaction could have begun one, or failed, or the
    /// connection served a transaction. The next statement then sends a
    /// `ROLLBACK` first; otherwise none, since on an idle connection it
    /// costs a warning the server logs and sends back every time.
    maybe_in_transaction: bool,
    /// Whether a statement failed in the transaction it serves: PostgreSQL
    /// may then have aborted the transaction, whose `COMMIT` it answers by
    /// rolling back, without an error.
    failed_in_transaction: bool,
}

struct Idle {
    connection: Connection,
    _kept: OwnedSemaphorePermit,
}

/// A connection in use by one call or transaction; back to the idle ones
/// when dropped, unless broken.
struct Lease {
    connection: Option<Connection>,
    broken: bool,
    idle: Weak<Mutex<Vec<Idle>>>,
    server: Arc<Server>,
    _share: OwnedSemaphorePermit,
    _in_use: OwnedSemaphorePermit,
}

/// Cancels the statement of its token when dropped while set.
struct CancelOnDrop(Option<tokio_postgres::CancelToken>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let (Some(token), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move { token.cancel_query(tokio_postgres::NoTls).await });
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        if self.broken || connection.client.is_closed() {
            return;
        }
        if let (Some(idle), Ok(kept)) = (
            self.idle.upgrade(),
            self.server.idle.clone().try_acquire_owned(),
        ) {
            idle.lock().unwrap().push(Idle {
                connection,
                _kept: kept,
            });
        }
    }
}

impl Lease {
    fn connection(&mut self) -> &mut Connection {
        self.connection
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }
}

impl Database {
    /// The schema of `namespace` on `server`; nothing is made yet.
    pub fn new(namespace: Arc<str>, server: Arc<Server>, limits: SqlLimits) -> Arc<Self> {
        Arc::new(Self {
            schema: schema_name(&namespace),
            namespace,
            share: Arc::new(tokio::sync::Semaphore::new(server.per_component)),
            server,
            limits: RwLock::new(limits),
            idle: Arc::default(),
            provisioned: AsyncMutex::new(false),
            size: Mutex::new(None),
            migrating: AsyncMutex::new(()),
            transactions: Transactions::default(),
            dropped: AtomicBool::new(false),
        })
    }

    /// Puts new limits in force from the next statement on.
    pub fn set_limits(&self, limits: SqlLimits) {
        *self.limits.write().unwrap() = limits;
    }

    fn limits(&self) -> SqlLimits {
        *self.limits.read().unwrap()
    }

    /// Refuses every later call, rolls back open transactions and closes
    /// the idle connections.
    pub async fn close(&self) {
        self.dropped.store(true, Ordering::SeqCst);
        for mut lease in self.transactions.end_all().await {
            lease.broken = true;
            let _ = lease.connection().client.batch_execute("ROLLBACK").await;
        }
        self.idle.lock().unwrap().clear();
    }

    /// Runs one statement and returns its rows.
    pub async fn query(
        &self,
        statement: String,
        params: Vec<Value>,
        transaction: Option<u64>,
    ) -> Result<Rows, SqlError> {
        let (rows, _) = self.statement(&statement, &params, transaction).await?;
        Ok(rows)
    }

    /// Runs one statement that changes rows. PostgreSQL has no last
    /// insert id: it is the first column of the first row the statement
    /// returns (`INSERT ... RETURNING id`), if an integer.
    pub async fn execute(
        &self,
        statement: String,
        params: Vec<Value>,
        transaction: Option<u64>,
    ) -> Result<Executed, SqlError> {
        let (rows, affected) = self.statement(&statement, &params, transaction).await?;
        let last_insert_id = match rows.rows.first().and_then(|row| row.first()) {
            Some(Value::Integer(id)) => Some(*id),
            _ => None,
        };
        Ok(Executed {
            rows_affected: affected,
            last_insert_id,
        })
    }

    async fn statement(
        &self,
        statement: &str,
        params: &[Value],
        transaction: Option<u64>,
    ) -> Result<(Rows, u64), SqlError> {
        let limits = self.limits();
        let Some(id) = transaction else {
            let mut lease = self.acquire(&limits).await?;
            let mut ran = self
                .run(&mut lease, statement, params, &limits, false)
                .await;
            if matches!(&ran, Err(SqlError::Invalid(m)) if m.contains("cached plan")) {
                // A migration changed a table under a kept statement.
                lease.connection().statements.clear();
                ran = self
                    .run(&mut lease, statement, params, &limits, false)
                    .await;
            }
            return ran;
        };
        let transaction = self.transactions.get(id)?;
        let mut slot = transaction.lock().await;
        let lease = (slot.connection.as_mut()).ok_or(SqlError::NoTransaction)?;
        self.run(lease, statement, params, &limits, true).await
    }

    /// Runs a guest's statement on `lease`, under the limits.
    async fn run(
        &self,
        lease: &mut Lease,
        statement: &str,
        params: &[Value],
        limits: &SqlLimits,
        in_transaction: bool,
    ) -> Result<(Rows, u64), SqlError> {
        let time = limits.query_timeout;
        let read_only =
            !in_transaction && !frees_space(statement) && self.over_quota(lease, limits).await?;
        // Whatever a former call left (a transaction it began, settings
        // it changed) is undone before this one; the limits are set anew.
        let connection = lease.connection();
        let settings = if in_transaction {
            format!("SET statement_timeout = {}", time.as_millis())
        } else {
            let rollback = if connection.maybe_in_transaction {
                "ROLLBACK; "
            } else {
                ""
            };
            format!(
                "{rollback}RESET ALL; SET statement_timeout = {}; SET default_transaction_read_only = {read_only}",
                time.as_millis()
            )
        };
        let sql = numbered_placeholders(statement);
        let cancel = connection.client.cancel_token();
        // A caller that stops waiting (its request ran out of time, its
        // client left) drops this future mid-statement: the statement is
        // cancelled, and the connection, whose next request would queue
        // behind it, is not reused. Not in a transaction: cancelling a
        // statement there would leave it aborted, and its COMMIT would roll
        // back without an error; the statement runs to its time limit.
        let mut abandoned = CancelOnDrop((!in_transaction).then(|| cancel.clone()));
        let was_broken = lease.broken;
        lease.broken |= !in_transaction;
        let connection = lease.connection();
        let ran = tokio::time::timeout(time + GRACE, async {
            let Connection {
                client, statements, ..
            } = &mut *connection;
            if let Some(prepared) = statements.get(&*sql).filter(|_| !read_only) {
                // Kept prepared: the settings and the statement go out
                // together (tokio-postgres pipelines requests polled at
                // once, and the server runs them in order), one round trip
                // where waiting for the settings took two (with the SDK's
                // changes, `make bench-sql` on PostgreSQL went from 0.87 to
                // 0.93 of FastAPI's req/s). Not at the quota: there the
                // settings must be in force first.
                check_params(prepared, params)?;
                let (set, rows) = tokio::join!(
                    client.batch_execute(&settings),
                    collect(client, prepared, params, limits)
                );
                set.map_err(|e| sql_error(&e, time))?;
                return rows;
            }
            let (set, prepared) = tokio::join!(client.batch_execute(&settings), async {
                match statements.get(&*sql) {
                    Some(prepared) => Ok(prepared.clone()),
                    None => client.prepare(&sql).await,
                }
            });
            set.map_err(|e| sql_error(&e, time))?;
            let prepared = prepared.map_err(|e| sql_error(&e, time))?;
            check_params(&prepared, params)?;
            if statements.len() >= STATEMENTS_KEPT {
                statements.clear();
            }
            statements.insert(sql.to_string(), prepared.clone());
            collect(client, &prepared, params, limits).await
        })
        .await;
        abandoned.0 = None;
        lease.broken = was_broken;
        let ran = ran.unwrap_or_else(|_| {
            tokio::spawn(async move { cancel.cancel_query(tokio_postgres::NoTls).await });
            lease.broken = true;
            Err(SqlError::Timeout(format!(
                "the statement ran past the time limit of {} ms",
                time.as_millis()
            )))
        });
        let connection = lease.connection();
        if !in_transaction {
            connection.maybe_in_transaction = ran.is_err() || may_open_transaction(statement);
        }
        connection.failed_in_transaction |= in_transaction && ran.is_err();
        if connection.client.is_closed() {
            lease.broken = true;
        }
        if ran.as_ref().is_ok_and(|(_, affected)| *affected > 0) || frees_space(statement) {
            *self.size.lock().unwrap() = None;
        }
        ran
    }

    /// Whether the schema is at its size quota; measured after writes.
    async fn over_quota(&self, lease: &mut Lease, limits: &SqlLimits) -> Result<bool, SqlError> {
        let Some(max) = limits.max_bytes else {
            return Ok(false);
        };
        if let Some(size) = *self.size.lock().unwrap() {
            return Ok(size >= max);
        }
        let measure = format!(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8 FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = '{}' AND c.relkind IN ('r', 'm')",
            self.schema
        );
        let row = lease.connection().client.query_one(&measure, &[]).await;
        let size = row
            .map_err(|e| sql_error(&e, limits.query_timeout))?
            .get::<_, i64>(0);
        let size = u64::try_from(size).unwrap_or_default();
        *self.size.lock().unwrap() = Some(size);
        Ok(size >= max)
    }

    /// Begins a transaction, which holds a connection until it ends; one
    /// begun at the size quota is read-only.
    pub async fn begin(self: &Arc<Self>) -> Result<u64, SqlError> {
        let limits = self.limits();
        let mut lease = self.acquire(&limits).await?;
        let read_only = self.over_quota(&mut lease, &limits).await?;
        let verb = if read_only {
            "ROLLBACK; RESET ALL; BEGIN READ ONLY"
        } else {
            "ROLLBACK; RESET ALL; BEGIN"
        };
        lease.connection().maybe_in_transaction = true;
        lease.connection().failed_in_transaction = false;
        finish(&mut lease, verb).await?;
        let id = self.transactions.open(lease);
        let database = Arc::downgrade(self);
        tokio::spawn(expire(database, id, limits.transaction_timeout));
        Ok(id)
    }

    /// Ends transaction `id` with `COMMIT` or `ROLLBACK`.
    pub async fn finish(&self, id: u64, verb: &'static str) -> Result<(), SqlError> {
        let mut lease = self.transactions.end(id).await?;
        *self.size.lock().unwrap() = None;
        if verb == "COMMIT" && lease.connection().failed_in_transaction {
            // Told apart by a statement, which an aborted transaction
            // refuses (a savepoint the guest rolled back to revives it).
            let probe = lease.connection().client.simple_query("SELECT 1").await;
            if probe.is_err_and(|e| e.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION)) {
                finish(&mut lease, "ROLLBACK").await?;
                return Err(SqlError::Failed(
                    "a statement in the transaction failed, so PostgreSQL aborted it: \
                     rolled back, nothing in it was committed"
                        .into(),
                ));
            }
        }
        finish(&mut lease, verb).await
    }

    /// Applies the migrations not applied before; returns how many. Each
    /// runs in its own transaction, holding the ledger's lock, so hosts
    /// and instances starting together apply each once.
    pub async fn migrate(&self, migrations: Vec<Migration>) -> Result<u32, SqlError> {
        let mut names = std::collections::HashSet::new();
        if let Some(twice) = migrations.iter().find(|m| !names.insert(&m.name)) {
            return Err(SqlError::Invalid(format!(
                "migration {:?} is listed twice",
                twice.name
            )));
        }
        let _one_at_a_time = self.migrating.lock().await;
        let limits = self.limits();
        let mut lease = self.acquire(&limits).await?;
        let time = limits.transaction_timeout;
        // Until the last migration is committed: a call dropped (or ended
        // by an error) midway leaves a transaction open on the connection,
        // which is then closed rather than reused, its statement cancelled.
        lease.broken = true;
        let mut abandoned = CancelOnDrop(Some(lease.connection().client.cancel_token()));
        let client = &lease.connection().client;
        let ledger = format!(
            "CREATE TABLE IF NOT EXISTS {LEDGER} \
             (name TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)"
        );
        client
            .batch_execute(&format!("ROLLBACK; RESET ALL; {ledger}"))
            .await
            .map_err(|e| sql_error(&e, time))?;
        let mut count = 0;
        for migration in &migrations {
            let checksum = blake3::hash(migration.statements.as_bytes())
                .to_hex()
                .to_string();
            let begin = format!(
                "BEGIN; SET LOCAL statement_timeout = {}; LOCK TABLE {LEDGER} IN SHARE ROW EXCLUSIVE MODE",
                time.as_millis()
            );
            let ran = async {
                client.batch_execute(&begin).await?;
                let before = client
                    .query_opt(
                        &format!("SELECT checksum FROM {LEDGER} WHERE name = $1"),
                        &[&migration.name],
                    )
                    .await?
                    .map(|row| row.get::<_, String>(0));
                if before.is_none() {
                    client.batch_execute(&migration.statements).await?;
                    client
                        .execute(
                            &format!(
                                "INSERT INTO {LEDGER} (name, checksum, applied_at) \
                                 VALUES ($1, $2, extract(epoch FROM now())::int8)"
                            ),
                            &[&migration.name, &checksum],
                        )
                        .await?;
                }
                client.batch_execute("COMMIT").await?;
                Ok::<_, tokio_postgres::Error>(before)
            };
            match ran.await {
                Ok(None) => count += 1,
                Ok(Some(before)) if before == checksum => {}
                Ok(Some(_)) => {
                    return Err(SqlError::Invalid(format!(
                        "migration {:?} was changed after it was applied: add a new migration instead",
                        migration.name
                    )));
                }
                Err(error) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return Err(
                        sql_error(&error, time).context(&format!("migration {:?}", migration.name))
                    );
                }
            }
        }
        abandoned.0 = None;
        lease.broken = false;
        lease.connection().statements.clear();
        *self.size.lock().unwrap() = None;
        Ok(count)
    }

    /// A connection as the component's role, once the component has a
    /// share free and the server a connection free (at most the query
    /// time limit); the schema and role are made on first use.
    async fn acquire(&self, limits: &SqlLimits) -> Result<Lease, SqlError> {
        if self.dropped.load(Ordering::SeqCst) {
            return Err(SqlError::Failed("this component was removed".into()));
        }
        let waited = tokio::time::timeout(limits.query_timeout, async {
            let share = self.share.clone().acquire_owned().await;
            let in_use = self.server.in_use.clone().acquire_owned().await;
            (share.expect("never closed"), in_use.expect("never closed"))
        });
        let (share, in_use) = waited.await.map_err(|_| {
            SqlError::Timeout(format!(
                "waited {} ms for a database connection: this component's (or the host's) are all in use",
                limits.query_timeout.as_millis()
            ))
        })?;
        let reused = loop {
            let Some(idle) = self.idle.lock().unwrap().pop() else {
                break None;
            };
            if !idle.connection.client.is_closed() {
                break Some(idle.connection);
            }
        };
        let connection = match reused {
            Some(connection) => connection,
            None => {
                self.provision().await?;
                Connection {
                    client: self.server.connect_as(&self.schema).await?,
                    statements: HashMap::new(),
                    maybe_in_transaction: false,
                    failed_in_transaction: false,
                }
            }
        };
        Ok(Lease {
            connection: Some(connection),
            broken: false,
            idle: Arc::downgrade(&self.idle),
            server: self.server.clone(),
            _share: share,
            _in_use: in_use,
        })
    }

    /// Makes the schema and role once per database object (so again after
    /// the host restarts, which also resets a password a guest changed).
    async fn provision(&self) -> Result<(), SqlError> {
        let mut provisioned = self.provisioned.lock().await;
        if !*provisioned {
            self.server.provision(&self.namespace, &self.schema).await?;
            *provisioned = true;
        }
        Ok(())
    }
}

/// Refuses `params` unless `prepared` takes as many.
fn check_params(prepared: &Statement, params: &[Value]) -> Result<(), SqlError> {
    let wanted = prepared.params().len();
    if wanted != params.len() {
        return Err(SqlError::Invalid(format!(
            "the statement takes {wanted} parameter(s); {} given",
            params.len()
        )));
    }
    Ok(())
}

/// Runs the rows of `prepared` into a result, within the size limit.
async fn collect(
    client: &Client,
    prepared: &Statement,
    params: &[Value],
    limits: &SqlLimits,
) -> Result<(Rows, u64), SqlError> {
    let time = limits.query_timeout;
    let columns: Vec<String> = prepared
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let stream = client
        .query_raw(prepared, params.iter().map(Param))
        .await
        .map_err(|e| sql_error(&e, time))?;
    pin_mut!(stream);
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = stream.next().await {
        let row = row.map_err(|e| sql_error(&e, time))?;
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            let Cell(value) = row.try_get::<_, Cell>(i).map_err(|e| {
                SqlError::Invalid(
                    std::error::Error::source(&e).map_or(e.to_string(), ToString::to_string),
                )
            })?;
            bytes += value.size();
            values.push(value);
        }
        if bytes > limits.max_result_bytes {
            return Err(SqlError::Invalid(format!(
                "the result is larger than {} MiB: select fewer rows or columns",
                limits.max_result_bytes >> 20
            )));
        }
        rows.push(values);
    }
    let affected = stream.rows_affected().unwrap_or_default();
    Ok((Rows { columns, rows }, affected))
}

/// Runs a bare `BEGIN`, `COMMIT` or `ROLLBACK` on the lease; a connection
/// that fails at it is not reused.
async fn finish(lease: &mut Lease, verb: &str) -> Result<(), SqlError> {
    let client = &lease.connection().client;
    let done = tokio::time::timeout(FINISH_TIME, client.batch_execute(verb)).await;
    match done {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            lease.broken = true;
            Err(sql_error(&e, FINISH_TIME))
        }
        Err(_) => {
            lease.broken = true;
            Err(failed(format!(
                "{verb} took longer than {} s",
                FINISH_TIME.as_secs()
            )))
        }
    }
}

/// Rolls transaction `id` back if it is still open after `after`.
async fn expire(database: Weak<Database>, id: u64, after: Duration) {
    tokio::time::sleep(after).await;
    let Some(database) = database.upgrade() else {
        return;
    };
    if let Ok(mut lease) = database.transactions.end(id).await {
        tracing::warn!(
            component = &*database.namespace,
            "a SQL transaction was still open after {} ms: rolled back",
            after.as_millis()
        );
        let _ = finish(&mut lease, "ROLLBACK").await;
    }
}
