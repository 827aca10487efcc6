//! The host's connection to the cluster's Redis, and what it knows of
//! Redis' health.
//!
//! Every call has a short deadline: a host whose Redis is gone answers at
//! once with a sentence (KV), or falls back (rate limits), rather than
//! holding requests. After a failure the host stops asking for a while
//! (backing off from [`FIRST_RETRY`] to [`LAST_RETRY`]); the next call
//! after that is the probe that finds Redis back. redis-rs'
//! `ConnectionManager` reconnects under the calls. An outage is logged
//! once when it begins and once when it ends, and `/readyz` reports it.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, RedisResult};

use crate::readiness::Readiness;

/// Longest a call to Redis may take before the host gives up on it.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(1000);
/// The pause after a failure before the next call may try again.
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// The longest pause between tries during an outage.
const LAST_RETRY: Duration = Duration::from_secs(2);
/// What `/readyz` calls Redis while it is degraded.
const READINESS_NAME: &str = "redis";

/// The cluster's Redis, shared by everything on the host that uses it.
pub struct Redis {
    client: Client,
    connection: OnceLock<ConnectionManager>,
    health: Health,
}

/// Why a call to Redis failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisFailure {
    /// Redis cannot be reached (or is backed off after failing): an outage.
    Unreachable(String),
    /// Redis answered with an error: the command's fault, not an outage.
    Refused(String),
}

impl std::fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(why) => write!(f, "Redis is unreachable ({why})"),
            Self::Refused(why) => write!(f, "Redis refused the command ({why})"),
        }
    }
}

impl Redis {
    /// A handle on the Redis at `url`; nothing connects until the first
    /// call, so a host starts whether Redis is up or not. `ready` hears
    /// of outages.
    pub fn new(url: &str, ready: Arc<Readiness>) -> Result<Arc<Self>, String> {
        let client = Client::open(url)
            .map_err(|e| format!("[cluster] redis: {e}; write it as redis://HOST:PORT/DB"))?;
        Ok(Arc::new(Self {
            client,
            connection: OnceLock::new(),
            health: Health::new(ready),
        }))
    }

    /// The client, for connections of their own (a subscription).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether Redis answered the last call (or no call failed yet).
    pub fn is_up(&self) -> bool {
        self.health.state.lock().unwrap().down_since.is_none()
    }

    /// Runs `op` on the shared connection within [`CALL_TIMEOUT`]. An
    /// outage is noted (and the calls after it refused at once until the
    /// next retry is due); an error Redis answered is returned as it is.
    /// A connection found broken is tried once more, on the new one the
    /// manager makes: the first call after Redis restarts finds it so.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, RedisFailure>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if let Some(why) = self.health.backing_off() {
            return Err(RedisFailure::Unreachable(why));
        }
        let connection = self.connection()?;
        let attempts = async {
            match op(connection.clone()).await {
                Err(error) if is_outage(&error) => op(connection).await,
                done => done,
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, attempts).await {
            Ok(Ok(value)) => {
                self.health.up();
                Ok(value)
            }
            Ok(Err(error)) if !is_outage(&error) => {
                self.health.up();
                Err(RedisFailure::Refused(error.to_string()))
            }
            Ok(Err(error)) => Err(self.health.down(error.to_string())),
            Err(_) => Err(self
                .health
                .down(format!("no answer within {} ms", CALL_TIMEOUT.as_millis()))),
        }
    }

    /// The shared connection, made on first use (it needs the runtime).
    fn connection(&self) -> Result<ConnectionManager, RedisFailure> {
        if let Some(connection) = self.connection.get() {
            return Ok(connection.clone());
        }
        let connection = ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CALL_TIMEOUT))
                .set_response_timeout(Some(CALL_TIMEOUT))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(LAST_RETRY),
        )
        .map_err(|e| RedisFailure::Unreachable(e.to_string()))?;
        Ok(self.connection.get_or_init(|| connection).clone())
    }

    /// Notes that Redis answered (a subscription's ping, say).
    pub fn answered(&self) {
        self.health.up();
    }

    /// Notes that Redis failed to answer, for `why`.
    pub fn failed(&self, why: String) {
        self.health.down(why);
    }
}

/// Whether `error` means Redis is out of reach, rather than that it
/// refused the command.
fn is_outage(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
}

/// Outage bookkeeping: when it began, when to try again, and the one log
/// line at each end.
struct Health {
    ready: Arc<Readiness>,
    state: Mutex<HealthState>,
}

#[derive(Default)]
struct HealthState {
    down_since: Option<Instant>,
    retry_at: Option<Instant>,
    pause: Duration,
    why: String,
}

impl Health {
    fn new(ready: Arc<Readiness>) -> Self {
        Self {
            ready,
            state: Mutex::default(),
        }
    }

    /// Why a call must not try now, during an outage before its retry;
    /// `None` lets it try (and makes the calls after it wait for the next
    /// retry, so that one call probes).
    fn backing_off(&self) -> Option<String> {
        let mut state = self.state.lock().unwrap();
        let retry_at = state.retry_at?;
        let now = Instant::now();
        if now < retry_at {
            return Some(format!("{}; retrying shortly", state.why));
        }
        state.retry_at = Some(now + state.pause);
        None
    }

    fn up(&self) {
        let mut state = self.state.lock().unwrap();
        if let Some(since) = state.down_since.take() {
            *state = HealthState::default();
            drop(state);
            tracing::warn!(
                "Redis answers again after {:.1} s: key-value calls, shared rate limits and \
                 cache invalidations resume",
                since.elapsed().as_secs_f64()
            );
            self.ready.restored(READINESS_NAME);
        }
    }

    fn down(&self, why: String) -> RedisFailure {
        let mut state = self.state.lock().unwrap();
        let now = Instant::now();
        state.pause = (state.pause * 2).clamp(FIRST_RETRY, LAST_RETRY);
        state.retry_at = Some(now + state.pause);
        state.why = why.clone();
        if state.down_since.is_none() {
            state.down_since = Some(now);
            drop(state);
            tracing::warn!(
                "Redis is unreachable ({why}): key-value calls fail, rate limits count per \
                 host, and cached responses are dropped when it is back"
            );
            self.ready.degraded(
                READINESS_NAME,
                &format!(
                    "Redis is unreachable ({why}): key-value calls fail, rate limits are per \
                     host, cache invalidations from other hosts are missed"
                ),
            );
        }
        RedisFailure::Unreachable(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis() -> Arc<Redis> {
        // Nothing listens on port 1 of the loopback: connecting fails at once.
        Redis::new("redis://127.0.0.1:1/0", Arc::new(Readiness::default())).unwrap()
    }

    #[test]
    fn a_url_that_is_not_redis_is_refused_with_its_form() {
        let refused = Redis::new("http://example", Arc::new(Readiness::default()));
        let error = refused.err().unwrap();
        assert!(error.contains("redis://HOST:PORT/DB"), "{error}");
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_fast_and_backs_off() {
        let redis = redis();
        let ping = |c: ConnectionManager| async move {
            let mut c = c;
            redis::cmd("PING").query_async::<String>(&mut c).await
        };
        let first = redis.call(ping).await;
        assert!(
            matches!(first, Err(RedisFailure::Unreachable(_))),
            "{first:?}"
        );
        assert!(!redis.is_up());
        // Backing off: the next call does not try.
        let started = Instant::now();
        let second = redis.call(ping).await;
        assert!(
            matches!(second, Err(RedisFailure::Unreachable(ref why)) if why.contains("retrying"))
        );
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn an_outage_is_reported_to_readiness_until_redis_answers() {
        let ready = Arc::new(Readiness::default());
        let health = Health::new(ready.clone());
        health.down("connection refused".into());
        health.down("connection refused".into());
        let warnings = ready.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("Redis is unreachable"), "{warnings:?}");
        health.up();
        assert!(ready.warnings().is_empty());
    }

    #[test]
    fn the_pause_between_tries_doubles_up_to_its_ceiling() {
        let health = Health::new(Arc::new(Readiness::default()));
        let mut pauses = Vec::new();
        for _ in 0..6 {
            health.down("refused".into());
            pauses.push(health.state.lock().unwrap().pause);
        }
        assert_eq!(pauses[0], FIRST_RETRY);
        assert_eq!(pauses[1], FIRST_RETRY * 2);
        assert_eq!(*pauses.last().unwrap(), LAST_RETRY);
    }
}
