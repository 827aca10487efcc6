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

/// The most tags one policy may name, and the longest tag.
pub const MAX_TAGS: usize = 64;
pub const MAX_TAG_BYTES: usize = 256;

impl CachePolicy {
    /// A policy from its declared parts, or a sentence naming the bad header
    /// or tag.
    pub fn new(ttl_seconds: u32, tags: &[String], vary: &[String]) -> Result<Self, String> {
        check_tags(tags).map_err(|why| format!("cache policy: {why}"))?;
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

/// `tags` within [`MAX_TAGS`] and [`MAX_TAG_BYTES`], or a sentence.
pub fn check_tags(tags: &[String]) -> Result<(), String> {
    if tags.len() > MAX_TAGS {
        return Err(format!(
            "{} tags, more than the {MAX_TAGS} allowed",
            tags.len()
        ));
    }
    match tags.iter().find(|tag| tag.len() > MAX_TAG_BYTES) {
        Some(tag) => Err(format!(
            "a tag of {} bytes, longer than the {MAX_TAG_BYTES} allowed",
            tag.len()
        )),
        None => Ok(()),
    }
}
