//! CORS, as the component's `[cors]` table (or the app's wish) sets it:
//! preflights are answered here, before auth (a browser sends them without
//! credentials), and every response that comes back gets the CORS headers,
//! refusals included, so a browser can read why it was refused.

use http_body_util::{BodyExt, Empty};

use crate::middleware::cors::Decided;

use super::stage::{Exchange, Response, Stage};

/// What the response gets, when the component has CORS.
pub struct Cors(Option<Decided>);

impl Stage for Cors {
    fn before(x: &mut Exchange) -> Result<Self, Response> {
        let Some(cors) = x.owner().and_then(|o| o.middleware().cors.as_ref()) else {
            return Ok(Cors(None));
        };
        match cors.before(&x.parts) {
            Ok(decided) => Ok(Cors(Some(decided))),
            Err(preflight) => {
                Err(preflight.map(|()| Empty::new().map_err(|never| match never {}).boxed_unsync()))
            }
        }
    }

    fn after(self, x: &mut Exchange, response: &mut Response) {
        if let Some(decided) = &self.0
            && let Some(cors) = x.owner().and_then(|o| o.middleware().cors.as_ref())
        {
            cors.after(decided, response.headers_mut());
        }
    }
}
