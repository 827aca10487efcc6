//! Routing: which route table answers (the served directory's, or a
//! tenant's under `/t/{tenant}/` or its subdomain), whether that tenant is
//! admitted (its requests-per-second quota, its restore after a restart),
//! and which component and route the method and path reach.

use http::{HeaderValue, StatusCode, header};

use crate::error::{error_response, too_many_requests};
use crate::registry::{Resolved, TenantRoutes};
use crate::router::RouteMatch;

use super::stage::{Exchange, Response, Routed, Stage};

/// Sets [`Exchange::routed`], or answers 404, 429 or 503.
pub struct Routing;

impl Stage for Routing {
    fn before(x: &mut Exchange<'_>) -> Result<Self, Response> {
        let routes = x.routes;
        let host = routes.by_host().then(|| {
            let header = x.parts.headers.get(header::HOST);
            let header = header.and_then(|v| v.to_str().ok());
            header.or(x.parts.uri.host())
        });
        let path = x.parts.uri.path();
        let method = &x.parts.method;
        let found = match routes.resolve(host.flatten(), path) {
            Resolved::Main(router) => router.at(method, path),
            Resolved::Tenant { routes, path } => {
                admit(routes)?;
                match routes.router.at(method, path) {
                    RouteMatch::NotFound if routes.restoring => return Err(restoring(routes)),
                    found => found,
                }
            }
            Resolved::NoTenant { name, main } => match main.at(method, path) {
                RouteMatch::NotFound => {
                    let detail = format!("Not Found: there is no tenant named {name:?}.");
                    return Err(error_response(StatusCode::NOT_FOUND, &detail));
                }
                found => found,
            },
        };
        x.routed = Some(match found {
            RouteMatch::Found {
                target,
                params,
                app_path,
            } => Routed::Found {
                target: target.clone(),
                params,
                app_path,
            },
            RouteMatch::MethodNotAllowed { allow, owner } => Routed::MethodNotAllowed {
                allow,
                owner: owner.clone(),
            },
            RouteMatch::NotFound => {
                return Err(error_response(StatusCode::NOT_FOUND, "Not Found"));
            }
        });
        Ok(Routing)
    }

    fn after(self, _: &mut Exchange<'_>, _: &mut Response) {}
}

/// Refuses a request to a tenant over its requests-per-second quota.
fn admit(tenant: &TenantRoutes) -> Result<(), Response> {
    let Some(limiter) = &tenant.limiter else {
        return Ok(());
    };
    limiter.check().map_err(|not_until| {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let detail = format!(
            "Too many requests to tenant {}; try again in {seconds} s.",
            tenant.name
        );
        too_many_requests(&detail, seconds)
    })
}

/// The answer for a route a tenant may have once its components are
/// restored after a restart.
fn restoring(tenant: &TenantRoutes) -> Response {
    let mut response = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!(
            "Tenant {} is starting: its components are still being restored; try again shortly.",
            tenant.name
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
