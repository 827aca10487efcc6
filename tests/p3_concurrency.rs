//! Many requests at once on one `wasi:http/service@0.3` (p3) instance, as
//! `wasmtime serve` runs them: each request keeps its own deadline, a trap
//! fails the requests in flight on the instance, a client that leaves
//! gives up its place, what each prints names its own request, and a
//! handler that never yields is logged. The `p3-testbed` guest's `/sleep`
//! and `/print` wait on wasi:clocks; its `/spin` computes without yielding.

use crate::support;

use std::time::{Duration, Instant};

use support::{Components, Host};
use tokio::io::AsyncWriteExt;

/// Starts `count` GETs of `path` at once.
fn spawn_many(
    host: &Host,
    path: &str,
    count: usize,
) -> Vec<tokio::task::JoinHandle<support::Reply>> {
    (0..count).map(|_| host.spawn_get(path)).collect()
}

#[tokio::test]
async fn p3_requests_run_side_by_side_on_one_instance() {
    let host = Components::new()
        .with_sidecar("p3-testbed", "[limits]\nmax-instances = 1")
        .serve();
    assert_eq!(host.get("/hello").await.status, 200);
    let started = Instant::now();
    for sleeper in spawn_many(&host, "/sleep?ms=1000", 8) {
        let reply = sleeper.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, "slept 1000 ms");
    }
    // One after another they would take 8 s.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "8 sleeps of 1 s took {took:?}"
    );
    // All on the one warm instance: the hello, the sleeps, and this.
    assert_eq!(host.get("/count").await.body, "10");
}

#[tokio::test]
async fn p3_concurrency_caps_the_requests_on_one_instance() {
    let sidecar = "[limits]\nmax-instances = 1\np3-concurrency = 2";
    let host = Components::new()
        .with_sidecar("p3-testbed", sidecar)
        .serve();
    assert_eq!(host.get("/hello").await.status, 200);
    let started = Instant::now();
    for sleeper in spawn_many(&host, "/sleep?ms=800", 4) {
        assert_eq!(sleeper.await.unwrap().status, 200);
    }
    // Two at a time: two rounds of 800 ms.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "took {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn a_p3_trap_fails_the_requests_in_flight_and_a_fresh_instance_serves_next() {
    let host = Components::new()
        .with_sidecar("p3-testbed", "[limits]\nmax-instances = 1")
        .serve();
    assert_eq!(host.get("/hello").await.status, 200);
    let started = Instant::now();
    let sleepers = spawn_many(&host, "/sleep?ms=5000", 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let trapped = host.get("/trap").await;
    assert_eq!(trapped.status, 500, "{}", trapped.body);
    for sleeper in sleepers {
        let reply = sleeper.await.unwrap();
        assert_eq!(reply.status, 500, "{}", reply.body);
        assert!(reply.json()["detail"].is_string(), "{}", reply.body);
    }
    // They failed with the trap, not after their sleep.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}");
    host.wait_for_log("requests in flight").await;
    // The trapped instance is gone: the next request gets a fresh one.
    assert_eq!(host.get("/count").await.body, "1");
}

#[tokio::test]
async fn a_p3_request_past_its_deadline_does_not_cut_the_others() {
    let sidecar = "[limits]\nmax-instances = 1\ntimeout-ms = 2000";
    let host = Components::new()
        .with_sidecar("p3-testbed", sidecar)
        .serve();
    assert_eq!(host.get("/hello").await.status, 200);
    let started = Instant::now();
    let late = host.spawn_get("/sleep?ms=10000");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // In flight on the same instance when the first one times out.
    let others = spawn_many(&host, "/sleep?ms=1500", 2);
    let late = late.await.unwrap();
    assert_eq!(late.status, 504, "{}", late.body);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "the 504 took {took:?}");
    for other in others {
        let reply = other.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, "slept 1500 ms");
    }
    // The instance took no more after the timeout: a fresh one serves.
    assert_eq!(host.get("/count").await.body, "1");
}

#[tokio::test]
async fn a_p3_client_that_leaves_frees_its_place() {
    let sidecar = "[limits]\nmax-instances = 1\np3-concurrency = 1\ntimeout-ms = 20000";
    let host = Components::new()
        .with_sidecar("p3-testbed", sidecar)
        .serve();
    assert_eq!(host.get("/hello").await.status, 200);
    let mut stream = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    let request = "GET /sleep?ms=30000 HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(stream);
    // The only place on the only instance is free again at once, not
    // after the sleep or the time limit.
    let started = Instant::now();
    let reply = host.get("/hello").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "the hello took {took:?}");
}

/// The guest's log line `message`, as the host logged it in JSON, once it
/// has.
async fn guest_line(host: &Host, message: &str) -> serde_json::Value {
    for _ in 0..100 {
        let found = host
            .log()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| line["target"] == "guest" && line["fields"]["message"] == message);
        if let Some(line) = found {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the guest never logged {message:?}; the log:\n{}",
        host.log()
    );
}

#[tokio::test]
async fn p3_requests_in_flight_together_print_with_their_own_request_id() {
    let host = Components::new()
        .with_sidecar("p3-testbed", "[limits]\nmax-instances = 1")
        .serve_with(&["--log-format", "json"]);
    assert_eq!(host.get("/hello").await.status, 200);
    // Each prints, waits while the others print, and prints again, all on
    // the one instance.
    let tags = ["amber", "birch", "cedar", "dune"];
    let printers: Vec<_> = tags
        .iter()
        .map(|tag| host.spawn_get(&format!("/print?tag={tag}&ms=500")))
        .collect();
    for (tag, printer) in tags.iter().zip(printers) {
        let reply = printer.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, format!("printed {tag}"));
        let request_id = reply.header("x-request-id").expect("a request id");
        for (message, stream) in [
            (format!("before the wait: {tag}"), "stdout"),
            (format!("after the wait: {tag}"), "stderr"),
        ] {
            let line = guest_line(&host, &message).await;
            let fields = &line["fields"];
            assert_eq!(fields["request_id"], request_id, "{line}");
            assert_eq!(fields["component"], "p3-testbed", "{line}");
            assert_eq!(fields["route"], "/print", "{line}");
            assert_eq!(fields["stream"], stream, "{line}");
        }
    }
    // They were in flight together on the one instance.
    assert_eq!(host.get("/count").await.body, "6");
}

#[tokio::test]
async fn a_p3_handler_that_blocks_its_instance_is_logged_with_advice_for_p3() {
    let host = Components::new()
        .with_sidecar("p3-testbed", "[limits]\nblocked-warn-ms = 100")
        .serve();
    assert_eq!(host.get("/spin?ms=400").await.status, 200);
    let log = host.wait_for_log("without awaiting").await;
    let warning = log
        .lines()
        .find(|line| line.contains("without awaiting"))
        .unwrap();
    assert!(
        warning.contains("a wasi:http 0.3 handler ran for"),
        "{warning}"
    );
    assert!(warning.contains("p3-concurrency = 1"), "{warning}");
    assert!(!warning.contains("use `def`"), "{warning}");
    assert!(warning.contains("/spin"), "{warning}");
}
