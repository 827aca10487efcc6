//! The access log: one structured line per request, when the host config
//! turns it on for every component or a component's own settings do.
//!
//! A response whose length is known is logged as it leaves the pipeline. A
//! streamed one (a wasi:http component's, a `StreamingResponse`, SSE) is
//! logged when its body ends, or is cut: with the bytes sent and the time
//! until then.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Frame, SizeHint};

use crate::body::{Body, BoxError};
use crate::logging::AccessLine;
use crate::router::Target;

use super::stage::{Exchange, Response, Routed, Stage};

/// Writes the request's line.
pub struct AccessLog;

impl Stage for AccessLog {
    fn before(_: &mut Exchange) -> Result<Self, Response> {
        Ok(AccessLog)
    }

    fn after(self, x: &mut Exchange, response: &mut Response) {
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
        let line = AccessLine {
            method: x.parts.method.as_str(),
            path: x.parts.uri.path(),
            status: response.status().as_u16(),
            bytes: response.body().size_hint().exact(),
            duration_us: x.started.elapsed().as_micros() as u64,
            component: owner.map(|o| &*o.component),
            route: route.as_deref(),
            request_id: &x.request_id,
        };
        if line.bytes.is_some() {
            return crate::logging::access(&line);
        }
        let pending = Pending {
            method: line.method.into(),
            path: line.path.into(),
            status: line.status,
            component: owner.map(|o| o.component.clone()),
            route,
            request_id: x.request_id.clone(),
            started: x.started,
        };
        let body = std::mem::replace(response.body_mut(), crate::body::full(Bytes::new()));
        *response.body_mut() = Logged {
            body,
            sent: 0,
            pending: Some(pending),
        }
        .boxed_unsync();
    }
}

/// The line of a streamed response, written when its body ends.
struct Pending {
    method: String,
    path: String,
    status: u16,
    component: Option<Arc<str>>,
    route: Option<Arc<str>>,
    request_id: Arc<str>,
    started: Instant,
}

impl Pending {
    fn write(&self, sent: u64) {
        crate::logging::access(&AccessLine {
            method: &self.method,
            path: &self.path,
            status: self.status,
            bytes: Some(sent),
            duration_us: self.started.elapsed().as_micros() as u64,
            component: self.component.as_deref(),
            route: self.route.as_deref(),
            request_id: &self.request_id,
        });
    }
}

/// A streamed body that counts what it sends and writes its access line
/// when it ends, fails, or is dropped (the client left).
struct Logged {
    body: Body,
    sent: u64,
    pending: Option<Pending>,
}

impl Logged {
    fn finish(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.write(self.sent);
        }
    }
}

impl hyper::body::Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
            }
            Poll::Ready(_) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.finish();
    }
}
