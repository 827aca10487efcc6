//! Routing: which route table answers (the served directory's, or a
//! tenant's under `/t/{tenant}/` or its subdomain), whether that tenant is
//! admitted (its requests-per-second quota, its restore after a restart),
//! and which component and route the method and path reach.

use http::{StatusCode, header};

use crate::error::{error_response, too_many_requests, unavailable};
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
    unavailable(&format!(
        "Tenant {} is starting: its components are still being restored; try again shortly.",
        tenant.name
    ))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::Arc;

    use governor::{Quota, RateLimiter};

    use super::*;
    use crate::pipeline::tests::{Fixture, detail};
    use crate::router::RouterBuilder;

    fn tenant(limiter: Option<Quota>, restoring: bool) -> TenantRoutes {
        let Ok(router) = RouterBuilder::default().build() else {
            panic!("an empty table has no conflicts");
        };
        TenantRoutes {
            name: "acme".into(),
            router,
            limiter: limiter.map(|quota| Arc::new(RateLimiter::direct(quota))),
            restoring,
        }
    }

    #[tokio::test]
    async fn a_tenant_over_its_request_rate_is_answered_429() {
        let per_second = Quota::per_second(NonZeroU32::new(1).unwrap());
        let acme = tenant(Some(per_second), false);
        assert!(admit(&acme).is_ok());
        let Err(refused) = admit(&acme) else {
            panic!("a second request within the second was admitted");
        };
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            detail(refused).await,
            "Too many requests to tenant acme; try again in 1 s."
        );
    }

    #[test]
    fn a_tenant_without_a_quota_is_always_admitted() {
        let acme = tenant(None, false);
        assert!((0..100).all(|_| admit(&acme).is_ok()));
    }

    #[tokio::test]
    async fn a_tenant_being_restored_is_answered_503_with_retry_after() {
        let response = restoring(&tenant(None, true));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let detail = detail(response).await;
        assert!(detail.starts_with("Tenant acme is starting"), "{detail}");
    }

    /// What routing answers `GET path` with nothing in service.
    async fn refusal(path: &str) -> (StatusCode, String) {
        let fixture = Fixture::new();
        let mut exchange = fixture.exchange(http::Request::get(path).body(()).unwrap());
        let Err(response) = Routing::before(&mut exchange) else {
            panic!("{path} was routed with nothing in service");
        };
        assert!(exchange.routed.is_none());
        (response.status(), detail(response).await)
    }

    #[tokio::test]
    async fn a_path_no_component_serves_is_404() {
        let (status, detail) = refusal("/items").await;
        assert_eq!(
            (status, detail.as_str()),
            (StatusCode::NOT_FOUND, "Not Found")
        );
    }

    #[tokio::test]
    async fn a_path_of_an_unknown_tenant_is_404_naming_it() {
        let (status, detail) = refusal("/t/acme/items").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(detail, "Not Found: there is no tenant named \"acme\".");
    }
}
