//! Streamed bodies for app components (`cello:component/streams`): the
//! request body a guest reads as it arrives, and the response body it
//! writes while the host sends it.
//!
//! A response goes out through a channel of [`CHUNKS_BUFFERED`] pieces of
//! at most 64 KiB: a guest's `write` waits while the channel is full, so a slow client slows
//! the guest instead of growing the host's memory. The client leaving drops
//! the channel's receiver, and the guest's next `write` fails with
//! `closed`. A stream with no chunk for the component's `stream-idle-ms` is
//! ended the same way. Once the head has gone, the route's `timeout-ms` no
//! longer applies: a healthy stream may last as long as it keeps writing.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, SizeHint};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep};
use wasmtime::component::{Accessor, HasSelf, Resource};
use wasmtime_wasi::WasiView;

use crate::bindings::Response;
use crate::bindings::cello::component::streams::{self, StreamError};
use crate::body::{BoxError, RequestBody};
use crate::error::CallError;
use crate::instances::state::InstanceState;

/// Pieces a response holds between the guest and the client: the host's
/// memory per stream is this many pieces, and the chunk being written.
pub const CHUNKS_BUFFERED: usize = 4;

/// The largest piece of a guest's chunk the channel holds.
const PIECE: usize = 64 * 1024;

/// The most bytes the `write` calls of one instance's streams may hold on
/// the host at once. A chunk is copied out of the guest before `write`
/// runs, and held until its last piece is in the channel: without a bound,
/// many streams to clients that do not read would each hold a chunk as
/// large as the guest's memory. The SDKs write at most [`MAX_CHUNK_HINT`]
/// at a time, so only many large writes at once meet it.
pub const MAX_HELD_WRITES: usize = 16 << 20;

/// What the SDKs write at most at once.
pub const MAX_CHUNK_HINT: usize = 1 << 20;

/// The bytes an instance's `write` calls hold, within [`MAX_HELD_WRITES`].
#[derive(Default)]
pub struct HeldWrites(AtomicUsize);

/// Bytes taken from [`HeldWrites`], given back when dropped.
pub struct Held<'a> {
    writes: &'a HeldWrites,
    len: usize,
}

impl HeldWrites {
    /// Takes `len` bytes, or says why not.
    pub fn hold(&self, len: usize) -> Result<Held<'_>, String> {
        let before = self.0.fetch_add(len, Ordering::AcqRel);
        let held = Held { writes: self, len };
        if before + len > MAX_HELD_WRITES {
            return Err(format!(
                "a write of {len} bytes is refused: the instance's streams already hold \
                 {before} bytes for clients still reading, and may hold {MAX_HELD_WRITES}; \
                 write chunks of at most {MAX_CHUNK_HINT} bytes"
            ));
        }
        Ok(held)
    }

    /// The bytes held now.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.writes.0.fetch_sub(self.len, Ordering::AcqRel);
    }
}

/// The status and headers a guest starts its response with.
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

/// How a streaming call ended: a whole response, none (the body was
/// streamed), or a failure.
pub type Outcome = Result<Option<Response>, CallError>;

/// The request body, as the guest's `body-reader` reads it.
pub struct BodyReader {
    /// Taken out while a read is in flight.
    body: Option<Limited<RequestBody>>,
    limit: usize,
    /// The body must have arrived by then, as a whole body must.
    deadline: Instant,
    waiting: ClientWait,
}

/// How long a guest's reads have waited on the client for the body, and
/// whether one is waiting now (or gave up waiting at the deadline): time
/// the call spent on the client is not the guest's.
#[derive(Clone, Default)]
pub struct ClientWait(Arc<Waits>);

#[derive(Default)]
struct Waits {
    waiting: AtomicBool,
    /// Microseconds reads waited, the one waiting now not included.
    waited_us: AtomicU64,
}

impl ClientWait {
    /// True while a read waits on the client, and after one timed out.
    pub fn is_waiting(&self) -> bool {
        self.0.waiting.load(Ordering::Acquire)
    }

    /// How long reads that got what they waited for waited.
    pub fn waited(&self) -> Duration {
        Duration::from_micros(self.0.waited_us.load(Ordering::Acquire))
    }

    fn start(&self) {
        self.0.waiting.store(true, Ordering::Release);
    }

    fn stop(&self, waited: Duration) {
        let micros = waited.as_micros() as u64;
        self.0.waited_us.fetch_add(micros, Ordering::AcqRel);
        self.0.waiting.store(false, Ordering::Release);
    }
}

impl BodyReader {
    /// Reads `body` (none: empty) of at most `limit` bytes by `deadline`;
    /// with what tells how long reads waited on the client, and whether
    /// one is waiting now.
    pub fn new(body: Option<RequestBody>, limit: usize, deadline: Instant) -> (Self, ClientWait) {
        let waiting = ClientWait::default();
        let reader = Self {
            body: body.map(|body| Limited::new(body, limit)),
            limit,
            deadline,
            waiting: waiting.clone(),
        };
        (reader, waiting)
    }
}

/// The guest's side of a streamed response.
pub struct ResponseWriter {
    head: Option<oneshot::Sender<Head>>,
    chunks: mpsc::Sender<Bytes>,
    /// Fired when the guest drops the writer: the body is whole.
    finished: Option<oneshot::Sender<()>>,
}

/// The host's side of a streamed response: the head once the guest sends
/// it, and the body's chunks.
pub struct ResponseStream {
    pub head: oneshot::Receiver<Head>,
    pub chunks: Chunks,
}

/// The chunks of a streamed body, and whether the guest said it was whole
/// by dropping its writer (a writer dropped with its instance, after a
/// trap, says nothing).
pub struct Chunks {
    received: mpsc::Receiver<Bytes>,
    finished: oneshot::Receiver<()>,
}

/// A writer for the guest and the stream it writes into.
pub fn response_stream() -> (ResponseWriter, ResponseStream) {
    let (head_tx, head) = oneshot::channel();
    let (chunks_tx, received) = mpsc::channel(CHUNKS_BUFFERED);
    let (finished_tx, finished) = oneshot::channel();
    let writer = ResponseWriter {
        head: Some(head_tx),
        chunks: chunks_tx,
        finished: Some(finished_tx),
    };
    let chunks = Chunks { received, finished };
    (writer, ResponseStream { head, chunks })
}

/// The head a guest asked for, checked: an invalid status or header is a
/// sentence for the guest, never a panic.
fn head(status: u16, headers: Vec<(String, String)>) -> Result<Head, String> {
    let status = StatusCode::from_u16(status).map_err(|_| format!("status {status} is invalid"))?;
    Ok(Head {
        status,
        headers: super::response_headers(headers)?,
    })
}

impl streams::Host for InstanceState {}

impl streams::HostBodyReader for InstanceState {
    fn drop(&mut self, reader: Resource<BodyReader>) -> wasmtime::Result<()> {
        self.ctx().table.delete(reader)?;
        Ok(())
    }
}

impl streams::HostResponseWriter for InstanceState {
    fn start(
        &mut self,
        writer: Resource<ResponseWriter>,
        status: u16,
        headers: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), StreamError>> {
        let writer = self.ctx().table.get_mut(&writer)?;
        let Some(sender) = writer.head.take() else {
            return Ok(Err(StreamError::Failed(
                "the response was started already".into(),
            )));
        };
        let head = match head(status, headers) {
            Ok(head) => head,
            Err(why) => return Ok(Err(StreamError::Failed(why))),
        };
        Ok(sender.send(head).map_err(|_| StreamError::Closed))
    }

    fn drop(&mut self, writer: Resource<ResponseWriter>) -> wasmtime::Result<()> {
        let mut writer = self.ctx().table.delete(writer)?;
        // The guest let go of the writer: once its chunks have gone, the
        // client sees the body end, before the guest's call returns (and
        // before the background tasks it runs next).
        if let Some(finished) = writer.finished.take() {
            let _ = finished.send(());
        }
        Ok(())
    }
}

impl<U> streams::HostBodyReaderWithStore<U> for HasSelf<InstanceState> {
    async fn read(
        accessor: &Accessor<U, Self>,
        reader: Resource<BodyReader>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, StreamError>> {
        let taken = accessor.with(|mut store| -> wasmtime::Result<_> {
            let reader = store.get().ctx().table.get_mut(&reader)?;
            Ok((
                reader.body.take(),
                reader.limit,
                reader.deadline,
                reader.waiting.clone(),
            ))
        })?;
        let (Some(mut body), limit, deadline, waiting) = taken else {
            return Ok(Ok(None));
        };
        waiting.start();
        let began = Instant::now();
        let read = tokio::time::timeout_at(deadline, next_data(&mut body)).await;
        // A read that timed out leaves it waiting: the client was late.
        if read.is_ok() {
            waiting.stop(began.elapsed());
        }
        let (chunk, more) = match read {
            Err(_) => return Ok(Err(StreamError::TimedOut)),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Ok(Err(StreamError::TooLarge(limit as u64)));
            }
            Ok(Err(e)) => return Ok(Err(StreamError::Failed(e.to_string()))),
            Ok(Ok(Some(chunk))) => (Some(chunk.to_vec()), true),
            Ok(Ok(None)) => (None, false),
        };
        if more {
            accessor.with(|mut store| -> wasmtime::Result<()> {
                store.get().ctx().table.get_mut(&reader)?.body = Some(body);
                Ok(())
            })?;
        }
        Ok(Ok(chunk))
    }
}

/// The body's next chunk of data (trailers skipped), or none at its end.
async fn next_data(body: &mut Limited<RequestBody>) -> Result<Option<Bytes>, BoxError> {
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data()
            && !data.is_empty()
        {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

impl<U> streams::HostResponseWriterWithStore<U> for HasSelf<InstanceState> {
    async fn write(
        accessor: &Accessor<U, Self>,
        writer: Resource<ResponseWriter>,
        chunk: Vec<u8>,
    ) -> wasmtime::Result<Result<(), StreamError>> {
        let (chunks, held) = accessor.with(|mut store| -> wasmtime::Result<_> {
            let state = store.get();
            let held = state.stream_writes.clone();
            let writer = state.ctx().table.get_mut(&writer)?;
            Ok((writer.head.is_none().then(|| writer.chunks.clone()), held))
        })?;
        let Some(chunks) = chunks else {
            return Ok(Err(StreamError::Failed(
                "call `start` before `write`: the status and headers go first".into(),
            )));
        };
        let _held = match held.hold(chunk.len()) {
            Ok(held) => held,
            Err(why) => return Ok(Err(StreamError::Failed(why))),
        };
        // Waits while the client is slow: the channel holds only a few pieces.
        for piece in pieces(chunk) {
            if chunks.send(piece).await.is_err() {
                return Ok(Err(StreamError::Closed));
            }
        }
        Ok(Ok(()))
    }
}

/// `chunk` in pieces of at most [`PIECE`] bytes, a large one copied, so a
/// stream holds at most the chunk being written and [`CHUNKS_BUFFERED`]
/// small pieces, however large the guest's chunks are.
fn pieces(chunk: Vec<u8>) -> Vec<Bytes> {
    if chunk.is_empty() {
        Vec::new()
    } else if chunk.len() <= PIECE {
        vec![Bytes::from(chunk)]
    } else {
        chunk.chunks(PIECE).map(Bytes::copy_from_slice).collect()
    }
}

/// A streamed response body: the guest's chunks as it writes them. It
/// ends when the guest drops its writer or its call returns, and fails (the client sees the
/// body cut short) when the call fails or no chunk came for `idle`.
pub struct Streamed {
    chunks: Chunks,
    /// The call's outcome; taken once it has come, or once the guest let go
    /// of its writer.
    outcome: Option<oneshot::Receiver<Outcome>>,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    /// Given the outcome when the body is dropped before it: the call must
    /// still end.
    abandoned: Option<Abandoned>,
}

/// What becomes of a streaming call whose body was dropped before the call
/// ended.
pub type Abandoned = Box<dyn FnOnce(oneshot::Receiver<Outcome>) + Send>;

impl Streamed {
    pub fn new(
        chunks: Chunks,
        outcome: oneshot::Receiver<Outcome>,
        idle: Duration,
        abandoned: Abandoned,
    ) -> Self {
        Self {
            chunks,
            outcome: Some(outcome),
            idle,
            idle_timer: Box::pin(tokio::time::sleep(idle)),
            abandoned: Some(abandoned),
        }
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        if let (Some(outcome), Some(abandoned)) = (self.outcome.take(), self.abandoned.take()) {
            abandoned(outcome);
        }
    }
}

/// Why a streamed body was cut short.
#[derive(Debug, thiserror::Error)]
pub enum StreamCut {
    #[error("the guest wrote nothing for {0:?}; the stream was closed")]
    Idle(Duration),
    #[error("the guest's call failed mid-stream: {0}")]
    Failed(String),
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match this.chunks.received.poll_recv(cx) {
            Poll::Ready(Some(chunk)) => {
                let next = Instant::now() + this.idle;
                this.idle_timer.as_mut().reset(next);
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            // Every chunk has gone and the guest let go of its writer.
            Poll::Ready(None) if this.chunks.finished.try_recv().is_ok() => {
                this.outcome = None;
                return Poll::Ready(None);
            }
            _ => {}
        }
        let Some(outcome) = &mut this.outcome else {
            // The call has returned: what it wrote just before still goes out.
            let chunk = this.chunks.received.try_recv().ok();
            return Poll::Ready(chunk.map(|c| Ok(Frame::data(c))));
        };
        if let Poll::Ready(outcome) = Pin::new(outcome).poll(cx) {
            this.outcome = None;
            let why = match outcome {
                Ok(Ok(_)) => {
                    let chunk = this.chunks.received.try_recv().ok();
                    return Poll::Ready(chunk.map(|c| Ok(Frame::data(c))));
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "its instance stopped".into(),
            };
            return Poll::Ready(Some(Err(StreamCut::Failed(why).into())));
        }
        ready!(this.idle_timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(StreamCut::Idle(this.idle).into())))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_hold_at_most_their_budget_and_give_it_back_when_done() {
        let writes = HeldWrites::default();
        let first = writes.hold(MAX_HELD_WRITES - 10).unwrap();
        let small = writes.hold(10).unwrap();
        let refused = writes.hold(1).err().unwrap();
        assert!(
            refused.contains("a write of 1 bytes is refused"),
            "{refused}"
        );
        // A refusal takes nothing.
        assert_eq!(writes.bytes(), MAX_HELD_WRITES);
        drop(small);
        assert!(writes.hold(10).is_ok());
        drop(first);
        assert_eq!(writes.bytes(), 0);
        assert!(writes.hold(MAX_HELD_WRITES + 1).is_err());
        assert_eq!(writes.bytes(), 0);
    }

    #[test]
    fn a_large_chunk_goes_in_pieces_a_small_one_whole_an_empty_one_not_at_all() {
        assert!(pieces(Vec::new()).is_empty());
        assert_eq!(
            pieces(b"data: 1\n\n".to_vec()),
            [Bytes::from_static(b"data: 1\n\n")]
        );
        let large: Vec<u8> = (0..PIECE * 2 + 10).map(|i| i as u8).collect();
        let split = pieces(large.clone());
        let sizes: Vec<usize> = split.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [PIECE, PIECE, 10]);
        assert_eq!(split.concat(), large);
    }
}
