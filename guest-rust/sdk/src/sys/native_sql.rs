//! The SQL database of native tests: SQLite in memory, one per test
//! client, with the host's rules on parameters (`?`, `?1`, `$1`),
//! transactions and migrations. No quota or time limit applies.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode};

use super::native::current;
use crate::sql::{Done, Executed, Migration, Op, Rows, SqlError, Value};

/// The one transaction id a native database hands out at a time.
const TRANSACTION: u64 = 1;

pub(crate) async fn sql(op: Op) -> Result<Done, SqlError> {
    sql_blocking(op)
}

pub(crate) fn sql_blocking(op: Op) -> Result<Done, SqlError> {
    let host = current();
    let mut slot = host.sql.borrow_mut();
    if slot.is_none() {
        let opened = Connection::open_in_memory().map_err(error)?;
        opened
            .pragma_update(None, "foreign_keys", true)
            .map_err(error)?;
        *slot = Some(opened);
    }
    let db = slot.as_mut().expect("opened above");
    let in_transaction = !db.is_autocommit();
    let check = |tx: Option<u64>| match tx {
        Some(TRANSACTION) if in_transaction => Ok(()),
        Some(_) => Err(SqlError::NoTransaction),
        None => Ok(()),
    };
    match op {
        Op::Query(statement, params, tx) => {
            check(tx)?;
            query(db, &statement, &params).map(Done::Rows)
        }
        Op::Execute(statement, params, tx) => {
            check(tx)?;
            // SAFETY: the handle is this connection's own, on its thread;
            // zeroed, a row id after the statement is its own.
            unsafe { rusqlite::ffi::sqlite3_set_last_insert_rowid(db.handle(), 0) };
            query(db, &statement, &params)?;
            let last = db.last_insert_rowid();
            Ok(Done::Executed(Executed {
                rows_affected: db.changes(),
                last_insert_id: (last != 0).then_some(last),
            }))
        }
        Op::Begin if in_transaction => Err(SqlError::Timeout(
            "native tests hold one transaction at a time".into(),
        )),
        Op::Begin => batch(db, "BEGIN IMMEDIATE").map(|()| Done::Transaction(TRANSACTION)),
        Op::Commit(tx) | Op::Rollback(tx) if check(Some(tx)).is_err() => {
            Err(SqlError::NoTransaction)
        }
        Op::Commit(_) => batch(db, "COMMIT").map(|()| Done::Finished),
        Op::Rollback(_) => batch(db, "ROLLBACK").map(|()| Done::Finished),
        Op::Migrate(list) => migrate(db, &list).map(Done::Applied),
    }
}

fn query(db: &Connection, statement: &str, params: &[Value]) -> Result<Rows, SqlError> {
    let mut prepared = db.prepare(statement).map_err(error)?;
    for index in 1..=prepared.parameter_count() {
        let number = match prepared.parameter_name(index) {
            None => index,
            Some(name) => name[1..].parse().map_err(|_| {
                SqlError::Invalid(format!(
                    "named parameter {name} is not supported: use ?, ?1 or $1"
                ))
            })?,
        };
        let value = params.get(number - 1).ok_or_else(|| {
            SqlError::Invalid(format!(
                "the statement takes parameter {number}; {} given",
                params.len()
            ))
        })?;
        let bound = match value {
            Value::Null => prepared.raw_bind_parameter(index, rusqlite::types::Null),
            Value::Integer(i) => prepared.raw_bind_parameter(index, i),
            Value::Real(r) => prepared.raw_bind_parameter(index, r),
            Value::Text(t) | Value::Json(t) => prepared.raw_bind_parameter(index, t),
            Value::Blob(b) => prepared.raw_bind_parameter(index, b),
        };
        bound.map_err(error)?;
    }
    let columns: Vec<String> = prepared
        .column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let mut rows = Vec::new();
    let mut raw = prepared.raw_query();
    while let Some(row) = raw.next().map_err(error)? {
        let values = (0..columns.len())
            .map(|i| match row.get_ref(i) {
                Ok(ValueRef::Integer(i)) => Value::Integer(i),
                Ok(ValueRef::Real(r)) => Value::Real(r),
                Ok(ValueRef::Text(t)) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                Ok(ValueRef::Blob(b)) => Value::Blob(b.to_vec()),
                Ok(ValueRef::Null) | Err(_) => Value::Null,
            })
            .collect();
        rows.push(values);
    }
    Ok(Rows { columns, rows })
}

fn batch(db: &Connection, statements: &str) -> Result<(), SqlError> {
    db.execute_batch(statements).map_err(error)
}

/// The migrations SQLite runs, as the host picks them for a SQLite
/// database: `NAME.sqlite` takes the place (and the name) of `NAME`, and
/// `NAME.postgres` is left out.
fn for_sqlite(list: &[Migration]) -> Vec<Migration> {
    let split = |name: &'static str| match name.rsplit_once('.') {
        Some((base, dialect @ ("sqlite" | "postgres"))) => (base, Some(dialect)),
        _ => (name, None),
    };
    let mut seen = std::collections::HashSet::new();
    list.iter()
        .filter_map(|m| {
            let (base, dialect) = split(m.name);
            if dialect == Some("postgres") || !seen.insert(base) {
                return None;
            }
            let own = list
                .iter()
                .find(|o| split(o.name) == (base, Some("sqlite")));
            Some(Migration {
                name: base,
                statements: own.map_or(m.statements, |o| o.statements),
            })
        })
        .collect()
}

fn migrate(db: &Connection, list: &[Migration]) -> Result<u32, SqlError> {
    let list = &for_sqlite(list);
    batch(
        db,
        "CREATE TABLE IF NOT EXISTS _cello_migrations \
         (name TEXT PRIMARY KEY, statements TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )?;
    let mut applied = 0;
    for migration in list {
        let before: Option<String> = db
            .query_row(
                "SELECT statements FROM _cello_migrations WHERE name = ?1",
                [migration.name],
                |row| row.get(0),
            )
            .ok();
        match before {
            Some(statements) if statements == migration.statements => continue,
            Some(_) => {
                return Err(SqlError::Invalid(format!(
                    "migration {:?} was changed after it was applied: add a new migration instead",
                    migration.name
                )));
            }
            None => {}
        }
        batch(db, "BEGIN IMMEDIATE")?;
        let ran = batch(db, migration.statements).and_then(|()| {
            db.execute(
                "INSERT INTO _cello_migrations VALUES (?1, ?2, unixepoch())",
                [migration.name, migration.statements],
            )
            .map(drop)
            .map_err(error)
        });
        match ran {
            Ok(()) => batch(db, "COMMIT")?,
            Err(e) => {
                let _ = batch(db, "ROLLBACK");
                return Err(SqlError::Invalid(format!(
                    "migration {:?}: {e}",
                    migration.name
                )));
            }
        }
        applied += 1;
    }
    Ok(applied)
}

fn error(error: rusqlite::Error) -> SqlError {
    let message = error.to_string();
    match error.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => SqlError::Constraint(message),
        Some(ErrorCode::DiskFull) => SqlError::Quota(message),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => SqlError::Timeout(message),
        _ => SqlError::Invalid(message),
    }
}
