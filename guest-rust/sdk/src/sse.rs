//! Server-sent events, framed as axum frames them: [`Sse`] over a stream
//! of [`Event`]s, with a [`KeepAlive`] comment while the stream is quiet.
//!
//! ```ignore
//! use cello::sse::{Event, KeepAlive, Sse};
//!
//! async fn ticks() -> Sse<impl Stream<Item = Event>> {
//!     let events = futures_util::stream::unfold(0, |n| async move {
//!         cello::host::sleep(Duration::from_secs(1)).await;
//!         Some((Event::default().event("tick").id(n.to_string()).data(n.to_string()), n + 1))
//!     });
//!     Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
//! }
//! ```

use std::fmt::{self, Display};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use http::StatusCode;
use http::header::{self, HeaderValue};
use serde::Serialize;

use crate::handler::LocalBoxFuture;
use crate::host::{Level, log};
use crate::streaming::Chunks;
use crate::{IntoResponse, Response};

/// One event: its fields in the order they were set, as the wire carries
/// them. `Event::default().event("tick").id("7").data("a\nb")` is
/// `event:tick\nid:7\ndata:a\ndata:b\n\n`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[must_use]
pub struct Event {
    buffer: String,
}

impl Event {
    /// The event's data: one `data:` line per line of `data`, which the
    /// client joins back with newlines.
    pub fn data(mut self, data: impl AsRef<str>) -> Self {
        for line in lines(data.as_ref()) {
            self.field("data", line);
        }
        self
    }

    /// `data` serialised as compact JSON, on one `data:` line.
    pub fn json_data<T: Serialize>(self, data: T) -> Result<Self, serde_json::Error> {
        Ok(self.data(serde_json::to_string(&data)?))
    }

    /// The event's type (`event:`), which a browser's `addEventListener`
    /// names; without one, it fires `message`.
    pub fn event(mut self, event: impl AsRef<str>) -> Self {
        self.field("event", &one_line(event.as_ref()));
        self
    }

    /// The event's id (`id:`), which a reconnecting browser sends back as
    /// `Last-Event-ID`.
    pub fn id(mut self, id: impl AsRef<str>) -> Self {
        let id = one_line(id.as_ref()).replace('\0', "");
        self.field("id", &id);
        self
    }

    /// How long a client waits before reconnecting (`retry:`, in ms).
    pub fn retry(mut self, duration: Duration) -> Self {
        self.field("retry", &duration.as_millis().to_string());
        self
    }

    /// A comment (`:`), which clients ignore; one line per line.
    pub fn comment(mut self, comment: impl AsRef<str>) -> Self {
        for line in lines(comment.as_ref()) {
            self.field("", line);
        }
        self
    }

    /// The event as it is sent: its fields, then a blank line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.buffer.len() + 1);
        bytes.extend_from_slice(self.buffer.as_bytes());
        bytes.push(b'\n');
        bytes
    }

    fn field(&mut self, name: &str, value: &str) {
        self.buffer.push_str(name);
        self.buffer.push(':');
        // A client strips one leading space from a value: keep the value's own.
        if value.starts_with(' ') {
            self.buffer.push(' ');
        }
        self.buffer.push_str(value);
        self.buffer.push('\n');
    }
}

/// The lines of `text`, split at `\n`, `\r\n` or `\r`, as a client splits
/// them: every one is sent, the empty ones too.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n')
        .flat_map(|line| line.strip_suffix('\r').unwrap_or(line).split('\r'))
}

/// `text` on one line: a line break in an event type or id would end the
/// field, so each becomes a space.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// What an event stream may yield: an [`Event`], or a `Result` of one, as
/// axum's `Sse` takes; an `Err` is logged and ends the stream.
pub trait IntoEvent {
    #[doc(hidden)]
    fn into_event(self) -> Result<Event, String>;
}

impl IntoEvent for Event {
    fn into_event(self) -> Result<Event, String> {
        Ok(self)
    }
}

impl<E: Display> IntoEvent for Result<Event, E> {
    fn into_event(self) -> Result<Event, String> {
        self.map_err(|e| e.to_string())
    }
}

/// A comment sent while the event stream yields nothing, so that proxies
/// and the host's `stream-idle-ms` keep the connection open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepAlive {
    text: Vec<u8>,
    interval: Duration,
}

impl KeepAlive {
    /// `:ping` after every 15 seconds without an event.
    pub fn new() -> Self {
        Self {
            text: Event::default().comment("ping").to_bytes(),
            interval: Duration::from_secs(15),
        }
    }

    /// How long the stream may be quiet before a comment is sent.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The comment's text, `ping` unless set.
    pub fn text(mut self, text: impl AsRef<str>) -> Self {
        self.text = Event::default().comment(text).to_bytes();
        self
    }
}

impl Default for KeepAlive {
    fn default() -> Self {
        Self::new()
    }
}

/// A `text/event-stream` response of the events `stream` yields, each
/// sent as it comes. A keep-alive comment goes out every 15 seconds
/// without an event unless [`keep_alive`](Self::keep_alive) says
/// otherwise; the host closes a stream that sends nothing for its
/// `stream-idle-ms`.
#[must_use]
pub struct Sse<S> {
    events: S,
    keep_alive: Option<KeepAlive>,
}

impl<S> Sse<S>
where
    S: Stream + 'static,
    S::Item: IntoEvent,
{
    /// The events of `stream`, with the default [`KeepAlive`].
    pub fn new(stream: S) -> Self {
        Self {
            events: stream,
            keep_alive: Some(KeepAlive::new()),
        }
    }

    /// Another keep-alive than every 15 seconds.
    pub fn keep_alive(mut self, keep_alive: KeepAlive) -> Self {
        self.keep_alive = Some(keep_alive);
        self
    }

    /// No keep-alive comments.
    pub fn without_keep_alive(mut self) -> Self {
        self.keep_alive = None;
        self
    }
}

impl<S> fmt::Debug for Sse<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sse")
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

impl<S> IntoResponse for Sse<S>
where
    S: Stream + 'static,
    S::Item: IntoEvent,
{
    fn into_response(self) -> Response {
        let body = Framed {
            events: Box::pin(self.events),
            keep_alive: self.keep_alive.map(Ticker::new),
            ended: false,
        };
        let mut response = Response::new(StatusCode::OK).with_chunks(Chunks::new(body));
        let headers = response.headers_mut();
        let event_stream = HeaderValue::from_static("text/event-stream");
        headers.insert(header::CONTENT_TYPE, event_stream);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Tells a buffering proxy (nginx) to pass each event on at once.
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

/// The events framed, with keep-alive comments between.
struct Framed<S> {
    keep_alive: Option<Ticker>,
    ended: bool,
    events: Pin<Box<S>>,
}

impl<S> Stream for Framed<S>
where
    S: Stream,
    S::Item: IntoEvent,
{
    type Item = Vec<u8>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.events.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => match item.into_event() {
                Ok(event) => {
                    if let Some(ticker) = &mut self.keep_alive {
                        ticker.sent = true;
                    }
                    Poll::Ready(Some(event.to_bytes()))
                }
                Err(error) => {
                    log(Level::Error, &format!("event stream failed: {error}"));
                    self.ended = true;
                    Poll::Ready(None)
                }
            },
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            // Where the stream cannot suspend (a sync route's, collected
            // whole) a keep-alive's sleep would only block.
            Poll::Pending => match &mut self.keep_alive {
                Some(ticker) if crate::sys::can_suspend() => ticker.poll_tick(cx).map(Some),
                _ => Poll::Pending,
            },
        }
    }
}

/// The keep-alive's timer: one host sleep per interval, never one per
/// event (a sleep is a host call). A comment goes out when a whole
/// interval passed without an event.
struct Ticker {
    keep_alive: KeepAlive,
    sleep: Option<LocalBoxFuture<'static, ()>>,
    /// An event went out since the current interval began.
    sent: bool,
}

impl Ticker {
    fn new(keep_alive: KeepAlive) -> Self {
        Self {
            keep_alive,
            sleep: None,
            sent: false,
        }
    }

    fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Vec<u8>> {
        let ms = self
            .keep_alive
            .interval
            .as_millis()
            .clamp(1, u32::MAX as u128) as u32;
        loop {
            let sleep = self.sleep.get_or_insert_with(|| {
                self.sent = false;
                Box::pin(crate::sys::sleep(ms))
            });
            std::task::ready!(sleep.as_mut().poll(cx));
            self.sleep = None;
            if !self.sent {
                return Poll::Ready(self.keep_alive.text.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(event: Event) -> String {
        String::from_utf8(event.to_bytes()).unwrap()
    }

    #[test]
    fn data_of_several_lines_is_several_data_lines() {
        let event = Event::default().data("one\ntwo\r\nthree\rfour");
        assert_eq!(
            framed(event),
            "data:one\ndata:two\ndata:three\ndata:four\n\n"
        );
    }

    #[test]
    fn fields_go_out_in_the_order_they_were_set() {
        let event = Event::default()
            .event("tick")
            .id("7")
            .retry(Duration::from_secs(3))
            .comment("hi")
            .data("x");
        assert_eq!(
            framed(event),
            "event:tick\nid:7\nretry:3000\n:hi\ndata:x\n\n"
        );
    }

    #[test]
    fn a_leading_space_is_kept() {
        assert_eq!(framed(Event::default().data(" x")), "data:  x\n\n");
        assert_eq!(framed(Event::default().data("\tx")), "data:\tx\n\n");
    }

    #[test]
    fn empty_data_is_one_empty_data_line() {
        assert_eq!(framed(Event::default().data("")), "data:\n\n");
        assert_eq!(framed(Event::default().data("a\n")), "data:a\ndata:\n\n");
    }

    #[test]
    fn line_breaks_in_an_event_type_or_id_become_spaces() {
        let event = Event::default().event("a\nb").id("1\r\n2\0");
        assert_eq!(framed(event), "event:a b\nid:1  2\n\n");
    }

    #[test]
    fn json_data_is_compact_json_on_one_line() {
        let event = Event::default()
            .json_data(serde_json::json!({ "a": [1, 2] }))
            .unwrap();
        assert_eq!(framed(event), "data:{\"a\":[1,2]}\n\n");
    }

    #[test]
    fn keep_alive_is_a_ping_comment_unless_told() {
        assert_eq!(KeepAlive::new().text, b":ping\n\n");
        assert_eq!(KeepAlive::new().text("still here").text, b":still here\n\n");
    }
}
