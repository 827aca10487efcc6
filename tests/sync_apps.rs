//! Sync apps: Rust components built with cello-sdk's `sync` feature,
//! against the `sync-app` world, whose exports are all plain functions.
//! One that imports no `async func` is called without component-model
//! async; one that imports an `async func` is refused.

use std::time::{Duration, Instant};

use crate::support::{Components, Host};

const ON_THE_PLAIN_ENGINE: &str = "a sync app: its calls skip component-model async";

/// What the capabilities test grants rust-caps.
const GRANTS: &str = r#"
[grants]
kv = true
config = true
outbound = ["http://127.0.0.1:*"]

[variables]
greeting = "hello from the sidecar"

[secrets]
api-token = { env = "CELLO_TEST_UNSET_TOKEN", default = "s3cret-value" }
"#;

/// The Rust hello built `sync`: every route, the `async fn` one included,
/// answers through `handle` on the engine without concurrency support; two
/// slow requests at once each get an instance of their own.
#[tokio::test]
async fn a_sync_build_serves_every_route_without_component_model_async() {
    let host = Components::new().with("hello-rust-sync").serve();
    host.wait_for_log(ON_THE_PLAIN_ENGINE).await;
    assert_eq!(host.get("/").await.body, "Hello from Rust!");
    assert_eq!(host.get("/hello/ann?greeting=Hi").await.body, "Hi, ann!");
    let created = host
        .post("/items", "application/json", r#"{"name":"bow","price":2}"#)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let invalid = host
        .post("/items", "application/json", r#"{"name":"bow"}"#)
        .await;
    assert_eq!(invalid.status, 422, "{}", invalid.body);
    assert_eq!(invalid.json()["detail"][0]["loc"][1], "price");

    let started = Instant::now();
    let (a, b) = tokio::join!(host.get("/slow/300"), host.get("/slow/300"));
    for reply in [&a, &b] {
        assert_eq!(reply.status, 200, "{}", host.log());
        assert_eq!(reply.json()["slept_ms"], 300);
    }
    // Each held an instance of its own: together, not one after the other.
    assert!(
        started.elapsed() < Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
}

/// A sync build reaches key-value, config, outbound HTTP (through
/// `send-blocking`: its instance waits), its startup hook and background
/// tasks (their sleep blocks the instance, after the response has gone).
#[tokio::test]
async fn a_sync_build_reaches_its_capabilities_and_hooks() {
    let upstream = crate::capabilities::upstream(Duration::from_millis(1)).await;
    let host = Components::new()
        .with_sidecar("rust-caps-sync", GRANTS)
        .serve();
    host.wait_for_log(ON_THE_PLAIN_ENGINE).await;
    crate::capabilities::rust_caps_start_count_and_config(&host).await;
    let fetched = host
        .get(&format!("/fetch?url=http://{}/r", upstream.addr))
        .await;
    assert_eq!(fetched.body, "200 upstream saw /r", "{}", host.log());
    let denied = host.get("/fetch?url=https://example.com/").await;
    assert_eq!(denied.status, 502);
    assert!(denied.body.starts_with("error: denied"), "{}", denied.body);
    let refused = host.get("/fetch?url=http://127.0.0.1:9/").await;
    assert!(
        refused.body.starts_with("error: failed"),
        "{}",
        refused.body
    );
    let started = Instant::now();
    let queued = host.post("/later/written", "text/plain", "").await;
    assert_eq!(queued.body, "queued");
    // The task sleeps 300 ms once the response is out, not before.
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        host.get_until_ok("/kv/written").await.body,
        "written in the background"
    );
    let put = (host)
        .send(
            http::Method::PUT,
            "/kv/k",
            &[("content-type", "text/plain")],
            b"v".to_vec(),
        )
        .await;
    assert_eq!(put.body, "stored");
    assert_eq!(host.get("/kv/k").await.body, "v");
}

/// A sync build's request blocked on a slow upstream past `timeout-ms` is
/// a 504 for its client alone: its instance is let go with the call, and
/// the next request gets another.
#[tokio::test]
async fn a_sync_builds_outbound_call_past_its_deadline_is_a_504_and_the_app_serves_on() {
    let slow = crate::capabilities::upstream(Duration::from_secs(5)).await;
    let sidecar = format!("{GRANTS}\n[limits]\ntimeout-ms = 500\n");
    let host = Components::new()
        .with_sidecar("rust-caps-sync", &sidecar)
        .serve();
    host.wait_for_log(ON_THE_PLAIN_ENGINE).await;
    let started = Instant::now();
    let reply = host
        .get(&format!("/fetch?url=http://{}/s", slow.addr))
        .await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(host.get("/config").await.status, 200, "{}", host.log());
}

/// Without the grants it imports, a sync build is refused at load as any
/// other component is, naming the grant.
#[tokio::test]
async fn a_sync_build_without_its_grants_is_refused_naming_them() {
    let output = Components::new().with("rust-caps-sync").check();
    let said = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("add `kv = true`"), "{said}");
}

/// A sync build importing SQL is served on the engine without
/// concurrency support too: its statements, transactions and migrations
/// (in its startup hook) run through the `-blocking` functions; a
/// statement's error comes back to it as an error, not a trap, and a
/// transaction dropped unfinished is rolled back.
#[tokio::test]
async fn a_sync_build_importing_sql_runs_its_statements_blocking() {
    let host = Components::new()
        .with_sidecar("rust-sql-sync", "[grants]\nsql = true\nconfig = true\n")
        .serve();
    host.wait_for_log(ON_THE_PLAIN_ENGINE).await;
    assert_eq!(host.post("/notes", "text/plain", "first").await.body, "1");
    assert_eq!(host.post("/notes", "text/plain", "second").await.body, "2");
    assert_eq!(host.get("/notes/2").await.json()["body"], "second");
    assert_eq!(host.get("/count").await.body, "2");
    assert_eq!(host.get("/notes/9").await.status, 404);
    let invalid = host.post("/run", "text/plain", "SELEC nothing").await;
    assert_eq!(invalid.status, 400, "{}", invalid.body);
    assert!(invalid.body.contains("syntax error"), "{}", invalid.body);
    assert_eq!(
        host.post("/abandon", "text/plain", "gone").await.status,
        500
    );
    assert_eq!(host.get("/count").await.body, "2");
    let batch = host.post("/batch", "text/plain", "third\nfourth").await;
    assert_eq!(batch.body, "committed");
    assert_eq!(host.get("/count").await.body, "4");
}

/// The sync rust-sql, with a database and a `timeout-ms` of 500, on the
/// plain engine.
async fn sql_sync_host_cutting_at_500_ms() -> Host {
    let sidecar = "[grants]\nsql = true\nconfig = true\n[limits]\ntimeout-ms = 500\n";
    let host = Components::new()
        .with_sidecar("rust-sql-sync", sidecar)
        .serve();
    host.wait_for_log(ON_THE_PLAIN_ENGINE).await;
    host
}

/// A sync build's statement that would run forever ends at the request's
/// time limit (504), and the database goes on answering the next one.
#[tokio::test]
async fn a_sync_builds_endless_statement_is_a_504_and_the_database_goes_on() {
    let host = sql_sync_host_cutting_at_500_ms().await;
    let started = Instant::now();
    let endless = host.get("/slow").await;
    assert_eq!(endless.status, 504, "{}", endless.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let after = host.post("/notes", "text/plain", "after").await;
    assert_eq!((after.status, after.body.as_str()), (200, "1"));
    assert_eq!(host.get("/count").await.body, "1");
}

/// A sync build's call that runs past `timeout-ms` (its sleep blocks the
/// instance) is a 504 for its client alone; the next request is served.
#[tokio::test]
async fn a_sync_call_past_its_time_limit_is_a_504_and_the_next_is_served() {
    let host = Components::new()
        .with_sidecar("hello-rust-sync", "[limits]\ntimeout-ms = 300\n")
        .serve();
    let started = Instant::now();
    let late = host.get("/slow/5000").await;
    assert_eq!(late.status, 504, "{}", late.body);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(host.get("/").await.body, "Hello from Rust!");
    assert_eq!(host.get("/slow/10").await.status, 200);
}

/// A `def` call whose instance's start (`on-start`) outlasts `timeout-ms`
/// is a 504, and the instance, sound, serves the next request at once
/// rather than being started again.
#[tokio::test]
async fn an_instance_whose_start_outlasts_the_request_serves_the_next_one() {
    let sidecar = "[grants]\nconfig = true\n[variables]\nstart-ms = \"800\"\n\
                   [limits]\ntimeout-ms = 300\n";
    let host = Components::new()
        .with_sidecar("slow-start", sidecar)
        .serve();
    let first = host.get("/").await;
    assert_eq!(first.status, 504, "{}", first.body);
    let started = Instant::now();
    let next = host.get("/").await;
    assert_eq!(next.body, "started", "{}", host.log());
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

/// A transaction a cut call left open (its instance, blocked in a sleep
/// past `timeout-ms`, is dropped with it) is rolled back at once: the
/// database is free for the next request, and what it wrote is gone.
#[tokio::test]
async fn a_transaction_left_open_by_a_cut_call_is_rolled_back_at_once() {
    let host = sql_sync_host_cutting_at_500_ms().await;
    let held = host.post("/hold/5000", "text/plain", "").await;
    assert_eq!(held.status, 504, "{}", held.body);
    let after = host.post("/notes", "text/plain", "after").await;
    assert_eq!((after.status, after.body.as_str()), (200, "1"));
    assert_eq!(host.get("/count").await.body, "1");
    host.wait_for_log("a SQL transaction was open when its instance ended")
        .await;
}
