//! What the host does to every request whatever component answers it,
//! as the host config sets it: compression, security headers, the access
//! log, and whether the served components are ready.

use std::sync::Arc;

use http::{Extensions, HeaderMap, HeaderName, HeaderValue, StatusCode, Version};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{
    And, DefaultPredicate, NotForContentType, Predicate, SizeAbove,
};

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

/// Which responses are worth compressing: large enough, and not of a type
/// that is compressed already (images, archives, event streams, gRPC) or
/// opaque bytes (`application/octet-stream`: a download, a file, often
/// compressed, and whose length a client may rely on), nor marked [`AsIs`].
pub type Compressible = And<
    And<And<And<DefaultPredicate, SizeAbove>, NotForContentType>, NotForContentType>,
    fn(StatusCode, Version, &HeaderMap, &Extensions) -> bool,
>;

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
                .and(NotForContentType::const_new("application/zip"))
                .and(NotForContentType::const_new("application/octet-stream"))
                .and(not_as_is as fn(_, _, &_, &_) -> _);
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
