//! What the host does to every request whatever component answers it,
//! as the host config sets it: compression, security headers, the access
//! log, and whether the served components are ready.

use std::sync::Arc;

use http::{Extensions, HeaderMap, HeaderName, HeaderValue, StatusCode, Version};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{And, DefaultPredicate, Predicate, SizeAbove};

use crate::cluster::rate_limits::SharedLimits;
use crate::config::HostConfig;
use crate::readiness::Readiness;

/// The host-wide settings of the pipeline.
pub struct HostWide {
    pub compression: Option<CompressionLayer<Compressible>>,
    pub security_headers: Vec<(HeaderName, HeaderValue)>,
    pub access_log: bool,
    /// Says when the served components have loaded.
    pub ready: Arc<Readiness>,
    /// The cluster's rate-limit counters, with `[cluster] redis`.
    pub shared_limits: Option<Arc<SharedLimits>>,
}

/// A test of a response's head, as tower-http's predicates take it.
type HeadTest = fn(StatusCode, Version, &HeaderMap, &Extensions) -> bool;

/// Which responses are worth compressing: large enough, and not of a type
/// that is compressed already (images, archives, audio, video, web fonts,
/// event streams, gRPC) or opaque bytes (`application/octet-stream`: a
/// download, a file, often compressed, and whose length a client may rely
/// on), nor marked [`AsIs`].
pub type Compressible = And<And<And<DefaultPredicate, SizeAbove>, HeadTest>, HeadTest>;

/// Content types (or their starts) of bodies compressed already, or
/// opaque: compressing them again costs the host and saves nothing.
const NOT_COMPRESSED: &[&str] = &[
    "application/octet-stream",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/zstd",
    "application/x-bzip2",
    "application/x-xz",
    "application/x-7z-compressed",
    "application/vnd.rar",
    "application/x-zip-compressed",
    "application/font-woff",
    "text/event-stream",
    "image/",
    "audio/",
    "video/",
    "font/woff",
];

/// True unless the response's content type (in any case) is one of
/// [`NOT_COMPRESSED`]; an SVG image is text, and is compressed.
fn compressible_type(_: StatusCode, _: Version, headers: &HeaderMap, _: &Extensions) -> bool {
    let Some(content_type) = headers.get(http::header::CONTENT_TYPE) else {
        return true;
    };
    let content_type = String::from_utf8_lossy(content_type.as_bytes()).to_ascii_lowercase();
    content_type.starts_with("image/svg+xml")
        || !NOT_COMPRESSED.iter().any(|t| content_type.starts_with(t))
}

/// Marks a response, in its extensions, that goes out in the encoding it
/// has: the host made it so already (its own files, gzipped at build time,
/// or plain for a client that takes no gzip), and compressing it per
/// request would cost the host more than the client.
#[derive(Clone, Copy)]
pub struct AsIs;

/// True unless the response is marked [`AsIs`].
fn not_as_is(_: StatusCode, _: Version, _: &HeaderMap, extensions: &Extensions) -> bool {
    extensions.get::<AsIs>().is_none()
}

impl HostWide {
    /// The settings as the host config asks, answering 503 until `ready`
    /// says the served components have loaded.
    pub fn new(config: &HostConfig, ready: Arc<Readiness>) -> Self {
        let compression = config.compression.enabled.then(|| {
            let predicate = DefaultPredicate::new()
                .and(SizeAbove::new(config.compression.min_bytes))
                .and(compressible_type as HeadTest)
                .and(not_as_is as HeadTest);
            CompressionLayer::new().compress_when(predicate)
        });
        Self {
            compression,
            security_headers: config.security_headers.headers(),
            access_log: config.access_log.enabled,
            ready,
            shared_limits: None,
        }
    }
}
