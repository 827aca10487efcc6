//! What the SQL tests share, whichever backend keeps the databases: the
//! todos sidecar, posting bodies, and two tenants serving rust-sql.

use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;

use super::admin::{OPERATOR, component, create_tenant, push_with};
use super::{Host, Reply};

pub const TODOS: &str = "prefix = \"/todos\"\n[grants]\nsql = true\n";

pub async fn post_json(host: &Host, path: &str, body: serde_json::Value) -> Reply {
    host.post(path, "application/json", body.to_string()).await
}

pub async fn post_text(host: &Host, path: &str, body: &str) -> Reply {
    host.post(path, "text/plain", body.to_string()).await
}

/// Two todos through the Python example, the second done, and a batch
/// refused half-way (the backend's error says `check`) that leaves
/// nothing; the sync route counts them.
pub async fn two_todos_and_a_failed_batch(host: &Host, check: &str) {
    let created = post_json(
        host,
        "/todos/",
        json!({"title": "write docs", "tags": ["docs"]}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.json(),
        json!({"id": 1, "title": "write docs", "done": false, "tags": ["docs"]})
    );
    let second = post_json(host, "/todos/", json!({"title": "ship it"})).await;
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
        host,
        "/todos/batch",
        json!([{"title": "a"}, {"title": " "}]),
    )
    .await;
    assert_eq!(batch.status, 409, "{}", batch.body);
    assert!(batch.body.contains(check), "{}", batch.body);
    // The sync route reads through the blocking calls.
    let counts = host.get("/todos/stats/counts").await;
    assert_eq!(
        counts.json(),
        json!({"total": 2, "done": 1, "open": 1}),
        "{}",
        host.log()
    );
}

/// Tenants `small` (SQL quotas of 1 MiB and 300 ms) and `large` on `host`,
/// each serving rust-sql as `notes`.
pub async fn tenants_on(host: &Host, small: &str, large: &str) {
    let grants = json!({"sql": true, "config": true});
    let quotas = json!({"sql-mb": 1, "sql-query-ms": 300});
    create_tenant(host, small, json!({"grants": grants, "quotas": quotas})).await;
    create_tenant(host, large, json!({"grants": grants})).await;
    for tenant in [small, large] {
        let reply = push_with(host, tenant, "notes", component("rust-sql"), "").await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
}

/// `tenant`'s rust-sql: a transaction dropped unfinished is rolled back at
/// once, and a batch with a duplicate (the backend's error says `unique`)
/// keeps nothing.
pub async fn transactions_roll_back(host: &Host, tenant: &str, unique: &str) {
    let path = |route: &str| format!("/t/{tenant}/{route}");
    assert_eq!(post_text(host, &path("notes"), "kept").await.status, 200);
    // Dropped unfinished: rolled back at once, not when its time is up.
    let abandoned = post_text(host, &path("abandon"), "dropped").await;
    assert_eq!(abandoned.status, 500, "{}", abandoned.body);
    let started = Instant::now();
    assert_eq!(post_text(host, &path("notes"), "next").await.status, 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    // A duplicate half-way through a batch: nothing of it is kept.
    let batch = post_text(host, &path("batch"), "one\ntwo\nkept").await;
    assert_eq!(batch.status, 409, "{}", batch.body);
    assert!(batch.body.contains(unique), "{}", batch.body);
    assert_eq!(host.get(&path("count")).await.body, "2");
    let committed = post_text(host, &path("batch"), "one\ntwo").await;
    assert_eq!(committed.body, "committed");
    assert_eq!(host.get(&path("count")).await.body, "4");
}

/// `tenant`'s rust-sql: a version whose migration fails is refused (its
/// statements rolled back) while the old one serves; a fixed one is
/// taken; a component removed takes its database along.
pub async fn a_failing_migration_refuses_the_version(host: &Host, tenant: &str) {
    let path = |route: &str| format!("/t/{tenant}/{route}");
    assert_eq!(post_text(host, &path("notes"), "before").await.status, 200);
    let broken = "[variables]\nextra-migration = \"ALTER TABLE notes ADD COLUMN x INTEGER; CREATE TABLE broken (;\"\n";
    let refused = push_with(host, tenant, "notes", component("rust-sql"), broken).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("900_extra"), "{}", refused.body);
    assert_eq!(host.get(&path("notes/1")).await.json()["body"], "before");
    // Its first statement was rolled back with the rest.
    let column = post_text(host, &path("run"), "UPDATE notes SET x = 1").await;
    assert_eq!(column.status, 400, "{}", column.body);

    let fixed = "[variables]\nextra-migration = \"ALTER TABLE notes ADD COLUMN x INTEGER;\"\n";
    let reply = push_with(host, tenant, "notes", component("rust-sql"), fixed).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let updated = post_text(host, &path("run"), "UPDATE notes SET x = 1").await;
    assert_eq!(updated.body, "1");

    // A component removed takes its database along: the name starts empty.
    let removed = host
        .admin(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/components/notes"),
            OPERATOR,
            "application/json",
            vec![],
        )
        .await;
    assert!(removed.status < 300, "{}", removed.body);
    let reply = push_with(host, tenant, "notes", component("rust-sql"), "").await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(host.get(&path("count")).await.body, "0");
}

/// `slow`, a request whose statement would never end, answers 504 naming
/// the 300 ms limit of `tenant` within a few seconds, while `other` is
/// served meanwhile; `tenant` keeps its 2 notes.
pub async fn slow_query_cut(
    host: &Host,
    slow: tokio::task::JoinHandle<Reply>,
    tenant: &str,
    other: &str,
) {
    let started = Instant::now();
    assert_eq!(host.get(&format!("/t/{other}/count")).await.status, 200);
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 504, "{}", slow.body);
    assert!(slow.body.contains("300 ms"), "{}", slow.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(host.get(&format!("/t/{tenant}/count")).await.body, "2");
}
