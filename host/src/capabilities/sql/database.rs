//! A component's database on either backend, with the calls the WIT
//! functions make; and the choice of migrations by dialect.

use std::sync::Arc;

use tracing::Instrument as _;

use super::{Executed, Migration, Rows, SqlError, SqlLimits, Value, postgres, sqlite};

/// One component's database: a SQLite file or a PostgreSQL schema.
#[derive(Debug)]
pub enum Database {
    Sqlite(Arc<sqlite::Database>),
    Postgres(Arc<postgres::Database>),
}

impl Database {
    /// The dialect its migrations may be written for: a migration named
    /// `NAME.postgres` (or `NAME.sqlite`) replaces `NAME` on that backend
    /// and is skipped on the other.
    fn dialect(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// The trace span of one call (`sql query`, ...), with the backend
    /// as OpenTelemetry names it.
    fn span(&self, name: &str) -> tracing::Span {
        let system = match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgresql",
        };
        crate::telemetry::host_call(name, system)
    }

    /// Puts new limits in force from the next statement on.
    pub fn set_limits(&self, limits: SqlLimits) {
        match self {
            Self::Sqlite(db) => db.set_limits(limits),
            Self::Postgres(db) => db.set_limits(limits),
        }
    }

    /// Refuses every later call, and rolls back open transactions.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(db) => db.close().await,
            Self::Postgres(db) => db.close().await,
        }
    }

    /// Runs one statement and returns its rows.
    pub async fn query(
        &self,
        statement: String,
        params: Vec<Value>,
        transaction: Option<u64>,
    ) -> Result<Rows, SqlError> {
        let ran = async {
            match self {
                Self::Sqlite(db) => db.query(statement, params, transaction).await,
                Self::Postgres(db) => db.query(statement, params, transaction).await,
            }
        };
        ran.instrument(self.span("sql query")).await
    }

    /// Runs one statement that changes rows.
    pub async fn execute(
        &self,
        statement: String,
        params: Vec<Value>,
        transaction: Option<u64>,
    ) -> Result<Executed, SqlError> {
        let ran = async {
            match self {
                Self::Sqlite(db) => db.execute(statement, params, transaction).await,
                Self::Postgres(db) => db.execute(statement, params, transaction).await,
            }
        };
        ran.instrument(self.span("sql execute")).await
    }

    /// Begins a transaction.
    pub async fn begin(&self) -> Result<u64, SqlError> {
        let ran = async {
            match self {
                Self::Sqlite(db) => db.begin().await,
                Self::Postgres(db) => db.begin().await,
            }
        };
        ran.instrument(self.span("sql begin")).await
    }

    /// Ends transaction `id` with `COMMIT` or `ROLLBACK`.
    pub async fn finish(&self, id: u64, verb: &'static str) -> Result<(), SqlError> {
        let ran = async {
            match self {
                Self::Sqlite(db) => db.finish(id, verb).await,
                Self::Postgres(db) => db.finish(id, verb).await,
            }
        };
        let name = if verb == "COMMIT" {
            "sql commit"
        } else {
            "sql rollback"
        };
        ran.instrument(self.span(name)).await
    }

    /// Applies the migrations (those for this backend) not applied
    /// before; returns how many.
    pub async fn migrate(&self, migrations: Vec<Migration>) -> Result<u32, SqlError> {
        let migrations = for_dialect(migrations, self.dialect());
        let ran = async {
            match self {
                Self::Sqlite(db) => db.migrate(migrations).await,
                Self::Postgres(db) => db.migrate(migrations).await,
            }
        };
        ran.instrument(self.span("sql migrate")).await
    }
}

/// The migrations for `dialect`, in order: `NAME.DIALECT` takes the place
/// (and the name) of `NAME`; another dialect's are left out.
fn for_dialect(migrations: Vec<Migration>, dialect: &str) -> Vec<Migration> {
    const DIALECTS: [&str; 2] = ["sqlite", "postgres"];
    let split = |name: &str| -> (String, Option<String>) {
        match name.rsplit_once('.') {
            Some((base, suffix)) if DIALECTS.contains(&suffix) => {
                (base.to_string(), Some(suffix.to_string()))
            }
            _ => (name.to_string(), None),
        }
    };
    let own: std::collections::HashMap<String, String> = migrations
        .iter()
        .filter_map(|m| match split(&m.name) {
            (base, Some(suffix)) if suffix == dialect => Some((base, m.statements.clone())),
            _ => None,
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    migrations
        .into_iter()
        .filter_map(|m| {
            let (base, suffix) = split(&m.name);
            if suffix.as_deref().is_some_and(|s| s != dialect) || !seen.insert(base.clone()) {
                return None;
            }
            let statements = own.get(&base).cloned().unwrap_or(m.statements);
            Some(Migration {
                name: base,
                statements,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dialects_migration_replaces_the_plain_one_and_others_are_skipped() {
        let m = |name: &str| Migration {
            name: name.into(),
            statements: name.into(),
        };
        let all = vec![
            m("001_notes"),
            m("001_notes.postgres"),
            m("002_tags"),
            m("003_fts.sqlite"),
        ];
        let named = |dialect| -> Vec<(String, String)> {
            for_dialect(all.clone(), dialect)
                .into_iter()
                .map(|m| (m.name, m.statements))
                .collect()
        };
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            named("postgres"),
            [
                pair("001_notes", "001_notes.postgres"),
                pair("002_tags", "002_tags")
            ]
        );
        assert_eq!(
            named("sqlite"),
            [
                pair("001_notes", "001_notes"),
                pair("002_tags", "002_tags"),
                pair("003_fts", "003_fts.sqlite")
            ]
        );
    }
}
