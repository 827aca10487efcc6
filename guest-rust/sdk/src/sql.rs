//! The component's own SQL database, granted by `sql = true` under
//! `[grants]`: SQLite kept by the host, or a PostgreSQL schema of its own
//! when the host is configured so.
//!
//! ```ignore
//! use cello::sql::Db;
//!
//! #[derive(serde::Deserialize, serde::Serialize)]
//! struct Todo { id: i64, title: String }
//!
//! async fn read(Path(id): Path<i64>, db: Db) -> Result<Option<Json<Todo>>, SqlError> {
//!     Ok(db.fetch_one("SELECT id, title FROM todos WHERE id = ?", (id,)).await?.map(Json))
//! }
//! ```
//!
//! Values go in as parameters (`?` in order, `?1` or `$1` by number),
//! never spliced into the text; rows come out decoded with serde, a
//! column per field. Calls on [`Db`] are async and free the instance for
//! other requests; [`Db::blocking`] has the same calls for sync handlers.
//! [`App::migrations`](crate::App::migrations) applies migrations before
//! the first request. Natively (tests), an in-memory SQLite stands in.

use std::ops::Deref;

use serde::de::DeserializeOwned;

use crate::response::internal_error;
use crate::{FromRequest, IntoResponse, Request, Response, StatusCode, sys};

/// A parameter, or a column's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    /// JSON text; stored as text where the backend has no JSON type.
    Json(String),
}

/// Why a statement failed, in the host's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlError {
    /// Not valid SQL, a missing table or column, the wrong number of
    /// parameters, a row that does not decode, or something a component
    /// may not do.
    Invalid(String),
    /// A constraint (unique, not null, foreign key, check) refused it.
    Constraint(String),
    /// The database is at its size quota.
    Quota(String),
    /// The statement ran past its time limit, or waited too long.
    Timeout(String),
    /// The transaction is finished, timed out, or was never begun.
    NoTransaction,
    /// The database failed or cannot be reached.
    Failed(String),
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(m) => write!(f, "invalid statement: {m}"),
            Self::Constraint(m) => write!(f, "constraint failed: {m}"),
            Self::Quota(m) => write!(f, "over quota: {m}"),
            Self::Timeout(m) => write!(f, "timed out: {m}"),
            Self::NoTransaction => f.write_str("the transaction is finished or timed out"),
            Self::Failed(m) => write!(f, "database failure: {m}"),
        }
    }
}

impl std::error::Error for SqlError {}

/// 409 for a constraint refused; otherwise 500, with the reason logged
/// and not sent.
impl IntoResponse for SqlError {
    fn into_response(self) -> Response {
        match self {
            Self::Constraint(_) => (
                StatusCode::CONFLICT,
                crate::Json(serde_json::json!({
                    "detail": "the change conflicts with data already stored"
                })),
            )
                .into_response(),
            other => internal_error(&other.to_string()),
        }
    }
}

/// What a statement changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Executed {
    pub rows_affected: u64,
    /// The id of the last row inserted, if the statement inserted one.
    pub last_insert_id: Option<i64>,
}

/// One migration: statements run once, in a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Names it in the ledger of applied migrations.
    pub name: &'static str,
    pub statements: &'static str,
}

/// The migrations in `DIR/NAME.sql` (relative to the crate's root), in
/// the order given, read at compile time:
/// `cello::migrations!("migrations": "001_todos", "002_done")`.
#[macro_export]
macro_rules! migrations {
    ($dir:literal: $($name:literal),* $(,)?) => {
        &[$($crate::sql::Migration {
            name: $name,
            statements: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $dir, "/", $name, ".sql")),
        }),*]
    };
}

/// A query's rows, undecoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// Each row decoded into `T`: a struct or map by column name, a tuple
    /// in column order, or the value itself when there is one column. An
    /// integer 0 or 1 reads as `bool`.
    pub fn decode<T: DeserializeOwned>(self) -> Result<Vec<T>, SqlError> {
        let Rows { columns, rows } = self;
        rows.into_iter()
            .map(|row| {
                crate::sql_de::row(&columns, row)
                    .map_err(|e| SqlError::Invalid(format!("a row does not decode: {e}")))
            })
            .collect()
    }
}

macro_rules! value_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from($v: $t) -> Self {
                $e
            }
        })*
    };
}

value_from! {
    i64 => |v| Value::Integer(v),
    i32 => |v| Value::Integer(v.into()),
    u32 => |v| Value::Integer(v.into()),
    bool => |v| Value::Integer(v.into()),
    f64 => |v| Value::Real(v),
    String => |v| Value::Text(v),
    &str => |v| Value::Text(v.to_string()),
    &String => |v| Value::Text(v.clone()),
    Vec<u8> => |v| Value::Blob(v),
    &[u8] => |v| Value::Blob(v.to_vec()),
    serde_json::Value => |v| Value::Json(v.to_string()),
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// A statement's parameters: `()`, a tuple of values, or a `Vec<Value>`.
pub trait Params {
    fn into_values(self) -> Vec<Value>;
}

impl Params for Vec<Value> {
    fn into_values(self) -> Vec<Value> {
        self
    }
}

impl Params for &[Value] {
    fn into_values(self) -> Vec<Value> {
        self.to_vec()
    }
}

macro_rules! tuple_params {
    ($($name:ident),*) => {
        impl<$($name: Into<Value>),*> Params for ($($name,)*) {
            #[allow(non_snake_case)]
            fn into_values(self) -> Vec<Value> {
                let ($($name,)*) = self;
                vec![$($name.into()),*]
            }
        }
    };
}

tuple_params!();
tuple_params!(A);
tuple_params!(A, B);
tuple_params!(A, B, C);
tuple_params!(A, B, C, D);
tuple_params!(A, B, C, D, E);
tuple_params!(A, B, C, D, E, F);
tuple_params!(A, B, C, D, E, F, G);
tuple_params!(A, B, C, D, E, F, G, H);

/// One call into the host's `sql` interface.
#[derive(Debug)]
pub(crate) enum Op {
    Query(String, Vec<Value>, Option<u64>),
    Execute(String, Vec<Value>, Option<u64>),
    Begin,
    Commit(u64),
    Rollback(u64),
    Migrate(Vec<Migration>),
}

/// What a call returned.
#[derive(Debug)]
pub(crate) enum Done {
    Rows(Rows),
    Executed(Executed),
    Transaction(u64),
    Finished,
    Applied(u32),
}

fn unexpected(done: Done) -> SqlError {
    SqlError::Failed(format!("the host answered {done:?}"))
}

/// The database, as a handler argument: `async fn h(db: Db)`. Its calls
/// are awaited; [`Db::blocking`] has them for sync handlers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Db {
    transaction: Option<u64>,
}

impl Db {
    /// Runs a query and returns its rows undecoded.
    pub async fn query(&self, statement: &str, params: impl Params) -> Result<Rows, SqlError> {
        let op = Op::Query(statement.into(), params.into_values(), self.transaction);
        match sys::sql(op).await? {
            Done::Rows(rows) => Ok(rows),
            other => Err(unexpected(other)),
        }
    }

    /// Every row, decoded.
    pub async fn fetch_all<T: DeserializeOwned>(
        &self,
        statement: &str,
        params: impl Params,
    ) -> Result<Vec<T>, SqlError> {
        self.query(statement, params).await?.decode()
    }

    /// The first row, decoded, if there is one.
    pub async fn fetch_one<T: DeserializeOwned>(
        &self,
        statement: &str,
        params: impl Params,
    ) -> Result<Option<T>, SqlError> {
        Ok(self.fetch_all(statement, params).await?.into_iter().next())
    }

    /// The first column of the first row, if there is a row.
    pub async fn fetch_val<T: DeserializeOwned>(
        &self,
        statement: &str,
        params: impl Params,
    ) -> Result<Option<T>, SqlError> {
        first_value(self.query(statement, params).await?)
    }

    /// Runs a statement that changes rows.
    pub async fn execute(
        &self,
        statement: &str,
        params: impl Params,
    ) -> Result<Executed, SqlError> {
        let op = Op::Execute(statement.into(), params.into_values(), self.transaction);
        match sys::sql(op).await? {
            Done::Executed(done) => Ok(done),
            other => Err(unexpected(other)),
        }
    }

    /// Begins a transaction: run statements on it (it derefs to a `Db`),
    /// then [`Transaction::commit`]. Dropped unfinished, it rolls back.
    pub async fn begin(&self) -> Result<Transaction, SqlError> {
        match sys::sql(Op::Begin).await? {
            Done::Transaction(id) => Ok(Transaction::new(id)),
            other => Err(unexpected(other)),
        }
    }

    /// The same calls, blocking: for sync handlers.
    pub fn blocking(&self) -> BlockingDb {
        BlockingDb {
            transaction: self.transaction,
        }
    }
}

fn first_value<T: DeserializeOwned>(rows: Rows) -> Result<Option<T>, SqlError> {
    let Some(value) = rows
        .rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
    else {
        return Ok(None);
    };
    crate::sql_de::value(value)
        .map(Some)
        .map_err(|e| SqlError::Invalid(format!("the value does not decode: {e}")))
}

impl FromRequest for Db {
    type Rejection = std::convert::Infallible;

    async fn from_request(_req: &Request) -> Result<Self, Self::Rejection> {
        Ok(Db::default())
    }
}

/// The database's calls, blocking the instance until each returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockingDb {
    transaction: Option<u64>,
}

impl BlockingDb {
    pub fn query(&self, statement: &str, params: impl Params) -> Result<Rows, SqlError> {
        let op = Op::Query(statement.into(), params.into_values(), self.transaction);
        match sys::sql_blocking(op)? {
            Done::Rows(rows) => Ok(rows),
            other => Err(unexpected(other)),
        }
    }

    pub fn fetch_all<T: DeserializeOwned>(
        &self,
        statement: &str,
        params: impl Params,
    ) -> Result<Vec<T>, SqlError> {
        self.query(statement, params)?.decode()
    }

    pub fn fetch_one<T: DeserializeOwned>(
        &self,
        statement: &str,
        params: impl Params,
    ) -> Result<Option<T>, SqlError> {
        Ok(self.fetch_all(statement, params)?.into_iter().next())
    }

    pub fn fetch_val<T: DeserializeOwned>(
        &self,
        statement: &str,
        params: impl Params,
    ) -> Result<Option<T>, SqlError> {
        first_value(self.query(statement, params)?)
    }

    pub fn execute(&self, statement: &str, params: impl Params) -> Result<Executed, SqlError> {
        let op = Op::Execute(statement.into(), params.into_values(), self.transaction);
        match sys::sql_blocking(op)? {
            Done::Executed(done) => Ok(done),
            other => Err(unexpected(other)),
        }
    }
}

/// An open transaction. Statements run on it (it derefs to a [`Db`]) are
/// committed by [`Transaction::commit`]; dropped unfinished, it is rolled
/// back, and past the host's time limit the host rolls it back itself.
#[derive(Debug)]
pub struct Transaction {
    db: Db,
    open: bool,
}

impl Transaction {
    fn new(id: u64) -> Self {
        Self {
            db: Db {
                transaction: Some(id),
            },
            open: true,
        }
    }

    fn id(&self) -> u64 {
        self.db.transaction.unwrap_or_default()
    }

    /// Makes its changes durable.
    pub async fn commit(mut self) -> Result<(), SqlError> {
        self.open = false;
        sys::sql(Op::Commit(self.id())).await.map(drop)
    }

    /// Drops its changes.
    pub async fn rollback(mut self) -> Result<(), SqlError> {
        self.open = false;
        sys::sql(Op::Rollback(self.id())).await.map(drop)
    }
}

impl Deref for Transaction {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.db
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if self.open {
            let _ = sys::sql_blocking(Op::Rollback(self.id()));
        }
    }
}

/// Applies the migrations not applied before, in order, each in its own
/// transaction; returns how many it applied. A migration applied before
/// whose statements changed is refused.
pub async fn migrate(migrations: &[Migration]) -> Result<u32, SqlError> {
    match sys::sql(Op::Migrate(migrations.to_vec())).await? {
        Done::Applied(count) => Ok(count),
        other => Err(unexpected(other)),
    }
}
