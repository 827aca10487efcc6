//! Auth, as the component's `[auth]` table sets it: a bearer token is
//! verified when the component requires one, when the route declares roles
//! or scopes, or whenever one is sent (its claims go to the guest); then
//! the route's roles and scopes are checked. 401 or 403 before the guest
//! runs.

use crate::middleware::auth::{Denied, authorize};
use crate::router::Target;
use crate::telemetry;

use super::stage::{Exchange, Response, Routed, Stage};

/// Sets [`Exchange::claims`], or answers 401 or 403.
pub struct Auth;

impl Stage for Auth {
    fn before(x: &mut Exchange) -> Result<Self, Response> {
        let Some(Routed::Found { target, .. }) = &x.routed else {
            return Ok(Auth);
        };
        let _span = telemetry::stage("auth").entered();
        let auth = target.owner().middleware().auth.as_ref();
        let guard = match target {
            Target::App {
                component, route, ..
            } => component.guard(*route),
            Target::Proxy(_) => None,
        };
        let token = x.header(http::header::AUTHORIZATION);
        let needs_token = auth.is_some_and(|a| a.required) || guard.is_some_and(|g| g.needs_auth());
        let verified = match auth {
            Some(auth) if needs_token || token.is_some() => {
                Some(auth.verify(token).map_err(Denied::response)?)
            }
            None if needs_token => {
                let why = "this route requires a token, but its component has no [auth] configured";
                return Err(Denied::Unauthenticated(why.into()).response());
            }
            _ => None,
        };
        if let (Some(guard), Some(verified)) = (guard, &verified) {
            authorize(&verified.claims, &guard.roles, &guard.scopes).map_err(Denied::response)?;
        }
        x.claims = verified;
        Ok(Auth)
    }

    fn after(self, _: &mut Exchange, _: &mut Response) {}
}
