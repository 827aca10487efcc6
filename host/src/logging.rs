//! The host's log: tracing events to stderr, written by a thread of their
//! own so a request never waits on a write, pretty or JSON by flag.
//!
//! Access lines (one per request, when the access log is on) take a
//! lighter path than tracing events: [`access`] formats each straight into
//! a shared buffer, which goes to stderr when it fills (in whole lines, at
//! most one pipe-atomic 4 KiB at a time) and every 100 ms. Handing each
//! line to a writer thread cost a thread wake-up per request, and going
//! through tracing's dispatch a few percent of the host's CPU.

use std::io::{BufWriter, Stderr, Write as _};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

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
        general.json().boxed()
    } else {
        general.boxed()
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
    let _ = ACCESS_OUT.set(AccessOut {
        out: access.clone(),
        json,
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(general)
        .init();
    LogGuard {
        _worker: guard,
        access,
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
    out: Arc<Mutex<BufWriter<Stderr>>>,
    json: bool,
}

/// Writes one access line: a JSON object like the general log's JSON lines
/// (target `access`), or `SECONDS access: name=value ...`. Does nothing
/// before [`init`].
pub fn access(line: &AccessLine<'_>) {
    let Some(access) = ACCESS_OUT.get() else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut text = Vec::with_capacity(256);
    let json = access.json;
    let _ = if json {
        write!(
            text,
            "{{\"timestamp\":{}.{:03},\"level\":\"INFO\",\"target\":\"access\",\"fields\":{{",
            now.as_secs(),
            now.subsec_millis()
        )
    } else {
        write!(text, "{}.{:03} access:", now.as_secs(), now.subsec_millis())
    };
    let mut first = true;
    let mut name = |text: &mut Vec<u8>, name: &str| {
        let _ = match (json, first) {
            (true, true) => write!(text, "\"{name}\":"),
            (true, false) => write!(text, ",\"{name}\":"),
            (false, _) => write!(text, " {name}="),
        };
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
    let numbers = [
        ("status", Some(u64::from(line.status))),
        ("bytes", line.bytes),
        ("duration_us", Some(line.duration_us)),
    ];
    for (field, value) in numbers.into_iter().filter_map(|(f, v)| Some((f, v?))) {
        name(&mut text, field);
        let _ = write!(text, "{value}");
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
