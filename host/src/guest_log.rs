//! A guest's stdout and stderr as records of the host's log: one event a
//! line (target `guest`), with the component and the stream, so that in
//! JSON mode a guest's `print` or traceback is JSON like every other line.
//!
//! A line names the route and request of the call that wrote it, as
//! `cello:component/host` log lines do: [`CallsInFlight`] knows the calls
//! on an instance, and on an event loop, where several run at once,
//! wasmtime's task-group hook tells it which one runs.

use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::io::AsyncWrite;
use wasmtime::component::{TaskGroupHook, TaskGroupId};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Longest line kept whole; a longer one is logged in pieces of this size,
/// and a longer `log` message is cut to it.
pub const MAX_LINE: usize = 16 << 10;

/// What one component may log, in bytes a second (each line counting
/// [`LINE_COST`] more), and in a burst: ample for a line per request at
/// thousands of requests a second, while a guest that prints flat out
/// cannot fill the host's log for everyone.
const LOG_BYTES_PER_SECOND: u32 = 8 << 20;
const LOG_BURST_BYTES: u32 = 16 << 20;
const LINE_COST: usize = 64;

/// One component's log budget ([`LOG_BYTES_PER_SECOND`]), shared by its
/// instances, its output streams and its `log` calls. Lines over it are
/// dropped and counted; the next line let through says how many.
pub struct LogBudget {
    limiter: DefaultDirectRateLimiter,
    dropped: AtomicU64,
}

impl Default for LogBudget {
    fn default() -> Self {
        let rate = NonZeroU32::new(LOG_BYTES_PER_SECOND).expect("not zero");
        let burst = NonZeroU32::new(LOG_BURST_BYTES).expect("not zero");
        Self {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            dropped: AtomicU64::new(0),
        }
    }
}

/// Whether a line may be logged.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Log it; with `dropped`, the lines dropped before it.
    Yes { dropped: u64 },
    /// Drop it: the component is over its budget.
    No,
}

impl LogBudget {
    /// Takes a line of `len` bytes from the budget.
    pub fn admit(&self, len: usize) -> Admit {
        let cost = u32::try_from(len + LINE_COST).unwrap_or(u32::MAX);
        let cost = NonZeroU32::new(cost).expect("a line costs at least LINE_COST");
        match self.limiter.check_n(cost) {
            Ok(Ok(())) => Admit::Yes {
                dropped: self.dropped.swap(0, Ordering::Relaxed),
            },
            _ => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Admit::No
            }
        }
    }

    /// Takes a line of `len` bytes from the budget, saying so in the log
    /// for `component` when lines were dropped before it; false when this
    /// one must be dropped.
    pub fn take(&self, component: &str, len: usize) -> bool {
        match self.admit(len) {
            Admit::No => false,
            Admit::Yes { dropped: 0 } => true,
            Admit::Yes { dropped } => {
                tracing::warn!(
                    target: "guest",
                    component,
                    dropped,
                    "{dropped} log lines of the component were dropped: it logged more than \
                     {LOG_BYTES_PER_SECOND} bytes a second"
                );
                true
            }
        }
    }
}

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
    budget: Arc<LogBudget>,
}

impl GuestOutput {
    /// `component`'s `stream` (`stdout` or `stderr`), on the instance
    /// running `calls`, logged within `budget`; its lines also kept in
    /// `kept`.
    pub fn new(
        stream: &'static str,
        component: Arc<str>,
        calls: Arc<CallsInFlight>,
        kept: Option<GuestLogs>,
        budget: Arc<LogBudget>,
    ) -> Self {
        Self {
            component,
            stream,
            calls,
            kept,
            budget,
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
        if line.is_empty() || !self.output.budget.take(&self.output.component, line.len()) {
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

    /// Logs every whole line gathered, and the unfinished rest in pieces of
    /// [`MAX_LINE`], keeping less than that. One pass, and one move of what
    /// is kept: a guest's large write costs its length, not its square.
    fn log_lines(&mut self) {
        let mut start = 0;
        loop {
            let rest = &self.line[start..];
            match rest.iter().take(MAX_LINE).position(|&b| b == b'\n') {
                Some(end) => {
                    self.log(&rest[..end]);
                    start += end + 1;
                }
                None if rest.len() >= MAX_LINE => {
                    self.log(&rest[..MAX_LINE]);
                    start += MAX_LINE;
                }
                None => break,
            }
        }
        self.line.drain(..start);
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
        // At most a line's worth at a time: the caller writes the rest.
        let taken = &bytes[..bytes.len().min(MAX_LINE)];
        self.line.extend_from_slice(taken);
        self.log_lines();
        Poll::Ready(Ok(taken.len()))
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
        // WASI: a write larger than `check-write` allowed is the guest's
        // error (wasmtime's own streams trap on it too).
        if bytes.len() > MAX_LINE {
            return Err(StreamError::Trap(wasmtime::Error::msg(format!(
                "a write of {} bytes to the guest's output, more than the {MAX_LINE} \
                 check-write allowed",
                bytes.len()
            ))));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(budget: LogBudget) -> (LineWriter, GuestLogs) {
        let kept = GuestLogs::default();
        let output = GuestOutput::new(
            "stdout",
            "guest".into(),
            Arc::default(),
            Some(kept.clone()),
            Arc::new(budget),
        );
        (output.writer(), kept)
    }

    fn messages(kept: &GuestLogs) -> Vec<String> {
        kept.lines().into_iter().map(|line| line.message).collect()
    }

    #[test]
    fn lines_are_logged_whole_and_a_long_one_in_pieces() {
        let (mut out, kept) = writer(LogBudget::default());
        out.write(Bytes::from_static(b"one\ntw")).unwrap();
        out.write(Bytes::from_static(b"o\nthree")).unwrap();
        assert_eq!(messages(&kept), ["one", "two"]);
        let long = vec![b'x'; MAX_LINE];
        out.write(Bytes::from(long.clone())).unwrap();
        let lines = messages(&kept);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2].len(), MAX_LINE);
        assert!(lines[2].starts_with("threex"));
        drop(out);
        assert_eq!(messages(&kept)[3], "xxxxx");
    }

    #[test]
    fn a_write_past_check_write_traps_and_keeps_nothing() {
        let (mut out, kept) = writer(LogBudget::default());
        let allowed = out.check_write().unwrap();
        let error = out.write(Bytes::from(vec![b'x'; allowed + 1])).unwrap_err();
        assert!(matches!(error, StreamError::Trap(_)));
        drop(out);
        assert!(messages(&kept).is_empty());
    }

    #[test]
    fn an_async_write_takes_a_line_at_most() {
        let (mut out, kept) = writer(LogBudget::default());
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let big = vec![b'y'; 3 * MAX_LINE + 5];
        let Poll::Ready(Ok(taken)) = Pin::new(&mut out).poll_write(&mut cx, &big) else {
            panic!("a guest's output is always ready");
        };
        assert_eq!(taken, MAX_LINE);
        assert_eq!(messages(&kept).len(), 1);
    }

    #[test]
    fn lines_over_the_budget_are_dropped_and_counted() {
        let budget = LogBudget::default();
        let line = MAX_LINE;
        let fit = LOG_BURST_BYTES as usize / (line + LINE_COST);
        for _ in 0..fit {
            assert!(matches!(budget.admit(line), Admit::Yes { dropped: 0 }));
        }
        assert_eq!(budget.admit(line), Admit::No);
        assert_eq!(budget.admit(line), Admit::No);
        // A second brings the bytes of a second back.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(budget.admit(line), Admit::Yes { dropped: 2 });
        assert!(matches!(budget.admit(10), Admit::Yes { dropped: 0 }));
    }
}
