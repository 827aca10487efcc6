//! An in-memory host for native tests. The test client installs its own
//! around each request; outside one, a thread gets an empty one. Config
//! falls back to the environment (`api-url` reads `API_URL`), as the
//! Python SDK's does natively.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::host::Level;
use crate::outbound::{OutgoingRequest, Reply, SendError};

/// Answers outbound requests in native tests.
pub(crate) type OutboundStub = Rc<dyn Fn(OutgoingRequest) -> Result<Reply, SendError>>;

#[derive(Default)]
pub(crate) struct NativeHost {
    kv: RefCell<BTreeMap<String, Stored>>,
    pub(crate) config: RefCell<HashMap<String, String>>,
    pub(crate) secrets: RefCell<HashMap<String, String>>,
    pub(crate) outbound: RefCell<Option<OutboundStub>>,
    /// The SQL database, in memory, opened on first use.
    pub(crate) sql: RefCell<Option<rusqlite::Connection>>,
}

struct Stored {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Stored {
    fn live(&self) -> bool {
        self.expires.is_none_or(|at| Instant::now() < at)
    }
}

thread_local! {
    static CURRENT: RefCell<Rc<NativeHost>> = RefCell::new(Rc::default());
}

pub(crate) fn current() -> Rc<NativeHost> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Makes `host` the one this thread's calls reach until the guard drops.
pub(crate) fn enter(host: Rc<NativeHost>) -> Entered {
    Entered(CURRENT.with(|c| c.replace(host)))
}

/// Puts back the host that was current before [`enter`].
pub(crate) struct Entered(Rc<NativeHost>);

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.0.clone();
        CURRENT.with(|c| c.replace(previous));
    }
}

pub(crate) fn log(level: Level, message: &str) {
    eprintln!("{level:?}: {message}");
}

thread_local! {
    /// Set while the test client runs a sync route's handler, as the host's
    /// sync call would.
    static SYNC_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `call`, a sync route's handler, as the component runs it in the
/// host's sync call: what it awaits of the host blocks meanwhile (a sleep)
/// instead of suspending, so that a sync handler's extractor may sleep
/// natively as it may in a component.
pub(crate) fn in_sync_call<T>(call: impl FnOnce() -> T) -> T {
    let outer = SYNC_CALL.replace(true);
    let out = call();
    SYNC_CALL.set(outer);
    out
}

/// False in a sync route's call, as in the component's; else a native
/// test's stream can always wait.
pub(crate) fn can_suspend() -> bool {
    !SYNC_CALL.get()
}

/// Waits without blocking the thread, so that a test's stream can race a
/// timer (an SSE keep-alive) as it does in a component; in a sync route's
/// call, blocks the thread, as the component's sleep blocks its instance.
pub(crate) async fn sleep(ms: u32) {
    if SYNC_CALL.get() {
        std::thread::sleep(Duration::from_millis(ms.into()));
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(ms.into());
    let mut armed = false;
    std::future::poll_fn(|cx| {
        let now = Instant::now();
        if now >= deadline {
            return Poll::Ready(());
        }
        if !armed {
            armed = true;
            let waker = cx.waker().clone();
            std::thread::spawn(move || {
                std::thread::sleep(deadline - now);
                waker.wake();
            });
        }
        Poll::Pending
    })
    .await
}

/// A streaming call's request body, which only a component is handed:
/// natively a body is always whole.
pub(crate) enum BodyReader {}

impl BodyReader {
    pub(crate) async fn read(&self) -> Result<Option<Vec<u8>>, crate::body::BodyError> {
        match *self {}
    }
}

pub(crate) fn cache_invalidate(_tags: &[String]) -> u32 {
    0
}

pub(crate) fn kv_get(key: &str) -> Result<Option<Vec<u8>>, String> {
    let host = current();
    let kv = host.kv.borrow();
    Ok(kv.get(key).filter(|s| s.live()).map(|s| s.value.clone()))
}

pub(crate) fn kv_set(key: &str, value: &[u8], ttl_seconds: Option<u32>) -> Result<(), String> {
    let expires = ttl_seconds.map(|s| Instant::now() + Duration::from_secs(s.into()));
    let stored = Stored {
        value: value.to_vec(),
        expires,
    };
    current().kv.borrow_mut().insert(key.to_string(), stored);
    Ok(())
}

pub(crate) fn kv_delete(key: &str) -> Result<bool, String> {
    let removed = current().kv.borrow_mut().remove(key);
    Ok(removed.is_some_and(|s| s.live()))
}

pub(crate) fn kv_list_keys(prefix: &str) -> Result<Vec<String>, String> {
    let host = current();
    let kv = host.kv.borrow();
    Ok(kv
        .range(prefix.to_string()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .filter(|(_, s)| s.live())
        .map(|(k, _)| k.clone())
        .collect())
}

pub(crate) fn kv_increment(key: &str, delta: i64) -> Result<i64, String> {
    let current_value = match kv_get(key)? {
        Some(bytes) => String::from_utf8_lossy(&bytes)
            .parse::<i64>()
            .map_err(|_| format!("{key:?} does not hold an integer"))?,
        None => 0,
    };
    let next = current_value
        .checked_add(delta)
        .ok_or_else(|| format!("{key:?} would overflow a 64-bit integer"))?;
    kv_set(key, next.to_string().as_bytes(), None)?;
    Ok(next)
}

fn environment(name: &str) -> Option<String> {
    std::env::var(name.to_ascii_uppercase().replace('-', "_")).ok()
}

pub(crate) fn config_get(name: &str) -> Option<String> {
    let found = current().config.borrow().get(name).cloned();
    found.or_else(|| environment(name))
}

pub(crate) fn config_secret(name: &str) -> Option<String> {
    let found = current().secrets.borrow().get(name).cloned();
    found.or_else(|| environment(name))
}

pub(crate) async fn outbound_send(request: OutgoingRequest) -> Result<Reply, SendError> {
    let stub = current().outbound.borrow().clone();
    match stub {
        Some(stub) => stub(request),
        None => Err(SendError::Denied(format!(
            "{} {}: native tests send no outbound HTTP; stub it with TestClient::with_outbound",
            request.method, request.url
        ))),
    }
}
