//! The SQL database natively (SQLite in memory, one per test client):
//! migrations, rows decoded with serde, transactions, blocking calls and
//! the errors handlers see.

use cello::sql::{Db, SqlError, Value};
use cello::{App, Json, Path, StatusCode};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Todo {
    id: i64,
    title: String,
    done: bool,
}

fn app() -> App {
    App::new("todos")
        .migrations(cello::migrations!("tests/migrations": "001_todos"))
        .post("/todos", async |db: Db, title: String| {
            let added = db
                .execute("INSERT INTO todos (title) VALUES (?)", (title,))
                .await?;
            Ok::<_, SqlError>(added.last_insert_id.unwrap_or_default().to_string())
        })
        .get("/todos/{id}", async |Path(id): Path<i64>, db: Db| {
            let todo: Option<Todo> = db
                .fetch_one("SELECT id, title, done FROM todos WHERE id = $1", (id,))
                .await?;
            Ok::<_, SqlError>(todo.map(Json))
        })
        .post("/pair", async |db: Db, body: String| {
            let tx = db.begin().await?;
            for title in body.lines() {
                tx.execute("INSERT INTO todos (title) VALUES (?1)", (title,))
                    .await?;
            }
            tx.commit().await?;
            Ok::<_, SqlError>("committed")
        })
        .get("/count", |db: Db| {
            let n: Option<i64> = db.blocking().fetch_val("SELECT count(*) FROM todos", ())?;
            Ok::<_, SqlError>(n.unwrap_or_default().to_string())
        })
}

#[test]
fn rows_decode_into_structs_and_missing_ones_answer_404() {
    let client = app().test_client();
    assert_eq!(client.post("/todos").body("write").send().text(), "1");
    let todo: Todo = client.get("/todos/1").send().json();
    assert_eq!(
        todo,
        Todo {
            id: 1,
            title: "write".into(),
            done: false
        }
    );
    assert_eq!(
        client.get("/todos/2").send().status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn a_failed_transaction_keeps_nothing_and_a_constraint_answers_409() {
    let client = app().test_client();
    assert_eq!(client.post("/pair").body("a\nb").send().text(), "committed");
    let clash = client.post("/pair").body("c\na").send();
    assert_eq!(clash.status(), StatusCode::CONFLICT);
    assert_eq!(client.get("/count").send().text(), "2");
}

#[test]
fn each_client_has_a_database_of_its_own() {
    let first = app().test_client();
    first.post("/todos").body("x").send();
    assert_eq!(app().test_client().get("/count").send().text(), "0");
}

#[test]
fn a_row_decodes_as_a_tuple_or_its_one_value() {
    let app = App::new("t")
        .migrations(cello::migrations!("tests/migrations": "001_todos"))
        .get("/", async |db: Db| {
            db.execute("INSERT INTO todos (title, done) VALUES ('a', 1)", ())
                .await?;
            let pairs: Vec<(i64, String)> = db.fetch_all("SELECT id, title FROM todos", ()).await?;
            let titles: Vec<String> = db.fetch_all("SELECT title FROM todos", ()).await?;
            let done: Option<bool> = db.fetch_val("SELECT done FROM todos", ()).await?;
            Ok::<_, SqlError>(format!("{pairs:?} {titles:?} {done:?}"))
        });
    let reply = app.test_client().get("/").send();
    assert_eq!(reply.text(), r#"[(1, "a")] ["a"] Some(true)"#);
}

#[test]
fn values_convert_from_rust_types() {
    assert_eq!(Value::from(Some(3)), Value::Integer(3));
    assert_eq!(Value::from(None::<String>), Value::Null);
    assert_eq!(Value::from(true), Value::Integer(1));
    assert_eq!(
        Value::from(serde_json::json!({"a": 1})),
        Value::Json("{\"a\":1}".into())
    );
}

#[test]
fn natively_a_sqlite_migration_replaces_the_plain_one_and_postgres_ones_are_skipped() {
    let app = App::new("t")
        .migrations(cello::migrations!(
            "tests/migrations": "001_todos", "002_labels", "002_labels.sqlite", "002_labels.postgres"
        ))
        .get("/", async |db: Db| {
            db.execute("INSERT INTO todos (title) VALUES ('a')", ())
                .await?;
            let labels: Option<String> = db.fetch_val("SELECT labels FROM todos", ()).await?;
            let ledger: Vec<String> = db
                .fetch_all("SELECT name FROM _cello_migrations ORDER BY name", ())
                .await?;
            Ok::<_, SqlError>(format!("{labels:?} {ledger:?}"))
        });
    let reply = app.test_client().get("/").send();
    assert_eq!(reply.status(), StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.text(),
        r#"Some("[\"sqlite\"]") ["001_todos", "002_labels"]"#
    );
}
