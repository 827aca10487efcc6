//! Rate limits: the component's `[rate-limit]`, then the route's own, each
//! keyed by client address, token subject or tenant. A request over either
//! is answered 429 with `Retry-After`; every response under a limit carries
//! the `RateLimit-*` headers of the tightest one. With `[cluster] redis`
//! the limits are counted there, for every host at once.

use crate::error::too_many_requests;
use crate::middleware::rate_limit::{Caller, CallerKey, Limiter, Verdict};
use crate::router::Target;
use crate::telemetry;

use super::stage::{Exchange, Response, Routed, Stage};

/// The tightest limit the request passed, for its response's headers.
pub struct RateLimits(Option<Verdict>);

/// The limits over a request's target: the component's, then the route's.
fn limiters(target: &Target) -> [Option<&Limiter>; 2] {
    let middleware = target.owner().middleware();
    let route = match target {
        Target::App {
            component, route, ..
        } => component.guard(*route).and_then(|g| g.limiter.as_ref()),
        Target::Proxy(_) => None,
    };
    [middleware.rate_limit.as_ref(), route]
}

/// Who is calling, as `x`'s limits see it.
fn caller<'x>(x: &'x Exchange, target: &'x Target) -> Caller<'x> {
    let owner = target.owner();
    Caller {
        peer: x.peer,
        headers: &x.parts.headers,
        claims: x.claims.as_ref().map(|v| &v.claims),
        tenant: owner.tenant.as_ref().map(|t| &*t.name),
        trusted_proxies: &owner.middleware().trusted_proxies,
    }
}

/// Folds the verdicts in: the first refusal answers the request,
/// otherwise the tightest verdict goes on the response.
fn decide(verdicts: impl IntoIterator<Item = Verdict>) -> Result<RateLimits, Response> {
    let mut tightest: Option<Verdict> = None;
    for verdict in verdicts {
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

impl Stage for RateLimits {
    fn before(x: &mut Exchange) -> Result<Self, Response> {
        let Some(Routed::Found { target, .. }) = &x.routed else {
            return Ok(RateLimits(None));
        };
        let _span = telemetry::stage("rate limit").entered();
        let limiters = limiters(target);
        if limiters.iter().all(Option::is_none) {
            return Ok(RateLimits(None));
        }
        let caller = caller(x, target);
        // Lazily: a refusal by the first limit does not count at the second.
        decide(
            limiters
                .into_iter()
                .flatten()
                .map(|limiter| limiter.check(&caller)),
        )
    }

    const WAITS: bool = true;

    async fn before_async(x: &mut Exchange) -> Result<Self, Response> {
        let shared = x.host.shared_limits.clone();
        let (Some(shared), Some(Routed::Found { target, .. })) = (shared, &x.routed) else {
            return Self::before(x);
        };
        let target = target.clone();
        let [component, route] = limiters(&target);
        if component.is_none() && route.is_none() {
            return Ok(RateLimits(None));
        }
        let owner = &target.owner().component;
        let route_scope = match &target {
            Target::App {
                component, route, ..
            } => format!("{owner}:{}", component.route_path(*route)),
            Target::Proxy(_) => owner.to_string(),
        };
        // Owned keys: nothing of the request is held while Redis answers.
        let counted: Vec<(&str, &Limiter, CallerKey)> = {
            let caller = caller(x, &target);
            [(owner as &str, component), (route_scope.as_str(), route)]
                .into_iter()
                .filter_map(|(scope, limiter)| limiter.map(|l| (scope, l, l.caller_key(&caller))))
                .collect()
        };
        let mut verdicts = Vec::with_capacity(counted.len());
        for (scope, limiter, key) in counted {
            let verdict = shared.check(scope, limiter, key).await;
            let refused = !verdict.allowed;
            verdicts.push(verdict);
            if refused {
                break;
            }
        }
        decide(verdicts)
    }

    fn after(self, _: &mut Exchange, response: &mut Response) {
        if let Some(verdict) = self.0 {
            verdict.apply(response.headers_mut());
        }
    }
}
