//! The host's log: tracing events to stderr, written by a thread of their
//! own so a request never waits on a write, pretty or JSON by flag.
//!
//! Access log events (target `access`, one per request) take a lighter
//! path: a layer that writes each as one line straight from its fields into
//! a shared buffer, which goes to stderr when it fills (in whole lines, at
//! most one pipe-atomic 4 KiB at a time) and every 100 ms. Handing each
//! line to a writer thread cost a thread wake-up per request, more than
//! the rest of the middleware chain together.

use std::fmt::Write as _;
use std::io::{BufWriter, Stderr, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The target of access log events.
pub const ACCESS: &str = "access";

/// Keeps the log's writers alive; dropping it writes what is buffered.
pub struct LogGuard {
    _worker: WorkerGuard,
    access: Arc<Mutex<BufWriter<Stderr>>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let _ = self.access.lock().map(|mut out| out.flush());
    }
}

/// How often buffered access lines are written when traffic is light.
const ACCESS_FLUSH: Duration = Duration::from_millis(100);

/// Installs the log for the whole process; keep the guard until exit so
/// every line is written.
pub fn init(json: bool) -> LogGuard {
    let filter = EnvFilter::try_from_env("CELLO_LOG")
        .unwrap_or_else(|_| "info,cranelift=warn,wasmtime=warn".into());
    // Buffered: the writer thread writes whatever lines are queued in one
    // go, and flushes whenever the queue runs dry. No line is dropped.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let general = tracing_subscriber::fmt::layer().with_writer(writer);
    let general = if json {
        general.json().with_filter(NotAccess).boxed()
    } else {
        general.with_filter(NotAccess).boxed()
    };
    let access = Arc::new(Mutex::new(BufWriter::with_capacity(
        4096,
        std::io::stderr(),
    )));
    let flushed = Arc::downgrade(&access);
    std::thread::spawn(move || {
        while let Some(out) = flushed.upgrade() {
            let _ = out.lock().map(|mut out| out.flush());
            drop(out);
            std::thread::sleep(ACCESS_FLUSH);
        }
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(general)
        .with(AccessLog {
            out: access.clone(),
            json,
        })
        .init();
    LogGuard {
        _worker: guard,
        access,
    }
}

/// Everything but access log events.
struct NotAccess;

impl<S> Filter<S> for NotAccess {
    fn enabled(&self, meta: &tracing::Metadata<'_>, _: &Context<'_, S>) -> bool {
        meta.target() != ACCESS
    }
}

/// Writes access log events as one line each.
struct AccessLog {
    out: Arc<Mutex<BufWriter<Stderr>>>,
    json: bool,
}

impl<S: Subscriber> Layer<S> for AccessLog {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != ACCESS {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = Line {
            text: String::with_capacity(256),
            json: self.json,
        };
        if self.json {
            let _ = write!(
                line.text,
                "{{\"timestamp\":{}.{:03},\"level\":\"INFO\",\"target\":\"access\",\"fields\":{{",
                now.as_secs(),
                now.subsec_millis()
            );
        } else {
            let _ = write!(
                line.text,
                "{}.{:03} access:",
                now.as_secs(),
                now.subsec_millis()
            );
        }
        event.record(&mut line);
        line.text.push_str(if self.json { "}}\n" } else { "\n" });
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(line.text.as_bytes());
        }
    }
}

/// One line being written, field by field.
struct Line {
    text: String,
    json: bool,
}

impl Line {
    fn name(&mut self, field: &Field) {
        if self.json {
            if !self.text.ends_with('{') {
                self.text.push(',');
            }
            let _ = write!(self.text, "\"{}\":", field.name());
        } else {
            let _ = write!(self.text, " {}=", field.name());
        }
    }
}

impl Visit for Line {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        let _ = write!(self.text, "{value}");
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        let _ = write!(self.text, "{value}");
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        if self.json {
            // serde_json escapes exactly as JSON needs.
            let _ = write!(
                self.text,
                "{}",
                serde_json::Value::String(value.to_string())
            );
        } else {
            let _ = write!(self.text, "{value:?}");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}
