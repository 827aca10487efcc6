//! A plain `wasi:http/proxy` component with routes that misbehave on
//! purpose, for the tests of how the host runs such components.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};

wasip2::http::proxy::export!(Proxy);

struct Proxy;

/// Requests this instance has served: proof of reuse, and of a fresh
/// instance after a trap.
static SERVED: AtomicU64 = AtomicU64::new(0);

impl wasip2::exports::http::incoming_handler::Guest for Proxy {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let path = request.path_with_query().unwrap_or_default();
        match path.as_str() {
            "/loop" => loop {
                std::hint::black_box(served);
            },
            "/trap" => panic!("asked to trap"),
            "/unanswered" => {}
            "/count" => respond(response_out, &[served.to_string().as_bytes()], false),
            // A line on stdout, which the host logs as this request's.
            "/print" => {
                println!("printed by the proxy");
                respond(response_out, &[b"printed"], false)
            }
            // An outbound request through wasi:http/outgoing-handler; the
            // answer says how it went.
            "/outgoing" => respond(response_out, &[outgoing().as_bytes()], false),
            // What the sidecar's [environment] gave the guest.
            "/env" => {
                let greeting = std::env::var("GREETING").unwrap_or_else(|_| "unset".into());
                let home = std::env::var("HOME").unwrap_or_else(|_| "unset".into());
                respond(
                    response_out,
                    &[format!("{greeting};{home}").as_bytes()],
                    false,
                )
            }
            // The prefix the host says it removed from the path.
            "/forwarded-prefix" => {
                let values = request.headers().get("x-forwarded-prefix");
                let text: Vec<String> = values
                    .iter()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect();
                respond(response_out, &[text.join(";").as_bytes()], false)
            }
            // Half the body, then a loop: the host ends the body with an error.
            "/stall" => respond(response_out, &[b"first half;"], true),
            _ => respond(response_out, &[b"chunk 1;", b"chunk 2;", b"chunk 3"], false),
        }
    }
}

/// Sets a 200 response and writes `chunks` as its body, flushing each;
/// with `stall`, never finishes it.
fn respond(out: ResponseOutparam, chunks: &[&[u8]], stall: bool) {
    let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
        .expect("valid header");
    let response = OutgoingResponse::new(headers);
    let body = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let mut stream = body.write().expect("stream is taken once");
    for chunk in chunks {
        stream.write_all(chunk).expect("write");
        stream.flush().expect("flush");
    }
    if stall {
        loop {
            std::hint::black_box(&stream);
        }
    }
    drop(stream);
    OutgoingBody::finish(body, None).expect("finish");
}

/// Sends `GET http://127.0.0.1:9/` and says what came of it: a status, or
/// the error code (`HttpRequestDenied` without an outbound grant).
fn outgoing() -> String {
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some("127.0.0.1:9"));
    let _ = request.set_path_with_query(Some("/"));
    let future = match wasip2::http::outgoing_handler::handle(request, None) {
        Ok(future) => future,
        Err(code) => return format!("refused: {code:?}"),
    };
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => format!("status {}", response.status()),
        Some(Ok(Err(code))) => format!("failed: {code:?}"),
        other => format!("no response: {other:?}"),
    }
}
