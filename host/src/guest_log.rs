//! A guest's stdout and stderr as records of the host's log: one event a
//! line (target `guest`), with the component and the stream, so that in
//! JSON mode a guest's `print` or traceback is JSON like every other line.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

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
    kept: Option<GuestLogs>,
}

impl GuestOutput {
    /// `component`'s stdout, its lines also kept in `kept`.
    pub fn stdout(component: Arc<str>, kept: Option<GuestLogs>) -> Self {
        Self {
            component,
            stream: "stdout",
            kept,
        }
    }

    /// `component`'s stderr, its lines also kept in `kept`.
    pub fn stderr(component: Arc<str>, kept: Option<GuestLogs>) -> Self {
        Self {
            component,
            stream: "stderr",
            kept,
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            output: self.clone(),
            line: Vec::new(),
        })
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
        tracing::info!(
            target: "guest",
            component = &*self.output.component,
            stream = self.output.stream,
            "{line}"
        );
        if let Some(kept) = &self.output.kept {
            kept.push(GuestLine {
                component: self.output.component.to_string(),
                level: self.output.stream.into(),
                message: line.into(),
                request_id: None,
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

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.finish();
    }
}
