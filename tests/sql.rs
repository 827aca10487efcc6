//! The SQL capability through real components over real HTTP: the Python
//! todos example (async and sync routes, a transaction, migrations) and a
//! Rust guest (tenants, quotas, time limits, failing migrations).

mod support;

use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;
use support::admin::{OPERATOR, component, push_with, serve};
use support::sql::{TODOS, post_json, post_text, tenants_on};
use support::{Components, Host};

#[tokio::test]
async fn python_todos_are_kept_across_a_restart_and_a_failed_batch_leaves_nothing() {
    let host = Components::new().with_sidecar("todos", TODOS).serve();
    let created = post_json(
        &host,
        "/todos/",
        json!({"title": "write docs", "tags": ["docs"]}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.json(),
        json!({"id": 1, "title": "write docs", "done": false, "tags": ["docs"]})
    );
    let second = post_json(&host, "/todos/", json!({"title": "ship it"})).await;
    assert_eq!(second.json()["id"], 2);
    let done = host
        .send(
            Method::PUT,
            "/todos/2",
            &[("content-type", "application/json")],
            json!({"title": "ship it", "done": true}).to_string().into(),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    // A batch with a blank title breaks a CHECK constraint half-way: the
    // transaction is rolled back, and the app answers 409.
    let batch = post_json(
        &host,
        "/todos/batch",
        json!([{"title": "a"}, {"title": " "}]),
    )
    .await;
    assert_eq!(batch.status, 409, "{}", batch.body);
    assert!(batch.body.contains("CHECK constraint"), "{}", batch.body);
    // The sync route reads through the blocking calls.
    let counts = host.get("/todos/stats/counts").await;
    assert_eq!(
        counts.json(),
        json!({"total": 2, "done": 1, "open": 1}),
        "{}",
        host.log()
    );

    let host = host.stop().serve();
    let kept = host.get("/todos/").await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    let titles: Vec<_> = kept
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].clone())
        .collect();
    assert_eq!(titles, [json!("write docs"), json!("ship it")]);
    assert_eq!(host.get("/todos/1").await.json()["tags"], json!(["docs"]));
    assert_eq!(host.get("/todos/9").await.status, 404);
}

/// A host with tenant `acme` (small SQL quotas) and `globex`, each serving
/// rust-sql as `notes`.
async fn tenants() -> Host {
    let host = serve(Components::new());
    tenants_on(&host, "acme", "globex").await;
    host
}

#[tokio::test]
async fn tenants_databases_are_their_own_and_no_statement_reaches_another() {
    let host = tenants().await;
    assert_eq!(post_text(&host, "/t/acme/notes", "acme's").await.body, "1");
    assert_eq!(host.get("/t/globex/count").await.body, "0");
    assert_eq!(
        post_text(&host, "/t/globex/notes", "globex's").await.body,
        "1"
    );
    assert_eq!(host.get("/t/acme/notes/1").await.json()["body"], "acme's");
    assert_eq!(
        host.get("/t/globex/notes/1").await.json()["body"],
        "globex's"
    );

    for statement in [
        "ATTACH DATABASE 'globex.sqlite' AS other".to_string(),
        "PRAGMA max_page_count = 100000000".to_string(),
        "VACUUM INTO 'copy.sqlite'".to_string(),
    ] {
        let refused = post_text(&host, "/t/acme/run", &statement).await;
        assert_eq!(refused.status, 400, "{statement}: {}", refused.body);
        assert!(
            refused.body.contains("not authorized") || refused.body.contains("may not"),
            "{}",
            refused.body
        );
    }
    assert_eq!(host.get("/t/acme/count").await.body, "1");
}

#[tokio::test]
async fn a_transaction_rolls_back_when_dropped_or_when_a_statement_fails() {
    let host = tenants().await;
    assert_eq!(post_text(&host, "/t/acme/notes", "kept").await.status, 200);
    // Dropped unfinished: rolled back at once, not when its time is up.
    let abandoned = post_text(&host, "/t/acme/abandon", "dropped").await;
    assert_eq!(abandoned.status, 500, "{}", abandoned.body);
    let started = Instant::now();
    assert_eq!(post_text(&host, "/t/acme/notes", "next").await.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    // A duplicate half-way through a batch: nothing of it is kept.
    let batch = post_text(&host, "/t/acme/batch", "one\ntwo\nkept").await;
    assert_eq!(batch.status, 409, "{}", batch.body);
    assert!(batch.body.contains("UNIQUE"), "{}", batch.body);
    assert_eq!(host.get("/t/acme/count").await.body, "2");
    assert_eq!(
        post_text(&host, "/t/acme/batch", "one\ntwo").await.body,
        "committed"
    );
    assert_eq!(host.get("/t/acme/count").await.body, "4");
}

#[tokio::test]
async fn the_size_quota_and_time_limit_give_errors_and_the_rest_goes_on() {
    let host = tenants().await;
    assert_eq!(post_text(&host, "/t/acme/notes", "small").await.status, 200);
    // 1 MiB: a few 256 KiB rows fit, then the write is refused.
    let mut refused = None;
    for _ in 0..8 {
        let reply = host.post("/t/acme/fill/256", "text/plain", "").await;
        if reply.status != 200 {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("a 1 MiB database took 2 MiB");
    assert_eq!(refused.status, 507, "{}", refused.body);
    assert!(refused.body.contains("size quota"), "{}", refused.body);
    assert_eq!(host.get("/t/acme/notes/1").await.status, 200);
    assert_eq!(
        post_text(&host, "/t/acme/notes", "still writes small")
            .await
            .status,
        200
    );
    for _ in 0..6 {
        assert_eq!(
            host.post("/t/globex/fill/256", "text/plain", "")
                .await
                .status,
            200
        );
    }

    // A query that would run forever is cut at 300 ms; meanwhile another
    // tenant is served.
    let slow = host.spawn_get("/t/acme/slow");
    let started = Instant::now();
    assert_eq!(host.get("/t/globex/count").await.status, 200);
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 504, "{}", slow.body);
    assert!(slow.body.contains("300 ms"), "{}", slow.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(host.get("/t/acme/count").await.body, "2");
}

#[tokio::test]
async fn a_failing_migration_refuses_the_version_while_the_old_one_serves() {
    let host = tenants().await;
    assert_eq!(
        post_text(&host, "/t/acme/notes", "before").await.status,
        200
    );
    let broken = "[variables]\nextra-migration = \"ALTER TABLE notes ADD COLUMN x INTEGER; CREATE TABLE broken (;\"\n";
    let refused = push_with(&host, "acme", "notes", component("rust-sql"), broken).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("migration \\\"900_extra\\\"") || refused.body.contains("900_extra"),
        "{}",
        refused.body
    );
    assert_eq!(host.get("/t/acme/notes/1").await.json()["body"], "before");
    // Its first statement was rolled back with the rest.
    let column = post_text(&host, "/t/acme/run", "UPDATE notes SET x = 1").await;
    assert_eq!(column.status, 400, "{}", column.body);

    let fixed = "[variables]\nextra-migration = \"ALTER TABLE notes ADD COLUMN x INTEGER;\"\n";
    let reply = push_with(&host, "acme", "notes", component("rust-sql"), fixed).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(
        post_text(&host, "/t/acme/run", "UPDATE notes SET x = 1")
            .await
            .body,
        "1"
    );

    // A component removed takes its database along: the name starts empty.
    let removed = host
        .admin(
            Method::DELETE,
            "/v1/tenants/acme/components/notes",
            OPERATOR,
            "application/json",
            vec![],
        )
        .await;
    assert!(removed.status < 300, "{}", removed.body);
    let reply = push_with(&host, "acme", "notes", component("rust-sql"), "").await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(host.get("/t/acme/count").await.body, "0");
}
