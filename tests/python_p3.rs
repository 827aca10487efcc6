//! A wasi:http 0.3 service written in Python to componentize-py's own
//! bindings and built by componentize-py alone, as its `http-p3` example
//! is (the `python-p3` guest), served unchanged.

use crate::support;

use support::Components;

#[tokio::test]
async fn a_python_p3_service_answers_a_get_with_a_streamed_body() {
    let host = Components::new().with("python-p3").serve_ready().await;
    for _ in 0..3 {
        let reply = host.get("/hello").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, "hello from python p3");
        assert_eq!(reply.header("content-type"), Some("text/plain"));
    }
    let unknown = host.get("/nowhere").await;
    assert_eq!(unknown.status, 400);
}

#[tokio::test]
async fn a_python_p3_echo_streams_the_body_back() {
    let host = Components::new().with("python-p3").serve_ready().await;
    let reply = host.post("/echo", "text/plain", "ping").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "ping");
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    let large: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let reply = host
        .post("/echo", "application/octet-stream", large.clone())
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply.bytes == large, "the echoed body differs");
}

/// What the example's `/hash-all` does: fetch every `url` header's URL at
/// once through `wasi:http/client`, and stream each body's SHA-256.
#[tokio::test]
async fn a_python_p3_service_fetches_urls_concurrently_within_its_grant() {
    let upstream = support::upstream::answering(str::to_string).await;
    let (a, b) = (
        format!("http://{upstream}/a"),
        format!("http://{upstream}/b"),
    );
    let sidecar = "[grants]\noutbound = [\"http://127.0.0.1:*\"]\n";
    let host = Components::new()
        .with_sidecar("python-p3", sidecar)
        .serve_ready()
        .await;
    let headers = [("url", a.as_str()), ("url", b.as_str())];
    let reply = host
        .send(http::Method::GET, "/hash-all", &headers, Vec::new())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut lines: Vec<&str> = reply.body.lines().collect();
    lines.sort();
    // The SHA-256 of "/a" and of "/b", which the upstream answers with.
    assert_eq!(
        lines,
        [
            format!("{a}: 6a50dc8584134c7de537c0052ff6d236bf874355e050c90523e0c5ff2a543a28"),
            format!("{b}: 9812b0b9d61e09b927d03ff93f64530d8fcf373810b7007129eb4b20962412cb"),
        ]
    );
}

#[tokio::test]
async fn a_python_p3_service_is_refused_outbound_without_the_grant() {
    let upstream = support::upstream::answering(str::to_string).await;
    let url = format!("http://{upstream}/a");
    let host = Components::new().with("python-p3").serve_ready().await;
    let reply = host
        .send(http::Method::GET, "/hash-all", &[("url", &url)], Vec::new())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body.starts_with(&format!("{url}: failed:")),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("HttpRequestDenied"), "{}", reply.body);
}
