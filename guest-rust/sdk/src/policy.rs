//! Policies an app declares and the host enforces before its handlers run:
//! response caching, rate limits and CORS.

/// What a rate limit is counted per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateLimitKey {
    /// The peer's address (`X-Forwarded-For` only from the host's trusted
    /// proxies).
    #[default]
    ClientAddress,
    /// The verified JWT subject.
    Subject,
    /// The tenant the component belongs to: one budget for all its callers.
    Tenant,
}

/// A request budget the host enforces per caller before the handler runs;
/// over it, 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub(crate) sliding: bool,
    pub(crate) capacity: u32,
    pub(crate) period_seconds: u32,
    pub(crate) key: RateLimitKey,
}

impl RateLimit {
    /// Bursts of `capacity`, refilled over `period_seconds`.
    pub fn token_bucket(capacity: u32, period_seconds: u32) -> Self {
        Self {
            sliding: false,
            capacity,
            period_seconds,
            key: RateLimitKey::ClientAddress,
        }
    }

    /// At most `capacity` requests in any `window_seconds`.
    pub fn sliding_window(capacity: u32, window_seconds: u32) -> Self {
        Self {
            sliding: true,
            ..Self::token_bucket(capacity, window_seconds)
        }
    }

    /// Counted per `key` rather than per client address.
    pub fn key(mut self, key: RateLimitKey) -> Self {
        self.key = key;
        self
    }

    /// Counted per JWT subject.
    pub fn per_subject(self) -> Self {
        self.key(RateLimitKey::Subject)
    }

    /// Counted per tenant.
    pub fn per_tenant(self) -> Self {
        self.key(RateLimitKey::Tenant)
    }
}

/// How long the host may keep a GET route's responses, under which tags and
/// request headers: `Cache::ttl(60).tags(&["items"]).vary(&["accept-language"])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    pub(crate) ttl_seconds: u32,
    pub(crate) tags: Vec<String>,
    pub(crate) vary: Vec<String>,
}

impl Cache {
    /// Responses stay fresh for `seconds`.
    pub fn ttl(seconds: u32) -> Self {
        Self {
            ttl_seconds: seconds,
            tags: Vec::new(),
            vary: Vec::new(),
        }
    }

    /// Tags that [`crate::cache::invalidate`] drops the entries by.
    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Request headers whose values key separate entries.
    pub fn vary(mut self, headers: &[&str]) -> Self {
        self.vary = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        self
    }
}

/// Cross-origin rules the app asks the host for; an operator's `[cors]`
/// table wins. `Cors::origins(&["https://app.example"]).credentials()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    pub(crate) origins: Vec<String>,
    pub(crate) methods: Vec<String>,
    pub(crate) headers: Vec<String>,
    pub(crate) expose: Vec<String>,
    pub(crate) credentials: bool,
    pub(crate) max_age_seconds: u32,
}

impl Cors {
    /// Allows `origins` (or `&["*"]`); methods and headers default to the
    /// usual ones, the preflight is cached 600 s.
    pub fn origins(origins: &[&str]) -> Self {
        Self {
            origins: origins.iter().map(|o| o.to_string()).collect(),
            max_age_seconds: 600,
            ..Self::default()
        }
    }

    /// Methods allowed across origins (default GET, HEAD, POST, PUT, PATCH, DELETE).
    pub fn methods(mut self, methods: &[&str]) -> Self {
        self.methods = methods.iter().map(|m| m.to_ascii_uppercase()).collect();
        self
    }

    /// Request headers allowed across origins (default content-type, authorization).
    pub fn headers(mut self, headers: &[&str]) -> Self {
        self.headers = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        self
    }

    /// Response headers a cross-origin caller may read.
    pub fn expose(mut self, headers: &[&str]) -> Self {
        self.expose = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        self
    }

    /// Lets credentials (cookies, authorization) cross.
    pub fn credentials(mut self) -> Self {
        self.credentials = true;
        self
    }

    /// How long a browser may cache the preflight.
    pub fn max_age(mut self, seconds: u32) -> Self {
        self.max_age_seconds = seconds;
        self
    }
}
