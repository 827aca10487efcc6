//! Routing: which route table answers (the served directory's, or a
//! tenant's under `/t/{tenant}/` or its subdomain), whether that tenant is
//! admitted (its requests-per-second quota, its restore after a restart),
//! and which component and route the method and path reach. The component
//! sees its path without the prefix it is served under, and is told that
//! prefix in `X-Forwarded-Prefix`, as a reverse proxy tells its upstream.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::error::{error_response, too_many_requests, unavailable};
use crate::middleware::rate_limit::{CallerKey, Verdict};
use crate::registry::{Resolved, TenantRoutes};
use crate::router::RouteMatch;

use super::stage::{Exchange, Response, Routed, Stage};

/// The path prefix a proxy removed before passing a request on.
const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Sets [`Exchange::routed`], or answers 404, 429 or 503.
pub struct Routing;

impl Stage for Routing {
    fn before(x: &mut Exchange) -> Result<Self, Response> {
        route(x, Admission::OnThisHost)
    }

    const WAITS: bool = true;

    /// With `[cluster] redis`, a tenant's requests-per-second quota is
    /// counted there, for every host at once (on this host while Redis is
    /// down, as the shared limits fall back).
    async fn before_async(x: &mut Exchange) -> Result<Self, Response> {
        let Some(shared) = x.host.shared_limits.clone() else {
            return Self::before(x);
        };
        let quota = match resolve(x) {
            Resolved::Tenant { routes, .. } => {
                routes.limiter.clone().map(|l| (routes.name.clone(), l))
            }
            _ => None,
        };
        if let Some((name, limiter)) = quota {
            let key = CallerKey::Tenant(name.as_ref().into());
            let verdict = shared.check(&format!("tenant:{name}"), &limiter, key).await;
            refuse_over_quota(&name, &verdict)?;
        }
        route(x, Admission::Done)
    }

    fn after(self, _: &mut Exchange, _: &mut Response) {}
}

/// Whether routing still has to count a tenant's request against its
/// quota, or the cluster's counter already has.
#[derive(PartialEq)]
enum Admission {
    OnThisHost,
    Done,
}

/// Which table answers `x`, and the path to look up in it.
fn resolve<'x>(x: &'x Exchange) -> Resolved<'x> {
    let routes = &*x.routes;
    let host = routes.by_host().then(|| {
        let header = x.parts.headers.get(header::HOST);
        let header = header.and_then(|v| v.to_str().ok());
        header.or(x.parts.uri.host())
    });
    routes.resolve(host.flatten(), x.parts.uri.path())
}

/// Sets [`Exchange::routed`], or answers 404, 429 or 503.
fn route(x: &mut Exchange, admission: Admission) -> Result<Routing, Response> {
    let path = x.parts.uri.path();
    let method = &x.parts.method;
    let (mount, found) = match resolve(x) {
        Resolved::Main(router) => ("", router.at(method, path)),
        Resolved::Tenant {
            routes,
            mount,
            path,
        } => {
            if admission == Admission::OnThisHost {
                admit(routes)?;
            }
            match routes.router.at(method, path) {
                RouteMatch::NotFound if routes.restoring => return Err(restoring(routes)),
                found => (mount, found),
            }
        }
        Resolved::NoTenant { name, main } => match main.at(method, path) {
            RouteMatch::NotFound => {
                let detail = format!("Not Found: there is no tenant named {name:?}.");
                return Err(error_response(StatusCode::NOT_FOUND, &detail));
            }
            found => ("", found),
        },
    };
    let (routed, forwarded) = match found {
        RouteMatch::Found {
            target,
            params,
            app_path,
            prefix,
            prefix_header,
        } => {
            let trusted = &target.owner().middleware().trusted_proxies;
            let from_proxy = trusted.contains(&x.peer.ip());
            let forwarded = match (from_proxy, mount) {
                // The common case, made once with the route table.
                (false, "") => prefix_header.cloned(),
                _ => {
                    let incoming = from_proxy.then_some(&x.parts.headers);
                    forwarded_prefix(incoming, &[mount, prefix])
                }
            };
            let routed = Routed::Found {
                target: target.clone(),
                params,
                app_path,
            };
            (routed, Some(forwarded))
        }
        RouteMatch::MethodNotAllowed { allow, owner } => {
            let owner = owner.clone();
            (Routed::MethodNotAllowed { allow, owner }, None)
        }
        RouteMatch::NotFound => {
            return Err(error_response(StatusCode::NOT_FOUND, "Not Found"));
        }
    };
    if let Some(forwarded) = forwarded {
        set_forwarded_prefix(&mut x.parts.headers, forwarded);
    }
    x.routed = Some(routed);
    Ok(Routing)
}

/// The `X-Forwarded-Prefix` the component is to see: the prefix a trusted
/// proxy's own header names (`incoming`, given only for a request from
/// one), then the `removed` parts of the path, joined. A client's own
/// header is never passed on, so it cannot pose as the host's.
fn forwarded_prefix(incoming: Option<&HeaderMap>, removed: &[&str]) -> Option<HeaderValue> {
    let trim = |part: &str| part.trim().trim_matches('/').len();
    // Sized exactly when no proxy's header is read: the header value then
    // takes the string's allocation as it is, where a larger one is
    // allocated again.
    let exact = removed
        .iter()
        .map(|p| trim(p))
        .filter(|&n| n > 0)
        .map(|n| n + 1);
    let mut value = String::with_capacity(exact.sum());
    let proxied = incoming
        .into_iter()
        .flat_map(|headers| headers.get_all(X_FORWARDED_PREFIX))
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for part in proxied.chain(removed.iter().copied()) {
        let part = part.trim().trim_matches('/');
        if !part.is_empty() {
            value.push('/');
            value.push_str(part);
        }
    }
    // The removed parts come from the request's path, so they are valid in
    // a header; the proxy's were read from one.
    HeaderValue::try_from(value).ok().filter(|v| !v.is_empty())
}

/// Replaces every `X-Forwarded-Prefix` the request came with by `value`.
fn set_forwarded_prefix(headers: &mut HeaderMap, value: Option<HeaderValue>) {
    match value {
        Some(value) => {
            headers.insert(X_FORWARDED_PREFIX, value);
        }
        None => {
            headers.remove(X_FORWARDED_PREFIX);
        }
    }
}

/// Refuses a request to a tenant over its requests-per-second quota,
/// counted on this host.
fn admit(tenant: &TenantRoutes) -> Result<(), Response> {
    let Some(limiter) = &tenant.limiter else {
        return Ok(());
    };
    let verdict = limiter.check_key(CallerKey::Tenant(tenant.name.as_ref().into()));
    refuse_over_quota(&tenant.name, &verdict)
}

/// The 429 for a request `verdict` refused to tenant `name`.
fn refuse_over_quota(name: &str, verdict: &Verdict) -> Result<(), Response> {
    if verdict.allowed {
        return Ok(());
    }
    let seconds = verdict.reset_s.max(1);
    let detail = format!("Too many requests to tenant {name}; try again in {seconds} s.");
    Err(too_many_requests(&detail, seconds))
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
    use std::sync::Arc;

    use super::*;
    use crate::middleware::rate_limit::Limiter;
    use crate::pipeline::tests::{Fixture, detail};
    use crate::router::RouterBuilder;

    fn tenant(requests_per_second: u32, restoring: bool) -> TenantRoutes {
        let Ok(router) = RouterBuilder::default().build() else {
            panic!("an empty table has no conflicts");
        };
        TenantRoutes {
            name: "acme".into(),
            router,
            limiter: Limiter::tenant_quota(requests_per_second).map(Arc::new),
            restoring,
        }
    }

    #[tokio::test]
    async fn a_tenant_over_its_request_rate_is_answered_429() {
        let acme = tenant(1, false);
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
        let acme = tenant(0, false);
        assert!((0..100).all(|_| admit(&acme).is_ok()));
    }

    #[tokio::test]
    async fn a_tenant_being_restored_is_answered_503_with_retry_after() {
        let response = restoring(&tenant(0, true));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let detail = detail(response).await;
        assert!(detail.starts_with("Tenant acme is starting"), "{detail}");
    }

    /// The prefix a component is told, as text.
    fn told(incoming: Option<&HeaderMap>, removed: &[&str]) -> Option<String> {
        let value = forwarded_prefix(incoming, removed)?;
        Some(value.to_str().unwrap().to_string())
    }

    fn sent(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_FORWARDED_PREFIX, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_component_is_told_the_tenant_path_and_prefix_the_host_removed() {
        assert_eq!(
            told(None, &["/t/acme", "/shop"]).as_deref(),
            Some("/t/acme/shop")
        );
        assert_eq!(told(None, &["", "/shop"]).as_deref(), Some("/shop"));
        assert_eq!(told(None, &["/t/acme", ""]).as_deref(), Some("/t/acme"));
        assert_eq!(told(None, &["", ""]), None);
    }

    #[test]
    fn the_prefix_the_route_table_made_once_is_the_one_made_per_request() {
        for prefix in ["/shop", "/a/b/", " /x ", "/", ""] {
            assert_eq!(
                crate::router::prefix_header(prefix),
                forwarded_prefix(None, &["", prefix]),
                "{prefix:?}"
            );
        }
    }

    #[test]
    fn a_trusted_proxys_prefix_goes_before_the_hosts() {
        let proxy = sent(&["/api/"]);
        assert_eq!(
            told(Some(&proxy), &["", "/shop"]).as_deref(),
            Some("/api/shop")
        );
        assert_eq!(told(Some(&proxy), &["", ""]).as_deref(), Some("/api"));
        let chain = sent(&["/edge, /api", "/v1"]);
        assert_eq!(
            told(Some(&chain), &["/t/acme", ""]).as_deref(),
            Some("/edge/api/v1/t/acme")
        );
    }

    #[test]
    fn a_clients_own_forwarded_prefix_is_replaced_or_dropped() {
        let mut headers = sent(&["/evil", "/worse"]);
        set_forwarded_prefix(
            &mut headers,
            told(None, &["", "/shop"]).map(|v| v.parse().unwrap()),
        );
        let seen: Vec<_> = headers.get_all(X_FORWARDED_PREFIX).iter().collect();
        assert_eq!(seen, ["/shop"]);
        set_forwarded_prefix(&mut headers, None);
        assert!(!headers.contains_key(X_FORWARDED_PREFIX));
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
