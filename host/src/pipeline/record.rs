//! Metrics: every response is counted, by status class and duration, for
//! the component that answered it (or as unrouted). A request whose client
//! went away first is counted as an abort when its exchange is dropped.

use crate::metrics::ComponentMetrics;

use super::stage::{Exchange, Response, Routed, Stage};

/// Counts the response.
pub struct Record;

impl Stage for Record {
    fn before(_: &mut Exchange) -> Result<Self, Response> {
        Ok(Record)
    }

    fn after(self, x: &mut Exchange, response: &mut Response) {
        let metrics = match &x.routed {
            Some(Routed::Found { target, .. }) => &target.owner().metrics,
            _ => ComponentMetrics::unrouted(),
        };
        metrics.answered(response.status().as_u16(), x.started.elapsed());
        x.answered = true;
    }
}
