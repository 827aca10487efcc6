//! Rate limits, enforced before the guest runs: a token bucket (governor's
//! GCRA) or a sliding window, keyed by client address, JWT subject or
//! tenant. A refused request gets 429 with `Retry-After`; every limited
//! response carries `RateLimit-Limit`, `RateLimit-Remaining` and
//! `RateLimit-Reset`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
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
    /// Requests checked, for pruning a bucket's keys now and then.
    checks: AtomicU32,
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

/// The longest period a limit may count over, and the most requests a
/// sliding window may allow in one: it keeps an instant per request it
/// allowed (a bucket keeps one number per caller, whatever its capacity).
pub const MAX_PERIOD_S: u32 = 86_400;
pub const MAX_CAPACITY: u32 = 100_000;
/// Callers a limit keeps counts for on this host. Past it, the counts
/// that ran out are dropped, and a window then forgets the callers that
/// used least of their budget (a flood of callers would otherwise grow the
/// host's memory without end).
const MAX_KEYS: usize = 100_000;

impl Limiter {
    /// A limiter for `policy`; a zero capacity or period is refused, and so
    /// is a period past [`MAX_PERIOD_S`] or a window past [`MAX_CAPACITY`].
    pub fn new(policy: &RateLimitPolicy) -> Result<Self, String> {
        let (Some(capacity), true) = (NonZeroU32::new(policy.capacity), policy.period_seconds > 0)
        else {
            return Err("a rate limit needs a positive capacity and period".into());
        };
        if policy.period_seconds > MAX_PERIOD_S {
            return Err(format!(
                "a rate limit counts over at most {MAX_PERIOD_S} seconds"
            ));
        }
        if policy.kind == RateLimitKind::SlidingWindow && capacity.get() > MAX_CAPACITY {
            return Err(format!(
                "a sliding window allows at most {MAX_CAPACITY} requests"
            ));
        }
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
            checks: AtomicU32::new(0),
        })
    }

    /// A tenant's requests-per-second quota: a token bucket with a burst
    /// of one second's requests, counted per tenant; none for 0 (no quota).
    pub fn tenant_quota(requests_per_second: u32) -> Option<Self> {
        let policy = RateLimitPolicy {
            kind: RateLimitKind::TokenBucket,
            key: RateLimitKey::Tenant,
            capacity: requests_per_second,
            period_seconds: 1,
        };
        Self::new(&policy).ok()
    }

    /// Counts one request from the caller described by the arguments.
    pub fn check(&self, caller: &Caller<'_>) -> Verdict {
        self.check_key(self.caller_key(caller))
    }

    /// What this limit counts `caller` by.
    pub fn caller_key(&self, caller: &Caller<'_>) -> CallerKey {
        caller.key(self.key)
    }

    /// The limit as a counter shared by a cluster counts it: the kind,
    /// capacity and period (a changed policy starts a new count), and
    /// the caller's key.
    pub fn shared_key(&self, key: &CallerKey) -> String {
        let kind = match self.counter {
            Counter::Bucket(_) => "bucket",
            Counter::Window(_) => "window",
        };
        let caller = match key {
            CallerKey::Address(ip) => format!("address:{ip}"),
            CallerKey::Subject(subject) => format!("subject:{subject}"),
            CallerKey::Tenant(tenant) => format!("tenant:{tenant}"),
        };
        let period = self.period.as_millis();
        format!("{kind}:{}/{period}ms:{caller}", self.capacity)
    }

    /// Whether this limit is a sliding window (else a token bucket).
    pub fn is_window(&self) -> bool {
        matches!(self.counter, Counter::Window(_))
    }

    /// Requests allowed per period (the burst of a bucket).
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The period over which `capacity` requests are allowed.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// A verdict counted elsewhere (by the cluster's shared counter).
    pub fn verdict(&self, allowed: bool, remaining: u32, reset_s: u64) -> Verdict {
        Verdict {
            allowed,
            limit: self.limit_header.clone(),
            remaining: remaining.min(self.capacity),
            reset_s,
        }
    }

    /// `bucket`, its counts that have run out dropped now and then when
    /// it holds more than [`MAX_KEYS`] (counting them takes every shard's
    /// lock).
    fn prune<'b>(&self, bucket: &'b Bucket) -> &'b Bucket {
        let checks = self.checks.fetch_add(1, Ordering::Relaxed);
        if checks.is_multiple_of(1024) && bucket.len() > MAX_KEYS {
            bucket.retain_recent();
        }
        bucket
    }

    /// Counts one request from the caller counted by `key`, on this host.
    pub fn check_key(&self, key: CallerKey) -> Verdict {
        match &self.counter {
            Counter::Bucket(bucket) => match self.prune(bucket).check_key(&key) {
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
                if windows.len() > MAX_KEYS {
                    windows.retain(|_, hits| hits.back().is_some_and(|t| now - *t < self.period));
                    if windows.len() > MAX_KEYS / 2 {
                        forget_the_lightest(&mut windows, MAX_KEYS / 2);
                    }
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

/// Drops the counts of the callers that used least of their budget, the
/// longest ago first, keeping `keep`: a flood of new callers pushes out
/// one another and the quiet, never a caller at its limit (forgetting it
/// would give it its budget back). Sorting takes a while, but comes once
/// per `keep` new callers.
fn forget_the_lightest(windows: &mut HashMap<CallerKey, VecDeque<Instant>>, keep: usize) {
    let weight = |hits: &VecDeque<Instant>| (hits.len(), hits.back().copied());
    let mut weights: Vec<_> = windows.values().map(weight).collect();
    let cut = weights.len() - keep;
    let (_, lightest_kept, _) = weights.select_nth_unstable(cut);
    let lightest_kept = *lightest_kept;
    windows.retain(|_, hits| weight(hits) >= lightest_kept);
    tracing::warn!(
        "a sliding-window rate limit counted over {MAX_KEYS} callers at once; \
         it forgot those that used least of their budget"
    );
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

    /// The address the caller is counted under: an IPv4 address, or an
    /// IPv6 /64, which one subscriber usually holds whole.
    fn client_ip(&self) -> IpAddr {
        crate::connections::client_address(self.forwarded_ip())
    }

    /// The peer's address, or, from a trusted proxy, the nearest address in
    /// `X-Forwarded-For` that is not one of them.
    fn forwarded_ip(&self) -> IpAddr {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settings(kind: &str, key: &str, capacity: u32) -> RateLimitSettings {
        RateLimitSettings {
            kind: kind.into(),
            key: key.into(),
            capacity,
            period_s: 60,
            trusted_proxies: Vec::new(),
        }
    }

    fn limiter(kind: &str, key: &str, capacity: u32) -> Limiter {
        let policy = settings(kind, key, capacity).policy().expect("a policy");
        Limiter::new(&policy).expect("a limiter")
    }

    fn peer(address: &str) -> SocketAddr {
        SocketAddr::new(address.parse().unwrap(), 40_000)
    }

    /// A caller at `address` with nothing else to tell it by.
    fn caller<'a>(address: &str, headers: &'a HeaderMap) -> Caller<'a> {
        Caller {
            peer: peer(address),
            headers,
            claims: None,
            tenant: None,
            trusted_proxies: &[],
        }
    }

    /// The verdicts of `count` requests from `caller`.
    fn checks(limiter: &Limiter, caller: &Caller<'_>, count: usize) -> Vec<bool> {
        (0..count).map(|_| limiter.check(caller).allowed).collect()
    }

    fn header(headers: &HeaderMap, name: &str) -> Option<String> {
        headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }

    /// Allows `capacity` requests, refuses the next until the budget refills.
    fn refuses_past_capacity(kind: &str) {
        let limiter = limiter(kind, "client-address", 2);
        let headers = HeaderMap::new();
        let caller = caller("192.0.2.1", &headers);
        let first = limiter.check(&caller);
        assert!(first.allowed);
        assert_eq!(first.remaining, 1);
        let second = limiter.check(&caller);
        assert!(second.allowed);
        assert_eq!(second.remaining, 0);
        let third = limiter.check(&caller);
        assert!(!third.allowed, "{kind}: the third request is refused");
        assert_eq!(third.remaining, 0);
        assert!(third.reset_s >= 1, "{kind}: reset in {} s", third.reset_s);
        assert!(third.reset_s <= 60, "{kind}: reset in {} s", third.reset_s);
    }

    #[test]
    fn a_token_bucket_refuses_past_its_capacity() {
        refuses_past_capacity("token-bucket");
    }

    #[test]
    fn a_sliding_window_refuses_past_its_capacity() {
        refuses_past_capacity("sliding-window");
    }

    #[test]
    fn a_sliding_window_refusal_waits_for_its_oldest_request_to_leave() {
        let limiter = limiter("sliding-window", "client-address", 1);
        let headers = HeaderMap::new();
        let caller = caller("192.0.2.1", &headers);
        assert!(limiter.check(&caller).allowed);
        let refused = limiter.check(&caller);
        assert!(!refused.allowed);
        assert!((59..=60).contains(&refused.reset_s), "{}", refused.reset_s);
    }

    #[test]
    fn an_allowed_verdict_sets_the_ratelimit_headers_without_retry_after() {
        let limiter = limiter("token-bucket", "client-address", 2);
        let empty = HeaderMap::new();
        let verdict = limiter.check(&caller("192.0.2.1", &empty));
        let mut headers = HeaderMap::new();
        verdict.apply(&mut headers);
        assert_eq!(header(&headers, "ratelimit-limit").as_deref(), Some("2"));
        assert_eq!(
            header(&headers, "ratelimit-remaining").as_deref(),
            Some("1")
        );
        assert_eq!(
            header(&headers, "ratelimit-reset"),
            Some(verdict.reset_s.to_string())
        );
        assert_eq!(header(&headers, "retry-after"), None);
    }

    #[test]
    fn a_refused_verdict_also_sets_retry_after() {
        let limiter = limiter("token-bucket", "client-address", 1);
        let empty = HeaderMap::new();
        let caller = caller("192.0.2.1", &empty);
        limiter.check(&caller);
        let verdict = limiter.check(&caller);
        assert!(!verdict.allowed);
        let mut headers = HeaderMap::new();
        verdict.apply(&mut headers);
        assert_eq!(header(&headers, "ratelimit-limit").as_deref(), Some("1"));
        assert_eq!(
            header(&headers, "ratelimit-remaining").as_deref(),
            Some("0")
        );
        let reset = verdict.reset_s.to_string();
        assert_eq!(header(&headers, "ratelimit-reset"), Some(reset.clone()));
        assert_eq!(header(&headers, "retry-after"), Some(reset));
    }

    #[test]
    fn retry_after_is_at_least_a_second() {
        let verdict = Verdict {
            allowed: false,
            limit: http::HeaderValue::from(5u32),
            remaining: 0,
            reset_s: 0,
        };
        let mut headers = HeaderMap::new();
        verdict.apply(&mut headers);
        assert_eq!(header(&headers, "retry-after").as_deref(), Some("1"));
        assert_eq!(header(&headers, "ratelimit-reset").as_deref(), Some("0"));
    }

    #[test]
    fn large_numbers_are_written_in_full() {
        let verdict = Verdict {
            allowed: false,
            limit: http::HeaderValue::from(1000u32),
            remaining: 999,
            reset_s: 3600,
        };
        let mut headers = HeaderMap::new();
        verdict.apply(&mut headers);
        assert_eq!(
            header(&headers, "ratelimit-remaining").as_deref(),
            Some("999")
        );
        assert_eq!(header(&headers, "retry-after").as_deref(), Some("3600"));
    }

    #[test]
    fn each_client_address_has_its_own_budget() {
        for kind in ["token-bucket", "sliding-window"] {
            let limiter = limiter(kind, "client-address", 1);
            let headers = HeaderMap::new();
            let (one, two) = (caller("192.0.2.1", &headers), caller("192.0.2.2", &headers));
            assert_eq!(checks(&limiter, &one, 2), [true, false], "{kind}");
            assert_eq!(checks(&limiter, &two, 2), [true, false], "{kind}");
        }
    }

    #[test]
    fn a_subject_key_counts_by_the_token_subject_wherever_it_calls_from() {
        let limiter = limiter("token-bucket", "subject", 1);
        let headers = HeaderMap::new();
        let (alice, bob) = (json!({ "sub": "alice" }), json!({ "sub": "bob" }));
        let as_subject = |address, claims| Caller {
            claims: Some(claims),
            ..caller(address, &headers)
        };
        assert!(limiter.check(&as_subject("192.0.2.1", &alice)).allowed);
        assert!(!limiter.check(&as_subject("192.0.2.2", &alice)).allowed);
        assert!(limiter.check(&as_subject("192.0.2.1", &bob)).allowed);
    }

    #[test]
    fn a_subject_key_falls_back_to_the_address_without_a_subject() {
        let limiter = limiter("token-bucket", "subject", 1);
        let headers = HeaderMap::new();
        let anonymous = json!({ "iss": "https://auth.example" });
        let with_claims = Caller {
            claims: Some(&anonymous),
            ..caller("192.0.2.1", &headers)
        };
        assert!(limiter.check(&with_claims).allowed);
        // The same address without a token shares that budget.
        assert!(!limiter.check(&caller("192.0.2.1", &headers)).allowed);
        assert!(limiter.check(&caller("192.0.2.2", &headers)).allowed);
    }

    #[test]
    fn a_tenant_key_counts_by_tenant() {
        let limiter = limiter("sliding-window", "tenant", 1);
        let headers = HeaderMap::new();
        let of = |address, tenant| Caller {
            tenant,
            ..caller(address, &headers)
        };
        assert!(limiter.check(&of("192.0.2.1", Some("acme"))).allowed);
        assert!(!limiter.check(&of("192.0.2.2", Some("acme"))).allowed);
        assert!(limiter.check(&of("192.0.2.1", Some("globex"))).allowed);
    }

    #[test]
    fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = [proxy];
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
        let via_proxy = Caller {
            trusted_proxies: &trusted,
            ..caller("10.0.0.1", &headers)
        };
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(via_proxy.client_ip(), client);
        // From anyone else the header is the client's own word.
        let direct = Caller {
            trusted_proxies: &trusted,
            ..caller("192.0.2.9", &headers)
        };
        assert_eq!(direct.client_ip(), "192.0.2.9".parse::<IpAddr>().unwrap());
        let untrusting = caller("10.0.0.1", &headers);
        assert_eq!(untrusting.client_ip(), proxy);
    }

    #[test]
    fn the_client_is_the_nearest_forwarded_address_that_is_not_a_proxy() {
        let trusted: [IpAddr; 2] = ["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        let mut headers = HeaderMap::new();
        // A client may send any X-Forwarded-For; proxies append to it.
        headers.append(
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.7".parse().unwrap(),
        );
        headers.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        let via_proxies = Caller {
            trusted_proxies: &trusted,
            ..caller("10.0.0.1", &headers)
        };
        assert_eq!(
            via_proxies.client_ip(),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        let mut garbage = HeaderMap::new();
        garbage.insert("x-forwarded-for", "not an address".parse().unwrap());
        let unreadable = Caller {
            trusted_proxies: &trusted,
            ..caller("10.0.0.1", &garbage)
        };
        assert_eq!(unreadable.client_ip(), trusted[0]);
    }

    #[test]
    fn forwarded_clients_behind_one_proxy_have_separate_budgets() {
        let limiter = limiter("token-bucket", "client-address", 1);
        let trusted: [IpAddr; 1] = ["10.0.0.1".parse().unwrap()];
        let forwarded_for = |client: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", client.parse().unwrap());
            headers
        };
        let (one, two) = (forwarded_for("203.0.113.1"), forwarded_for("203.0.113.2"));
        let via = |headers| Caller {
            trusted_proxies: &trusted,
            ..caller("10.0.0.1", headers)
        };
        assert_eq!(checks(&limiter, &via(&one), 2), [true, false]);
        assert_eq!(checks(&limiter, &via(&two), 2), [true, false]);
    }

    #[test]
    fn a_policy_names_the_field_it_does_not_understand() {
        let kind = settings("leaky-bucket", "client-address", 1).policy();
        assert_eq!(
            kind.err().unwrap(),
            "[rate-limit] kind: \"leaky-bucket\" is not token-bucket or sliding-window"
        );
        let key = settings("token-bucket", "ip", 1).policy();
        assert_eq!(
            key.err().unwrap(),
            "[rate-limit] key: \"ip\" is not client-address, subject or tenant"
        );
    }

    #[test]
    fn a_zero_capacity_or_period_is_refused() {
        let zero_capacity = settings("token-bucket", "client-address", 0)
            .policy()
            .unwrap();
        assert!(Limiter::new(&zero_capacity).is_err());
        let mut zero_period = settings("sliding-window", "client-address", 1);
        zero_period.period_s = 0;
        let refused = Limiter::new(&zero_period.policy().unwrap()).err().unwrap();
        assert_eq!(refused, "a rate limit needs a positive capacity and period");
    }

    #[test]
    fn a_window_or_period_past_its_ceiling_is_refused() {
        let largest = settings("sliding-window", "client-address", MAX_CAPACITY);
        assert!(Limiter::new(&largest.policy().unwrap()).is_ok());
        let too_many = settings("sliding-window", "client-address", MAX_CAPACITY + 1);
        let why = Limiter::new(&too_many.policy().unwrap()).err().unwrap();
        assert!(why.contains("at most 100000 requests"), "{why}");
        let mut too_long = settings("token-bucket", "client-address", 1);
        too_long.period_s = MAX_PERIOD_S + 1;
        let why = Limiter::new(&too_long.policy().unwrap()).err().unwrap();
        assert!(why.contains("at most 86400 seconds"), "{why}");
        // A bucket's burst takes no room per request: any is taken, and a
        // tenant's requests-per-second quota is never dropped for its size.
        let burst = settings("token-bucket", "client-address", u32::MAX);
        assert!(Limiter::new(&burst.policy().unwrap()).is_ok());
        assert!(Limiter::tenant_quota(1_000_000).is_some());
    }

    /// One subscriber's IPv6 /64 is one caller: a new address in it for
    /// each request does not reset the count.
    #[test]
    fn an_ipv6_caller_is_counted_by_its_64() {
        for kind in ["token-bucket", "sliding-window"] {
            let limiter = limiter(kind, "client-address", 1);
            let headers = HeaderMap::new();
            let one = caller("2001:db8:1:2::1", &headers);
            let same_64 = caller("2001:db8:1:2:ffff::9", &headers);
            let other_64 = caller("2001:db8:1:3::1", &headers);
            assert_eq!(checks(&limiter, &one, 1), [true], "{kind}");
            assert_eq!(checks(&limiter, &same_64, 1), [false], "{kind}");
            assert_eq!(checks(&limiter, &other_64, 1), [true], "{kind}");
        }
    }

    /// A flood of callers (forged through a trusted proxy, say) does not
    /// grow a window's counts past its bound: those that used least of
    /// their budget are forgotten, and a caller at its limit stays there.
    #[test]
    fn a_windows_counts_stay_bounded_under_a_flood_of_callers() {
        let limiter = limiter("sliding-window", "client-address", 3);
        let headers = HeaderMap::new();
        let address = |n: u32| std::net::Ipv4Addr::from(0x0a00_0000 + n).to_string();
        let first = caller(&address(0), &headers);
        assert_eq!(checks(&limiter, &first, 4), [true, true, true, false]);
        for n in 1..(MAX_KEYS as u32 + 10) {
            assert!(limiter.check(&caller(&address(n), &headers)).allowed);
        }
        let Counter::Window(windows) = &limiter.counter else {
            unreachable!()
        };
        let kept = windows.lock().unwrap().len();
        assert!(kept <= MAX_KEYS / 2 + 10, "kept {kept} callers");
        // The caller at its limit stays there; the flood's earliest went.
        assert!(!limiter.check(&first).allowed);
        let earliest = CallerKey::Address(address(1).parse().unwrap());
        assert!(!windows.lock().unwrap().contains_key(&earliest));
    }
}
