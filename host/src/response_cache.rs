//! The response cache: GET and HEAD responses of routes whose guest declares
//! a cache policy (or whose sidecar gives one), stored in the host and served
//! without calling the guest.
//!
//! An entry is keyed by component, route, path, sorted query, the values of
//! the policy's `vary` headers, and the caller's credentials, so one user's
//! response never reaches another. Only 2xx responses without `Set-Cookie`
//! or `Cache-Control: no-store`/`private` are stored. Concurrent misses for
//! one key call the guest once. Entries carry their component's tags and
//! are dropped by tag, only ever by their own component (or the operator).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;

use crate::error::{CallError, full};
use crate::server::Body;
use crate::state::Owner;

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

/// What identifies one stored response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    component: Arc<str>,
    route: u32,
    path: String,
    query: String,
    vary: Vec<Option<HeaderValue>>,
    /// A hash of the caller's credentials (`Authorization`, `Cookie`).
    caller: u64,
}

impl Key {
    /// The key for a request to `route` of `component`.
    pub fn new(
        component: &Arc<str>,
        route: u32,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        policy: &CachePolicy,
    ) -> Self {
        let mut pairs: Vec<&str> = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .collect();
        pairs.sort_unstable();
        let mut caller = std::collections::hash_map::DefaultHasher::new();
        for name in [header::AUTHORIZATION, header::COOKIE] {
            headers
                .get(&name)
                .map(HeaderValue::as_bytes)
                .hash(&mut caller);
        }
        Self {
            component: component.clone(),
            route,
            path: path.to_string(),
            query: pairs.join("&"),
            vary: policy
                .vary
                .iter()
                .map(|h| headers.get(h).cloned())
                .collect(),
            caller: caller.finish(),
        }
    }
}

/// A stored response.
pub struct Entry {
    owner: Arc<Owner>,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    etag: HeaderValue,
    tags: Vec<String>,
    stored: Instant,
    ttl: Duration,
}

/// What the guest answered, before the cache decides whether to keep it.
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a fill of the cache stored nothing.
enum Miss {
    /// The guest call failed.
    Failed(CallError),
    /// The guest answered with a response that must not be shared.
    NotStored,
}

/// The host's response cache, shared by every component.
pub struct ResponseCache {
    entries: Cache<Arc<Key>, Arc<Entry>>,
    /// Keys by component and tag. moka's iterator may not yet see an entry
    /// just inserted, so invalidation counts from here.
    tagged: Arc<Mutex<TagIndex>>,
}

type TagIndex = HashMap<(Arc<str>, String), HashMap<Arc<Key>, Arc<Owner>>>;

struct PerEntryTtl;

impl Expiry<Arc<Key>, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _: &Arc<Key>,
        entry: &Arc<Entry>,
        _: Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

impl ResponseCache {
    /// A cache holding at most `max_bytes` of responses.
    pub fn new(max_bytes: u64) -> Arc<Self> {
        let tagged: Arc<Mutex<TagIndex>> = Arc::default();
        let index = tagged.clone();
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &Arc<Key>, entry: &Arc<Entry>| {
                let size = entry.body.len() + key.path.len() + key.query.len() + 256;
                u32::try_from(size).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .support_invalidation_closures()
            .eviction_listener(move |key: Arc<Arc<Key>>, entry: Arc<Entry>, cause| {
                if cause == RemovalCause::Size {
                    entry.owner.metrics.cache_evictions.inc();
                }
                if cause != RemovalCause::Replaced {
                    let mut index = index.lock().unwrap();
                    for tag in &entry.tags {
                        let slot = (key.component.clone(), tag.clone());
                        if let Some(keys) = index.get_mut(&slot) {
                            keys.remove(&*key);
                            if keys.is_empty() {
                                index.remove(&slot);
                            }
                        }
                    }
                }
            })
            .build();
        Arc::new(Self { entries, tagged })
    }

    /// Answers a cacheable request: from the cache, or by calling `fetch`
    /// (once for all concurrent misses of the key) and storing what it
    /// returns when that may be stored.
    pub async fn respond<F, Fut>(
        &self,
        owner: &Arc<Owner>,
        key: Key,
        policy: &CachePolicy,
        request: &http::request::Parts,
        fetch: F,
    ) -> Result<http::Response<Body>, CallError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Fetched, CallError>>,
    {
        let fetched_here = AtomicBool::new(false);
        let not_stored = Mutex::new(None);
        let key = Arc::new(key);
        let lookup = self
            .entries
            .try_get_with(key.clone(), async {
                fetched_here.store(true, Ordering::Relaxed);
                let fetched = fetch().await.map_err(Miss::Failed)?;
                if !storable(&fetched) {
                    // Kept here: the error moka hands back is shared by
                    // every waiter, so it cannot carry the response out.
                    *not_stored.lock().unwrap() = Some(fetched);
                    return Err(Miss::NotStored);
                }
                owner.metrics.cache_stores.inc();
                let mut index = self.tagged.lock().unwrap();
                for tag in &policy.tags {
                    let slot = (owner.component.clone(), tag.clone());
                    index
                        .entry(slot)
                        .or_default()
                        .insert(key.clone(), owner.clone());
                }
                drop(index);
                Ok(Arc::new(Entry::new(owner.clone(), fetched, policy)))
            })
            .await;
        let hit = !fetched_here.load(Ordering::Relaxed);
        match lookup {
            Ok(entry) => {
                let counter = if hit {
                    &owner.metrics.cache_hits
                } else {
                    &owner.metrics.cache_misses
                };
                counter.inc();
                Ok(entry.to_response(request, hit))
            }
            Err(miss) => {
                if let Some(fetched) = not_stored.into_inner().unwrap() {
                    owner.metrics.cache_misses.inc();
                    return Ok(uncached(fetched));
                }
                if hit {
                    // Another request's fetch failed or was not storable:
                    // this one asks the guest for itself.
                    owner.metrics.cache_misses.inc();
                    return fetch().await.map(uncached);
                }
                match Arc::into_inner(miss) {
                    Some(Miss::Failed(error)) => Err(error),
                    _ => Err(CallError::InstanceLost(
                        "the guest call for this response failed".into(),
                    )),
                }
            }
        }
    }

    /// Drops `component`'s entries tagged with any of `tags`; returns how
    /// many there were.
    pub fn invalidate(&self, component: &str, tags: &[String]) -> u32 {
        let component: Arc<str> = component.into();
        let keys: HashMap<Arc<Key>, Arc<Owner>> = {
            let index = self.tagged.lock().unwrap();
            tags.iter()
                .filter_map(|tag| index.get(&(component.clone(), tag.clone())))
                .flatten()
                .filter(|(key, _)| self.entries.contains_key(*key))
                .map(|(key, owner)| (key.clone(), owner.clone()))
                .collect()
        };
        if keys.is_empty() {
            return 0;
        }
        for owner in keys.values() {
            owner.metrics.cache_invalidations.inc();
        }
        let tags = tags.to_vec();
        let predicate = move |key: &Arc<Key>, entry: &Arc<Entry>| {
            key.component == component && entry.tags.iter().any(|t| tags.contains(t))
        };
        if let Err(e) = self.entries.invalidate_entries_if(predicate) {
            tracing::error!("cannot invalidate cache entries: {e}");
            return 0;
        }
        u32::try_from(keys.len()).unwrap_or(u32::MAX)
    }
}

/// Whether a response may be stored and shared.
fn storable(fetched: &Fetched) -> bool {
    if !fetched.status.is_success() || fetched.headers.contains_key(header::SET_COOKIE) {
        return false;
    }
    !list_values(&fetched.headers, header::CACHE_CONTROL)
        .map(str::to_ascii_lowercase)
        .any(|d| d == "no-store" || d == "private" || d == "no-cache")
}

/// The items of a comma-separated header, over all its lines, trimmed.
fn list_values(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

fn uncached(fetched: Fetched) -> http::Response<Body> {
    let mut response = fetched.into_response();
    response
        .headers_mut()
        .insert(X_CACHE, HeaderValue::from_static("MISS"));
    response
}

impl Fetched {
    /// The response as it is, uncached.
    pub fn into_response(self) -> http::Response<Body> {
        let mut response = http::Response::new(full(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

impl Entry {
    fn new(owner: Arc<Owner>, fetched: Fetched, policy: &CachePolicy) -> Self {
        let etag = fetched
            .headers
            .get(header::ETAG)
            .cloned()
            .unwrap_or_else(|| {
                let hash = xxhash_rust::xxh3::xxh3_64(&fetched.body);
                HeaderValue::try_from(format!("\"{hash:016x}\""))
                    .expect("hex is a valid header value")
            });
        Self {
            owner,
            status: fetched.status,
            headers: fetched.headers,
            body: fetched.body,
            etag,
            tags: policy.tags.clone(),
            stored: Instant::now(),
            ttl: policy.ttl,
        }
    }

    /// The stored response for `request`: 304 when its `If-None-Match`
    /// names this entry, without a body for HEAD.
    fn to_response(&self, request: &http::request::Parts, hit: bool) -> http::Response<Body> {
        let age = self.stored.elapsed();
        let not_modified = list_values(&request.headers, header::IF_NONE_MATCH).any(|tag| {
            tag == "*" || tag.trim_start_matches("W/").as_bytes() == self.etag.as_bytes()
        });
        let (status, body) = if not_modified {
            (StatusCode::NOT_MODIFIED, Bytes::new())
        } else if request.method == Method::HEAD {
            (self.status, Bytes::new())
        } else {
            (self.status, self.body.clone())
        };
        let mut response = http::Response::new(full(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        *headers = self.headers.clone();
        if !headers.contains_key(header::CACHE_CONTROL) {
            // Freshness left is max-age less Age, as HTTP caches reckon it.
            headers.insert(header::CACHE_CONTROL, max_age(self.ttl.as_secs()));
        }
        headers.insert(header::ETAG, self.etag.clone());
        headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
        let state = if hit { "HIT" } else { "MISS" };
        headers.insert(X_CACHE, HeaderValue::from_static(state));
        if not_modified {
            headers.remove(header::CONTENT_LENGTH);
            headers.remove(header::CONTENT_TYPE);
        }
        response
    }
}

/// `max-age=N`.
fn max_age(seconds: u64) -> HeaderValue {
    HeaderValue::try_from(format!("max-age={seconds}")).expect("digits are a valid header value")
}
