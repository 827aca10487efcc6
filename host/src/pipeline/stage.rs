//! What a stage of the pipeline is, and the exchange every stage reads
//! and writes: one request on its way in, its response on its way out.
//!
//! This module imports nothing a stage defines, so stages (here and in
//! [`crate::middleware`]) can import it without a circle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::body::{Body, RequestBody};
use crate::instances::state::Owner;
use crate::middleware::auth::Verified;
use crate::pipeline::host_wide::HostWide;
use crate::router::Target;

/// A response, as every stage makes and sees it.
pub type Response = http::Response<Body>;

/// One step a request passes on its way to the component, and its
/// response on the way back.
///
/// `before` runs in pipeline order. It either lets the request go on,
/// returning what its `after` needs, or answers it (a 401, a 429, a
/// preflight): then the stages after it do not run, and only the `after`
/// steps of the stages before it see that answer. `after` runs in reverse
/// order on every response that comes back through the stage.
pub trait Stage: Sized + Send + 'static {
    /// The stage's part of the request: `Ok` goes on, `Err` is the answer.
    fn before(exchange: &mut Exchange) -> Result<Self, Response>;

    /// True for a stage whose `before_async` may wait (on a counter the
    /// cluster shares): the pipeline then calls that, when the host shares
    /// its counters, and `before` otherwise.
    const WAITS: bool = false;

    /// `before`, for a stage that may wait: `before` unless the stage
    /// says otherwise.
    fn before_async(
        exchange: &mut Exchange,
    ) -> impl Future<Output = Result<Self, Response>> + Send + '_ {
        std::future::ready(Self::before(exchange))
    }

    /// The stage's part of the response.
    fn after(self, exchange: &mut Exchange, response: &mut Response);
}

/// One request as it passes through the pipeline.
pub struct Exchange {
    /// The host-wide settings and the route tables this request sees: held,
    /// so that a request's future owns everything it needs and can be
    /// boxed as it is made (it borrowed them before, and was made in the
    /// state of a future that owned them, copied there at its first poll).
    pub host: Arc<HostWide>,
    pub routes: Arc<crate::registry::Routes>,
    pub peer: SocketAddr,
    pub started: Instant,
    /// From `X-Request-Id`, or made here. Shared: the call and its logs
    /// keep it without copying it.
    pub request_id: Arc<str>,
    /// The request's method, URI and headers.
    pub parts: http::request::Parts,
    /// Its body, until the call takes it.
    pub body: Option<RequestBody>,
    /// Where routing sent it; `None` before routing, or when it was not
    /// routed to a component.
    pub routed: Option<Routed>,
    /// The verified token, when the request carried one auth accepted.
    pub claims: Option<Arc<Verified>>,
    /// Set once the response has been counted: an exchange dropped before
    /// that is a client that went away.
    pub(crate) answered: bool,
}

/// What routing found for a request.
pub enum Routed {
    /// A route of a component.
    Found {
        target: Target,
        /// `{name}` segment values.
        params: Vec<(String, String)>,
        /// The path with the component's prefix removed.
        app_path: crate::router::AppPath,
    },
    /// The path is a component's, but not for this method: a 405 (or a
    /// CORS preflight), with `allow` listing the methods.
    MethodNotAllowed { allow: String, owner: Arc<Owner> },
}

impl Routed {
    /// The component the request was routed to.
    pub fn owner(&self) -> &Arc<Owner> {
        match self {
            Routed::Found { target, .. } => target.owner(),
            Routed::MethodNotAllowed { owner, .. } => owner,
        }
    }
}

impl Exchange {
    /// `request` from `peer` on its way in, not routed yet, with its id.
    pub fn new(
        host: Arc<HostWide>,
        routes: Arc<crate::registry::Routes>,
        request: http::Request<RequestBody>,
        peer: SocketAddr,
    ) -> Self {
        let (parts, body) = request.into_parts();
        Exchange {
            host,
            routes,
            peer,
            started: Instant::now(),
            request_id: super::request_id(&parts.headers),
            parts,
            body: Some(body),
            routed: None,
            claims: None,
            answered: false,
        }
    }
}

impl Exchange {
    /// The component the request was routed to, if any.
    pub fn owner(&self) -> Option<&Arc<Owner>> {
        self.routed.as_ref().map(Routed::owner)
    }

    /// A request header as text, when it is present and valid text.
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Drop for Exchange {
    /// Counts a client abort for the component when the request is dropped
    /// before it was answered (hyper drops it when the client hangs up).
    fn drop(&mut self) {
        if !self.answered
            && let Some(owner) = self.owner()
        {
            owner.metrics.client_aborts.inc();
        }
    }
}
