//! Handlers built with componentize-js, served unchanged: one in the
//! fetch-event style (`addEventListener('fetch', ...)`), which answers only
//! once per instance and so gets a fresh one per request, and one exporting
//! `incomingHandler` itself.

use crate::support;

use serde_json::json;
use support::Components;

#[tokio::test]
async fn a_fetch_event_handler_answers_every_request() {
    let host = Components::new().with("js-fetch-event").serve_ready().await;
    for round in 0..3 {
        let reply = host.get(&format!("/items/{round}?full=1")).await;
        assert_eq!(reply.status, 200, "round {round}: {}", reply.body);
        assert_eq!(
            reply.json(),
            json!({ "method": "GET", "path": format!("/items/{round}"), "query": "?full=1" })
        );
    }
    let posted = host.post("/echo", "text/plain", "ping").await;
    assert_eq!(posted.status, 200, "{}", posted.body);
    assert_eq!(posted.body, "echo: ping");
    assert_eq!(posted.header("content-type"), Some("text/plain"));
}

#[tokio::test]
async fn a_fetch_event_handler_gets_a_fresh_instance_per_request() {
    let host = Components::new().with("js-fetch-event").serve_ready().await;
    for _ in 0..3 {
        assert_eq!(host.get("/count").await.body, "1");
    }
    host.wait_for_log("built by componentize-js: a fresh instance per request")
        .await;
}

/// An operator's `isolation = "reuse"` wins over the default: the
/// fetch-event handler then fails from its second request on, as it does
/// on any host that reuses its instance.
#[tokio::test]
async fn the_sidecar_can_ask_to_reuse_a_componentize_js_instance() {
    let sidecar = "[limits]\nisolation = \"reuse\"\n";
    let host = Components::new()
        .with_sidecar("js-fetch-event", sidecar)
        .serve_ready()
        .await;
    assert_eq!(host.get("/count").await.body, "1");
    let second = host.get("/count").await;
    assert_eq!(second.status, 500, "{}", second.body);
    assert!(second.json()["detail"].is_string(), "{}", second.body);
    host.wait_for_log("respondWith can't be called twice").await;
}

#[tokio::test]
async fn an_incoming_handler_export_answers_every_request() {
    let host = Components::new()
        .with("js-incoming-handler")
        .serve_ready()
        .await;
    for round in 1..=3 {
        let reply = host.get(&format!("/n/{round}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, format!("get /n/{round} #1"));
        assert_eq!(reply.header("content-type"), Some("text/plain"));
    }
}

/// Exporting `incomingHandler` leaves the fetch event out, so an operator
/// may give such a handler warm instances: one serves every request.
#[tokio::test]
async fn an_incoming_handler_export_can_be_reused() {
    let sidecar = "[limits]\nisolation = \"reuse\"\n";
    let host = Components::new()
        .with_sidecar("js-incoming-handler", sidecar)
        .serve_ready()
        .await;
    let idle = r#"component="js-incoming-handler""#;
    for round in 1..=3 {
        let reply = host.get("/n").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, format!("get /n #{round}"));
        // The response ends with its body; the guest's call returns just
        // after, and only then is its instance back for the next request.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while host.metric("cello_instances_idle", idle).await != 1.0 {
            assert!(std::time::Instant::now() < deadline, "never idle again");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    assert_eq!(host.metric("cello_instantiations_total", idle).await, 1.0);
}
