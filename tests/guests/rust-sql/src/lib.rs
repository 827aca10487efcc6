//! A Rust guest over the SQL capability: migrations (one more can come
//! from the sidecar's `extra-migration` variable, to try a failing one),
//! async and blocking calls, a transaction dropped unfinished or left open
//! by a cut call, a slow query and a database filling up. Errors answer
//! with the host's
//! sentence and a status by kind. `001_notes.postgres` replaces
//! `001_notes` on a host that keeps databases in PostgreSQL.

use cello::sql::{self, Db, Migration, SqlError};
use cello::{App, Path, Response, StatusCode, StreamingResponse, config};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Note {
    id: i64,
    body: String,
}

fn answer(error: SqlError) -> Response {
    let status = match &error {
        SqlError::Invalid(_) => StatusCode::BAD_REQUEST,
        SqlError::Constraint(_) | SqlError::NoTransaction => StatusCode::CONFLICT,
        SqlError::Quota(_) => StatusCode::INSUFFICIENT_STORAGE,
        SqlError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        SqlError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Response::text(error.to_string()).with_status(status)
}

async fn start() -> Result<(), SqlError> {
    if let Some(statements) = config::get("extra-migration") {
        let extra = Migration {
            name: "900_extra",
            statements: Box::leak(statements.into_boxed_str()),
        };
        sql::migrate(&[extra]).await?;
    }
    Ok(())
}

async fn add(db: Db, body: String) -> Result<Response, Response> {
    let added = db
        .execute("INSERT INTO notes (body) VALUES (?) RETURNING id", (body,))
        .await
        .map_err(answer)?;
    Ok(Response::text(
        added.last_insert_id.unwrap_or_default().to_string(),
    ))
}

async fn read(Path(id): Path<i64>, db: Db) -> Result<Response, Response> {
    let note: Option<Note> = db
        .fetch_one("SELECT id, body FROM notes WHERE id = $1", (id,))
        .await
        .map_err(answer)?;
    Ok(match note {
        Some(note) => Response::json(&note),
        None => Response::text("no such note").with_status(StatusCode::NOT_FOUND),
    })
}

/// Inserts in a transaction, then fails: the transaction is dropped
/// unfinished, so rolled back.
async fn abandon(db: Db, body: String) -> Result<Response, Response> {
    let tx = db.begin().await.map_err(answer)?;
    tx.execute("INSERT INTO notes (body) VALUES (?)", (body,))
        .await
        .map_err(answer)?;
    Err(Response::text("changed my mind").with_status(StatusCode::INTERNAL_SERVER_ERROR))
}

async fn batch(db: Db, body: String) -> Result<Response, Response> {
    let tx = db.begin().await.map_err(answer)?;
    for line in body.lines() {
        tx.execute("INSERT INTO notes (body) VALUES (?)", (line,))
            .await
            .map_err(answer)?;
    }
    tx.commit().await.map_err(answer)?;
    Ok(Response::text("committed"))
}

/// Inserts each line in a transaction, going on past a failed one, then
/// commits: on PostgreSQL a failed statement aborts the transaction.
async fn lenient(db: Db, body: String) -> Result<Response, Response> {
    let tx = db.begin().await.map_err(answer)?;
    for line in body.lines() {
        let _ = tx
            .execute("INSERT INTO notes (body) VALUES (?)", (line,))
            .await;
    }
    tx.commit().await.map_err(answer)?;
    Ok(Response::text("committed"))
}

/// Inserts in a transaction, then waits `ms` before committing: a call
/// cut meanwhile (its time limit, its client gone) leaves it open.
async fn hold(Path(ms): Path<u64>, db: Db) -> Result<Response, Response> {
    let tx = db.begin().await.map_err(answer)?;
    tx.execute("INSERT INTO notes (body) VALUES (?)", ("held",))
        .await
        .map_err(answer)?;
    cello::host::sleep(std::time::Duration::from_millis(ms)).await;
    tx.commit().await.map_err(answer)?;
    Ok(Response::text("committed"))
}

fn count(db: Db) -> Result<Response, Response> {
    let n: Option<i64> = db
        .blocking()
        .fetch_val("SELECT count(*) FROM notes", ())
        .map_err(answer)?;
    Ok(Response::text(n.unwrap_or_default().to_string()))
}

/// A sync route whose stream awaits a query: within a sync call the SDK
/// runs it blocking.
fn count_streamed(db: Db) -> StreamingResponse {
    let body = futures_util::stream::once(async move {
        match db.fetch_val::<i64>("SELECT count(*) FROM notes", ()).await {
            Ok(n) => n.unwrap_or_default().to_string(),
            Err(error) => error.to_string(),
        }
    });
    StreamingResponse::new(body).media_type("text/plain")
}

async fn slow(db: Db) -> Result<Response, Response> {
    let forever = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                   SELECT count(*) FROM n";
    let n: Option<i64> = db.fetch_val(forever, ()).await.map_err(answer)?;
    Ok(Response::text(format!("{n:?}")))
}

async fn fill(Path(kib): Path<usize>, db: Db) -> Result<Response, Response> {
    db.execute(
        "INSERT INTO blobs (data) VALUES (?)",
        (vec![7u8; kib << 10],),
    )
    .await
    .map_err(answer)?;
    Ok(Response::text("stored"))
}

async fn run(db: Db, statement: String) -> Result<Response, Response> {
    let done = db.execute(&statement, ()).await.map_err(answer)?;
    Ok(Response::text(done.rows_affected.to_string()))
}

fn app() -> App {
    App::new("rust-sql")
        .migrations(cello::migrations!("migrations": "001_notes", "001_notes.postgres"))
        .on_start(start)
        .post("/notes", add)
        .get("/notes/{id}", read)
        .post("/abandon", abandon)
        .post("/batch", batch)
        .post("/hold/{ms}", hold)
        .post("/lenient", lenient)
        .get("/count", count)
        .get("/count-streamed", count_streamed)
        .get("/slow", slow)
        .post("/fill/{kib}", fill)
        .post("/run", run)
}

cello::export_app!(app);
