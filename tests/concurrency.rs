//! Async routes share instances: many requests in flight on one instance,
//! each suspended while it awaits the host.

#[path = "support/mod.rs"]
mod support;

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

/// 100 requests that each await the host for 100 ms, on `component` with
/// default limits: 64 fit on one instance, so two instances serve them.
async fn assert_few_instances(component: &str) {
    let host = Components::new().with(component).serve();
    let instances = hundred_waits(&host, 100).await;
    assert!(
        instances.len() <= 2,
        "served by {} instances",
        instances.len()
    );
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
