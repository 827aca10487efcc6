//! The SQL suite of `sql.rs` again, with the host keeping databases in a
//! real PostgreSQL (`[sql] postgres = URL`): one server for this binary,
//! tenants named apart per test (roles belong to the whole server).

use crate::support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;
use support::admin::serve_with;
use support::sql::{
    TODOS, a_failing_migration_refuses_the_version, post_text, slow_query_cut, tenants_on,
    transactions_roll_back, two_todos_and_a_failed_batch,
};
use support::{Components, Host, postgres};

/// A host config file keeping databases in the shared PostgreSQL.
fn config() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cello.toml");
    let url = postgres::shared().url();
    std::fs::write(
        &path,
        format!("[sql]\npostgres = \"{url}\"\nconnections = 8\nconnections-per-component = 2\n"),
    )
    .unwrap();
    (dir, path)
}

fn serve_on_postgres(components: Components, config: &std::path::Path) -> Host {
    serve_with(components, &["--config", config.to_str().unwrap()])
}

/// A host on PostgreSQL with tenants `small` (quotas) and `large`.
async fn tenants(small: &str, large: &str) -> (Host, tempfile::TempDir) {
    let (dir, config) = config();
    let host = serve_on_postgres(Components::new(), &config);
    tenants_on(&host, small, large).await;
    (host, dir)
}

#[tokio::test]
async fn python_todos_are_kept_in_postgres_across_a_restart() {
    let (_dir, config) = config();
    let host = serve_on_postgres(Components::new().with_sidecar("todos", TODOS), &config);
    two_todos_and_a_failed_batch(&host, "check constraint").await;

    let host = serve_on_postgres(host.stop(), &config);
    let kept = host.get("/todos/?done=true").await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    assert_eq!(
        kept.json(),
        json!([{"id": 2, "title": "ship it", "done": true, "tags": []}])
    );
    assert_eq!(host.get("/todos/1").await.json()["tags"], json!(["docs"]));
    assert_eq!(host.get("/todos/9").await.status, 404);
}

#[tokio::test]
async fn a_tenants_role_reaches_only_its_own_schema_whatever_it_tries() {
    let (host, _dir) = tenants("iso-a", "iso-b").await;
    assert_eq!(post_text(&host, "/t/iso-a/notes", "a's").await.body, "1");
    assert_eq!(post_text(&host, "/t/iso-b/notes", "b's").await.body, "1");
    assert_eq!(host.get("/t/iso-b/count").await.body, "1");
    assert_eq!(host.get("/t/iso-a/notes/1").await.json()["body"], "a's");

    // Statements that run, and change nothing that matters.
    for harmless in ["RESET ROLE", "SET search_path = t_iso_b__notes, public"] {
        let reply = post_text(&host, "/t/iso-a/run", harmless).await;
        assert_eq!(reply.status, 200, "{harmless}: {}", reply.body);
    }
    for attack in [
        "SELECT count(*) FROM t_iso_b__notes.notes",
        "UPDATE t_iso_b__notes.notes SET body = 'mine'",
        "SET ROLE cello",
        "SET ROLE t_iso_b__notes",
        "SET SESSION AUTHORIZATION cello",
        "DO $$ BEGIN EXECUTE 'SET ROLE cello'; END $$",
        "SELECT rolpassword FROM pg_authid",
        "COPY notes TO PROGRAM 'id'",
        "CREATE EXTENSION IF NOT EXISTS dblink",
        "CREATE TEMP TABLE scratch (a int)",
        "CREATE TABLE public.planted (a int)",
        "SELECT 1; DROP TABLE notes",
        "ALTER ROLE t_iso_a__notes SUPERUSER",
    ] {
        let refused = post_text(&host, "/t/iso-a/run", attack).await;
        assert_eq!(refused.status, 400, "{attack}: {}", refused.body);
    }
    assert_eq!(host.get("/t/iso-b/notes/1").await.json()["body"], "b's");
    assert_eq!(host.get("/t/iso-a/count").await.body, "1");
}

#[tokio::test]
async fn a_postgres_transaction_rolls_back_when_dropped_or_when_a_statement_fails() {
    let (host, _dir) = tenants("tx-a", "tx-b").await;
    transactions_roll_back(&host, "tx-a", "unique").await;
}

#[tokio::test]
async fn the_schema_size_quota_and_time_limit_give_errors_and_the_rest_goes_on() {
    let (host, _dir) = tenants("quota-a", "quota-b").await;
    assert_eq!(
        post_text(&host, "/t/quota-a/notes", "small").await.status,
        200
    );
    // 256 KiB of random bytes a row (TOAST would squeeze repeated ones).
    let fill = "INSERT INTO blobs SELECT decode(string_agg(md5(random()::text), ''), 'hex') \
                FROM generate_series(1, 16384)";
    let mut refused = None;
    for _ in 0..8 {
        let reply = post_text(&host, "/t/quota-a/run", fill).await;
        if reply.status != 200 {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("a 1 MiB schema took 2 MiB");
    assert_eq!(refused.status, 507, "{}", refused.body);
    assert!(refused.body.contains("size quota"), "{}", refused.body);
    assert_eq!(host.get("/t/quota-a/notes/1").await.status, 200);
    assert_eq!(
        post_text(&host, "/t/quota-a/notes", "more").await.status,
        507
    );
    // Freeing space lets writes in again.
    assert_eq!(
        post_text(&host, "/t/quota-a/run", "TRUNCATE blobs")
            .await
            .status,
        200
    );
    assert_eq!(
        post_text(&host, "/t/quota-a/notes", "more").await.status,
        200
    );
    for _ in 0..6 {
        assert_eq!(post_text(&host, "/t/quota-b/run", fill).await.status, 200);
    }

    // A query that would sleep 10 s is cut at 300 ms; meanwhile another
    // tenant is served.
    let request = host.request(
        Method::POST,
        "/t/quota-a/run",
        &[],
        "SELECT pg_sleep(10)".into(),
    );
    let slow = tokio::spawn(async move { support::send(&support::client(), request).await });
    slow_query_cut(&host, slow, "quota-a", "quota-b").await;
}

#[tokio::test]
async fn a_failing_postgres_migration_refuses_the_version_while_the_old_one_serves() {
    let (host, _dir) = tenants("mig-a", "mig-b").await;
    a_failing_migration_refuses_the_version(&host, "mig-a").await;
}

#[tokio::test]
async fn a_transaction_a_guest_begins_with_a_statement_never_holds_later_writes() {
    let (_dir, config) = config();
    let sidecar = "prefix = \"/n\"\n[grants]\nsql = true\nconfig = true\n";
    let host = serve_on_postgres(Components::new().with_sidecar("rust-sql", sidecar), &config);
    assert_eq!(post_text(&host, "/n/notes", "first").await.body, "1");
    // A guest's own BEGIN leaves its connection inside a transaction: the
    // host rolls it back before the next statement, so the writes after it
    // are committed, not held in a transaction nobody ends.
    for begin in ["BEGIN", "  start transaction"] {
        let reply = post_text(&host, "/n/run", begin).await;
        assert_eq!(reply.status, 200, "{begin}: {}", reply.body);
        let added = post_text(&host, "/n/notes", &format!("after {begin}")).await;
        assert_eq!(added.status, 200, "{}", added.body);
    }
    // A restart closes every connection: only committed rows remain.
    let host = serve_on_postgres(host.stop(), &config);
    assert_eq!(host.get("/n/count").await.body, "3");
}

/// A statement whose call is cut (here the request's time limit, in a sync
/// build) is cancelled, and its connection is not reused: the component's
/// next request does not queue behind it until the statement's own limit.
#[tokio::test]
async fn a_statement_whose_call_is_cut_is_cancelled_and_the_next_does_not_wait() {
    let (_dir, config) = config();
    let sidecar = "[grants]\nsql = true\nconfig = true\n[limits]\ntimeout-ms = 500\n";
    let components = Components::new().with_as("rust-sql-sync", "endless-sql", Some(sidecar));
    let host = serve_on_postgres(components, &config);
    // Both of its connections (`connections-per-component = 2`) run an
    // endless statement when the calls are cut.
    let (first, second) = tokio::join!(host.get("/slow"), host.get("/slow"));
    assert_eq!((first.status, second.status), (504, 504), "{}", first.body);
    let started = Instant::now();
    let added = host.post("/notes", "text/plain", "after").await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the next statement waited {:?} (a statement's limit is 5 s)",
        started.elapsed()
    );
}

/// Transactions cut calls left open (their instances dropped past
/// `timeout-ms`) are rolled back at once: the component's connections are
/// free for the next request, and what they wrote is gone.
#[tokio::test]
async fn transactions_left_open_by_cut_calls_are_rolled_back_at_once() {
    let (_dir, config) = config();
    let sidecar = "[grants]\nsql = true\nconfig = true\n[limits]\ntimeout-ms = 500\n";
    // A schema of its own: the server is shared with the other tests.
    let components = Components::new().with_as("rust-sql-sync", "held-sql", Some(sidecar));
    let host = serve_on_postgres(components, &config);
    // Both of its connections held by a transaction.
    let (first, second) = tokio::join!(
        host.post("/hold/8000", "text/plain", ""),
        host.post("/hold/8000", "text/plain", "")
    );
    assert_eq!((first.status, second.status), (504, 504), "{}", first.body);
    let added = host.post("/notes", "text/plain", "after").await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(host.get("/count").await.body, "1");
}

/// A transaction in which a statement failed is aborted by PostgreSQL,
/// which answers its COMMIT by rolling back: the guest is told so, not
/// that it committed, and nothing of it is kept.
#[tokio::test]
async fn a_commit_after_a_failed_statement_says_nothing_was_committed() {
    let (_dir, config) = config();
    let sidecar = "[grants]\nsql = true\nconfig = true\n";
    let components = Components::new().with_as("rust-sql", "lenient-sql", Some(sidecar));
    let host = serve_on_postgres(components, &config);
    let committed = host.post("/lenient", "text/plain", "one\ntwo").await;
    assert_eq!(committed.body, "committed");
    // The second `one` breaks the unique constraint.
    let aborted = host
        .post("/lenient", "text/plain", "three\none\nfour")
        .await;
    assert_eq!(aborted.status, 500, "{}", aborted.body);
    assert!(
        aborted.body.contains("nothing in it was committed"),
        "{}",
        aborted.body
    );
    assert_eq!(host.get("/count").await.body, "2");
}
