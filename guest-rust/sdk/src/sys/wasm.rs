//! The component's imports, as the rest of the SDK calls them. A `sync`
//! build imports no `async func`: it sleeps through WASI, runs SQL and
//! outbound HTTP through the `-blocking` functions, and has no streamed
//! request bodies.

#[cfg(not(feature = "sync"))]
use crate::bindings::cello::component::streams::{self, StreamError};
use crate::bindings::cello::component::{cache, config, host, kv, outbound};
use crate::body::BodyError;
use crate::host::Level;
use crate::outbound::{OutgoingRequest, Reply, SendError};

pub(crate) fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => host::Level::Trace,
        Level::Debug => host::Level::Debug,
        Level::Info => host::Level::Info,
        Level::Warn => host::Level::Warn,
        Level::Error => host::Level::Error,
    };
    host::log(level, message);
}

#[cfg(not(feature = "sync"))]
thread_local! {
    /// Set while the host's sync `handle` call runs in an async build.
    static SYNC_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `call`, a sync route's whole call (`handle`, `packed.handle`), in
/// an async build: a sync call cannot suspend the component, so what the
/// SDK awaits of the host meanwhile blocks the instance (a sleep, SQL,
/// outbound HTTP), as in a `sync` build. Awaiting an `async func` import
/// there would trap.
#[cfg(not(feature = "sync"))]
pub(crate) fn in_sync_call<T>(call: impl FnOnce() -> T) -> T {
    SYNC_CALL.set(true);
    let out = call();
    SYNC_CALL.set(false);
    out
}

#[cfg(not(feature = "sync"))]
fn sync_call() -> bool {
    SYNC_CALL.get()
}

/// False where nothing can suspend the component (a sync build, a sync
/// call): there a wait only blocks, so an SSE keep-alive has no reason to
/// tick.
pub(crate) fn can_suspend() -> bool {
    #[cfg(feature = "sync")]
    return false;
    #[cfg(not(feature = "sync"))]
    !sync_call()
}

#[cfg(not(feature = "sync"))]
pub(crate) async fn sleep(ms: u32) {
    if sync_call() {
        std::thread::sleep(std::time::Duration::from_millis(ms.into()));
    } else {
        host::sleep(ms).await;
    }
}

/// Blocks the instance for `ms`: a sync build cannot suspend.
#[cfg(feature = "sync")]
pub(crate) async fn sleep(ms: u32) {
    std::thread::sleep(std::time::Duration::from_millis(ms.into()));
}

/// The request body a streaming call hands the guest.
#[cfg(not(feature = "sync"))]
pub(crate) struct BodyReader(pub(crate) streams::BodyReader);

/// A sync build is handed no body to read as it arrives: it gets bodies
/// whole, so there is never one of these.
#[cfg(feature = "sync")]
pub(crate) struct BodyReader(std::convert::Infallible);

#[cfg(feature = "sync")]
impl BodyReader {
    pub(crate) async fn read(&self) -> Result<Option<Vec<u8>>, BodyError> {
        match self.0 {}
    }
}

#[cfg(not(feature = "sync"))]
impl BodyReader {
    /// The next chunk; none at the end of the body.
    pub(crate) async fn read(&self) -> Result<Option<Vec<u8>>, BodyError> {
        self.0.read().await.map_err(|error| match error {
            StreamError::TooLarge(limit) => BodyError::TooLarge(limit),
            StreamError::TimedOut => BodyError::TimedOut,
            StreamError::Closed => BodyError::Failed("the client went away".into()),
            StreamError::Failed(why) => BodyError::Failed(why),
        })
    }
}

pub(crate) fn cache_invalidate(tags: &[String]) -> u32 {
    cache::invalidate(tags)
}

pub(crate) fn kv_get(key: &str) -> Result<Option<Vec<u8>>, String> {
    kv::get(key)
}

pub(crate) fn kv_set(key: &str, value: &[u8], ttl_seconds: Option<u32>) -> Result<(), String> {
    kv::set(key, value, ttl_seconds)
}

pub(crate) fn kv_delete(key: &str) -> Result<bool, String> {
    kv::delete(key)
}

pub(crate) fn kv_list_keys(prefix: &str) -> Result<Vec<String>, String> {
    kv::list_keys(prefix)
}

pub(crate) fn kv_increment(key: &str, delta: i64) -> Result<i64, String> {
    kv::increment(key, delta)
}

pub(crate) fn config_get(name: &str) -> Option<String> {
    config::get(name)
}

pub(crate) fn config_secret(name: &str) -> Option<String> {
    config::get_secret(name)
}

/// Sends `request`, blocking the instance where nothing can suspend it
/// (a `sync` build, a sync call).
pub(crate) async fn outbound_send(request: OutgoingRequest) -> Result<Reply, SendError> {
    let request = outbound::OutgoingRequest {
        method: request.method,
        url: request.url,
        headers: request.headers,
        body: request.body,
        timeout_ms: request.timeout_ms,
    };
    #[cfg(feature = "sync")]
    let sent = outbound::send_blocking(&request);
    #[cfg(not(feature = "sync"))]
    let sent = if sync_call() {
        outbound::send_blocking(&request)
    } else {
        outbound::send(request).await
    };
    match sent {
        Ok(r) => Ok(Reply::from_wire(r.status, r.headers, r.body)),
        Err(outbound::Error::Denied(why)) => Err(SendError::Denied(why)),
        Err(outbound::Error::Timeout) => Err(SendError::Timeout),
        Err(outbound::Error::Failed(why)) => Err(SendError::Failed(why)),
    }
}

mod sql_calls {
    use crate::bindings::cello::component::sql as wit;
    use crate::sql::{Done, Executed, Op, Rows, SqlError, Value};

    fn to_wit(value: Value) -> wit::Value {
        match value {
            Value::Null => wit::Value::Null,
            Value::Integer(i) => wit::Value::Integer(i),
            Value::Real(r) => wit::Value::Real(r),
            Value::Text(t) => wit::Value::Text(t),
            Value::Blob(b) => wit::Value::Blob(b),
            Value::Json(j) => wit::Value::Json(j),
        }
    }

    fn from_wit(value: wit::Value) -> Value {
        match value {
            wit::Value::Null => Value::Null,
            wit::Value::Integer(i) => Value::Integer(i),
            wit::Value::Real(r) => Value::Real(r),
            wit::Value::Text(t) => Value::Text(t),
            wit::Value::Blob(b) => Value::Blob(b),
            wit::Value::Json(j) => Value::Json(j),
        }
    }

    fn rows(rows: wit::Rows) -> Done {
        Done::Rows(Rows {
            columns: rows.columns,
            rows: rows
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(from_wit).collect())
                .collect(),
        })
    }

    fn executed(done: wit::Executed) -> Done {
        Done::Executed(Executed {
            rows_affected: done.rows_affected,
            last_insert_id: done.last_insert_id,
        })
    }

    fn error(error: wit::Error) -> SqlError {
        match error {
            wit::Error::Invalid(m) => SqlError::Invalid(m),
            wit::Error::Constraint(m) => SqlError::Constraint(m),
            wit::Error::Quota(m) => SqlError::Quota(m),
            wit::Error::Timeout(m) => SqlError::Timeout(m),
            wit::Error::NoTransaction => SqlError::NoTransaction,
            wit::Error::Failed(m) => SqlError::Failed(m),
        }
    }

    fn migrations(list: &[crate::sql::Migration]) -> Vec<wit::Migration> {
        list.iter()
            .map(|m| wit::Migration {
                name: m.name.into(),
                statements: m.statements.into(),
            })
            .collect()
    }

    fn params(values: Vec<Value>) -> Vec<wit::Value> {
        values.into_iter().map(to_wit).collect()
    }

    /// A sync build runs every statement blocking.
    #[cfg(feature = "sync")]
    pub(crate) async fn sql(op: Op) -> Result<Done, SqlError> {
        sql_blocking(op)
    }

    /// Blocking within a sync call (see `super::in_sync_call`).
    #[cfg(not(feature = "sync"))]
    pub(crate) async fn sql(op: Op) -> Result<Done, SqlError> {
        if super::sync_call() {
            return sql_blocking(op);
        }
        match op {
            Op::Query(s, p, tx) => wit::query(s, params(p), tx).await.map(rows),
            Op::Execute(s, p, tx) => wit::execute(s, params(p), tx).await.map(executed),
            Op::Begin => wit::begin().await.map(Done::Transaction),
            Op::Commit(tx) => wit::commit(tx).await.map(|()| Done::Finished),
            Op::Rollback(tx) => wit::rollback(tx).await.map(|()| Done::Finished),
            Op::Migrate(list) => wit::migrate(migrations(&list)).await.map(Done::Applied),
        }
        .map_err(error)
    }

    pub(crate) fn sql_blocking(op: Op) -> Result<Done, SqlError> {
        match op {
            Op::Query(s, p, tx) => wit::query_blocking(&s, &params(p), tx).map(rows),
            Op::Execute(s, p, tx) => wit::execute_blocking(&s, &params(p), tx).map(executed),
            Op::Begin => wit::begin_blocking().map(Done::Transaction),
            Op::Commit(tx) => wit::commit_blocking(tx).map(|()| Done::Finished),
            Op::Rollback(tx) => wit::rollback_blocking(tx).map(|()| Done::Finished),
            Op::Migrate(list) => wit::migrate_blocking(&migrations(&list)).map(Done::Applied),
        }
        .map_err(error)
    }
}

pub(crate) use sql_calls::{sql, sql_blocking};
