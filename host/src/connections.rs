//! Connections, for every listener (traffic, ops, admin): how long a client
//! may take to send a request's headers or sit idle between requests, how
//! many connections the listener and one client address may hold open, and
//! how the accept loop rides out errors such as running out of file
//! descriptors, then drains open connections at shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::body::Body;
use crate::config::ServerSettings;

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Accepts connections on `listener` and answers each request with
/// `answer`, until `shutdown` resolves; then drains open connections.
pub async fn accept<F, Fut>(
    listener: TcpListener,
    settings: &ServerSettings,
    shutdown: impl Future<Output = ()>,
    answer: F,
) -> anyhow::Result<()>
where
    F: Fn(http::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<Body>> + Send + 'static,
{
    let header_timeout = Duration::from_secs(settings.header_timeout_s);
    let idle_timeout = Duration::from_secs(settings.idle_timeout_s);
    // No timer for HTTP/1: hyper's header-read timeout would box a sleep
    // and register it with the timer wheel on every request, and would close
    // a keep-alive connection at the header timeout, not the idle one. The
    // watcher below closes a connection that has no request before the
    // header timeout, or none after the idle timeout, for both protocols.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(idle_timeout);
    let open = OpenConnections::new(settings.max_connections, settings.max_connections_per_ip);
    // Every connection holds a receiver; shutdown sends, then waits until
    // they are all dropped.
    let (draining, drain) = tokio::sync::watch::channel(());
    let mut failures = AcceptFailures::default();
    let mut refusals = LogLimit::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    failures.backoff.reset();
                    pair
                }
                Err(e) => {
                    let pause = failures.failed(&e, Instant::now());
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match open.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(crowded) => {
                if let Some(suppressed) = refusals.allow(Instant::now()) {
                    tracing::warn!(%peer, "connection refused: {crowded}{}", also(suppressed));
                }
                // Closed at once: answering would cost what the cap saves.
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let answer = answer.clone();
        let requests = activity.clone();
        let service = service_fn(move |req| {
            let request = requests.start();
            // Not boxed here: `answer` boxes a large future itself (see
            // `crate::server`), before wrapping it.
            let response = answer(req, peer);
            async move {
                let response = response.await;
                drop(request);
                Ok::<_, Infallible>(response)
            }
        });
        let stream = Metered {
            stream,
            activity: activity.clone(),
        };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let mut drain = drain.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut connection = std::pin::pin!(connection);
            let idle = activity.until_idle(header_timeout, idle_timeout);
            let ended = tokio::select! {
                ended = connection.as_mut() => Some(ended),
                () = idle => {
                    if activity.started.load(Ordering::Relaxed) == 0 {
                        // No request within the header timeout: nothing is
                        // owed, and a half-sent head would hold a graceful
                        // close open.
                        tracing::debug!(%peer, "connection closed: no request in time");
                        return;
                    }
                    None
                }
                _ = drain.changed() => None,
            };
            // Idle or draining: finish what is in flight, then close; but a
            // client that stops reading the response, or never answers an
            // HTTP/2 GOAWAY, has the header timeout to move before it is cut.
            let ended = match ended {
                Some(ended) => ended,
                None => {
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        ended = connection.as_mut() => ended,
                        () = activity.until_stalled(header_timeout) => {
                            tracing::debug!(%peer, "connection closed: stalled while closing");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    drop(drain);
    let _ = draining.send(());
    if tokio::time::timeout(SHUTDOWN_GRACE, draining.closed())
        .await
        .is_err()
    {
        tracing::warn!("requests still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(())
}

/// ", and N more" for a log line that stood for others left out.
fn also(suppressed: u64) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(" (and {suppressed} more in the last second, not logged)")
    }
}

/// The connections one listener holds open, counted against its caps.
struct OpenConnections {
    max: usize,
    max_per_address: usize,
    total: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
enum Crowded {
    Listener(usize),
    Address(IpAddr, usize),
}

impl std::fmt::Display for Crowded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Listener(max) => write!(
                f,
                "{max} connections are open, the most [server] max-connections allows"
            ),
            Self::Address(address, max) => write!(
                f,
                "{address} holds {max} connections, the most [server] \
                 max-connections-per-ip allows"
            ),
        }
    }
}

/// A connection's place in the count, given back when it is dropped.
struct Admitted {
    open: Arc<OpenConnections>,
    address: IpAddr,
}

impl OpenConnections {
    fn new(max: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_address,
            total: AtomicUsize::new(0),
            per_address: Mutex::default(),
        })
    }

    /// Counts a connection from `peer`, or refuses it over a cap.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Crowded> {
        let address = client_address(peer);
        if self.total.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(Crowded::Listener(self.max));
        }
        let mut per_address = self.per_address.lock().unwrap();
        let held = per_address.entry(address).or_default();
        if *held >= self.max_per_address {
            drop(per_address);
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(Crowded::Address(address, self.max_per_address));
        }
        *held += 1;
        Ok(Admitted {
            open: self.clone(),
            address,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_address = self.open.per_address.lock().unwrap();
        if let Some(held) = per_address.get_mut(&self.address) {
            *held -= 1;
            if *held == 0 {
                per_address.remove(&self.address);
            }
        }
        drop(per_address);
        self.open.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The address a client is counted under: an IPv4 address, or an IPv6
/// /64, which one subscriber usually holds whole.
pub(crate) fn client_address(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
        v4 => v4,
    }
}

/// What a connection is doing: requests begun, requests not yet answered,
/// and writes to the socket. Atomics on the connection's own cache line,
/// touched by no other connection.
#[derive(Default)]
struct Activity {
    started: AtomicU64,
    in_flight: AtomicUsize,
    writes: AtomicU64,
}

/// A request being answered; dropped once its response is ready.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    fn start(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Resolves once the connection has had no request in flight and begun
    /// none for `idle`, or, before its first request, for `first`.
    async fn until_idle(&self, first: Duration, idle: Duration) {
        self.until_quiet(&self.started, first, idle).await
    }

    /// Resolves once the connection has had no request in flight and
    /// written nothing for `limit`: its client is not reading.
    async fn until_stalled(&self, limit: Duration) {
        self.until_quiet(&self.writes, limit, limit).await
    }

    async fn until_quiet(&self, counter: &AtomicU64, first: Duration, then: Duration) {
        let mut clock = IdleClock::new(first, then);
        loop {
            tokio::time::sleep(clock.tick()).await;
            let count = counter.load(Ordering::Relaxed);
            let busy = self.in_flight.load(Ordering::Relaxed) > 0;
            if clock.observe(count, busy) {
                return;
            }
        }
    }
}

/// A connection's socket, counting its writes for [`Activity`].
struct Metered {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl Metered {
    fn wrote(&self, written: &Poll<std::io::Result<usize>>) {
        if let Poll::Ready(Ok(1..)) = written {
            self.activity.writes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl AsyncRead for Metered {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.wrote(&written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// How long a connection has been quiet, looked at every quarter of its
/// shorter limit: it is closed between 1 and 1.25 limits after its last
/// request, with one timer per connection and no clock read per request.
struct IdleClock {
    first: Duration,
    idle: Duration,
    look: Duration,
    started: u64,
    quiet: Duration,
}

/// Looks per limit: the finer, the closer to the limit a connection closes.
const LOOKS_PER_LIMIT: u32 = 4;

impl IdleClock {
    fn new(first: Duration, idle: Duration) -> Self {
        Self {
            first,
            idle,
            // The shorter limit sets the pace: a connection that makes its
            // first request must not wait out a quarter of the first limit.
            look: first.min(idle) / LOOKS_PER_LIMIT,
            started: 0,
            quiet: Duration::ZERO,
        }
    }

    fn limit(&self) -> Duration {
        if self.started == 0 {
            self.first
        } else {
            self.idle
        }
    }

    /// How long to wait before the next look.
    fn tick(&self) -> Duration {
        self.look
    }

    /// Takes a look after a tick: true once the connection is idle.
    fn observe(&mut self, started: u64, busy: bool) -> bool {
        if busy || started != self.started {
            self.started = started;
            self.quiet = Duration::ZERO;
            return false;
        }
        self.quiet += self.tick();
        self.quiet >= self.limit()
    }
}

/// The accept loop's failures: how long to pause, and what to log.
#[derive(Default)]
struct AcceptFailures {
    backoff: Backoff,
    log: LogLimit,
}

impl AcceptFailures {
    /// Logs `error` (at most a line a second) and says how long to pause.
    /// A failure of one connection (the client went away) costs nothing;
    /// running out of a resource (file descriptors, memory) pauses the
    /// loop longer each time, so it does not spin while none comes back.
    fn failed(&mut self, error: &std::io::Error, now: Instant) -> Duration {
        use std::io::ErrorKind::*;
        let one_connection = matches!(
            error.kind(),
            ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
        );
        if one_connection {
            tracing::debug!("accept failed: {error}");
            return Duration::ZERO;
        }
        let pause = self.backoff.next();
        if let Some(suppressed) = self.log.allow(now) {
            tracing::warn!(
                "accept failed: {error}; pausing accepts for {pause:?}{}",
                also(suppressed)
            );
        }
        pause
    }
}

/// A pause that doubles with each failure in a row, up to a ceiling.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    fn next(&mut self) -> Duration {
        let pause = Self::FIRST.saturating_mul(1 << self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        pause.min(Self::MAX)
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// At most one log line a second; the lines in between are counted.
#[derive(Default)]
struct LogLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    const EVERY: Duration = Duration::from_secs(1);

    /// `Some(lines left out since the last one)` when a line may be
    /// written now.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < Self::EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_over_its_cap_is_refused_while_others_are_admitted() {
        let open = OpenConnections::new(100, 2);
        let first = open.admit(ip("10.0.0.1")).unwrap();
        let _second = open.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            open.admit(ip("10.0.0.1")).err(),
            Some(Crowded::Address(ip("10.0.0.1"), 2))
        );
        let _other = open.admit(ip("10.0.0.2")).unwrap();
        drop(first);
        assert!(open.admit(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn the_listener_over_its_cap_refuses_and_frees_a_place_when_one_closes() {
        let open = OpenConnections::new(2, 10);
        let first = open.admit(ip("10.0.0.1")).unwrap();
        let _second = open.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(open.admit(ip("10.0.0.3")).err(), Some(Crowded::Listener(2)));
        drop(first);
        let _third = open.admit(ip("10.0.0.3")).unwrap();
        assert_eq!(open.total.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn closed_connections_leave_no_entry_behind() {
        let open = OpenConnections::new(10, 10);
        drop(open.admit(ip("10.0.0.1")).unwrap());
        assert!(open.per_address.lock().unwrap().is_empty());
        assert_eq!(open.total.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            client_address(ip("2001:db8:1:2:aaaa::1")),
            client_address(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            client_address(ip("2001:db8:1:2::1")),
            client_address(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_address(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn a_connection_is_idle_after_its_limit_without_requests() {
        let second = Duration::from_secs(1);
        let mut clock = IdleClock::new(second, 4 * second);
        // Before the first request, the first (header) limit counts.
        assert_eq!(clock.tick(), second / 4);
        assert!(!clock.observe(0, false));
        assert!(!clock.observe(0, false));
        assert!(!clock.observe(0, false));
        assert!(clock.observe(0, false));

        let mut clock = IdleClock::new(second, 4 * second);
        assert!(!clock.observe(1, false));
        // After one, the idle limit, looked at as often as the shorter one.
        assert_eq!(clock.tick(), second / 4);
        for _ in 0..15 {
            assert!(!clock.observe(1, false));
        }
        assert!(clock.observe(1, false));
    }

    #[test]
    fn a_long_first_limit_does_not_slow_the_looks_at_a_short_idle_limit() {
        let mut clock = IdleClock::new(Duration::from_secs(60), Duration::from_secs(1));
        assert_eq!(clock.tick(), Duration::from_millis(250));
        assert!(!clock.observe(1, false));
        let looks = (0..).take_while(|_| !clock.observe(1, false)).count();
        assert_eq!(looks + 1, LOOKS_PER_LIMIT as usize);
    }

    #[test]
    fn a_request_in_flight_or_a_new_one_keeps_a_connection_open() {
        let mut clock = IdleClock::new(Duration::from_secs(1), Duration::from_secs(1));
        for _ in 0..10 {
            assert!(!clock.observe(1, true));
        }
        for started in 2..10 {
            assert!(!clock.observe(started, false));
        }
        let looks = (0..).take_while(|_| !clock.observe(9, false)).count();
        assert_eq!(looks + 1, LOOKS_PER_LIMIT as usize);
    }

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets_on_success() {
        let mut backoff = Backoff::default();
        let pauses: Vec<_> = (0..12).map(|_| backoff.next()).collect();
        assert_eq!(pauses[0], Duration::from_millis(5));
        assert_eq!(pauses[1], Duration::from_millis(10));
        assert_eq!(pauses[2], Duration::from_millis(20));
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(pauses[11], Backoff::MAX);
        backoff.reset();
        assert_eq!(backoff.next(), Duration::from_millis(5));
    }

    #[test]
    fn running_out_of_file_descriptors_pauses_and_a_client_hanging_up_does_not() {
        let mut failures = AcceptFailures::default();
        let now = Instant::now();
        let aborted = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert_eq!(failures.failed(&aborted, now), Duration::ZERO);
        // EMFILE: too many open files.
        let emfile = std::io::Error::from_raw_os_error(24);
        let first = failures.failed(&emfile, now);
        let second = failures.failed(&emfile, now);
        assert!(first > Duration::ZERO && second > first);
    }

    #[test]
    fn the_log_limit_writes_a_line_a_second_with_the_count_left_out() {
        let mut log = LogLimit::default();
        let start = Instant::now();
        assert_eq!(log.allow(start), Some(0));
        for ms in 1..=500 {
            assert_eq!(log.allow(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(log.allow(start + Duration::from_millis(1000)), Some(500));
        assert_eq!(log.allow(start + Duration::from_millis(1001)), None);
        assert_eq!(log.allow(start + Duration::from_millis(2500)), Some(1));
    }
}
