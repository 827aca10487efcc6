//! `wasi:http/service@0.3` (p3) components, served unchanged: the
//! `p3-testbed` guest, built with the `wasip3` crate, behind the same
//! pipeline, limits and grants as a p2 proxy.

use crate::support;

use serde_json::json;
use support::{Components, Host, Reply};

#[tokio::test]
async fn a_p3_service_answers_a_get() {
    let host = Components::new().with("p3-testbed").serve();
    host.wait_for_log("p3-testbed (wasi:http 0.3 service)")
        .await;
    let reply = host.get("/hello").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "hello from p3");
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    // The pipeline's response headers are added as for any component.
    assert!(reply.header("x-request-id").is_some());
    let missing = host.get("/nowhere").await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn a_p3_echo_streams_back_method_path_headers_and_body() {
    let host = Components::new().with("p3-testbed").serve();
    let reply = host
        .send(
            http::Method::POST,
            "/echo?x=1",
            &[("x-test", "kept"), ("content-type", "text/plain")],
            b"ping".to_vec(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("x-echo-method"), Some("POST"));
    assert_eq!(reply.header("x-echo-path"), Some("/echo?x=1"));
    assert_eq!(reply.header("x-test"), Some("kept"));
    assert_eq!(reply.body, "ping");
    // A body of megabytes streams through the guest and back, whole.
    let large: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let reply = host
        .send(http::Method::PUT, "/echo", &[], large.clone())
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-echo-method"), Some("PUT"));
    assert_eq!(reply.bytes.len(), large.len());
    assert!(reply.bytes == large, "the echoed body differs");
}

#[tokio::test]
async fn a_p3_body_over_the_limit_is_413_before_the_guest_runs() {
    let host = Components::new()
        .with_sidecar("p3-testbed", "[limits]\nmax-body-kb = 1")
        .serve();
    let reply = host.post("/echo", "text/plain", vec![b'x'; 2048]).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    let detail = reply.json()["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("1024 bytes"), "{detail}");
    let reply = host.post("/echo", "text/plain", vec![b'x'; 512]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 512);
}

#[tokio::test]
async fn a_p3_instance_is_reused_and_a_trap_is_500_then_a_fresh_one_serves() {
    // One instance at most: with more, a request sent the moment the one
    // before it was answered may start a second instance, the event loop
    // not having yet counted the first call as ended.
    let host = Components::new()
        .with_sidecar("p3-testbed", "[limits]\nmax-instances = 1")
        .serve();
    // One warm instance serves one request after another.
    assert_eq!(host.get("/count").await.body, "1");
    assert_eq!(host.get("/count").await.body, "2");
    let trapped = host.get("/trap").await;
    assert_eq!(trapped.status, 500);
    assert!(trapped.json()["detail"].is_string(), "{}", trapped.body);
    // The trapped instance is gone: the next request gets a fresh one.
    assert_eq!(host.get("/count").await.body, "1");
    assert_eq!(host.get("/hello").await.body, "hello from p3");
}

/// A handler waiting past the component's time limit (here on an
/// upstream that never answers) gets 504, and the next request is served.
#[tokio::test]
async fn a_p3_request_past_its_time_limit_is_504() {
    let host = Components::new()
        .with_sidecar(
            "p3-testbed",
            "[limits]\ntimeout-ms = 500\n[grants]\noutbound = [\"http://127.0.0.1:*\"]\n",
        )
        .serve();
    let upstream = silent_upstream().await;
    let target = format!("http://{upstream}/");
    let started = std::time::Instant::now();
    let reply = send_to(&host, &target).await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({ "detail": "The request took too long." })
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(host.get("/hello").await.body, "hello from p3");
}

/// The outbound grant applies to `wasi:http/client`: refused without it or
/// outside the allow-list (`HttpRequestDenied`, an error the guest sees),
/// sent inside it.
#[tokio::test]
async fn a_p3_outbound_request_needs_the_grant() {
    let upstream = support::upstream::answering(|_| "upstream says hi".into()).await;
    let target = format!("http://{upstream}/hi");
    let outgoing = async |sidecar: &str| {
        let host = Components::new()
            .with_sidecar("p3-testbed", sidecar)
            .serve();
        let reply = send_to(&host, &target).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    };
    let ungranted = outgoing("").await;
    assert!(ungranted.contains("HttpRequestDenied"), "{ungranted}");
    let elsewhere = outgoing("[grants]\noutbound = [\"https://api.example.com\"]\n").await;
    assert!(elsewhere.contains("HttpRequestDenied"), "{elsewhere}");
    let granted = outgoing("[grants]\noutbound = [\"http://127.0.0.1:*\"]\n").await;
    assert_eq!(granted, "status 200: upstream says hi");
}

/// Asks the guest to send a GET to `target` and say how it went.
async fn send_to(host: &Host, target: &str) -> Reply {
    let headers = [("x-target", target)];
    host.send(http::Method::GET, "/outgoing", &headers, Vec::new())
        .await
}

/// A local server that accepts connections and never answers.
async fn silent_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}
