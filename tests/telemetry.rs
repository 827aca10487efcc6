//! Traces: with an OTLP endpoint set, each request is a span (a child of
//! the caller's `traceparent`) with a child per stage, exported to the
//! receiver the test runs.

#[path = "support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use support::Components;

/// An OTLP/HTTP receiver on an ephemeral port; every JSON body posted to
/// `/v1/traces` lands in the list.
async fn receiver() -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        if path == "/v1/traces" {
                            let traces = serde_json::from_slice(&body).expect("OTLP JSON");
                            store.lock().unwrap().push(traces);
                        }
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                            b"{}",
                        ))))
                    }
                });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (addr, received)
}

/// Every span received, by span id.
fn spans(received: &[Value]) -> Vec<Value> {
    received
        .iter()
        .flat_map(|body| {
            body["resourceSpans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|resource| {
            resource["scopeSpans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|scope| scope["spans"].as_array().cloned().unwrap_or_default())
        .collect()
}

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

// Two threads: the receiver answers while the test waits for the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_a_span_tree_under_the_callers_traceparent() {
    let (collector, received) = receiver().await;
    let components = Components::new().with("testbed").with_file(
        "host-config.toml",
        format!("[telemetry]\notlp-endpoint = \"http://{collector}\"\nprotocol = \"http/json\"\n")
            .as_bytes(),
    );
    let config = components.path().join("host-config.toml");
    let mut host = components.serve_with(&["--config", config.to_str().unwrap()]);
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let reply = host
        .send(
            http::Method::GET,
            "/count",
            &[("traceparent", traceparent.as_str())],
            Vec::new(),
        )
        .await;
    assert_eq!(reply.status, 200);
    // Stopping exports what the batch still holds.
    host.terminate();
    assert!(host.wait_exit(Duration::from_secs(20)).success());

    let spans = spans(&received.lock().unwrap());
    let request = spans
        .iter()
        .find(|s| s["name"] == "GET /count")
        .unwrap_or_else(|| panic!("no request span in {spans:#?}\n{}", host.log()));
    assert_eq!(request["traceId"], TRACE, "{request:#}");
    assert_eq!(request["parentSpanId"], CALLER_SPAN, "{request:#}");
    let children: Vec<&str> = spans
        .iter()
        .filter(|s| s["parentSpanId"] == request["spanId"])
        .filter_map(|s| s["name"].as_str())
        .collect();
    for stage in ["auth", "rate limit", "guest call"] {
        assert!(children.contains(&stage), "{stage} not in {children:?}");
    }
}
