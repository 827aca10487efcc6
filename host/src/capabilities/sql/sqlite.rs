//! One component's SQLite database: a file under the state directory,
//! opened on first use, in WAL mode with every commit synced.
//!
//! The database has one connection, behind an async mutex: a statement
//! waits for it (at most the query time limit), then runs on a blocking
//! thread; a read first runs on the calling thread, for at most 2 ms (see
//! `run`). That serialises the writes of every instance of the component
//! (SQLite takes one writer at a time anyway) without `SQLITE_BUSY`. A
//! transaction holds the connection from `begin` to `commit` or
//! `rollback`, or until its time is up, when the host rolls it back.
//!
//! What a guest's statements may do is narrowed at prepare time by an
//! authorizer: no `ATTACH` (another file), no `PRAGMA` (the size quota is
//! `max_page_count`, which a pragma could lift), no `BEGIN`, `COMMIT` or
//! savepoints (transactions are the host's, through `begin`), no `TEMP`
//! tables, views or triggers (kept outside the file and its quota), and no
//! writes or DDL on the host's `_cello_*` tables. The host's own statements
//! pass, but not a guest's trigger or view they fire. The connection runs
//! in SQLite's defensive mode.
//!
//! A progress handler interrupts a statement past its deadline, between VM
//! steps. One step can be long: a built-in function over a large value.
//! Values are capped at 4 MiB and `LIKE`/`GLOB` patterns at 256 bytes, and
//! `instr` and `replace` are replaced by linear-time versions, so no single
//! step runs for long. A query's result is counted as it is copied, and
//! refused past 16 MiB before the next value is copied.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::transactions::{MAX_WHY_BYTES, Transactions, cut, undone};
use super::{Executed, Migration, Rows, SqlError, SqlLimits, Value};

/// Longest statement, in bytes.
const MAX_STATEMENT_BYTES: i32 = 1 << 20;
/// Largest text or blob a statement may make, in bytes: with the pattern
/// cap below, what bounds the time one built-in function call takes.
const MAX_VALUE_BYTES: i32 = 4 << 20;
/// Longest `LIKE` or `GLOB` pattern, in bytes (SQLite's default is 50000).
const MAX_PATTERN_BYTES: i32 = 256;
/// Most columns a table or result may have (SQLite's default is 2000).
const MAX_COLUMNS: i32 = 500;
/// VM steps between two looks at the deadline.
const STEPS_BETWEEN_CHECKS: i32 = 1000;
/// Time a `BEGIN`, `COMMIT` or `ROLLBACK` may take.
const FINISH_TIME: Duration = Duration::from_secs(60);
/// The table that records which migrations were applied.
const LEDGER: &str = "main._cello_migrations";

/// The connection, once opened.
type Slot = Option<Session>;
/// The connection, held by one statement or transaction.
type Held = Holding;

/// The connection while one statement or transaction holds it. Let go
/// inside a SQLite transaction (a call cancelled while its statement ran,
/// its request timed out), it rolls the transaction back, so the
/// connection is never handed on mid-transaction.
struct Holding(OwnedMutexGuard<Slot>);

impl std::ops::Deref for Holding {
    type Target = Slot;

    fn deref(&self) -> &Slot {
        &self.0
    }
}

impl std::ops::DerefMut for Holding {
    fn deref_mut(&mut self) -> &mut Slot {
        &mut self.0
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        if let Some(session) = self.0.as_mut()
            && !session.connection.is_autocommit()
        {
            tracing::warn!("a SQL transaction was let go unfinished: rolled back");
            // Not the call that let it go: a stop meant for it is not.
            session.new_call();
            let _ = session.finish("ROLLBACK");
        }
    }
}

/// One component's database.
pub struct Database {
    namespace: Arc<str>,
    path: PathBuf,
    limits: RwLock<SqlLimits>,
    connection: Arc<AsyncMutex<Slot>>,
    /// Open transactions, by id. Each holds the connection.
    transactions: Transactions<Held>,
    /// Set when the component was removed: it may no longer use it.
    dropped: AtomicBool,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// The database of `namespace`, kept at `path`; nothing is opened yet.
    pub fn new(namespace: Arc<str>, path: PathBuf, limits: SqlLimits) -> Arc<Self> {
        Arc::new(Self {
            namespace,
            path,
            limits: RwLock::new(limits),
            connection: Arc::default(),
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

    /// Refuses every later call, and rolls back open transactions.
    pub async fn close(&self) {
        self.dropped.store(true, Ordering::SeqCst);
        for held in self.transactions.end_all().await {
            let _ = settle(held, |session| session.finish("ROLLBACK")).await;
        }
    }

    /// Runs one statement and returns its rows.
    pub async fn query(
        &self,
        statement: String,
        params: Vec<Value>,
        transaction: Option<u64>,
    ) -> Result<Rows, SqlError> {
        let limits = self.limits();
        self.with_connection(transaction, move |session, thread| {
            session.noting_rollback(|s| s.query(&statement, &params, &limits, thread))
        })
        .await
    }

    /// Runs one statement that changes rows.
    pub async fn execute(
        &self,
        statement: String,
        params: Vec<Value>,
        transaction: Option<u64>,
    ) -> Result<Executed, SqlError> {
        let limits = self.limits();
        // A write waits for its commit's sync: never on the calling thread.
        self.with_connection(transaction, move |session, thread| {
            (thread == Thread::Blocking)
                .then(|| session.noting_rollback(|s| s.execute(&statement, &params, &limits)))
        })
        .await
    }

    /// Begins a transaction, which holds the connection until it ends.
    pub async fn begin(self: &Arc<Self>) -> Result<u64, SqlError> {
        let limits = self.limits();
        let held = self.acquire(&limits).await?;
        let (held, began) = settle(held, |session| session.finish("BEGIN IMMEDIATE")).await;
        began?;
        let id = self.transactions.open(held);
        // A transaction left open (a guest that forgot, or trapped) holds
        // the database: past its time it is rolled back.
        let database = Arc::downgrade(self);
        tokio::spawn(expire(database, id, limits.transaction_timeout));
        Ok(id)
    }

    /// Ends transaction `id` with `COMMIT` or `ROLLBACK`.
    pub async fn finish(&self, id: u64, verb: &'static str) -> Result<(), SqlError> {
        let held = match self.transactions.end_or_undone(id).await? {
            Ok(held) => held,
            // SQLite rolled it back already: a rollback has nothing to do.
            Err(_) if verb == "ROLLBACK" => return Ok(()),
            Err(why) => return Err(undone(&why)),
        };
        let (_, finished) = settle(held, move |session| {
            let finished = session.finish(verb);
            if finished.is_err() && verb == "COMMIT" {
                // A commit refused (a deferred constraint) leaves the
                // transaction open: end it, so the connection is free.
                let _ = session.finish("ROLLBACK");
            }
            finished
        })
        .await;
        finished
    }

    /// Applies the migrations not applied before; returns how many.
    pub async fn migrate(&self, migrations: Vec<Migration>) -> Result<u32, SqlError> {
        let limits = self.limits();
        self.with_connection(None, move |session, thread| {
            (thread == Thread::Blocking).then(|| session.migrate(&migrations, &limits))
        })
        .await
    }

    /// Runs `op` on the connection: that of transaction `transaction`, or
    /// the connection once it is free; see [`run`] for the thread.
    async fn with_connection<T: Send + 'static>(
        &self,
        transaction: Option<u64>,
        op: impl Fn(&mut Session, Thread) -> Option<Result<T, SqlError>> + Send + 'static,
    ) -> Result<T, SqlError> {
        let Some(id) = transaction else {
            let held = self.acquire(&self.limits()).await?;
            return run(held, op).await.1;
        };
        let transaction = self.transactions.get(id)?;
        let mut slot = transaction.lock().await;
        let held = slot.take()?;
        let (held, result) = run(held, op).await;
        if held.as_ref().is_none_or(|s| !s.connection.is_autocommit()) {
            slot.connection = Some(held);
            return result;
        }
        // SQLite rolls back the whole transaction when some statements fail
        // in it (a write interrupted at its time limit, a full database,
        // `INSERT OR ROLLBACK`, a trigger's `RAISE(ROLLBACK, ...)`): the
        // connection is out of it, and the transaction's later statements
        // would each commit on their own. They fail instead, and the
        // connection is free for others.
        let error = match result {
            Ok(_) => SqlError::Failed("the transaction ended inside this statement".into()),
            Err(error) => error,
        };
        let why = cut(error.sentence(), MAX_WHY_BYTES);
        tracing::warn!(
            component = &*self.namespace,
            "SQLite rolled back a transaction: {why}"
        );
        slot.undo(why);
        drop(held);
        Err(error.context("SQLite rolled back the whole transaction, nothing in it was committed"))
    }

    /// The connection, opened if need be, once no one else holds it.
    async fn acquire(&self, limits: &SqlLimits) -> Result<Held, SqlError> {
        if self.dropped.load(Ordering::SeqCst) {
            return Err(SqlError::Failed("this component was removed".into()));
        }
        let wait = tokio::time::timeout(limits.query_timeout, self.connection.clone().lock_owned());
        let mut held = Holding(wait.await.map_err(|_| {
            SqlError::Timeout(format!(
                "waited {} ms for the database: a transaction holds it",
                limits.query_timeout.as_millis()
            ))
        })?);
        // Removed while this call waited: its file may be gone already.
        if self.dropped.load(Ordering::SeqCst) {
            return Err(SqlError::Failed("this component was removed".into()));
        }
        if held.is_none() {
            let path = self.path.clone();
            let opened = tokio::task::spawn_blocking(move || Session::open(&path))
                .await
                .map_err(|e| SqlError::Failed(e.to_string()))??;
            *held = Some(opened);
        }
        Ok(held)
    }
}

/// Rolls transaction `id` back if it is still open after `after`.
async fn expire(database: Weak<Database>, id: u64, after: Duration) {
    tokio::time::sleep(after).await;
    let Some(database) = database.upgrade() else {
        return;
    };
    if let Ok(held) = database.transactions.end(id).await {
        tracing::warn!(
            component = &*database.namespace,
            "a SQL transaction was still open after {} ms: rolled back",
            after.as_millis()
        );
        let _ = settle(held, |session| session.finish("ROLLBACK")).await;
    }
}

/// Prepared statements kept per database.
const STATEMENT_CACHE: usize = 64;

/// Time a read may run on the calling thread before it is stopped and run
/// again on a blocking thread.
const INLINE_BUDGET: Duration = Duration::from_millis(2);

/// Where a statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Thread {
    /// The calling thread (the guest's), for at most [`INLINE_BUDGET`]:
    /// only a read, which can be stopped and run again.
    Calling,
    /// A blocking thread, with the statement's time limit.
    Blocking,
}

/// Runs `op` on the held connection: on the calling thread if it takes
/// that (`Some`), or else on a blocking thread.
///
/// A read by primary key takes microseconds; the hop to a blocking thread
/// and back costs more than that in thread switches, and makes the guest's
/// call wait (an async handler suspends, its instance is woken again). Done
/// on the calling thread, the host function returns on its first poll and
/// the guest goes on at once. Measured on the todos read route (wrk -c32,
/// old and new host alternately): server CPU per request 216 -> 180 us,
/// context switches per request 6.5 -> 4.9; with the Python SDK's matching
/// change, `make bench-sql` went from 0.94 to 1.50 of FastAPI's req/s.
async fn run<T: Send + 'static>(
    mut held: Held,
    op: impl Fn(&mut Session, Thread) -> Option<Result<T, SqlError>> + Send + 'static,
) -> (Held, Result<T, SqlError>) {
    if let Some(session) = held.as_mut()
        && let Some(done) = {
            session.new_call();
            op(session, Thread::Calling)
        }
    {
        return (held, done);
    }
    blocking(held, move |session| {
        op(session, Thread::Blocking).expect("every statement runs on a blocking thread")
    })
    .await
}

/// Runs `op` on the held connection on a blocking thread; gives the
/// connection back with the result.
///
/// A caller that stops waiting (its request ran out of time, its client
/// left) stops its statement too, at the progress handler's next look, or
/// before it begins: otherwise it would hold the connection, and every
/// later call waiting for it, until its own time limit.
async fn blocking<T: Send + 'static>(
    held: Held,
    op: impl FnOnce(&mut Session) -> Result<T, SqlError> + Send + 'static,
) -> (Held, Result<T, SqlError>) {
    on_blocking_thread(held, true, op).await
}

/// The same for `op` that begins or ends a transaction: run to its end
/// whether or not its caller waits, never left half done.
async fn settle<T: Send + 'static>(
    held: Held,
    op: impl FnOnce(&mut Session) -> Result<T, SqlError> + Send + 'static,
) -> (Held, Result<T, SqlError>) {
    on_blocking_thread(held, false, op).await
}

/// [`blocking`] when `stoppable`, else [`settle`].
async fn on_blocking_thread<T: Send + 'static>(
    mut held: Held,
    stoppable: bool,
    op: impl FnOnce(&mut Session) -> Result<T, SqlError> + Send + 'static,
) -> (Held, Result<T, SqlError>) {
    let call = held.as_ref().map(|s| (s.new_call(), s.stop.clone()));
    let call = call.filter(|_| stoppable);
    let mut abandoned = StopOnDrop(call.clone());
    let joined = tokio::task::spawn_blocking(move || {
        let result = match held.as_mut() {
            Some(_)
                if call
                    .as_ref()
                    .is_some_and(|(id, stop)| stop.load(Ordering::SeqCst) == *id) =>
            {
                Err(SqlError::Failed(
                    "the call was cut before its statement ran".into(),
                ))
            }
            Some(session) => op(session),
            None => Err(SqlError::Failed("the database is not open".into())),
        };
        (held, result)
    })
    .await;
    abandoned.0 = None;
    match joined {
        Ok(done) => done,
        Err(e) => panic!("a SQL statement's thread failed: {e}"),
    }
}

/// When dropped while set, stops the call it names: the progress handler
/// interrupts that call's statement, and one not yet begun never runs. A
/// later call has another id, so a stop that comes late touches nothing.
struct StopOnDrop(Option<(u64, Arc<AtomicU64>)>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some((id, stop)) = &self.0 {
            stop.store(*id, Ordering::SeqCst);
        }
    }
}

/// An open connection and what guards it.
struct Session {
    connection: Connection,
    /// When the running statement must stop.
    deadline: Arc<Mutex<Instant>>,
    /// The id of the call using the connection ([`Session::new_call`]).
    call: Arc<AtomicU64>,
    /// The id of a call whose caller stopped waiting: while it is the one
    /// using the connection, its statements are interrupted.
    stop: Arc<AtomicU64>,
    /// While set, the host's own statements pass the authorizer.
    host_mode: Arc<AtomicBool>,
    /// Set when a statement that changes the schema was prepared, or a
    /// transaction rolled back: the kept statements' columns may be stale.
    schema_changed: Arc<AtomicBool>,
    /// The `max_page_count` in force, once set.
    max_pages: Option<i64>,
    page_size: u64,
}

impl Session {
    fn open(path: &Path) -> Result<Self, SqlError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| SqlError::Failed(format!("cannot make {}: {e}", dir.display())))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_EXRESCODE;
        let connection = Connection::open_with_flags(path, flags).map_err(failed)?;
        let setup = |connection: &Connection| -> rusqlite::Result<u64> {
            connection.pragma_update(None, "journal_mode", "WAL")?;
            connection.pragma_update(None, "synchronous", "FULL")?;
            connection.pragma_update(None, "foreign_keys", true)?;
            connection.pragma_update(None, "trusted_schema", false)?;
            connection
                .set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
            connection.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
            connection.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, MAX_STATEMENT_BYTES)?;
            connection.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)?;
            connection.set_limit(Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_PATTERN_BYTES)?;
            connection.set_limit(Limit::SQLITE_LIMIT_COLUMN, MAX_COLUMNS)?;
            // The WAL is cut back to this after each checkpoint.
            connection.pragma_update(None, "journal_size_limit", 16 << 20)?;
            linear_functions(connection)?;
            connection
                .pragma_query_value(None, "page_size", |row| row.get::<_, i64>(0))
                .map(|size| size.max(512) as u64)
        };
        let page_size = setup(&connection).map_err(failed)?;
        // A guest's statements are kept prepared, by their text: a route
        // runs the same few again and again. Only a guest's are cached, so
        // each was authorized as a guest's; SQLite prepares one again (and
        // asks the authorizer again) when the schema changes.
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let deadline = Arc::new(Mutex::new(Instant::now()));
        let host_mode = Arc::new(AtomicBool::new(false));
        let passed = deadline.clone();
        let call = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicU64::new(u64::MAX));
        let (running, stopped) = (call.clone(), stop.clone());
        connection
            .progress_handler(
                STEPS_BETWEEN_CHECKS,
                Some(move || {
                    running.load(Ordering::SeqCst) == stopped.load(Ordering::SeqCst)
                        || Instant::now() > *passed.lock().unwrap()
                }),
            )
            .map_err(failed)?;
        let host = host_mode.clone();
        let schema_changed = Arc::new(AtomicBool::new(false));
        let changed = schema_changed.clone();
        connection
            .authorizer(Some(move |context: AuthContext<'_>| {
                if changes_schema(&context.action) {
                    changed.store(true, Ordering::Relaxed);
                }
                // The host's own statements pass; a guest's trigger or view
                // they fire (`accessor` names it) does not.
                if host.load(Ordering::Relaxed) && context.accessor.is_none() {
                    return Authorization::Allow;
                }
                authorize(&context)
            }))
            .map_err(failed)?;
        Ok(Self {
            connection,
            deadline,
            call,
            stop,
            host_mode,
            schema_changed,
            max_pages: None,
            page_size,
        })
    }

    /// Starts the clock for a statement, with the size quota in force, and
    /// forgets the kept statements if the schema changed since: SQLite
    /// prepares a stale one again when it runs, but its columns are read
    /// before that.
    fn arm(&mut self, limits: &SqlLimits, time: Duration) -> Result<(), SqlError> {
        if self.schema_changed.swap(false, Ordering::Relaxed) {
            self.connection.flush_prepared_statement_cache();
        }
        let pages = limits.max_bytes.map_or(i64::from(u32::MAX), |bytes| {
            i64::try_from(bytes.div_ceil(self.page_size)).unwrap_or(i64::MAX)
        });
        if self.max_pages != Some(pages) {
            self.as_host(|connection| connection.pragma_update(None, "max_page_count", pages))
                .map_err(failed)?;
            self.max_pages = Some(pages);
        }
        self.clock(time);
        Ok(())
    }

    /// Makes a new call the one using the connection, and returns its id:
    /// a stop meant for an earlier call no longer applies.
    fn new_call(&self) -> u64 {
        self.call.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Runs `op`. If it leaves a transaction SQLite rolled back, what it
    /// undid may have been a schema change: the kept statements' columns
    /// may be stale.
    fn noting_rollback<T>(&mut self, op: impl FnOnce(&mut Self) -> T) -> T {
        let in_transaction = !self.connection.is_autocommit();
        let done = op(self);
        if in_transaction && self.connection.is_autocommit() {
            self.schema_changed.store(true, Ordering::Relaxed);
        }
        done
    }

    /// Gives the next statements `time` to run.
    fn clock(&self, time: Duration) {
        *self.deadline.lock().unwrap() = Instant::now() + time;
    }

    /// Runs the host's own statements, past the authorizer.
    fn as_host<T>(
        &self,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.host_mode.store(true, Ordering::Relaxed);
        let result = op(&self.connection);
        self.host_mode.store(false, Ordering::Relaxed);
        result
    }

    /// Runs a statement and returns its rows. On the calling thread, only
    /// a read that ends within [`INLINE_BUDGET`]: otherwise `None`, having
    /// changed nothing.
    fn query(
        &mut self,
        sql: &str,
        params: &[Value],
        limits: &SqlLimits,
        thread: Thread,
    ) -> Option<Result<Rows, SqlError>> {
        let time = match thread {
            Thread::Calling => INLINE_BUDGET.min(limits.query_timeout),
            Thread::Blocking => limits.query_timeout,
        };
        if let Err(error) = self.arm(limits, time) {
            return Some(Err(error));
        }
        let mut statement = match self.connection.prepare_cached(sql) {
            Ok(statement) => statement,
            Err(error) => return Some(Err(timeout_error(limits.query_timeout)(error))),
        };
        if thread == Thread::Calling && !statement.readonly() {
            return None;
        }
        match Self::rows_of(&mut statement, params, limits) {
            // Stopped at the budget, not the limit: a read, so run again.
            Err(SqlError::Timeout(_)) if time < limits.query_timeout => None,
            read => Some(read),
        }
    }

    /// Binds `params` to `statement` and reads its rows, within the limits.
    fn rows_of(
        statement: &mut rusqlite::CachedStatement<'_>,
        params: &[Value],
        limits: &SqlLimits,
    ) -> Result<Rows, SqlError> {
        let timed_out = timeout_error(limits.query_timeout);
        bind(statement, params)?;
        let columns: Vec<String> = statement
            .column_names()
            .iter()
            .map(|c| c.to_string())
            .collect();
        let json: Vec<bool> = statement
            .columns()
            .iter()
            .map(|c| {
                c.decl_type()
                    .is_some_and(|t| t.eq_ignore_ascii_case("json"))
            })
            .collect();
        let mut rows = Vec::new();
        let mut bytes = 0usize;
        let mut raw = statement.raw_query();
        while let Some(row) = raw.next().map_err(&timed_out)? {
            let mut values = Vec::with_capacity(columns.len());
            for (i, is_json) in json.iter().enumerate() {
                let raw = row.get_ref(i).map_err(failed)?;
                // Counted before it is copied: a wide row of large values
                // is refused at the value that passes the cap.
                bytes += 16 + raw.as_bytes().map_or(0, <[u8]>::len);
                if bytes > limits.max_result_bytes {
                    return Err(SqlError::Invalid(format!(
                        "the result is larger than {} MiB: select fewer rows or columns",
                        limits.max_result_bytes >> 20
                    )));
                }
                values.push(value_of(raw, *is_json));
            }
            rows.push(values);
        }
        Ok(Rows { columns, rows })
    }

    fn execute(
        &mut self,
        sql: &str,
        params: &[Value],
        limits: &SqlLimits,
    ) -> Result<Executed, SqlError> {
        self.arm(limits, limits.query_timeout)?;
        let timed_out = timeout_error(limits.query_timeout);
        // SAFETY: the handle is this connection's own, used on the thread
        // that holds the connection; the call only sets a number SQLite
        // keeps for it. Zeroed, a row id after the statement is its own
        // (rusqlite has no safe way to ask whether a statement inserted).
        unsafe { rusqlite::ffi::sqlite3_set_last_insert_rowid(self.connection.handle(), 0) };
        let mut statement = self.connection.prepare_cached(sql).map_err(&timed_out)?;
        bind(&mut statement, params)?;
        // Rows a statement returns (`RETURNING`) are stepped through and
        // dropped: `query` is the call that keeps them.
        let mut raw = statement.raw_query();
        while raw.next().map_err(&timed_out)?.is_some() {}
        drop(raw);
        drop(statement);
        let last = self.connection.last_insert_rowid();
        Ok(Executed {
            rows_affected: self.connection.changes(),
            last_insert_id: (last != 0).then_some(last),
        })
    }

    /// Runs a bare `BEGIN`, `COMMIT` or `ROLLBACK`.
    fn finish(&mut self, verb: &str) -> Result<(), SqlError> {
        // Ending a transaction must not be cut short.
        self.clock(FINISH_TIME);
        if verb == "ROLLBACK" {
            // What it undoes may have been a schema change.
            self.schema_changed.store(true, Ordering::Relaxed);
        }
        self.as_host(|connection| connection.execute_batch(verb))
            .map_err(failed_as_sql)
    }

    fn migrate(&mut self, migrations: &[Migration], limits: &SqlLimits) -> Result<u32, SqlError> {
        let mut names = std::collections::HashSet::new();
        if let Some(twice) = migrations.iter().find(|m| !names.insert(&m.name)) {
            return Err(SqlError::Invalid(format!(
                "migration {:?} is listed twice",
                twice.name
            )));
        }
        self.arm(limits, limits.transaction_timeout)?;
        let applied = self
            .as_host(|connection| {
                connection.execute_batch(&format!(
                    "CREATE TABLE IF NOT EXISTS {LEDGER} \
                     (name TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)"
                ))?;
                let mut statement =
                    connection.prepare(&format!("SELECT name, checksum FROM {LEDGER}"))?;
                statement
                    .query_map([], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })?
                    .collect::<rusqlite::Result<HashMap<_, _>>>()
            })
            .map_err(failed_as_sql)?;
        let mut count = 0;
        for migration in migrations {
            let checksum = blake3::hash(migration.statements.as_bytes())
                .to_hex()
                .to_string();
            match applied.get(&migration.name) {
                Some(before) if *before == checksum => continue,
                Some(_) => {
                    return Err(SqlError::Invalid(format!(
                        "migration {:?} was changed after it was applied: add a new migration instead",
                        migration.name
                    )));
                }
                None => {}
            }
            self.finish("BEGIN IMMEDIATE")?;
            self.arm(limits, limits.transaction_timeout)?;
            let ran = self
                .connection
                .execute_batch(&migration.statements)
                .map_err(timeout_error(limits.transaction_timeout))
                .and_then(|()| {
                    self.as_host(|connection| {
                        connection.execute(
                            &format!("INSERT INTO {LEDGER} (name, checksum, applied_at) VALUES (?1, ?2, unixepoch())"),
                            (&migration.name, &checksum),
                        )
                    })
                    .map_err(failed_as_sql)
                })
                .and_then(|_| self.finish("COMMIT"));
            if let Err(error) = ran {
                let _ = self.finish("ROLLBACK");
                return Err(error.context(&format!("migration {:?}", migration.name)));
            }
            count += 1;
        }
        Ok(count)
    }
}

/// What a guest's statement may do.
fn authorize(context: &AuthContext<'_>) -> Authorization {
    use AuthAction as A;
    // Nothing is made or written in `temp`: it is outside the file and its
    // quota (`CREATE TABLE temp.t AS ...` is a plain CREATE TABLE there).
    let in_temp = context.database_name == Some("temp");
    let denied = match &context.action {
        A::Attach { .. } | A::Detach { .. } | A::Pragma { .. } => true,
        A::Transaction { .. } | A::Savepoint { .. } => true,
        A::CreateTempTable { .. }
        | A::CreateTempIndex { .. }
        | A::CreateTempTrigger { .. }
        | A::CreateTempView { .. } => true,
        A::Function { function_name } => function_name.eq_ignore_ascii_case("load_extension"),
        A::Insert { table_name }
        | A::Update { table_name, .. }
        | A::Delete { table_name }
        | A::CreateTable { table_name }
        | A::DropTable { table_name }
        | A::AlterTable { table_name, .. }
        | A::CreateIndex { table_name, .. }
        | A::DropIndex { table_name, .. }
        | A::CreateTrigger { table_name, .. }
        | A::DropTrigger { table_name, .. } => in_temp || is_hosts(table_name),
        A::CreateView { .. } | A::CreateVtable { .. } => in_temp,
        _ => false,
    };
    if denied {
        Authorization::Deny
    } else {
        Authorization::Allow
    }
}

/// Whether `action` makes, alters or drops part of the schema.
fn changes_schema(action: &AuthAction<'_>) -> bool {
    use AuthAction as A;
    matches!(
        action,
        A::CreateTable { .. }
            | A::DropTable { .. }
            | A::AlterTable { .. }
            | A::CreateIndex { .. }
            | A::DropIndex { .. }
            | A::CreateView { .. }
            | A::DropView { .. }
            | A::CreateTrigger { .. }
            | A::DropTrigger { .. }
            | A::CreateVtable { .. }
            | A::DropVtable { .. }
    )
}

/// Whether `table` is one the host keeps (the migration ledger).
fn is_hosts(table: &str) -> bool {
    table
        .get(..7)
        .is_some_and(|start| start.eq_ignore_ascii_case("_cello_"))
}

/// `instr` and `replace` in linear time: SQLite's compare at every
/// position, so one call over a large value would run for minutes, between
/// two looks at the deadline.
fn linear_functions(connection: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::{Context, FunctionFlags};
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    connection.create_scalar_function("instr", 2, flags, |ctx: &Context<'_>| {
        let position = match (ctx.get_raw(0), ctx.get_raw(1)) {
            (ValueRef::Null, _) | (_, ValueRef::Null) => return Ok(None),
            (ValueRef::Blob(haystack), ValueRef::Blob(needle)) => {
                memchr::memmem::find(haystack, needle).map_or(0, |at| at + 1)
            }
            _ => {
                let haystack = text_of(ctx.get_raw(0));
                let needle = text_of(ctx.get_raw(1));
                // A position in characters, as SQLite's for text.
                haystack
                    .find(needle.as_str())
                    .map_or(0, |at| haystack[..at].chars().count() + 1)
            }
        };
        Ok(Some(position as i64))
    })?;
    connection.create_scalar_function("replace", 3, flags, |ctx: &Context<'_>| {
        if (0..3).any(|i| matches!(ctx.get_raw(i), ValueRef::Null)) {
            return Ok(None);
        }
        let text = text_of(ctx.get_raw(0));
        let from = text_of(ctx.get_raw(1));
        if from.is_empty() {
            return Ok(Some(text));
        }
        let replaced = text.replace(from.as_str(), &text_of(ctx.get_raw(2)));
        if replaced.len() > MAX_VALUE_BYTES as usize {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_TOOBIG),
                Some("string or blob too big".into()),
            ));
        }
        Ok(Some(replaced))
    })
}

/// A value as text, as SQLite converts one for a text function.
fn text_of(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(r) => r.to_string(),
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
    }
}

/// Binds `params` to the statement's placeholders: `?` in order, `?N`
/// and `$N` by number.
fn bind(statement: &mut rusqlite::Statement<'_>, params: &[Value]) -> Result<(), SqlError> {
    let count = statement.parameter_count();
    let mut wanted = 0;
    for index in 1..=count {
        let number = match statement.parameter_name(index) {
            None => index,
            Some(name) => name[1..].parse::<usize>().map_err(|_| {
                SqlError::Invalid(format!(
                    "named parameter {name} is not supported: use ?, ?1 or $1 with a list of values"
                ))
            })?,
        };
        wanted = wanted.max(number);
        let Some(value) = number.checked_sub(1).and_then(|i| params.get(i)) else {
            continue;
        };
        let bound = match value {
            Value::Null => statement.raw_bind_parameter(index, rusqlite::types::Null),
            Value::Integer(i) => statement.raw_bind_parameter(index, i),
            Value::Real(r) => statement.raw_bind_parameter(index, r),
            Value::Text(t) | Value::Json(t) => statement.raw_bind_parameter(index, t),
            Value::Blob(b) => statement.raw_bind_parameter(index, b),
        };
        bound.map_err(failed_as_sql)?;
    }
    if wanted != params.len() {
        return Err(SqlError::Invalid(format!(
            "the statement takes {wanted} parameter(s); {} given",
            params.len()
        )));
    }
    Ok(())
}

fn value_of(value: ValueRef<'_>, json: bool) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) if json => Value::Json(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// Maps an error, naming the time limit when the statement ran past it.
fn timeout_error(limit: Duration) -> impl Fn(rusqlite::Error) -> SqlError {
    move |error| match error.sqlite_error_code() {
        Some(ErrorCode::OperationInterrupted) => SqlError::Timeout(format!(
            "the statement ran past the time limit of {} ms",
            limit.as_millis()
        )),
        _ => failed_as_sql(error),
    }
}

/// A SQLite error, in the guest's terms.
fn failed_as_sql(error: rusqlite::Error) -> SqlError {
    let message = error.to_string();
    match &error {
        rusqlite::Error::MultipleStatement => {
            SqlError::Invalid("one statement per call (migrations may hold many)".into())
        }
        rusqlite::Error::InvalidParameterCount(..) | rusqlite::Error::InvalidParameterName(_) => {
            SqlError::Invalid(message)
        }
        rusqlite::Error::SqliteFailure(code, _) => match code.code {
            ErrorCode::ConstraintViolation => SqlError::Constraint(message),
            ErrorCode::DiskFull => SqlError::Quota(format!(
                "the database is full: at its size quota, or the disk is ({message})"
            )),
            ErrorCode::OperationInterrupted => SqlError::Timeout(message),
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => SqlError::Timeout(message),
            ErrorCode::AuthorizationForStatementDenied => SqlError::Invalid(format!(
                "{message}: a component may not attach databases, run pragmas, begin or \
                 commit transactions in SQL (use the begin call), make TEMP tables, or \
                 change the host's _cello_ tables"
            )),
            ErrorCode::Unknown
            | ErrorCode::TypeMismatch
            | ErrorCode::ParameterOutOfRange
            | ErrorCode::TooBig
            | ErrorCode::ReadOnly
            | ErrorCode::ApiMisuse => SqlError::Invalid(message),
            _ => failed(error),
        },
        _ => SqlError::Invalid(message),
    }
}

/// A failure of the database itself: logged in full, named to the guest.
fn failed(error: impl std::fmt::Display) -> SqlError {
    tracing::error!("SQL database error: {error}");
    SqlError::Failed(format!("the database failed: {error}"))
}
