//! The access log: one structured line per request, when the host config
//! turns it on for every component or a component's own settings do.

use crate::logging::AccessLine;
use crate::router::Target;

use super::stage::{Exchange, Response, Routed, Stage};

/// Writes the request's line.
pub struct AccessLog;

impl Stage for AccessLog {
    fn before(_: &mut Exchange<'_>) -> Result<Self, Response> {
        Ok(AccessLog)
    }

    fn after(self, x: &mut Exchange<'_>, response: &mut Response) {
        let target = match &x.routed {
            Some(Routed::Found { target, .. }) => Some(target),
            _ => None,
        };
        let owner = target.map(Target::owner);
        if !x.host.access_log && !owner.is_some_and(|o| o.middleware().access_log) {
            return;
        }
        let route = match target {
            Some(Target::App {
                component, route, ..
            }) => Some(component.route_path(*route)),
            _ => None,
        };
        crate::logging::access(&AccessLine {
            method: x.parts.method.as_str(),
            path: x.parts.uri.path(),
            status: response.status().as_u16(),
            bytes: hyper::body::Body::size_hint(response.body()).exact(),
            duration_us: x.started.elapsed().as_micros() as u64,
            component: owner.map(|o| &*o.component),
            route: route.as_deref(),
            request_id: &x.request_id,
        });
    }
}
