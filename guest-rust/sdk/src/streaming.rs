//! Responses whose body is written while the host sends it:
//! [`StreamingResponse`] over any [`Stream`] of chunks, and the chunks as a
//! [`Response`] carries them.
//!
//! From an `async fn` route each chunk goes to the client as the stream
//! yields it; a slow client slows the stream, and a client that leaves
//! drops it (its `Drop` runs) and ends the call. From a sync or a cached
//! route the stream is collected and sent whole.

use std::cell::RefCell;
use std::fmt;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use http::StatusCode;
use http::header::{self, HeaderName, HeaderValue};

use crate::{IntoResponse, Response};

type BoxedChunks = Pin<Box<dyn Stream<Item = Vec<u8>>>>;

/// A response body still to be written: the stream a handler returned,
/// shared by the clones of its [`Response`] (the first to take it sends it).
#[derive(Clone)]
pub(crate) struct Chunks(Rc<RefCell<Option<BoxedChunks>>>);

impl Chunks {
    pub(crate) fn new<S>(stream: S) -> Self
    where
        S: Stream + 'static,
        S::Item: Into<Vec<u8>>,
    {
        let stream = Mapped(Box::pin(stream));
        Self(Rc::new(RefCell::new(Some(Box::pin(stream)))))
    }

    /// The stream, once; `None` if a clone of the response took it.
    pub(crate) fn take(&self) -> Option<ChunkStream> {
        self.0.borrow_mut().take().map(ChunkStream)
    }
}

impl fmt::Debug for Chunks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Chunks(..)")
    }
}

/// The chunks of a streamed body, one at a time; dropping it drops the
/// handler's stream.
pub(crate) struct ChunkStream(BoxedChunks);

impl ChunkStream {
    /// The next chunk; `None` at the end.
    pub(crate) async fn next(&mut self) -> Option<Vec<u8>> {
        std::future::poll_fn(|cx| self.0.as_mut().poll_next(cx)).await
    }

    /// The whole body, for a route whose response goes whole.
    #[cfg_attr(any(not(target_arch = "wasm32"), feature = "sync"), allow(dead_code))]
    pub(crate) async fn collect(mut self) -> Vec<u8> {
        let mut body = Vec::new();
        while let Some(chunk) = self.next().await {
            body.extend_from_slice(&chunk);
        }
        body
    }

    /// The whole body without waiting, as a sync route's call must make
    /// it; `None` if the stream waits on the host.
    #[cfg_attr(any(not(target_arch = "wasm32"), feature = "sync"), allow(dead_code))]
    pub(crate) fn collect_now(mut self) -> Option<Vec<u8>> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut body = Vec::new();
        loop {
            match self.0.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(chunk)) => body.extend_from_slice(&chunk),
                Poll::Ready(None) => return Some(body),
                Poll::Pending => return None,
            }
        }
    }
}

/// A stream's items as bytes.
struct Mapped<S: ?Sized>(Pin<Box<S>>);

impl<S> Stream for Mapped<S>
where
    S: Stream + ?Sized,
    S::Item: Into<Vec<u8>>,
{
    type Item = Vec<u8>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        self.0
            .as_mut()
            .poll_next(cx)
            .map(|item| item.map(Into::into))
    }
}

/// A response whose body is the chunks `stream` yields (`String`,
/// `Vec<u8>`, `&'static str`, ...), each sent as it comes:
///
/// ```ignore
/// async fn report() -> StreamingResponse {
///     let rows = futures_util::stream::iter((0..1000).map(|n| format!("{n}\n")));
///     StreamingResponse::new(rows).media_type("text/csv")
/// }
/// ```
///
/// `application/octet-stream` unless [`media_type`](Self::media_type)
/// says otherwise. Streamed bodies go out uncompressed, with chunked
/// transfer encoding.
#[must_use]
pub struct StreamingResponse(Response);

impl StreamingResponse {
    /// 200 with the chunks of `stream` as its body.
    pub fn new<S>(stream: S) -> Self
    where
        S: Stream + 'static,
        S::Item: Into<Vec<u8>>,
    {
        let response = Response::new(StatusCode::OK)
            .with_header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )
            .with_chunks(Chunks::new(stream));
        Self(response)
    }

    /// The body's content type, such as `text/csv`.
    pub fn media_type(mut self, media_type: &str) -> Self {
        self.0.headers_mut().remove(header::CONTENT_TYPE);
        self.header(header::CONTENT_TYPE, media_type)
    }

    /// Another status than 200.
    pub fn status(self, status: StatusCode) -> Self {
        Self(self.0.with_status(status))
    }

    /// One more header. A name or value that is not valid HTTP turns the
    /// response into a 500, and the reason is logged.
    pub fn header<K, V>(self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: fmt::Display,
        V: TryInto<HeaderValue>,
        V::Error: fmt::Display,
    {
        Self(self.0.with_header(name, value))
    }
}

impl IntoResponse for StreamingResponse {
    fn into_response(self) -> Response {
        self.0
    }
}
