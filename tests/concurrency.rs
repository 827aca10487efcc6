//! Async routes share instances: many requests in flight on one instance,
//! each suspended while it awaits the host.

use crate::support;

use std::collections::HashSet;

use futures::future::join_all;
use support::{Components, Host};

/// Sends 100 concurrent requests that each await the host for `ms` and
/// returns the distinct instances that served them.
async fn hundred_waits(host: &Host, ms: u32) -> HashSet<String> {
    let client = support::client();
    let replies = join_all((0..100).map(|_| {
        let request = host.request(http::Method::GET, &format!("/wait/{ms}"), &[], Vec::new());
        support::send(&client, request)
    }))
    .await;
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    replies.into_iter().map(|r| r.body).collect()
}

/// The host's worker threads: a busy component spreads over one instance
/// per thread.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// 100 requests that each await the host for 100 ms, on `component` with
/// default limits: 64 fit on one instance, so two instances serve them, or
/// one per core where there are more.
async fn assert_few_instances(component: &str) {
    let host = Components::new().with(component).serve();
    let instances = hundred_waits(&host, 100).await;
    assert!(
        instances.len() <= cores().max(2),
        "served by {} instances",
        instances.len()
    );
}

#[tokio::test]
async fn concurrent_async_requests_spread_over_one_instance_per_core() {
    let host = Components::new().with("testbed").serve();
    let cores = cores();
    // Twice as many as cores, all in flight at once: each of the first
    // finds every instance busy and starts another, until there is one per
    // core; the rest share them.
    let client = support::client();
    let replies = join_all((0..2 * cores).map(|_| {
        let request = host.request(http::Method::GET, "/wait/500", &[], Vec::new());
        support::send(&client, request)
    }))
    .await;
    let instances: HashSet<String> = replies
        .into_iter()
        .map(|reply| {
            assert_eq!(reply.status, 200, "{}", reply.body);
            reply.body
        })
        .collect();
    assert_eq!(instances.len(), cores, "served by {instances:?}");
    // One at a time, the load goes to an idle instance: no new one.
    let again = host.get("/wait/1").await;
    assert!(instances.contains(&again.body), "{}", again.body);
}

#[tokio::test]
async fn spreading_a_load_never_evicts_another_components_instance() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[pool]\nmax-instances = 2\n").unwrap();
    let host = Components::new()
        .with_sidecar("testbed", "prefix = \"/a\"")
        .with_sidecar("hello-rust", "prefix = \"/b\"")
        .serve_with(&["--config", config.path().to_str().unwrap()]);
    // testbed's idle instance holds one of the two slots.
    assert_eq!(host.get("/a/count").await.body, "1");
    // Four async calls at once take the other slot; spreading them would
    // need testbed's, so they share one instance.
    let slow = join_all((0..4).map(|_| host.spawn_get("/b/slow/300"))).await;
    for reply in slow {
        let reply = reply.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // The same warm instance counts on.
    assert_eq!(host.get("/a/count").await.body, "2");
}

#[tokio::test]
async fn hundred_async_rust_requests_run_on_few_instances() {
    assert_few_instances("testbed").await;
}

#[tokio::test]
async fn hundred_async_python_requests_run_on_few_instances() {
    assert_few_instances("python-testbed").await;
}

#[tokio::test]
async fn async_concurrency_per_instance_is_configurable() {
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\nasync-concurrency = 10")
        .serve();
    // Long enough that all 100 are in flight at once.
    let instances = hundred_waits(&host, 1000).await;
    assert_eq!(
        instances.len(),
        10,
        "served by {} instances",
        instances.len()
    );
}

/// Polls the host's log for `needle` for up to `within`.
async fn log_within(host: &Host, needle: &str, within: std::time::Duration) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if host.log().contains(needle) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// Sends `path` and hangs up after `after`, before any answer.
async fn hang_up(host: &Host, path: &str, after: std::time::Duration) {
    let request = host.request(http::Method::GET, path, &[], Vec::new());
    let sent = tokio::time::timeout(after, support::client().request(request)).await;
    assert!(sent.is_err(), "answered before the client left");
}

/// A client that leaves does not take the route's deadline with it: a call
/// that would have run past it had the client stayed still stops its
/// instance, and one that ends in time is left alone.
#[tokio::test]
async fn an_async_call_whose_client_left_still_ends_by_its_deadline() {
    const KILLED: &str = "a call whose client left did not end by its deadline";
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\ntimeout-ms = 1500\n")
        .serve();
    assert_eq!(host.get("/wait/1").await.status, 200);
    let short = std::time::Duration::from_millis(200);
    hang_up(&host, "/wait/500", short).await;
    assert!(!log_within(&host, KILLED, std::time::Duration::from_secs(3)).await);
    hang_up(&host, "/wait/60000", short).await;
    assert!(
        log_within(&host, KILLED, std::time::Duration::from_secs(10)).await,
        "{}",
        host.log()
    );
    assert_eq!(host.get("/wait/1").await.status, 200);
}
