//! A `wasi:http/service@0.3` (p3) component, built with the `wasip3`
//! crate, for the tests of how the host serves such components: a hello,
//! an echo that streams the request body back, a trap, a count of the
//! requests its instance served, a sleep, lines printed around a sleep, a
//! spin that never yields, and an outbound request.

use std::sync::atomic::{AtomicU64, Ordering};

use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response, Scheme};
use wasip3::{wit_future, wit_stream};

wasip3::http::service::export!(Service);

struct Service;

/// Requests this instance has served: proof of reuse, and of a fresh
/// instance after a trap.
static SERVED: AtomicU64 = AtomicU64::new(0);

impl wasip3::exports::http::handler::Guest for Service {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let path = request.get_path_with_query().unwrap_or_default();
        match path.split('?').next().unwrap_or_default() {
            "/hello" => Ok(text("hello from p3")),
            "/echo" => Ok(echo(request)),
            "/trap" => panic!("asked to trap"),
            "/count" => Ok(text(&served.to_string())),
            // Waits `ms` milliseconds on wasi:clocks, then answers: many
            // such requests wait side by side on one instance.
            "/sleep" => {
                let ms: u64 = query_value(&path, "ms").unwrap_or(100);
                wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                Ok(text(&format!("slept {ms} ms")))
            }
            // Prints a line naming `tag` before and after waiting `ms`
            // milliseconds, to stdout and to stderr: lines of requests in
            // flight side by side on one instance.
            "/print" => {
                let tag = query_param(&path, "tag").unwrap_or("untagged");
                let ms: u64 = query_value(&path, "ms").unwrap_or(100);
                println!("before the wait: {tag}");
                wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                eprintln!("after the wait: {tag}");
                Ok(text(&format!("printed {tag}")))
            }
            // Computes for `ms` milliseconds without yielding: every other
            // request on the instance waits meanwhile.
            "/spin" => {
                let ms: u64 = query_value(&path, "ms").unwrap_or(100);
                let started = std::time::Instant::now();
                while started.elapsed() < std::time::Duration::from_millis(ms) {
                    std::hint::black_box(ms);
                }
                Ok(text(&format!("spun {ms} ms")))
            }
            // An outbound request through wasi:http/client to the URL in
            // `x-target`; the answer says how it went.
            "/outgoing" => Ok(text(&outgoing(&request).await)),
            _ => {
                let response = text("not found");
                let _ = response.set_status_code(404);
                Ok(response)
            }
        }
    }
}

/// The number after `name=` in `path`'s query.
fn query_value(path: &str, name: &str) -> Option<u64> {
    query_param(path, name)?.parse().ok()
}

/// The text after `name=` in `path`'s query.
fn query_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// A 200 response with `body`, written while the host sends it.
fn text(body: &str) -> Response {
    let (mut body_tx, body_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    drop(trailers_tx);
    let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
        .expect("valid headers");
    let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
    let body = body.as_bytes().to_vec();
    wasip3::wit_bindgen::spawn_local(async move {
        let rest = body_tx.write_all(body).await;
        assert!(rest.is_empty());
    });
    response
}

/// The request's body handed back as the response's, stream to stream,
/// with its method and path, and its `x-` headers, as headers.
fn echo(request: Request) -> Response {
    let method = match request.get_method() {
        Method::Get => "GET".to_string(),
        Method::Post => "POST".to_string(),
        Method::Put => "PUT".to_string(),
        Method::Other(other) => other,
        other => format!("{other:?}"),
    };
    let path = request.get_path_with_query().unwrap_or_default();
    let mut headers: Vec<(String, Vec<u8>)> = request
        .get_headers()
        .copy_all()
        .into_iter()
        .filter(|(name, _)| name.starts_with("x-"))
        .collect();
    headers.push(("x-echo-method".into(), method.into_bytes()));
    headers.push(("x-echo-path".into(), path.into_bytes()));
    let headers = Fields::from_list(&headers).expect("valid headers");
    let (_done_tx, done_rx) = wit_future::new(|| Ok(()));
    let (body, trailers) = Request::consume_body(request, done_rx);
    let (response, _sent) = Response::new(headers, Some(body), trailers);
    response
}

/// Sends a GET to the `http://` URL in the request's `x-target` header.
async fn outgoing(request: &Request) -> String {
    let target = request
        .get_headers()
        .get("x-target")
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    let Some(rest) = target.strip_prefix("http://") else {
        return format!("not an http:// URL: {target:?}");
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    drop(trailers_tx);
    let (outgoing, _sent) = Request::new(Fields::new(), None, trailers_rx, None);
    let _ = outgoing.set_scheme(Some(&Scheme::Http));
    let _ = outgoing.set_authority(Some(authority));
    let _ = outgoing.set_path_with_query(Some(path));
    match wasip3::http::client::send(outgoing).await {
        Ok(response) => {
            let status = response.get_status_code();
            let (_done_tx, done_rx) = wit_future::new(|| Ok(()));
            let (body, _trailers) = Response::consume_body(response, done_rx);
            let bytes = body.collect().await;
            format!("status {status}: {}", String::from_utf8_lossy(&bytes))
        }
        Err(code) => format!("error: {code:?}"),
    }
}
