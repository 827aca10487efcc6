//! Streamed responses, server-sent events and streamed request bodies,
//! run natively through the test client.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use cello::sse::{Event, KeepAlive, Sse};
use cello::{App, BodyError, BodyStream, HttpError, IntoResponse, StatusCode, StreamingResponse};
use futures_util::stream;

#[test]
fn a_streaming_response_keeps_its_chunks_apart() {
    let app = App::new("t").get("/report", || async {
        let rows = stream::iter((0..3).map(|n| format!("{n}\n")));
        StreamingResponse::new(rows).media_type("text/csv")
    });
    let reply = app.test_client().get("/report").send();
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("text/csv"));
    assert_eq!(reply.chunks(), vec![&b"0\n"[..], b"1\n", b"2\n"]);
    assert_eq!(reply.text(), "0\n1\n2\n");
}

#[test]
fn a_streaming_response_takes_a_status_and_headers() {
    let app = App::new("t").get("/", || async {
        StreamingResponse::new(stream::iter([vec![1u8, 2]]))
            .status(StatusCode::ACCEPTED)
            .header("x-rows", "1")
    });
    let reply = app.test_client().get("/").send();
    assert_eq!(reply.status(), StatusCode::ACCEPTED);
    assert_eq!(reply.header("x-rows"), Some("1"));
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(reply.bytes(), [1, 2]);
}

#[test]
fn a_bad_header_on_a_streaming_response_is_a_500() {
    let app = App::new("t").get("/", || async {
        StreamingResponse::new(stream::iter(["x"])).header("bad name", "1")
    });
    let reply = app.test_client().get("/").send();
    assert_eq!(reply.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.text(), r#"{"detail":"Internal Server Error"}"#);
}

#[test]
fn server_sent_events_are_framed_one_chunk_each() {
    let app = App::new("t").get("/events", || async {
        let events = stream::iter([
            Event::default().data("a\nb"),
            Event::default().event("done").id("2"),
        ]);
        Sse::new(events)
    });
    let reply = app.test_client().get("/events").send();
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    assert_eq!(reply.header("cache-control"), Some("no-cache"));
    assert_eq!(
        reply.chunks(),
        vec![&b"data:a\ndata:b\n\n"[..], b"event:done\nid:2\n\n"]
    );
}

#[test]
fn a_failed_event_ends_the_stream() {
    let app = App::new("t").get("/", || async {
        let events = stream::iter([
            Ok(Event::default().data("1")),
            Err("the feed broke"),
            Ok(Event::default().data("never")),
        ]);
        Sse::new(events)
    });
    let reply = app.test_client().get("/").send();
    assert_eq!(reply.text(), "data:1\n\n");
}

#[test]
fn a_quiet_event_stream_sends_keep_alive_comments() {
    let app = App::new("t").get("/", || async {
        let slow = stream::unfold(0, |n| async move {
            if n == 2 {
                return None;
            }
            if n == 1 {
                cello::host::sleep(Duration::from_millis(250)).await;
            }
            Some((Event::default().data(n.to_string()), n + 1))
        });
        let keep_alive = KeepAlive::new()
            .interval(Duration::from_millis(100))
            .text("still here");
        Sse::new(slow).keep_alive(keep_alive)
    });
    let reply = app.test_client().get("/").send();
    let chunks = reply.chunks();
    assert_eq!(chunks.first(), Some(&&b"data:0\n\n"[..]));
    assert_eq!(chunks.last(), Some(&&b"data:1\n\n"[..]));
    let pings = &chunks[1..chunks.len() - 1];
    assert!(!pings.is_empty(), "no keep-alive in 250 ms: {chunks:?}");
    assert!(pings.iter().all(|c| *c == b":still here\n\n"), "{chunks:?}");
}

/// Sets its flag when dropped.
struct Guard(Rc<Cell<bool>>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn a_stream_left_early_is_dropped() {
    let dropped = Rc::new(Cell::new(false));
    let flag = dropped.clone();
    let app = App::new("t").get("/forever", move || {
        let guard = Guard(flag.clone());
        async move {
            let ticks = stream::unfold((0u64, guard), |(n, guard)| async move {
                Some((Event::default().data(n.to_string()), (n + 1, guard)))
            });
            Sse::new(ticks)
        }
    });
    let client = app.test_client();
    let mut stream = client.get("/forever").send_streaming();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.next_text().as_deref(), Some("data:0\n\n"));
    assert_eq!(stream.next_text().as_deref(), Some("data:1\n\n"));
    assert!(!dropped.get());
    drop(stream);
    assert!(dropped.get(), "the handler's stream outlived the client");
}

#[test]
fn a_whole_body_reads_as_one_chunk_when_streamed() {
    let client = App::new("t").get("/", || "hi").test_client();
    let mut stream = client.get("/").send_streaming();
    assert_eq!(stream.next_text().as_deref(), Some("hi"));
    assert_eq!(stream.next_chunk(), None);
}

#[test]
fn a_body_stream_yields_the_body_in_pieces() {
    let app = App::new("t").post("/upload", |mut body: BodyStream| async move {
        let mut sizes = Vec::new();
        while let Some(chunk) = body.next().await {
            sizes.push(chunk?.len());
        }
        Ok::<_, HttpError>(format!("{sizes:?}"))
    });
    let reply = app
        .test_client()
        .post("/upload")
        .body(vec![7u8; 100_000])
        .send();
    assert_eq!(reply.text(), "[65536, 34464]");
}

#[test]
fn a_body_error_answers_its_status_with_a_sentence() {
    let too_large = BodyError::TooLarge(65536).into_response();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        too_large.body(),
        br#"{"detail":"The request body is larger than the 65536 bytes allowed."}"#
    );
    let slow = HttpError::from(BodyError::TimedOut);
    assert_eq!(slow.status(), StatusCode::REQUEST_TIMEOUT);
}
