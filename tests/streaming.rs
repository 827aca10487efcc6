//! Streamed bodies for app components, over real HTTP against the
//! `python-stream` and `rust-stream` guests: a streaming response and
//! server-sent events sent as the guest writes them, a request body read
//! as it arrives, and the limits around them (a client leaving, an idle
//! stream, a body too large, many streams on one instance).

use crate::support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use support::{Components, Host};

/// What the streaming guests are granted: the key-value store (the
/// streams' `finally` counts) and SQL (a `def` route's stream queries).
const GRANTS: &str = "[grants]\nkv = true\nsql = true\n";

fn serve(limits: &str) -> Host {
    serve_guest("python-stream", limits)
}

fn serve_rust(limits: &str) -> Host {
    serve_guest("rust-stream", limits)
}

fn serve_guest(guest: &str, limits: &str) -> Host {
    let sidecar = format!("{GRANTS}[limits]\n{limits}\n");
    Components::new().with_sidecar(guest, &sidecar).serve()
}

/// Opens `path` and returns the response with its body unread.
async fn open(host: &Host, path: &str) -> http::Response<Incoming> {
    let request = host.request(http::Method::GET, path, &[], Vec::new());
    support::client()
        .request(request)
        .await
        .expect("request failed")
}

/// The body's next chunk of data, with when it came; none at the end.
async fn next_chunk(body: &mut Incoming) -> Option<Result<(Bytes, Instant), String>> {
    loop {
        match body.frame().await? {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok((data, Instant::now())));
                }
            }
            Err(e) => return Some(Err(e.to_string())),
        }
    }
}

/// Reads the whole body as text, stopping at an error.
async fn read_text(body: &mut Incoming) -> (String, Option<String>) {
    let mut text = String::new();
    while let Some(chunk) = next_chunk(body).await {
        match chunk {
            Ok((data, _)) => text.push_str(&String::from_utf8_lossy(&data)),
            Err(e) => return (text, Some(e)),
        }
    }
    (text, None)
}

/// How many times the guest saw stream `name` closed under it.
async fn closed(host: &Host, name: &str) -> u64 {
    host.get(&format!("/closed/{name}")).await.json()["closed"]
        .as_u64()
        .unwrap()
}

/// Waits up to `within` for the guest to count stream `name` closed.
async fn wait_closed(host: &Host, name: &str, within: Duration) -> u64 {
    let until = Instant::now() + within;
    loop {
        let count = closed(host, name).await;
        if count > 0 || Instant::now() > until {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client reads two events of `/forever/left` and leaves: the guest's
/// next write fails, its stream is dropped (which the guest counts), and
/// the instance (the only one) serves the next request, `/ticks/2`, whose
/// body is `ticks`.
async fn a_client_leaves_and_the_instance_serves_on(host: &Host, ticks: &str) {
    let response = open(host, "/forever/left").await;
    let mut body = response.into_body();
    for _ in 0..2 {
        next_chunk(&mut body).await.unwrap().unwrap();
    }
    drop(body);
    assert_eq!(wait_closed(host, "left", Duration::from_secs(20)).await, 1);
    let reply = host.get("/ticks/2").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, ticks);
}

#[tokio::test]
async fn a_streaming_response_sends_each_chunk_as_the_generator_yields_it() {
    let host = serve("");
    let response = open(&host, "/chunks").await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["transfer-encoding"], "chunked");
    assert!(headers.get("content-length").is_none());
    assert_eq!(headers["content-type"], "text/plain");
    let mut body = response.into_body();
    let (first, first_at) = next_chunk(&mut body).await.unwrap().unwrap();
    assert_eq!(first, "one\n");
    let mut rest = Vec::new();
    while let Some(chunk) = next_chunk(&mut body).await {
        rest.push(chunk.unwrap());
    }
    let text: String = rest
        .iter()
        .map(|(data, _)| String::from_utf8_lossy(data).into_owned())
        .collect();
    assert_eq!(text, "two\nthree\n");
    // The generator sleeps 0.3 s between chunks: the first came before it ended.
    let last_at = rest.last().unwrap().1;
    assert!(
        last_at - first_at >= Duration::from_millis(400),
        "{:?}",
        last_at - first_at
    );
}

#[tokio::test]
async fn server_sent_events_are_framed_as_sse_starlette_frames_them_with_pings_between() {
    let host = serve("");
    let response = open(&host, "/events").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let (text, error) = read_text(&mut response.into_body()).await;
    assert_eq!(error, None);
    let events = "data: plain\r\n\r\n\
                  id: 7\r\nevent: update\r\ndata: line one\r\ndata: line two\r\nretry: 2500\r\n\r\n\
                  event: note\r\ndata: typed\r\n\r\n";
    assert!(text.starts_with(events), "{text:?}");
    // Half a second without events, pings every 0.2 s: keep-alive comments.
    let rest = &text[events.len()..];
    assert!(rest.starts_with(": ping\r\n\r\n"), "{rest:?}");
    assert!(rest.ends_with("data: last\r\n\r\n"), "{rest:?}");
}

#[tokio::test]
async fn a_client_that_leaves_closes_the_generator_and_the_instance_serves_on() {
    // The generator's `finally` counts the close.
    let host = serve("max-instances = 1");
    a_client_leaves_and_the_instance_serves_on(
        &host,
        "id: 0\r\ndata: 0\r\n\r\nid: 1\r\ndata: 1\r\n\r\n",
    )
    .await;
}

#[tokio::test]
async fn an_idle_stream_is_closed_after_its_idle_time() {
    let host = serve("stream-idle-ms = 500");
    let started = Instant::now();
    let response = open(&host, "/silent/idle").await;
    let (text, error) = read_text(&mut response.into_body()).await;
    assert_eq!(text, "first\n");
    assert!(error.is_some(), "the body ended as if complete");
    // Cut long before the generator's 30 s sleep, well within the route's 30 s timeout.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

/// A stream cut off that then writes nothing cannot learn it was: it has
/// `stream-idle-ms` and a grace to end, then its instance is stopped, and
/// the component serves on from another.
#[tokio::test]
async fn a_silent_call_whose_stream_was_cut_off_stops_its_instance() {
    const STOPPED: &str = "a streaming call whose response was cut off did not end";
    let host = serve("stream-idle-ms = 500");
    let response = open(&host, "/silent/cut").await;
    let (text, error) = read_text(&mut response.into_body()).await;
    assert_eq!(text, "first\n");
    assert!(error.is_some(), "the body ended as if complete");
    let started = Instant::now();
    while !host.log().contains(STOPPED) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(host.get("/closed/cut").await.status, 200);
}

#[tokio::test]
async fn a_stream_whose_head_has_too_many_headers_is_refused_and_the_instance_serves_on() {
    let host = serve_rust("");
    let reply = host.get("/many-headers/2").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-h-1"), Some("1"));
    let reply = host.get("/many-headers/1500").await;
    assert_eq!(reply.status, 500);
    // The stream's content type is one more.
    host.wait_for_log("cannot start the stream: StreamError::Failed(\"the response has 1501 headers, more than the 1000 allowed\")")
        .await;
    assert_eq!(host.get("/many-headers/2").await.status, 200);
}

/// One chunk larger than the host holds for an instance's writes at once:
/// the SDKs write it in parts, and it arrives whole.
#[tokio::test]
async fn a_chunk_larger_than_the_hosts_write_budget_arrives_whole() {
    for host in [serve(""), serve_rust("")] {
        let reply = host.get("/one-big/20").await;
        assert_eq!(reply.status, 200, "{}", host.log());
        let body = &reply.bytes;
        assert_eq!(body.len(), 20 << 20);
        assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        assert!(!host.log().contains("stream stopped"), "{}", host.log());
    }
}

#[tokio::test]
async fn a_request_body_is_read_as_a_stream_never_whole() {
    let host = serve("max-body-kb = 8192");
    let body: Vec<u8> = (0..3_000_000u32).map(|n| (n * 7 % 251) as u8).collect();
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    let reply = host
        .post("/upload", "application/octet-stream", body.clone())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let json = reply.json();
    assert_eq!(json["bytes"], 3_000_000);
    assert_eq!(json["sum"], sum);
    assert_eq!(json["whole_body"], 0, "the body was held whole");
}

/// Posts 80 KiB to `path` in chunks, with no Content-Length to give its
/// size away before the guest reads: the status and the JSON answered.
/// Small enough to be all sent before a 413 closes the connection, which
/// would otherwise cut the client's write short.
async fn post_chunked(host: &Host, path: &str) -> (http::StatusCode, serde_json::Value) {
    let chunks = futures::stream::iter((0..5).map(|_| {
        Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(vec![1u8; 16 << 10])))
    }));
    let request = http::Request::post(host.url(path))
        .body(http_body_util::StreamBody::new(chunks))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client.request(request).await.expect("request failed");
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn a_streamed_request_body_over_the_limit_is_a_413() {
    let host = serve("max-body-kb = 64");
    let (status, json) = post_chunked(&host, "/upload").await;
    assert_eq!(status, 413);
    assert_eq!(
        json["detail"],
        "The request body is larger than the 65536 bytes allowed."
    );
    // A body within the limit still goes through.
    let reply = host
        .post("/echo-json", "application/json", r#"{"ok":true}"#)
        .await;
    assert_eq!(reply.json(), serde_json::json!({"ok": true}));
}

#[tokio::test]
async fn sixty_sse_clients_progress_together_on_one_instance() {
    let host = serve("max-instances = 1\nasync-concurrency = 100");
    let started = Instant::now();
    let clients = (0..60).map(|_| {
        let request = host.request(http::Method::GET, "/ticks/5", &[], Vec::new());
        tokio::spawn(async move {
            let client = support::client();
            let response = client.request(request).await.expect("request failed");
            assert_eq!(response.status(), 200);
            read_text(&mut response.into_body()).await
        })
    });
    let expected: String = (0..5)
        .map(|n| format!("id: {n}\r\ndata: {n}\r\n\r\n"))
        .collect();
    for client in futures::future::join_all(clients).await {
        let (text, error) = client.unwrap();
        assert_eq!(error, None);
        assert_eq!(text, expected);
    }
    // Each stream takes 1 s; one after another, 60 would take a minute.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_whole_response_from_a_streaming_app_is_sent_as_before() {
    let host = serve("");
    let reply = host
        .send(
            http::Method::POST,
            "/echo-json",
            &[("content-type", "application/json")],
            br#"{"a":[1,2]}"#.to_vec(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("11"));
    assert_eq!(reply.json(), serde_json::json!({"a": [1, 2]}));
    let bad = host.post("/echo-json", "application/json", "{oops").await;
    assert_eq!(bad.status, 422);
}

#[tokio::test]
async fn a_rust_streaming_response_sends_each_chunk_as_the_stream_yields_it() {
    let host = serve_rust("");
    let response = open(&host, "/chunks").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    assert_eq!(response.headers()["content-type"], "text/plain");
    let mut body = response.into_body();
    let (first, first_at) = next_chunk(&mut body).await.unwrap().unwrap();
    assert_eq!(first, "one\n");
    let (rest, error) = read_text(&mut body).await;
    assert_eq!(error, None);
    assert_eq!(rest, "two\nthree\n");
    // The stream sleeps 0.3 s before each later chunk: the first came well before its end.
    assert!(
        first_at.elapsed() >= Duration::from_millis(400),
        "{:?}",
        first_at.elapsed()
    );
}

#[tokio::test]
async fn rust_server_sent_events_are_framed_as_axum_frames_them_with_keep_alive_comments() {
    let host = serve_rust("");
    let response = open(&host, "/events").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let (text, error) = read_text(&mut response.into_body()).await;
    assert_eq!(error, None);
    let events = "data:plain\n\n\
                  event:update\nid:7\ndata:line one\ndata:line two\nretry:2500\n\n\
                  :a note\ndata:typed\n\n";
    assert!(text.starts_with(events), "{text:?}");
    // Half a second without events, a keep-alive every 0.2 s: comments between.
    let rest = &text[events.len()..];
    assert!(rest.starts_with(":ping\n\n"), "{rest:?}");
    assert!(rest.ends_with("data:last\n\n"), "{rest:?}");
}

#[tokio::test]
async fn a_client_that_leaves_a_rust_stream_drops_it_and_the_instance_serves_on() {
    // Dropping the stream drops the guard it holds, which counts the close.
    let host = serve_rust("max-instances = 1");
    a_client_leaves_and_the_instance_serves_on(&host, "id:0\ndata:0\n\nid:1\ndata:1\n\n").await;
}

#[tokio::test]
async fn a_rust_request_body_is_read_as_a_stream_never_whole() {
    let host = serve_rust("max-body-kb = 8192");
    let body: Vec<u8> = (0..3_000_000u32).map(|n| (n * 7 % 251) as u8).collect();
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    let reply = host.post("/upload", "application/octet-stream", body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let json = reply.json();
    assert_eq!(json["bytes"], 3_000_000);
    assert_eq!(json["sum"], sum);
    assert!(json["chunks"].as_u64().unwrap() > 1, "{json}");
    assert_eq!(json["whole_body"], 0, "the body was held whole");
}

#[tokio::test]
async fn a_rust_request_body_over_the_limit_is_a_413_streamed_or_read_whole() {
    let host = serve_rust("max-body-kb = 64");
    let detail = "The request body is larger than the 65536 bytes allowed.";
    for path in ["/upload", "/echo-json"] {
        let (status, json) = post_chunked(&host, path).await;
        assert_eq!(status, 413, "{path}: {json}");
        assert_eq!(json["detail"], detail, "{path}");
    }
    let reply = host
        .post("/echo-json", "application/json", r#"{"ok":true}"#)
        .await;
    assert_eq!(reply.json(), serde_json::json!({"ok": true}));
}

#[tokio::test]
async fn a_stream_from_a_rust_sync_route_is_sent_whole() {
    let host = serve_rust("");
    let reply = host.get("/counted").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("3"));
    assert_eq!(reply.body, "abc");
}

#[tokio::test]
async fn a_stream_from_a_rust_sync_route_may_sleep_between_chunks() {
    let host = serve_rust("");
    let started = std::time::Instant::now();
    let reply = host.get("/counted-slowly").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "abc");
    assert!(started.elapsed() >= Duration::from_millis(200));
    // The instance serves on.
    assert_eq!(host.get("/counted").await.body, "abc");
}

#[tokio::test]
async fn a_python_def_routes_async_stream_is_collected_and_sent_whole() {
    let host = serve("");
    let started = std::time::Instant::now();
    let reply = host.get("/def-stream").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "abc");
    assert_eq!(reply.header("content-length"), Some("3"));
    assert!(started.elapsed() >= Duration::from_millis(200));
    let reply = host.get("/def-events").await;
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        reply.body,
        "data: one\r\n\r\nevent: last\r\ndata: two\r\n\r\n"
    );
    // One that waits for what cannot come answers 500, its generator
    // closed, and the instance serves on.
    let reply = host.get("/def-stuck/sync").await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    host.wait_for_log("waits for something nothing can complete")
        .await;
    let closed = host.get("/closed/sync").await.json();
    assert_eq!(closed["closed"], 1, "{closed}");
    assert_eq!(host.get("/def-stream").await.body, "abc");
}

#[tokio::test]
async fn a_python_def_routes_stream_may_await_sql_in_a_transaction() {
    let host = serve("");
    // Each query blocks the instance (a sync call cannot suspend); the
    // duplicate insert fails, and its transaction rolls back whole.
    let reply = host.get("/def-sql-stream/3").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "rolled back\n3\n");
    let reply = host.get("/def-sql-stream/5").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "rolled back\n3\n5\n");
    // The instance serves on.
    assert_eq!(host.get("/def-stream").await.body, "abc");
}

#[tokio::test]
async fn a_rust_streams_body_ends_before_its_background_tasks_run() {
    let host = serve_rust("");
    let started = std::time::Instant::now();
    let response = open(&host, "/then-background/after").await;
    let mut body = response.into_body();
    let (first, _) = next_chunk(&mut body).await.unwrap().unwrap();
    assert_eq!(first, "sent\n");
    let (rest, error) = read_text(&mut body).await;
    assert_eq!((rest.as_str(), error), ("", None));
    // The task sleeps a second after the last chunk; the body ended as the
    // guest let go of its writer, without waiting for it (as Starlette
    // sends a response before its background tasks).
    let ended = started.elapsed();
    assert!(ended < Duration::from_millis(800), "{ended:?}");
    let ran = host.get("/background/after").await.json()["ran"].clone();
    assert_eq!(ran, 0, "the task had not finished when the body ended");
    // And it runs to its end all the same.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ran = host.get("/background/after").await.json()["ran"].clone();
        if ran == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the task never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Posts JSON to `path` on a connection of its own, declaring 1000 bytes
/// and sending one every 200 ms until the host answers: the response.
async fn post_slowly(host: &Host, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    let head = post_head(path, 1000);
    stream
        .write_all(format!("{head}{{").as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 1024];
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until && !whole_response(&response) {
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buffer[..n]),
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                // The host may have stopped reading: its answer is what counts.
                let _ = stream.write_all(b" ").await;
            }
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

/// Posts `body` (JSON) to `path` on a connection of its own: all of it but
/// its last byte at once, the last after `pause`. The response.
async fn post_last_byte_late(host: &Host, path: &str, body: &[u8], pause: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    let (most, last) = body.split_at(body.len() - 1);
    let head = post_head(path, body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(most).await.unwrap();
    tokio::time::sleep(pause).await;
    stream.write_all(last).await.unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 64 << 10];
    while !whole_response(&response) {
        let read = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buffer));
        match read.await.expect("a response within 60 s") {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

/// The head of a JSON POST of `length` bytes.
fn post_head(path: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// Whether `response` holds a whole HTTP response with a Content-Length.
fn whole_response(response: &[u8]) -> bool {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines().any(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length: ")
            .and_then(|n| n.trim().parse::<usize>().ok())
            == Some(body.len())
    })
}

/// Two streams open on `host`'s only instance, then a client sends its
/// request body to an async route too slowly for the route's 2 s: it gets
/// 408, alone. The streams carry on (their instance was not killed), and
/// the instance serves the next request.
async fn a_slow_request_body_is_a_408_for_its_client_alone(host: &Host) {
    let mut streams = Vec::new();
    for name in ["first", "second"] {
        let mut body = open(host, &format!("/forever/{name}")).await.into_body();
        next_chunk(&mut body).await.unwrap().unwrap();
        streams.push(body);
    }
    let response = post_slowly(host, "/echo-json").await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    // The host's sentence, or the SDK's when its read's failure answers
    // first.
    assert!(
        response.contains(r#"{"detail":"The request body did not arrive "#)
            && response.ends_with(r#"; send it faster."}"#),
        "{response}"
    );
    for body in &mut streams {
        for _ in 0..3 {
            let chunk = next_chunk(body).await.expect("the stream ended");
            assert!(chunk.is_ok(), "the stream was cut: {chunk:?}");
        }
    }
    assert_eq!(closed(host, "first").await, 0);
    let reply = host
        .post("/echo-json", "application/json", r#"{"ok":true}"#)
        .await;
    assert_eq!(reply.json(), serde_json::json!({"ok": true}));
    // A body whose last byte comes 1.8 s into the route's 2 s, to a route
    // that answers 0.5 s after its body is in: the time spent waiting for
    // the byte is the client's, and the guest still has its own 2 s.
    let body = br#"{"late":"the last byte"}"#;
    let started = Instant::now();
    let response =
        post_last_byte_late(host, "/echo-later", body, Duration::from_millis(1800)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with(r#"{"late":"the last byte"}"#),
        "{response}"
    );
    assert!(
        started.elapsed() > Duration::from_millis(2300),
        "{:?}",
        started.elapsed()
    );
    for body in &mut streams {
        let chunk = next_chunk(body).await.expect("the stream ended");
        assert!(chunk.is_ok(), "the stream was cut: {chunk:?}");
    }
}

#[tokio::test]
async fn a_slow_request_body_to_a_python_async_route_is_a_408_for_its_client_alone() {
    let host = serve("max-instances = 1\ntimeout-ms = 2000");
    a_slow_request_body_is_a_408_for_its_client_alone(&host).await;
}

#[tokio::test]
async fn a_slow_request_body_to_a_rust_async_route_is_a_408_for_its_client_alone() {
    let host = serve_rust("max-instances = 1\ntimeout-ms = 2000");
    a_slow_request_body_is_a_408_for_its_client_alone(&host).await;
}

/// With the access log on, a streamed response's line is written when its
/// body ends: with the bytes sent and the time until the end, not the head.
#[tokio::test]
async fn a_streamed_response_is_logged_when_it_ends_with_its_bytes() {
    let host = Components::new()
        .with_sidecar("python-stream", GRANTS)
        .serve_with(&["--access-log", "--log-format", "json"]);
    let response = open(&host, "/chunks").await;
    let (text, error) = read_text(&mut response.into_body()).await;
    assert_eq!((text.as_str(), error), ("one\ntwo\nthree\n", None));
    let log = host.wait_for_log(r#""path":"/chunks""#).await;
    let line = log
        .lines()
        .find(|l| l.contains(r#""path":"/chunks""#))
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(value["fields"]["bytes"], 14, "{line}");
    assert_eq!(value["fields"]["route"], "/chunks", "{line}");
    // The generator sleeps 0.3 s between its three chunks.
    let duration = value["fields"]["duration_us"].as_u64().unwrap();
    assert!(duration >= 500_000, "{line}");
}
