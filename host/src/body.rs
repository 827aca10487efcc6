//! The body every response the host sends has, whatever made it: a guest,
//! the cache, an error, the admin API. Everything above imports it; it
//! imports nothing of the host's.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// Any error a response body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the host sends.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A response body from bytes in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The body of a request, from a connection or in-process.
pub type RequestBody = UnsyncBoxBody<Bytes, BodyError>;

/// Why a request body stopped: the connection's error (a `hyper::Error`),
/// or whatever an in-process body failed with.
///
/// A type of its own rather than [`BoxError`]: async code generic over a
/// body whose error is a trait object trips the compiler's `Send` checks.
#[derive(Debug)]
pub struct BodyError(pub BoxError);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
