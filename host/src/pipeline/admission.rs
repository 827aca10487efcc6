//! Admission: until the served components have loaded, every request is
//! answered 503 with `Retry-After`, so an orchestrator or a client waits
//! rather than reading 404s from a host that is still starting.

use crate::error::unavailable;

use super::stage::{Exchange, Response, Stage};

/// Answers 503 until the host is ready.
pub struct Admission;

impl Stage for Admission {
    fn before(x: &mut Exchange) -> Result<Self, Response> {
        if x.host.ready.started() {
            Ok(Admission)
        } else {
            Err(starting())
        }
    }

    fn after(self, _: &mut Exchange, _: &mut Response) {}
}

/// The answer while the served components are still loading.
fn starting() -> Response {
    unavailable("The host is starting: its components are still loading; try again shortly.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests::{Fixture, detail};
    use http::{StatusCode, header};

    #[tokio::test]
    async fn a_request_before_the_components_have_loaded_is_answered_503() {
        let fixture = Fixture::new();
        let mut exchange = fixture.exchange(http::Request::get("/").body(()).unwrap());
        let Err(response) = Admission::before(&mut exchange) else {
            panic!("admitted before the host started");
        };
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert!(detail(response).await.starts_with("The host is starting"));
    }

    #[test]
    fn once_started_every_request_goes_on() {
        let fixture = Fixture::new();
        fixture.host.ready.set_started();
        let mut exchange = fixture.exchange(http::Request::get("/").body(()).unwrap());
        assert!(Admission::before(&mut exchange).is_ok());
    }
}
