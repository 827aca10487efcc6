//! A route's cache policy: how long its responses are kept, and under
//! which tags and request headers. Read from `describe()` and sidecars.

use std::time::Duration;

use http::HeaderName;

/// How long a route's responses are kept, and under which tags and headers.
#[derive(Debug, Clone)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub tags: Vec<String>,
    /// Request headers whose values key separate entries.
    pub vary: Vec<HeaderName>,
}

impl CachePolicy {
    /// A policy from its declared parts, or a sentence naming the bad header.
    pub fn new(ttl_seconds: u32, tags: &[String], vary: &[String]) -> Result<Self, String> {
        let vary = vary
            .iter()
            .map(|name| {
                HeaderName::try_from(name.as_str()).map_err(|_| {
                    format!("cache policy varies on {name:?}, which is not a header name")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            ttl: Duration::from_secs(ttl_seconds.into()),
            tags: tags.to_vec(),
            vary,
        })
    }
}
