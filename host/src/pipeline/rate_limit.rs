//! Rate limits: the component's `[rate-limit]`, then the route's own, each
//! keyed by client address, token subject or tenant. A request over either
//! is answered 429 with `Retry-After`; every response under a limit carries
//! the `RateLimit-*` headers of the tightest one.

use crate::error::too_many_requests;
use crate::middleware::rate_limit::{Caller, Verdict};
use crate::router::Target;
use crate::telemetry;

use super::stage::{Exchange, Response, Routed, Stage};

/// The tightest limit the request passed, for its response's headers.
pub struct RateLimits(Option<Verdict>);

impl Stage for RateLimits {
    fn before(x: &mut Exchange<'_>) -> Result<Self, Response> {
        let Some(Routed::Found { target, .. }) = &x.routed else {
            return Ok(RateLimits(None));
        };
        let _span = telemetry::stage("rate limit").entered();
        let owner = target.owner();
        let middleware = owner.middleware();
        let route = match target {
            Target::App {
                component, route, ..
            } => component.guard(*route).and_then(|g| g.limiter.as_ref()),
            Target::Proxy(_) => None,
        };
        let limiters = [middleware.rate_limit.as_ref(), route];
        if limiters.iter().all(Option::is_none) {
            return Ok(RateLimits(None));
        }
        let caller = Caller {
            peer: x.peer,
            headers: &x.parts.headers,
            claims: x.claims.as_ref().map(|v| &v.claims),
            tenant: owner.tenant.as_ref().map(|t| &*t.name),
            trusted_proxies: &middleware.trusted_proxies,
        };
        let mut tightest: Option<Verdict> = None;
        for limiter in limiters.into_iter().flatten() {
            let verdict = limiter.check(&caller);
            if !verdict.allowed {
                let detail = format!(
                    "Too many requests; try again in {} s.",
                    verdict.reset_s.max(1)
                );
                let mut response = too_many_requests(&detail, verdict.reset_s.max(1));
                verdict.apply(response.headers_mut());
                return Err(response);
            }
            if tightest
                .as_ref()
                .is_none_or(|t| verdict.remaining < t.remaining)
            {
                tightest = Some(verdict);
            }
        }
        Ok(RateLimits(tightest))
    }

    fn after(self, _: &mut Exchange<'_>, response: &mut Response) {
        if let Some(verdict) = self.0 {
            verdict.apply(response.headers_mut());
        }
    }
}
