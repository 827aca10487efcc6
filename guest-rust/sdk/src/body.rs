//! The request body read as it arrives: the [`BodyStream`] extractor, and
//! [`BodyError`], why a read failed.
//!
//! An `async fn` handler that takes a `BodyStream` gets the body chunk by
//! chunk from the host, never held whole; every other route's body is read
//! whole before its handler runs, as before. The component's `max-body-kb`
//! still applies to each read.

use std::cell::RefCell;
use std::convert::Infallible;
use std::fmt;
use std::rc::Rc;

use http::StatusCode;

use crate::sys::BodyReader;
use crate::{FromRequest, HttpError, IntoResponse, Request, Response};

/// The largest chunk a body held whole is handed out in, as the host's
/// own pieces are.
const CHUNK: usize = 64 * 1024;

/// Why the request body could not be read; a handler can return it (or
/// `?` it into an [`HttpError`]) to answer the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The body is larger than the component's limit, in bytes: 413.
    TooLarge(u64),
    /// The body did not arrive within the request's time limit: 408.
    TimedOut,
    /// The client went away, or the body could not be read: 400.
    Failed(String),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge(limit) => {
                write!(
                    f,
                    "The request body is larger than the {limit} bytes allowed."
                )
            }
            BodyError::TimedOut => {
                f.write_str("The request body did not arrive in time; send it faster.")
            }
            BodyError::Failed(why) => write!(f, "The request body could not be read: {why}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl From<BodyError> for HttpError {
    fn from(error: BodyError) -> Self {
        let status = match error {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TimedOut => StatusCode::REQUEST_TIMEOUT,
            BodyError::Failed(_) => StatusCode::BAD_REQUEST,
        };
        HttpError::new(status, error.to_string())
    }
}

/// 413, 408 or 400 with `{"detail": ...}`.
impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        HttpError::from(self).into_response()
    }
}

/// Where a request's body is still to be read from, shared by the clones
/// of one request: the first [`BodyStream`] takes it.
#[derive(Clone, Default)]
pub(crate) struct BodySlot(Rc<RefCell<Option<BodyReader>>>);

impl BodySlot {
    /// A slot holding `reader`.
    #[cfg_attr(any(not(target_arch = "wasm32"), feature = "sync"), allow(dead_code))]
    pub(crate) fn holding(reader: BodyReader) -> Self {
        Self(Rc::new(RefCell::new(Some(reader))))
    }

    fn take(&self) -> Option<BodyReader> {
        self.0.borrow_mut().take()
    }
}

/// Reads the body the host hands a streaming call to its end.
#[cfg_attr(any(not(target_arch = "wasm32"), feature = "sync"), allow(dead_code))]
pub(crate) async fn read_whole(reader: &BodyReader) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = reader.read().await? {
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The request body, chunk by chunk, as an extractor:
///
/// ```ignore
/// async fn upload(mut body: BodyStream) -> Result<String, HttpError> {
///     let mut size = 0;
///     while let Some(chunk) = body.next().await {
///         size += chunk?.len();
///     }
///     Ok(format!("{size} bytes"))
/// }
/// ```
///
/// On an `async fn` route the chunks come from the host as the client sends
/// them, and `Request::body` stays empty. Elsewhere (a sync route, a cached
/// one, or natively in the test client) they are the body already read, in
/// pieces of at most 64 KiB. Past the component's `max-body-kb`, a read
/// fails with [`BodyError::TooLarge`].
pub struct BodyStream {
    source: Source,
}

enum Source {
    Reader(BodyReader),
    Whole { body: Vec<u8>, at: usize },
    Done,
}

impl BodyStream {
    /// The host's reader of `req`'s body, or else the body already read.
    fn of(req: &Request, whole: impl FnOnce() -> Vec<u8>) -> Self {
        let source = match req.body_slot.take() {
            Some(reader) => Source::Reader(reader),
            None => Source::Whole {
                body: whole(),
                at: 0,
            },
        };
        BodyStream { source }
    }

    /// The next chunk; `None` once the body has all been read.
    pub async fn next(&mut self) -> Option<Result<Vec<u8>, BodyError>> {
        match &mut self.source {
            Source::Reader(reader) => match reader.read().await {
                Ok(Some(chunk)) => Some(Ok(chunk)),
                Ok(None) => {
                    self.source = Source::Done;
                    None
                }
                Err(error) => {
                    self.source = Source::Done;
                    Some(Err(error))
                }
            },
            Source::Whole { body, at } if *at < body.len() => {
                let end = (*at + CHUNK).min(body.len());
                let chunk = body[*at..end].to_vec();
                *at = end;
                Some(Ok(chunk))
            }
            Source::Whole { .. } | Source::Done => None,
        }
    }

    /// The rest of the body, whole.
    pub async fn collect(mut self) -> Result<Vec<u8>, BodyError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.next().await {
            body.extend_from_slice(&chunk?);
        }
        Ok(body)
    }
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let streamed = matches!(self.source, Source::Reader(_));
        f.debug_struct("BodyStream")
            .field("streamed", &streamed)
            .finish_non_exhaustive()
    }
}

impl FromRequest for BodyStream {
    type Rejection = Infallible;
    const STREAMS_BODY: bool = true;

    async fn from_request(req: &Request) -> Result<Self, Infallible> {
        Ok(BodyStream::of(req, || req.body.clone()))
    }

    async fn from_request_owned(mut req: Request) -> Result<Self, Infallible> {
        let body = std::mem::take(&mut req.body);
        Ok(BodyStream::of(&req, || body))
    }
}
