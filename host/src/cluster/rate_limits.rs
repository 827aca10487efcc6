//! Rate limits shared by every host of a cluster: the same limit,
//! counted once in Redis, whichever host a request reaches.
//!
//! A token bucket is GCRA (the algorithm governor runs on one host), a
//! sliding window a sorted set of request times; each is one Lua script,
//! so concurrent hosts cannot both take the last request. Redis' own clock
//! (`TIME`) times them, so hosts' clocks need not agree.
//!
//! Redis down: the host's own limiter decides, as without a cluster (a
//! limit is then per host), each such decision counted in
//! `cello_rate_limit_fallbacks_total`; [`Redis`] logs the outage once.

use std::sync::Arc;

use redis::Script;

use crate::cluster::redis::{Redis, RedisFailure};
use crate::middleware::rate_limit::{CallerKey, Limiter, Verdict};

/// GCRA. KEYS: the counter. ARGV: emission interval (µs), burst.
/// Returns {allowed, remaining, reset µs}: the reset is the wait before a
/// request is allowed (refused), or until the bucket is full (allowed).
const BUCKET: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat + interval - burst * interval
if now < allow_at then
  return {0, 0, allow_at - now}
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
local remaining = math.floor((now - (next_tat - burst * interval)) / interval)
return {1, remaining, next_tat - now}
"#;

/// Sliding window. KEYS: the sorted set of request times. ARGV: window
/// (µs), capacity, a token unique to the request. Returns as [`BUCKET`].
const WINDOW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < capacity then
  redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reset = window
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
return {allowed, capacity - count, reset}
"#;

/// The cluster's rate-limit counters.
pub struct SharedLimits {
    redis: Arc<Redis>,
    bucket: Script,
    window: Script,
}

impl SharedLimits {
    /// Counters kept in `redis`.
    pub fn new(redis: Arc<Redis>) -> Self {
        Self {
            redis,
            bucket: Script::new(BUCKET),
            window: Script::new(WINDOW),
        }
    }

    /// Counts one request against `limiter` for the caller counted by
    /// `key`, in `scope` (the component, and the route for a route's own
    /// limit): in Redis, or, when Redis fails, on this host.
    pub async fn check(&self, scope: &str, limiter: &Limiter, key: CallerKey) -> Verdict {
        let counter = &format!("cello:rl:{{{scope}}}:{}", limiter.shared_key(&key));
        let period_us = u64::try_from(limiter.period().as_micros()).unwrap_or(u64::MAX);
        let capacity = limiter.capacity();
        let counted: Result<(i64, i64, i64), RedisFailure> = self
            .redis
            .call(|mut c| async move {
                if limiter.is_window() {
                    let token: u64 = rand_token();
                    self.window
                        .key(counter)
                        .arg(period_us)
                        .arg(capacity)
                        .arg(token)
                        .invoke_async(&mut c)
                        .await
                } else {
                    let interval = (period_us / u64::from(capacity)).max(1);
                    self.bucket
                        .key(counter)
                        .arg(interval)
                        .arg(capacity)
                        .invoke_async(&mut c)
                        .await
                }
            })
            .await;
        match counted {
            Ok((allowed, remaining, reset_us)) => {
                let reset_s = (reset_us.max(0) as u64).div_ceil(1_000_000);
                let remaining = u32::try_from(remaining.max(0)).unwrap_or(u32::MAX);
                limiter.verdict(allowed == 1, remaining, reset_s)
            }
            Err(failure) => {
                if let RedisFailure::Refused(_) = failure {
                    tracing::error!("shared rate limit: {failure}; counting on this host");
                }
                crate::metrics::rate_limit_fallback();
                limiter.check_key(key)
            }
        }
    }
}

/// A number unlikely to repeat, to tell apart two requests counted in
/// the same microsecond.
fn rand_token() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap_or_default();
    u64::from_le_bytes(bytes)
}
