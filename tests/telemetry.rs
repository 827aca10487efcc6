//! Traces: with an OTLP endpoint set, each request is a span (a child of
//! the caller's `traceparent`) with a child per stage, exported to the
//! receiver the test runs.

use crate::support;

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

/// A host exporting OTLP/JSON to `collector`, serving `components`.
fn traced(components: Components, collector: SocketAddr) -> support::Host {
    traced_over(components, collector, "http/json")
}

/// A host exporting over OTLP `protocol` to `collector`.
fn traced_over(components: Components, collector: SocketAddr, protocol: &str) -> support::Host {
    let components = components.with_file(
        "host-config.toml",
        format!("[telemetry]\notlp-endpoint = \"http://{collector}\"\nprotocol = \"{protocol}\"\n")
            .as_bytes(),
    );
    let config = components.path().join("host-config.toml");
    components.serve_with(&["--config", config.to_str().unwrap()])
}

/// GET `path`, as a caller whose trace is [`TRACE`] would send it.
async fn in_callers_trace(host: &support::Host, path: &str) -> support::Reply {
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let headers = [("traceparent", traceparent.as_str())];
    host.send(http::Method::GET, path, &headers, Vec::new())
        .await
}

/// Stops `host`, which exports what its batch still holds, and returns
/// every span received.
fn spans_after_stop(mut host: support::Host, received: &Mutex<Vec<Value>>) -> Vec<Value> {
    host.terminate();
    assert!(host.wait_exit(Duration::from_secs(20)).success());
    spans(&received.lock().unwrap())
}

/// The span named `name`, or a panic listing every one.
fn named<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name:?} span in {spans:#?}"))
}

/// The span `span`'s parent is.
fn parent<'a>(spans: &'a [Value], span: &Value) -> &'a Value {
    spans
        .iter()
        .find(|s| s["spanId"] == span["parentSpanId"])
        .unwrap_or_else(|| panic!("the parent of {span:#} is not in {spans:#?}"))
}

/// What python-caps imports, with loopback servers allowed.
const CAPS_GRANTS: &str =
    "[grants]\nkv = true\nconfig = true\noutbound = [\"http://127.0.0.1:*\"]\n";

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

// Two threads: the receiver answers while the test waits for the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_a_span_tree_under_the_callers_traceparent() {
    let (collector, received) = receiver().await;
    let host = traced(Components::new().with("testbed"), collector);
    let reply = in_callers_trace(&host, "/count").await;
    assert_eq!(reply.status, 200);
    let log = host.log();
    let spans = spans_after_stop(host, &received);
    let request = spans
        .iter()
        .find(|s| s["name"] == "GET /count")
        .unwrap_or_else(|| panic!("no request span in {spans:#?}\n{log}"));
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
    let checkout = named(&spans, "instance checkout");
    assert_eq!(
        parent(&spans, checkout)["name"],
        "guest call",
        "{checkout:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_sees_the_trace_id_the_host_exports() {
    let (collector, received) = receiver().await;
    let host = traced(Components::new().with("testbed"), collector);
    let continued = in_callers_trace(&host, "/trace-id").await;
    assert_eq!(continued.body, TRACE);
    // Without a caller's trace, the host starts one and tells the guest.
    let started = host.get("/trace-id").await.body;
    assert_eq!(started.len(), 32, "{started}");
    assert_ne!(started, TRACE);
    let spans = spans_after_stop(host, &received);
    let traces: Vec<&str> = spans
        .iter()
        .filter(|s| s["name"] == "GET /trace-id")
        .filter_map(|s| s["traceId"].as_str())
        .collect();
    assert!(
        traces.contains(&started.as_str()),
        "{started} not in {traces:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_calls_of_an_async_route_are_spans_under_its_guest_call() {
    let (collector, received) = receiver().await;
    let components = Components::new().with_sidecar("todos", support::sql::TODOS);
    let host = traced(components, collector);
    let added = support::sql::post_json(&host, "/todos/", serde_json::json!({"title": "a"})).await;
    assert_eq!(added.status, 201, "{}", added.body);
    let id = added.json()["id"].as_i64().unwrap();
    let read = host.get(&format!("/todos/{id}")).await;
    assert_eq!(read.status, 200, "{}", read.body);
    let spans = spans_after_stop(host, &received);

    let request = named(&spans, &format!("GET /todos/{id}"));
    let query = spans
        .iter()
        .find(|s| s["name"] == "sql query" && s["traceId"] == request["traceId"])
        .unwrap_or_else(|| panic!("no sql query in the read's trace: {spans:#?}"));
    assert_eq!(parent(&spans, query)["name"], "guest call", "{query:#}");
    let checkout = spans
        .iter()
        .find(|s| s["name"] == "instance checkout" && s["traceId"] == request["traceId"])
        .unwrap_or_else(|| panic!("no instance checkout in the read's trace: {spans:#?}"));
    assert_eq!(
        parent(&spans, checkout)["name"],
        "guest call",
        "{checkout:#}"
    );
}

/// A local HTTP server that records the `traceparent` of each request.
async fn upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let store = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let traceparent = req.headers().get("traceparent").cloned();
                    if let Some(value) = traceparent {
                        store
                            .lock()
                            .unwrap()
                            .push(value.to_str().unwrap().to_string());
                    }
                    async { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new()))) }
                });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_request_is_a_span_its_server_sees_as_parent() {
    let (collector, received) = receiver().await;
    let (upstream, traceparents) = upstream().await;
    let host = traced(
        Components::new().with_sidecar("python-caps", CAPS_GRANTS),
        collector,
    );
    let reply = host
        .get(&format!("/fetch?url=http://{upstream}/hello"))
        .await;
    assert_eq!(reply.json()["status"], 200, "{}", reply.body);
    let spans = spans_after_stop(host, &received);
    assert_outbound_span_of(&spans, "GET /fetch", &traceparents.lock().unwrap());
}

/// The outbound request is a span of `request`'s trace, a child of its
/// guest call, and the one traceparent the upstream saw names it.
fn assert_outbound_span_of(spans: &[Value], request: &str, seen: &[String]) {
    let request = named(spans, request);
    let outbound = named(spans, "outbound GET");
    assert_eq!(outbound["traceId"], request["traceId"], "{outbound:#}");
    assert_eq!(
        parent(spans, outbound)["name"],
        "guest call",
        "{outbound:#}"
    );
    let expected = format!(
        "00-{}-{}-01",
        outbound["traceId"].as_str().unwrap(),
        outbound["spanId"].as_str().unwrap()
    );
    assert_eq!(seen, [expected]);
}

/// A `wasi:http` 0.3 service runs its requests on its instance's event
/// loop, away from their tasks: what one sends is still a span of its own
/// request's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p3_services_outbound_request_is_a_span_of_its_requests_trace() {
    let (collector, received) = receiver().await;
    let (upstream, traceparents) = upstream().await;
    let sidecar = "[grants]\noutbound = [\"http://127.0.0.1:*\"]\n";
    let host = traced(
        Components::new().with_sidecar("p3-testbed", sidecar),
        collector,
    );
    let target = format!("http://{upstream}/hello");
    let headers = [("x-target", target.as_str())];
    let reply = host
        .send(http::Method::GET, "/outgoing", &headers, Vec::new())
        .await;
    assert_eq!(reply.body, "status 200: ", "{}", host.log());
    let spans = spans_after_stop(host, &received);
    assert_outbound_span_of(&spans, "GET /outgoing", &traceparents.lock().unwrap());
}

/// An OTLP/gRPC collector on an ephemeral port: the trace ids of every
/// span exported to it land in the list.
async fn grpc_receiver() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };

    struct Collector(Arc<Mutex<Vec<String>>>);

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let spans = request
                .into_inner()
                .resource_spans
                .into_iter()
                .flat_map(|r| r.scope_spans)
                .flat_map(|s| s.spans);
            let mut received = self.0.lock().unwrap();
            for span in spans {
                let trace: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                received.push(format!("{trace} {}", span.name));
            }
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let service = TraceServiceServer::new(Collector(received.clone()));
    // Served by hyper over HTTP/2, as tonic's own server would.
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
            });
        }
    });
    (addr, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_are_exported_over_grpc_when_asked() {
    let (collector, received) = grpc_receiver().await;
    let mut host = traced_over(Components::new().with("testbed"), collector, "grpc");
    let reply = in_callers_trace(&host, "/count").await;
    assert_eq!(reply.status, 200);
    host.terminate();
    assert!(host.wait_exit(Duration::from_secs(20)).success());
    let received = received.lock().unwrap().clone();
    for name in ["GET /count", "guest call", "instance checkout"] {
        let span = format!("{TRACE} {name}");
        assert!(
            received.contains(&span),
            "{span:?} not in {received:?}\n{}",
            host.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_calls_of_an_async_route_are_spans_under_its_guest_call() {
    let (collector, received) = receiver().await;
    let host = traced(
        Components::new().with_sidecar("python-caps", CAPS_GRANTS),
        collector,
    );
    // Concurrent calls share an instance: each call's host calls must
    // still be counted under its own trace.
    let reads: Vec<_> = (0..4)
        .map(|i| host.spawn_get(&format!("/kv/k{i}")))
        .collect();
    for read in reads {
        assert_eq!(read.await.unwrap().status, 404);
    }
    let spans = spans_after_stop(host, &received);
    let requests: Vec<&Value> = spans
        .iter()
        .filter(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("GET /kv/"))
        })
        .collect();
    assert_eq!(requests.len(), 4, "{spans:#?}");
    for request in requests {
        let get = spans
            .iter()
            .find(|s| s["name"] == "kv get" && s["traceId"] == request["traceId"])
            .unwrap_or_else(|| panic!("no kv get in {request:#}'s trace: {spans:#?}"));
        assert_eq!(parent(&spans, get)["name"], "guest call", "{get:#}");
    }
}
