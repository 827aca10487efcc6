//! The SQL capability through real components over real HTTP: the Python
//! todos example (async and sync routes, a transaction, migrations) and a
//! Rust guest (tenants, quotas, time limits, failing migrations).

use crate::support;

use serde_json::json;
use support::admin::serve;
use support::sql::{
    TODOS, a_failing_migration_refuses_the_version, post_text, slow_query_cut, tenants_on,
    transactions_roll_back, two_todos_and_a_failed_batch,
};
use support::{Components, Host};

#[tokio::test]
async fn python_todos_are_kept_across_a_restart_and_a_failed_batch_leaves_nothing() {
    let host = Components::new().with_sidecar("todos", TODOS).serve();
    two_todos_and_a_failed_batch(&host, "CHECK constraint").await;

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
async fn a_sync_routes_stream_may_await_a_query() {
    let host = tenants().await;
    assert_eq!(post_text(&host, "/t/acme/notes", "one").await.body, "1");
    let reply = host.get("/t/acme/count-streamed").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "1"));
}

#[tokio::test]
async fn a_transaction_rolls_back_when_dropped_or_when_a_statement_fails() {
    transactions_roll_back(&tenants().await, "acme", "UNIQUE").await;
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
    slow_query_cut(&host, slow, "acme", "globex").await;
}

#[tokio::test]
async fn a_failing_migration_refuses_the_version_while_the_old_one_serves() {
    a_failing_migration_refuses_the_version(&tenants().await, "acme").await;
}
