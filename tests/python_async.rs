//! Async code in a Python guest that must never take its instance down:
//! a fire-and-forget task that outlives its handler, a timeout around a
//! slow outbound call, the seed's background tasks, and thread pools. Each
//! runs beside a concurrent request on the same (only) instance, which must
//! get its answer.

use crate::support;

use std::time::Duration;

use support::{Components, Host};

/// Every grant the guest uses.
const GRANTS: &str = r#"
[grants]
kv = true
config = true
outbound = ["http://127.0.0.1:*"]
"#;

/// The guest on one async instance at most (`max_instances`, sync and async
/// together), and the testbed under /tb as a slow upstream on loopback.
fn serve_with(max_instances: u32) -> Host {
    let sidecar = format!("{GRANTS}\n[limits]\nmax-instances = {max_instances}\n");
    Components::new()
        .with_sidecar("python-caps", &sidecar)
        .with_sidecar("python-testbed", "prefix = \"/tb\"")
        .serve()
}

fn serve() -> Host {
    serve_with(1)
}

/// Waits for `key` to appear in the guest's store.
async fn stored(host: &Host, key: &str) -> String {
    for _ in 0..100 {
        let reply = host.get(&format!("/kv/{key}")).await;
        if reply.status == 200 {
            return reply.json()["value"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{key} was never stored; log:\n{}", host.log());
}

/// A request that spends 400 ms on the instance, sent without waiting.
fn concurrent(host: &Host) -> tokio::task::JoinHandle<support::Reply> {
    host.spawn_get("/wait-for?timeout_ms=5000&sleep_ms=400")
}

async fn assert_unaffected(host: &Host, other: tokio::task::JoinHandle<support::Reply>) {
    let other = other.await.unwrap();
    assert_eq!(other.status, 200, "{}", host.log());
    assert_eq!(other.json()["timed_out"], false);
    assert!(!host.log().contains("trapped"), "{}", host.log());
}

#[tokio::test]
async fn a_task_that_outlives_its_handler_runs_on_after_the_response() {
    let host = serve();
    let other = concurrent(&host);
    let reply = host.post("/spawn/fire", "text/plain", "").await;
    assert_eq!(reply.status, 200, "{}", host.log());
    // The task sleeps 300 ms before it finishes: the response did not wait.
    assert_eq!(host.get("/kv/fire:task-done").await.status, 404);
    let done: u128 = stored(&host, "fire:task-done").await.parse().unwrap();
    let responded: u128 = stored(&host, "fire:responded").await.parse().unwrap();
    assert!(responded < done);
    host.wait_for_log("this spawned task fails on purpose")
        .await;
    assert_unaffected(&host, other).await;
    // The instance is still the one serving.
    assert_eq!(
        host.post("/spawn/again", "text/plain", "").await.status,
        200
    );
    stored(&host, "again:task-done").await;
    assert!(!host.log().contains("trapped"), "{}", host.log());
}

#[tokio::test]
async fn a_timeout_around_a_slow_outbound_call_answers_and_traps_nothing() {
    let host = serve();
    let slow = host.url("/tb/wait/600");
    for _ in 0..3 {
        let other = concurrent(&host);
        let reply = host
            .get(&format!("/wait-for-http?url={slow}&timeout_ms=50"))
            .await;
        assert_eq!(reply.status, 200, "{}", host.log());
        assert_eq!(reply.json()["timed_out"], true);
        assert_unaffected(&host, other).await;
    }
    let fast = host.url("/tb/wait/1");
    let reply = host
        .get(&format!("/wait-for-http?url={fast}&timeout_ms=5000"))
        .await;
    assert_eq!(reply.json()["timed_out"], false, "{}", host.log());
}

#[tokio::test]
async fn background_tasks_made_in_the_handler_run_after_the_response() {
    // Two: a sync route needs an instance of its own beside the async one.
    let host = serve_with(2);
    // The sync route needs an instance of its own, so it goes alone.
    for (path, key, beside) in [
        ("/orders/seed", "seed", true),
        ("/orders-attached/attached", "attached", false),
    ] {
        let other = beside.then(|| concurrent(&host));
        let reply = host.post(path, "application/json", "{}").await;
        assert_eq!(reply.status, 201, "{path}: {}", host.log());
        let done: u128 = stored(&host, &format!("{key}:task-done"))
            .await
            .parse()
            .unwrap();
        let responded: u128 = stored(&host, &format!("{key}:responded"))
            .await
            .parse()
            .unwrap();
        assert!(responded < done);
        if let Some(other) = other {
            assert_unaffected(&host, other).await;
        }
    }
}

#[tokio::test]
async fn thread_and_process_pools_run_inline_with_a_warning() {
    let host = serve();
    let reply = host.get("/compute?n=10").await;
    assert_eq!(reply.status, 200, "{}", host.log());
    assert_eq!(
        reply.json(),
        serde_json::json!({"result": 45, "threaded": 45})
    );
    host.wait_for_log("runs the function inline").await;
}

#[tokio::test]
async fn a_task_that_never_ends_is_cancelled_after_the_limit_with_a_log_line() {
    let host = serve();
    let reply = host.post("/spawn-forever", "text/plain", "").await;
    assert_eq!(reply.status, 200, "{}", host.log());
    let other = concurrent(&host);
    // python-caps gives left-over tasks 2 s after the response.
    host.wait_for_log("left 1 task(s) running 2 s after it ended; cancelling them")
        .await;
    stored(&host, "forever:cancelled").await;
    assert_unaffected(&host, other).await;
    assert_eq!(
        host.post("/spawn/after", "text/plain", "").await.status,
        200
    );
    stored(&host, "after:task-done").await;
}

#[tokio::test]
async fn a_def_route_that_starts_a_task_answers_500_with_the_reason_logged() {
    let host = serve_with(2);
    let reply = host.post("/spawn-sync", "text/plain", "").await;
    assert_eq!(reply.status, 500);
    host.wait_for_log("declare the route `async def`").await;
    assert_eq!(host.post("/spawn/fine", "text/plain", "").await.status, 200);
}
