//! The host's log: tracing events and access lines, pretty or JSON by
//! flag, to stderr. In JSON mode every line is one JSON object, and every
//! timestamp is RFC 3339 (UTC, microseconds); colours only go to a
//! terminal.
//!
//! Every line is formatted by the thread that logs it into one shared
//! 64 KiB buffer, which goes to stderr when it fills and every 100 ms: a
//! request never waits on a write, writes are few and large, and one writer
//! means lines never interleave. Access lines (one per request, when the
//! access log is on) skip tracing altogether: [`access`] formats each
//! straight from the request's fields, which costs a fraction of an event.

use std::io::{BufWriter, IsTerminal as _, Stderr, Write as _};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer as TimeWriter;
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the log's buffer alive; dropping it writes what is buffered.
pub struct LogGuard {
    out: Shared,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let _ = self.out.lock().map(|mut out| out.flush());
    }
}

/// The buffer every line goes through.
type Shared = Arc<Mutex<BufWriter<Stderr>>>;

/// How often buffered lines are written when traffic is light.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How much is buffered before a write.
const BUFFER: usize = 64 << 10;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// For people: one line per event, coloured on a terminal.
    Pretty,
    /// For machines: one JSON object per line.
    Json,
}

/// Installs the log for the whole process, and with a `tracer` the layer
/// that exports the spans of [`crate::telemetry`]; keep the guard until
/// exit so every line is written.
pub fn init(format: LogFormat, tracer: Option<opentelemetry_sdk::trace::Tracer>) -> LogGuard {
    let json = format == LogFormat::Json;
    let filter = EnvFilter::try_from_env("CELLO_LOG")
        .unwrap_or_else(|_| "info,cranelift=warn,wasmtime=warn".into())
        // Spans made for traces are not the log's.
        .add_directive(
            format!("{}=off", crate::telemetry::TARGET)
                .parse()
                .expect("a valid directive"),
        );
    let out: Shared = Arc::new(Mutex::new(BufWriter::with_capacity(
        BUFFER,
        std::io::stderr(),
    )));
    let flushed = Arc::downgrade(&out);
    std::thread::spawn(move || {
        while let Some(out) = flushed.upgrade() {
            let _ = out.lock().map(|mut out| out.flush());
            drop(out);
            std::thread::sleep(FLUSH_EVERY);
        }
    });
    let writer = Writer {
        out: out.clone(),
        json,
    };
    // Colour codes are noise in a file or a log collector; NO_COLOR turns
    // them off on a terminal too.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let general = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let general = if json {
        general.json().boxed()
    } else {
        general.boxed()
    };
    let _ = ACCESS_OUT.set(AccessOut {
        out: out.clone(),
        json,
    });
    let traces = tracer.map(|tracer| {
        let spans = tracing_subscriber::filter::Targets::new()
            .with_target(crate::telemetry::TARGET, tracing::Level::TRACE);
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(spans)
    });
    tracing_subscriber::registry()
        .with(general.with_filter(filter))
        .with(traces)
        .init();
    LogGuard { out }
}

/// Hands tracing's formatter the shared buffer, a whole line at a time.
#[derive(Clone)]
struct Writer {
    out: Shared,
    json: bool,
}

/// One line being formatted; it joins the buffer whole when dropped.
struct LineWriter {
    out: Shared,
    line: Vec<u8>,
    json: bool,
}

impl std::io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.json {
            continuation_indented(&mut self.line);
        }
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(&self.line);
        }
    }
}

/// A pretty event's lines after its first indented (and a carriage return
/// shown as `\r`), so that only an event starts a line at its first column:
/// a message (a guest's, say) cannot pass a line of its own off as the
/// host's. JSON escapes both already.
fn continuation_indented(line: &mut Vec<u8>) {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    if !body.iter().any(|&b| b == b'\n' || b == b'\r') {
        return;
    }
    let mut out = Vec::with_capacity(line.len() + 64);
    for &byte in body {
        match byte {
            b'\n' => out.extend_from_slice(b"\n    "),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(byte),
        }
    }
    out.push(b'\n');
    *line = out;
}

impl<'a> MakeWriter<'a> for Writer {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            out: self.out.clone(),
            line: Vec::with_capacity(256),
            json: self.json,
        }
    }
}

/// One request, as the access log records it.
pub struct AccessLine<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// The body's length, when known up front.
    pub bytes: Option<u64>,
    pub duration_us: u64,
    pub component: Option<&'a str>,
    pub route: Option<&'a str>,
    pub request_id: &'a str,
}

/// Where access lines go, once [`init`] has run.
static ACCESS_OUT: OnceLock<AccessOut> = OnceLock::new();

struct AccessOut {
    out: Shared,
    json: bool,
}

/// Says one thing the operator reads at start (an address listened on, a
/// route): a plain line on stdout, or in JSON mode an event of the log,
/// so that every line is JSON.
pub fn announce(text: &str) {
    match ACCESS_OUT.get() {
        Some(out) if out.json => tracing::info!(target: "cello_host", "{}", text.trim_start()),
        _ => println!("{text}"),
    }
}

/// Writes one access line: a JSON object like the general log's JSON lines
/// (target `access`), or `TIMESTAMP  INFO access: name=value ...`, with the
/// general log's RFC 3339 timestamps. Does nothing
/// before [`init`]. Put together by hand rather than with `write!`: it runs
/// for every request.
pub fn access(line: &AccessLine<'_>) {
    let Some(access) = ACCESS_OUT.get() else {
        return;
    };
    let json = access.json;
    let mut numbers = itoa::Buffer::new();
    let mut text = Vec::with_capacity(256);
    let mut timestamp = String::with_capacity(32);
    let _ = SystemTime.format_time(&mut TimeWriter::new(&mut timestamp));
    if json {
        text.extend_from_slice(b"{\"timestamp\":\"");
        text.extend_from_slice(timestamp.as_bytes());
        text.extend_from_slice(b"\",\"level\":\"INFO\",\"target\":\"access\",\"fields\":{");
    } else {
        text.extend_from_slice(timestamp.as_bytes());
        text.extend_from_slice(b"  INFO access:");
    }
    let mut first = true;
    let mut name = |text: &mut Vec<u8>, name: &str| {
        match (json, first) {
            (true, true) => text.push(b'"'),
            (true, false) => text.extend_from_slice(b",\""),
            (false, _) => text.push(b' '),
        }
        text.extend_from_slice(name.as_bytes());
        text.extend_from_slice(if json { b"\":" } else { b"=" });
        first = false;
    };
    let string = |text: &mut Vec<u8>, value: &str| {
        if json {
            // serde_json escapes exactly as JSON needs.
            let _ = serde_json::to_writer(&mut *text, value);
        } else {
            let _ = write!(text, "{value:?}");
        }
    };
    let strings = [("method", Some(line.method)), ("path", Some(line.path))];
    for (field, value) in strings.into_iter().filter_map(|(f, v)| Some((f, v?))) {
        name(&mut text, field);
        string(&mut text, value);
    }
    let counts = [
        ("status", Some(u64::from(line.status))),
        ("bytes", line.bytes),
        ("duration_us", Some(line.duration_us)),
    ];
    for (field, value) in counts.into_iter().filter_map(|(f, v)| Some((f, v?))) {
        name(&mut text, field);
        text.extend_from_slice(numbers.format(value).as_bytes());
    }
    let labels = [
        ("component", line.component),
        ("route", line.route),
        ("request_id", Some(line.request_id)),
    ];
    for (field, value) in labels.into_iter().filter_map(|(f, v)| Some((f, v?))) {
        name(&mut text, field);
        string(&mut text, value);
    }
    text.extend_from_slice(if json { b"}}\n" } else { b"\n" });
    if let Ok(mut out) = access.out.lock() {
        let _ = out.write_all(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::continuation_indented;

    fn indented(text: &str) -> String {
        let mut line = text.as_bytes().to_vec();
        continuation_indented(&mut line);
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn a_pretty_events_later_lines_are_indented_so_none_passes_for_an_event() {
        assert_eq!(indented("INFO guest: one line\n"), "INFO guest: one line\n");
        let forged = "INFO guest: ok\n2026-12-03T00:00:00Z  INFO cello_host: admin token reset\n";
        assert_eq!(
            indented(forged),
            "INFO guest: ok\n    2026-12-03T00:00:00Z  INFO cello_host: admin token reset\n"
        );
        assert_eq!(indented("INFO a\rb\n"), "INFO a\\rb\n");
    }
}
