//! A guest's stdout and stderr as records of the host's log: one event a
//! line (target `guest`), with the component and the stream, so that in
//! JSON mode a guest's `print` or traceback is JSON like every other line.
//!
//! A line names the route and request of the call that wrote it, as
//! `cello:component/host` log lines do: [`CallsInFlight`] knows the calls
//! on an instance, and on an event loop, where several run at once,
//! wasmtime's task-group hook tells it which one runs.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime::component::{TaskGroupHook, TaskGroupId};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line kept whole; a longer one is logged in pieces of this size.
const MAX_LINE: usize = 16 << 10;

/// Guest log lines kept in memory as well as logged: what a test reads
/// (see [`crate::testing::TestHost`]). Shared by every component of a host
/// built to keep them.
#[derive(Clone, Default)]
pub struct GuestLogs(Arc<Mutex<Vec<GuestLine>>>);

/// One line a guest logged, or wrote to stdout or stderr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestLine {
    pub component: String,
    /// `trace` to `error` for a log call; `stdout` or `stderr` for output.
    pub level: String,
    pub message: String,
    /// The request the guest was serving, when known.
    pub request_id: Option<String>,
}

impl GuestLogs {
    /// Keeps `line`.
    pub fn push(&self, line: GuestLine) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }

    /// Every line kept so far, oldest first.
    pub fn lines(&self) -> Vec<GuestLine> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One of a guest's output streams.
#[derive(Clone)]
pub struct GuestOutput {
    component: Arc<str>,
    stream: &'static str,
    calls: Arc<CallsInFlight>,
    kept: Option<GuestLogs>,
}

impl GuestOutput {
    /// `component`'s stdout, on the instance running `calls`; its lines
    /// also kept in `kept`.
    pub fn stdout(component: Arc<str>, calls: Arc<CallsInFlight>, kept: Option<GuestLogs>) -> Self {
        Self {
            component,
            stream: "stdout",
            calls,
            kept,
        }
    }

    /// `component`'s stderr, on the instance running `calls`; its lines
    /// also kept in `kept`.
    pub fn stderr(component: Arc<str>, calls: Arc<CallsInFlight>, kept: Option<GuestLogs>) -> Self {
        Self {
            component,
            stream: "stderr",
            calls,
            kept,
        }
    }

    fn writer(&self) -> LineWriter {
        LineWriter {
            output: self.clone(),
            line: Vec::new(),
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    /// Written to in the guest's call, not from a task of its own as
    /// wasmtime's adapter does, so that a line is logged while the call
    /// that wrote it runs, and names it.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

/// Gathers bytes into lines and logs each whole line.
struct LineWriter {
    output: GuestOutput,
    line: Vec<u8>,
}

impl LineWriter {
    fn log(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        let (route, request_id) = self.output.calls.current().unzip();
        tracing::info!(
            target: "guest",
            component = &*self.output.component,
            stream = self.output.stream,
            route = route.as_deref(),
            request_id = request_id.as_deref(),
            "{line}"
        );
        if let Some(kept) = &self.output.kept {
            kept.push(GuestLine {
                component: self.output.component.to_string(),
                level: self.output.stream.into(),
                message: line.into(),
                request_id: request_id.as_deref().map(str::to_string),
            });
        }
    }

    /// Logs every whole line gathered, keeping the unfinished rest.
    fn log_lines(&mut self) {
        let mut start = 0;
        while let Some(end) = self.line[start..].iter().position(|&b| b == b'\n') {
            self.log(&self.line[start..start + end]);
            start += end + 1;
        }
        self.line.drain(..start);
        while self.line.len() >= MAX_LINE {
            self.log(&self.line[..MAX_LINE]);
            self.line.drain(..MAX_LINE);
        }
    }

    /// Logs what is left of an unfinished line.
    fn finish(&mut self) {
        if !self.line.is_empty() {
            let rest = std::mem::take(&mut self.line);
            self.log(&rest);
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.line.extend_from_slice(bytes);
        self.log_lines();
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.finish();
        Poll::Ready(Ok(()))
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.line.extend_from_slice(&bytes);
        self.log_lines();
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The calls in flight on one instance, and which of them runs now. Shared
/// by the instance's state, its output streams and its task-group hook.
#[derive(Default)]
pub struct CallsInFlight {
    calls: Mutex<Calls>,
    /// How many times the store has switched from one call's code to
    /// another's (or to none), as the hook reported.
    switches: AtomicU64,
}

#[derive(Default)]
struct Calls {
    calls: Vec<Call>,
    /// The task group whose code (the guest's, or a host call it made)
    /// runs now, as the hook last reported.
    running: Option<TaskGroupId>,
}

struct Call {
    route: Arc<str>,
    request_id: Arc<str>,
    /// Its task group, for a concurrent call, while the group lives.
    group: Option<TaskGroupId>,
    /// Its trace span (none when traces are off): the host calls its code
    /// makes are its children.
    span: tracing::Span,
}

impl CallsInFlight {
    /// Records that the call for `request_id` on `route` started.
    pub fn start(&self, route: &Arc<str>, request_id: Arc<str>) {
        self.calls.lock().unwrap().calls.push(Call {
            route: route.clone(),
            request_id,
            group: None,
            span: tracing::Span::none(),
        });
    }

    /// Records that a concurrent call started, running as task group
    /// `group` in trace span `span`.
    pub fn start_concurrent(
        &self,
        route: &Arc<str>,
        request_id: &str,
        group: TaskGroupId,
        span: tracing::Span,
    ) {
        self.calls.lock().unwrap().calls.push(Call {
            route: route.clone(),
            request_id: request_id.into(),
            group: Some(group),
            span,
        });
    }

    /// Records that the call for `request_id` ended.
    pub fn end(&self, request_id: &str) {
        let calls = &mut self.calls.lock().unwrap().calls;
        if let Some(i) = calls.iter().position(|c| &*c.request_id == request_id) {
            calls.swap_remove(i);
        }
    }

    /// Forgets every call.
    pub fn clear(&self) {
        self.calls.lock().unwrap().calls.clear();
    }

    /// The route and request id of the call running now: the one whose
    /// task group runs, or the only one in flight.
    pub fn current(&self) -> Option<(Arc<str>, Arc<str>)> {
        let calls = self.calls.lock().unwrap();
        let call = calls.running_call()?;
        Some((call.route.clone(), call.request_id.clone()))
    }

    /// The trace span of the call running now, for the host calls its code
    /// makes; none when it has none (a call on its own task already runs
    /// in its span).
    pub fn current_span(&self) -> tracing::Span {
        let calls = self.calls.lock().unwrap();
        calls
            .running_call()
            .map_or_else(tracing::Span::none, |call| call.span.clone())
    }

    /// How many times the store has switched from one call's code to
    /// another's so far: unchanged across a stretch of code, no other call
    /// ran in it.
    pub fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    /// The routes of the calls in flight, each once.
    pub fn routes(&self) -> Vec<Arc<str>> {
        let mut routes: Vec<Arc<str>> = self
            .calls
            .lock()
            .unwrap()
            .calls
            .iter()
            .map(|c| c.route.clone())
            .collect();
        routes.sort_unstable();
        routes.dedup();
        routes
    }
}

impl Calls {
    /// The call whose task group runs, or with no group running, the only
    /// call in flight. Code of a group no call has (a call abandoned past
    /// its deadline, still in the store) names none.
    fn running_call(&self) -> Option<&Call> {
        match (self.running, self.calls.as_slice()) {
            (Some(running), calls) => calls.iter().find(|c| c.group == Some(running)),
            (None, [call]) => Some(call),
            (None, _) => None,
        }
    }
}

/// The task-group hook of an event-loop instance: it tells the instance's
/// [`CallsInFlight`] which call's code runs.
pub struct RunningCall(pub Arc<CallsInFlight>);

impl TaskGroupHook for RunningCall {
    fn handle_start(&mut self, _: TaskGroupId) -> wasmtime::Result<()> {
        Ok(())
    }

    fn handle_enter(&mut self, group: TaskGroupId) -> wasmtime::Result<()> {
        self.0.switches.fetch_add(1, Ordering::Relaxed);
        self.0.calls.lock().unwrap().running = Some(group);
        Ok(())
    }

    fn handle_exit(&mut self, group: TaskGroupId) -> wasmtime::Result<()> {
        self.0.switches.fetch_add(1, Ordering::Relaxed);
        let mut calls = self.0.calls.lock().unwrap();
        if calls.running == Some(group) {
            calls.running = None;
        }
        Ok(())
    }

    /// wasmtime reuses a finished group's id: no call may keep it.
    fn handle_finish(&mut self, group: TaskGroupId) -> wasmtime::Result<()> {
        let mut calls = self.0.calls.lock().unwrap();
        for call in calls.calls.iter_mut().filter(|c| c.group == Some(group)) {
            call.group = None;
        }
        if calls.running == Some(group) {
            calls.running = None;
        }
        Ok(())
    }
}
