//! Rate limits, enforced before the guest runs: a token bucket (governor's
//! GCRA) or a sliding window, keyed by client address, JWT subject or
//! tenant. A refused request gets 429 with `Retry-After`; every limited
//! response carries `RateLimit-Limit`, `RateLimit-Remaining` and
//! `RateLimit-Reset`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use crate::bindings::cello::component::types::{RateLimitKey, RateLimitKind, RateLimitPolicy};

/// `[rate-limit]` in the host config or a sidecar.
///
/// ```toml
/// [rate-limit]
/// kind = "token-bucket"          # or "sliding-window"
/// key = "client-address"         # or "subject", "tenant"
/// capacity = 100                 # burst (bucket) or requests per window
/// period-s = 60                  # refill time of the whole bucket, or the window
/// trusted-proxies = ["10.0.0.1"] # X-Forwarded-For is believed only from these
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RateLimitSettings {
    #[serde(default = "RateLimitSettings::default_kind")]
    pub kind: String,
    #[serde(default = "RateLimitSettings::default_key")]
    pub key: String,
    pub capacity: u32,
    pub period_s: u32,
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
}

impl RateLimitSettings {
    fn default_kind() -> String {
        "token-bucket".into()
    }
    fn default_key() -> String {
        "client-address".into()
    }

    /// The policy, or a sentence naming the bad field.
    pub fn policy(&self) -> Result<RateLimitPolicy, String> {
        let kind = match self.kind.as_str() {
            "token-bucket" => RateLimitKind::TokenBucket,
            "sliding-window" => RateLimitKind::SlidingWindow,
            other => {
                return Err(format!(
                    "[rate-limit] kind: {other:?} is not token-bucket or sliding-window"
                ));
            }
        };
        let key = match self.key.as_str() {
            "client-address" => RateLimitKey::ClientAddress,
            "subject" => RateLimitKey::Subject,
            "tenant" => RateLimitKey::Tenant,
            other => {
                return Err(format!(
                    "[rate-limit] key: {other:?} is not client-address, subject or tenant"
                ));
            }
        };
        Ok(RateLimitPolicy {
            kind,
            key,
            capacity: self.capacity,
            period_seconds: self.period_s,
        })
    }
}

type Bucket = RateLimiter<
    CallerKey,
    DefaultKeyedStateStore<CallerKey>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// One limit, with the state of every key it has seen.
pub struct Limiter {
    key: RateLimitKey,
    capacity: u32,
    /// `capacity` as the `RateLimit-Limit` header, made once.
    limit_header: http::HeaderValue,
    period: Duration,
    counter: Counter,
}

enum Counter {
    Bucket(Bucket),
    Window(Mutex<HashMap<CallerKey, VecDeque<Instant>>>),
}

/// What a check found: the headers to send, and whether to refuse.
pub struct Verdict {
    pub allowed: bool,
    /// The `RateLimit-Limit` value.
    pub limit: http::HeaderValue,
    pub remaining: u32,
    /// Seconds until a request would be allowed (refused) or the budget is
    /// whole again (allowed).
    pub reset_s: u64,
}

impl Verdict {
    /// `RateLimit-*` (and, when refused, `Retry-After`) headers. Small
    /// numbers, such as seconds to a reset, come from a table made once.
    pub fn apply(&self, headers: &mut HeaderMap) {
        use http::{HeaderName, HeaderValue};
        const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
        const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
        const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
        static SMALL: std::sync::OnceLock<Vec<HeaderValue>> = std::sync::OnceLock::new();
        let small = SMALL.get_or_init(|| (0..128u64).map(HeaderValue::from).collect());
        headers.insert(LIMIT, self.limit.clone());
        let mut set = |name: HeaderName, value: u64| {
            let value = small
                .get(value as usize)
                .cloned()
                .unwrap_or_else(|| HeaderValue::from(value));
            headers.insert(name, value);
        };
        set(REMAINING, self.remaining.into());
        set(RESET, self.reset_s);
        if !self.allowed {
            set(http::header::RETRY_AFTER, self.reset_s.max(1));
        }
    }
}

impl Limiter {
    /// A limiter for `policy`; a zero capacity or period is refused.
    pub fn new(policy: &RateLimitPolicy) -> Result<Self, String> {
        let (Some(capacity), true) = (NonZeroU32::new(policy.capacity), policy.period_seconds > 0)
        else {
            return Err("a rate limit needs a positive capacity and period".into());
        };
        let period = Duration::from_secs(policy.period_seconds.into());
        let counter = match policy.kind {
            RateLimitKind::TokenBucket => {
                let every = period / capacity.get();
                let quota = Quota::with_period(every.max(Duration::from_nanos(1)))
                    .expect("a positive period")
                    .allow_burst(capacity);
                Counter::Bucket(RateLimiter::keyed(quota).with_middleware())
            }
            RateLimitKind::SlidingWindow => Counter::Window(Mutex::default()),
        };
        Ok(Self {
            key: policy.key,
            capacity: capacity.get(),
            limit_header: capacity.get().into(),
            period,
            counter,
        })
    }

    /// Counts one request from the caller described by the arguments.
    pub fn check(&self, caller: &Caller<'_>) -> Verdict {
        let key = caller.key(self.key);
        match &self.counter {
            Counter::Bucket(bucket) => match bucket.check_key(&key) {
                Ok(state) => Verdict {
                    allowed: true,
                    limit: self.limit_header.clone(),
                    remaining: state.remaining_burst_capacity(),
                    reset_s: state.quota().burst_size_replenished_in().as_secs(),
                },
                Err(not_until) => Verdict {
                    allowed: false,
                    limit: self.limit_header.clone(),
                    remaining: 0,
                    reset_s: not_until
                        .wait_time_from(DefaultClock::default().now())
                        .as_secs_f64()
                        .ceil() as u64,
                },
            },
            Counter::Window(windows) => {
                let now = Instant::now();
                let mut windows = windows.lock().unwrap();
                if windows.len() > 100_000 {
                    windows.retain(|_, hits| hits.back().is_some_and(|t| now - *t < self.period));
                }
                let hits = windows.entry(key).or_default();
                while hits.front().is_some_and(|t| now - *t >= self.period) {
                    hits.pop_front();
                }
                let allowed = hits.len() < self.capacity as usize;
                if allowed {
                    hits.push_back(now);
                }
                let oldest = hits.front().copied().unwrap_or(now);
                Verdict {
                    allowed,
                    limit: self.limit_header.clone(),
                    remaining: self.capacity - hits.len() as u32,
                    reset_s: (self.period - (now - oldest)).as_secs_f64().ceil() as u64,
                }
            }
        }
    }
}

/// What a limit counts by: a client address costs no allocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CallerKey {
    Address(IpAddr),
    Subject(Box<str>),
    Tenant(Box<str>),
}

/// Who is calling, for keying limits.
pub struct Caller<'a> {
    pub peer: SocketAddr,
    pub headers: &'a HeaderMap,
    pub claims: Option<&'a Value>,
    pub tenant: Option<&'a str>,
    pub trusted_proxies: &'a [IpAddr],
}

impl Caller<'_> {
    fn key(&self, key: RateLimitKey) -> CallerKey {
        match key {
            RateLimitKey::Subject => match self.claims.and_then(|c| c.get("sub")) {
                Some(Value::String(sub)) => CallerKey::Subject(sub.as_str().into()),
                _ => CallerKey::Address(self.client_ip()),
            },
            RateLimitKey::Tenant => CallerKey::Tenant(self.tenant.unwrap_or("-").into()),
            RateLimitKey::ClientAddress => CallerKey::Address(self.client_ip()),
        }
    }

    /// The peer's address, or, from a trusted proxy, the nearest address in
    /// `X-Forwarded-For` that is not one of them.
    fn client_ip(&self) -> IpAddr {
        let peer = self.peer.ip();
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        let forwarded = self
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !self.trusted_proxies.contains(ip))
            .unwrap_or(peer)
    }
}
