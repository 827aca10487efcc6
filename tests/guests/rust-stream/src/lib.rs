//! Streaming routes of the Rust SDK for tests/streaming.rs, as the
//! `python-stream` guest has them: a StreamingResponse, server-sent events,
//! a request body read as a stream, and streams that notice a client
//! leaving (a guard they hold counts it in the key-value store when the
//! SDK drops them).

use std::time::Duration;

use cello::sse::{Event, KeepAlive, Sse};
use cello::{
    App, BackgroundTasks, BodyStream, HttpError, Json, Kv, Path, Request, StreamingResponse,
};
use futures_util::stream::{self, Stream};
use serde_json::{Value, json};

/// Counts its stream closed under `closed:NAME` when dropped.
struct Guard(String);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Kv.increment(&format!("closed:{}", self.0), 1);
    }
}

async fn sleep_ms(ms: u64) {
    cello::host::sleep(Duration::from_millis(ms)).await;
}

async fn chunks() -> StreamingResponse {
    let body = stream::unfold(0, |step| async move {
        let chunk = match step {
            0 => "one\n",
            1 => "two\n",
            2 => "three\n",
            _ => return None,
        };
        if step > 0 {
            sleep_ms(300).await;
        }
        Some((chunk, step + 1))
    });
    StreamingResponse::new(body).media_type("text/plain")
}

async fn events() -> Sse<impl Stream<Item = Event>> {
    let first = stream::iter([
        Event::default().data("plain"),
        Event::default()
            .event("update")
            .id("7")
            .data("line one\nline two")
            .retry(Duration::from_millis(2500)),
        Event::default().comment("a note").data("typed"),
    ]);
    let last = stream::once(async {
        sleep_ms(500).await;
        Event::default().data("last")
    });
    let keep_alive = KeepAlive::new().interval(Duration::from_millis(200));
    Sse::new(futures_util::StreamExt::chain(first, last)).keep_alive(keep_alive)
}

async fn forever(Path(name): Path<String>) -> Sse<impl Stream<Item = Event>> {
    let ticks = stream::unfold((0u64, Guard(name)), |(n, guard)| async move {
        if n > 0 {
            sleep_ms(100).await;
        }
        Some((Event::default().data(n.to_string()), (n + 1, guard)))
    });
    Sse::new(ticks)
}

async fn ticks(Path(count): Path<u64>) -> Sse<impl Stream<Item = Event>> {
    let ticks = stream::unfold(0u64, move |n| async move {
        if n == count {
            return None;
        }
        if n > 0 {
            sleep_ms(200).await;
        }
        let event = Event::default().id(n.to_string()).data(n.to_string());
        Some((event, n + 1))
    });
    Sse::new(ticks)
}

/// A stream whose head carries `n` headers.
async fn many_headers(Path(n): Path<usize>) -> StreamingResponse {
    (0..n).fold(
        StreamingResponse::new(stream::iter(["body"])).media_type("text/plain"),
        |response, i| response.header(format!("x-h-{i}"), i.to_string()),
    )
}

/// One chunk of `mb` MiB, byte `i` being `i % 251`.
async fn one_big(Path(mb): Path<usize>) -> StreamingResponse {
    let chunk: Vec<u8> = (0..mb << 20).map(|i| (i % 251) as u8).collect();
    StreamingResponse::new(stream::iter([chunk])).media_type("application/octet-stream")
}

/// A stream from a sync route: sent whole.
fn counted() -> StreamingResponse {
    StreamingResponse::new(stream::iter(["a", "b", "c"])).media_type("text/plain")
}

/// A stream from a sync route that sleeps between its chunks: a sync call
/// cannot suspend, so each sleep blocks its instance, and the whole goes
/// out at the end.
fn counted_slowly() -> StreamingResponse {
    let body = stream::unfold(0, |step| async move {
        if step == 3 {
            return None;
        }
        if step > 0 {
            sleep_ms(100).await;
        }
        Some((["a", "b", "c"][step], step + 1))
    });
    StreamingResponse::new(body).media_type("text/plain")
}

/// A stream, then a background task that counts `background:NAME` a
/// second after the last chunk.
async fn then_background(Path(name): Path<String>, tasks: BackgroundTasks) -> StreamingResponse {
    tasks.spawn(async move {
        sleep_ms(1000).await;
        let _ = Kv.increment(&format!("background:{name}"), 1);
    });
    StreamingResponse::new(stream::iter(["sent\n"]))
}

async fn background(Path(name): Path<String>, kv: Kv) -> Result<Json<Value>, cello::KvError> {
    let count = kv
        .get_text(&format!("background:{name}"))?
        .unwrap_or_default();
    Ok(Json(json!({ "ran": count.parse::<u64>().unwrap_or(0) })))
}

async fn closed(Path(name): Path<String>, kv: Kv) -> Result<Json<Value>, cello::KvError> {
    let count = kv.get_text(&format!("closed:{name}"))?.unwrap_or_default();
    Ok(Json(json!({ "closed": count.parse::<u64>().unwrap_or(0) })))
}

async fn upload(mut body: BodyStream, req: Request) -> Result<Json<Value>, HttpError> {
    let (mut size, mut sum, mut chunks) = (0u64, 0u64, 0u64);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        chunks += 1;
        size += chunk.len() as u64;
        sum += chunk.iter().map(|&b| u64::from(b)).sum::<u64>();
    }
    Ok(Json(json!({
        "bytes": size,
        "sum": sum,
        "chunks": chunks,
        "whole_body": req.body.len(),
    })))
}

async fn echo_json(Json(value): Json<Value>) -> Json<Value> {
    Json(value)
}

/// Answers 0.5 s after its body is in: time of the guest's own.
async fn echo_later(Json(value): Json<Value>) -> Json<Value> {
    sleep_ms(500).await;
    Json(value)
}

fn app() -> App {
    App::new("rust-stream")
        .get("/chunks", chunks)
        .get("/events", events)
        .get("/forever/{name}", forever)
        .get("/ticks/{count}", ticks)
        .get("/counted", counted)
        .get("/many-headers/{n}", many_headers)
        .get("/one-big/{mb}", one_big)
        .get("/counted-slowly", counted_slowly)
        .get("/closed/{name}", closed)
        .get("/then-background/{name}", then_background)
        .get("/background/{name}", background)
        .post("/upload", upload)
        .post("/echo-json", echo_json)
        .post("/echo-later", echo_later)
}

cello::export_app!(app);
