//! The response cache: GET and HEAD responses of routes whose guest declares
//! a cache policy (or whose sidecar gives one), stored in the host and served
//! without calling the guest.
//!
//! An entry is keyed by the component as loaded (its generation: a new
//! version, a reload or a re-created tenant never sees an older one's
//! entries), route, path, sorted query, every value of the policy's `vary`
//! headers, and the caller: every `Cookie` field, and every `Authorization`
//! field or the subject of the token `[auth]` verified. One user's response
//! never reaches another. Only 2xx responses without `Set-Cookie`,
//! `Cache-Control: no-store`/`private`, or a `Vary` the key does not cover
//! are stored. Concurrent misses for one key call the guest once. Entries
//! carry their component's tags and are dropped by tag, only ever by their
//! own component (or the operator), and all at once when their generation
//! leaves service.
//!
//! Entries stay in each host's memory. In a cluster, a tag invalidation
//! and a component leaving service are told to the other hosts too
//! ([`Invalidation`]), which drop the same entries of their own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use headers::{CacheControl, ETag, HeaderMapExt as _, IfNoneMatch};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use tokio::sync::Notify;
use tokio::sync::mpsc::{self, Receiver, Sender};

use crate::body::{Body, full};
use crate::error::CallError;
use crate::instances::state::Owner;
pub use policy::CachePolicy;

pub mod policy;

/// What identifies one stored response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    component: Arc<str>,
    /// The load of the component that stored it ([`Owner::generation`]).
    generation: u64,
    route: u32,
    path: String,
    query: String,
    /// BLAKE3 of every value of the `vary` headers and of the caller's
    /// credentials, each field apart and in order.
    variant: [u8; 32],
}

impl CacheKey {
    /// The key for `request` to `route` (at `path`, the component's own
    /// path) of `owner`. `claims` are those `[auth]` verified, if any.
    pub fn new(
        owner: &Owner,
        route: u32,
        path: &str,
        request: &http::request::Parts,
        policy: &CachePolicy,
        claims: Option<&serde_json::Value>,
    ) -> Self {
        let mut pairs: Vec<&str> = request
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .collect();
        pairs.sort_unstable();
        Self {
            component: owner.component.clone(),
            generation: owner.generation,
            route,
            path: path.to_string(),
            query: pairs.join("&"),
            variant: variant(&request.headers, policy, claims),
        }
    }
}

/// What tells callers apart: a digest of every field of the `vary`
/// headers, `Authorization` (or the verified subject) and `Cookie`.
fn variant(
    headers: &HeaderMap,
    policy: &CachePolicy,
    claims: Option<&serde_json::Value>,
) -> [u8; 32] {
    let anonymous = policy.vary.iter().all(|name| !headers.contains_key(name))
        && !headers.contains_key(header::AUTHORIZATION)
        && !headers.contains_key(header::COOKIE);
    if anonymous {
        // The usual request, spared the hash: no input hashes to zeros in
        // practice.
        return [0; 32];
    }
    // Written out whole and hashed once: cheaper than feeding the hasher
    // piece by piece.
    let mut written = Vec::with_capacity(256);
    for name in &policy.vary {
        write_fields(&mut written, headers, name);
    }
    // A verified subject stands for the token, so a refreshed token keeps
    // its entries; with a second `Authorization` field the guest could
    // read, every field counts.
    let subject = claims
        .filter(|_| headers.get_all(header::AUTHORIZATION).iter().count() == 1)
        .and_then(|claims| Some((claims.get("iss"), claims.get("sub")?.as_str()?)));
    match subject {
        Some((issuer, subject)) => {
            written.extend_from_slice(b"subject");
            let issuer = issuer.and_then(serde_json::Value::as_str).unwrap_or("");
            for part in [issuer, subject] {
                write_bytes(&mut written, part.as_bytes());
            }
        }
        None => write_fields(&mut written, headers, &header::AUTHORIZATION),
    }
    write_fields(&mut written, headers, &header::COOKIE);
    blake3::hash(&written).into()
}

/// Writes every field of `name`, in order, so that no two different lists
/// of fields write the same bytes.
fn write_fields(out: &mut Vec<u8>, headers: &HeaderMap, name: &HeaderName) {
    let fields = headers.get_all(name);
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(&(fields.iter().count() as u64).to_le_bytes());
    for value in fields {
        write_bytes(out, value.as_bytes());
    }
}

/// Writes `bytes` with its length in front.
fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
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
    /// The guest call failed (its error is kept beside the lookup).
    Failed,
    /// The guest answered with a response that must not be shared.
    NotStored,
}

/// The host's response cache, shared by every component.
pub struct ResponseCache {
    entries: Cache<Arc<CacheKey>, Arc<Entry>>,
    /// Keys by component and tag. moka's iterator may not yet see an entry
    /// just inserted, so invalidation counts from here.
    tagged: Arc<Mutex<TagIndex>>,
    /// Where this host's invalidations go for the other hosts of a
    /// cluster to hear ([`crate::cluster::invalidations`]).
    fanout: OnceLock<Arc<Fanout>>,
}

/// A drop of cached responses that every host of a cluster makes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invalidation {
    /// A component's entries with any of these tags.
    Tags {
        component: String,
        tags: Vec<String>,
    },
    /// Every entry of a component: a new version, or it left service.
    Component(String),
    /// Every entry: too many invalidations went unsent to tell them apart.
    Everything,
}

impl Invalidation {
    /// The component it drops entries of; empty for every component's.
    fn component(&self) -> &str {
        match self {
            Invalidation::Tags { component, .. } | Invalidation::Component(component) => component,
            Invalidation::Everything => "",
        }
    }
}

/// The invalidations made on this host, on their way to the others. Each
/// component may have [`Fanout::PER_COMPONENT`] of them waiting (so one
/// invalidating in a loop never crowds out the others); past that, or
/// past the whole queue, what is left to say of a component is that all
/// its entries go, said once however many were lost, after what waits.
pub struct Fanout {
    sender: Sender<Invalidation>,
    receiver: tokio::sync::Mutex<Receiver<Invalidation>>,
    /// How many of each component's wait in the queue.
    queued: Mutex<HashMap<String, usize>>,
    overflowed: Mutex<std::collections::BTreeSet<String>>,
    wake: Notify,
}

impl Fanout {
    const PER_COMPONENT: usize = 64;

    fn send(&self, invalidation: Invalidation) {
        let component = invalidation.component().to_string();
        let mut queued = self.queued.lock().unwrap();
        let count = queued.get(&component).copied().unwrap_or(0);
        if count < Self::PER_COMPONENT && self.sender.try_send(invalidation).is_ok() {
            queued.insert(component, count + 1);
            return;
        }
        drop(queued);
        self.overflowed.lock().unwrap().insert(component);
        self.wake.notify_one();
    }

    /// The next invalidation to send: a queued one first, else one for a
    /// component whose invalidations overflowed (all its entries). `None`
    /// once no more can come.
    pub async fn next(&self) -> Option<Invalidation> {
        let mut receiver = self.receiver.lock().await;
        loop {
            if let Ok(next) = receiver.try_recv() {
                return Some(self.taken(next));
            }
            if let Some(component) = self.overflowed.lock().unwrap().pop_first() {
                return Some(match component.as_str() {
                    "" => Invalidation::Everything,
                    _ => Invalidation::Component(component),
                });
            }
            tokio::select! {
                biased;
                () = self.wake.notified() => continue,
                next = receiver.recv() => return next.map(|next| self.taken(next)),
            }
        }
    }

    /// `invalidation`, out of the queue: its component's count goes down.
    fn taken(&self, invalidation: Invalidation) -> Invalidation {
        let component = invalidation.component();
        let mut queued = self.queued.lock().unwrap();
        if let Some(count) = queued.get_mut(component) {
            *count -= 1;
            if *count == 0 {
                queued.remove(component);
            }
        }
        invalidation
    }
}

type TagIndex = HashMap<(Arc<str>, String), HashMap<Arc<CacheKey>, Arc<Owner>>>;

struct PerEntryTtl;

impl Expiry<Arc<CacheKey>, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _: &Arc<CacheKey>,
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
            .weigher(|key: &Arc<CacheKey>, entry: &Arc<Entry>| {
                u32::try_from(entry.weight(key)).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .support_invalidation_closures()
            .eviction_listener(move |key: Arc<Arc<CacheKey>>, entry: Arc<Entry>, cause| {
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
        Arc::new(Self {
            entries,
            tagged,
            fanout: OnceLock::new(),
        })
    }

    /// Answers a cacheable request: from the cache, or by calling `fetch`
    /// (once for all concurrent misses of the key) and storing what it
    /// returns when that may be stored.
    pub async fn respond<F, Fut>(
        &self,
        owner: &Arc<Owner>,
        key: CacheKey,
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
        let failed = Mutex::new(None);
        let key = Arc::new(key);
        let lookup = self
            .entries
            .try_get_with(key.clone(), async {
                fetched_here.store(true, Ordering::Relaxed);
                // Both kept here: the error moka hands back is shared by
                // every waiter (and still held by moka), so it cannot carry
                // the call's error or the response out.
                let fetched = match fetch().await {
                    Ok(fetched) => fetched,
                    Err(error) => {
                        *failed.lock().unwrap() = Some(error);
                        return Err(Miss::Failed);
                    }
                };
                if !storable(&fetched, policy) {
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
            Err(_) => {
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
                Err(failed.into_inner().unwrap().unwrap_or_else(|| {
                    CallError::InstanceLost("the guest call for this response failed".into())
                }))
            }
        }
    }

    /// Sends every invalidation made here to the returned fan-out as
    /// well, for the other hosts of a cluster; at most `capacity` wait to
    /// be taken from it.
    pub fn broadcast(&self, capacity: usize) -> Arc<Fanout> {
        let (sender, receiver) = mpsc::channel(capacity);
        let fanout = Arc::new(Fanout {
            sender,
            receiver: tokio::sync::Mutex::new(receiver),
            queued: Mutex::default(),
            overflowed: Mutex::default(),
            wake: Notify::new(),
        });
        let _ = self.fanout.set(fanout.clone());
        fanout
    }

    fn broadcast_one(&self, invalidation: Invalidation) {
        if let Some(fanout) = self.fanout.get() {
            fanout.send(invalidation);
        }
    }

    /// Drops `component`'s entries tagged with any of `tags`, here and on
    /// the other hosts of a cluster; returns how many there were here. A
    /// tag longer than a policy may name tags nothing, and goes no
    /// further; the others travel as many tags at a time as a policy may
    /// name.
    pub fn invalidate(&self, component: &str, tags: &[String]) -> u32 {
        let dropped = self.invalidate_here(component, tags);
        let tags: Vec<&String> = (tags.iter())
            .filter(|tag| tag.len() <= policy::MAX_TAG_BYTES)
            .collect();
        for chunk in tags.chunks(policy::MAX_TAGS) {
            self.broadcast_one(Invalidation::Tags {
                component: component.to_string(),
                tags: chunk.iter().map(|tag| tag.to_string()).collect(),
            });
        }
        dropped
    }

    /// What another host of the cluster dropped, dropped here too.
    pub fn heard(&self, invalidation: Invalidation) {
        match invalidation {
            Invalidation::Tags { component, tags } => {
                self.invalidate_here(&component, &tags);
            }
            Invalidation::Component(component) => {
                let dropped = self.entries.invalidate_entries_if(
                    move |key: &Arc<CacheKey>, _: &Arc<Entry>| *key.component == *component,
                );
                if let Err(e) = dropped {
                    tracing::error!("cannot drop a component's cache entries: {e}");
                }
            }
            Invalidation::Everything => self.drop_all(),
        }
    }

    /// Drops every entry: after an outage of the cluster's Redis, any of
    /// them may have been invalidated on another host meanwhile.
    pub fn drop_all(&self) {
        self.entries.invalidate_all();
    }

    /// Drops `component`'s entries tagged with any of `tags`, on this host
    /// only; returns how many there were.
    fn invalidate_here(&self, component: &str, tags: &[String]) -> u32 {
        let component: Arc<str> = component.into();
        let keys: HashMap<Arc<CacheKey>, Arc<Owner>> = {
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
        let predicate = move |key: &Arc<CacheKey>, entry: &Arc<Entry>| {
            key.component == component && entry.tags.iter().any(|t| tags.contains(t))
        };
        if let Err(e) = self.entries.invalidate_entries_if(predicate) {
            tracing::error!("cannot invalidate cache entries: {e}");
            return 0;
        }
        u32::try_from(keys.len()).unwrap_or(u32::MAX)
    }

    /// Drops every entry stored by `owner` (one load of a component), for
    /// a component that has left service; its memory is freed as the
    /// cache's housekeeping runs. Its keys could never be asked for again.
    pub fn forget(&self, owner: &Owner) {
        let generation = owner.generation;
        let dropped =
            self.entries
                .invalidate_entries_if(move |key: &Arc<CacheKey>, _: &Arc<Entry>| {
                    key.generation == generation
                });
        if let Err(e) = dropped {
            tracing::error!("cannot drop a component's cache entries: {e}");
        }
        self.broadcast_one(Invalidation::Component(owner.component.to_string()));
    }
}

/// Whether a response may be stored and shared: a success, without a
/// cookie or a directive against storing, that varies on nothing the key
/// leaves out.
fn storable(fetched: &Fetched, policy: &CachePolicy) -> bool {
    if !fetched.status.is_success() || fetched.headers.contains_key(header::SET_COOKIE) {
        return false;
    }
    let refused = fetched
        .headers
        .typed_get::<CacheControl>()
        .is_some_and(|cc| cc.no_store() || cc.no_cache() || cc.private())
        || names_field_private(&fetched.headers);
    let keyed = |name: &str| {
        name.is_empty()
            || HeaderName::try_from(name).is_ok_and(|name| {
                name == header::COOKIE
                    || name == header::AUTHORIZATION
                    || policy.vary.contains(&name)
            })
    };
    !refused && list_values(&fetched.headers, header::VARY).all(keyed)
}

/// Whether `Cache-Control` has `private` or `no-cache` naming fields
/// (`private="set-cookie"`), or in capitals: the `headers` crate skips
/// both forms as unknown, but a shared cache must not store either.
fn names_field_private(headers: &HeaderMap) -> bool {
    list_values(headers, header::CACHE_CONTROL).any(|directive| {
        // A directive's name comes before any quote: splitting a quoted
        // list at its commas leaves the name whole.
        let name = directive.split('=').next().unwrap_or_default().trim();
        name.eq_ignore_ascii_case("private") || name.eq_ignore_ascii_case("no-cache")
    })
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

    /// What keeping this entry under `key` costs, in bytes: its body,
    /// headers and tags as well as its key (each tag is also a row of the
    /// tag index), and a little for the entry itself.
    fn weight(&self, key: &CacheKey) -> usize {
        const PER_ITEM: usize = 32;
        let headers: usize = (self.headers.iter())
            .map(|(name, value)| name.as_str().len() + value.len() + PER_ITEM)
            .sum();
        let tags: usize = self.tags.iter().map(|tag| 2 * tag.len() + PER_ITEM).sum();
        self.body.len() + headers + tags + key.path.len() + key.query.len() + 256
    }

    /// The stored response for `request`: 304 when its `If-None-Match`
    /// names this entry, without a body for HEAD.
    fn to_response(&self, request: &http::request::Parts, hit: bool) -> http::Response<Body> {
        let age = self.stored.elapsed();
        // Weak comparison, as RFC 9110 asks for If-None-Match: `W/"x"`
        // matches `"x"` and `W/"x"`.
        let not_modified = request.headers.contains_key(header::IF_NONE_MATCH)
            && match (
                request.headers.typed_get::<IfNoneMatch>(),
                self.etag
                    .to_str()
                    .ok()
                    .and_then(|tag| tag.parse::<ETag>().ok()),
            ) {
                (Some(wanted), Some(etag)) => !wanted.precondition_passes(&etag),
                _ => false,
            };
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::capabilities::Capabilities;

    /// A CPU share on a long-call lane of its own.
    fn cpu() -> crate::scheduler::CpuShare {
        let settings = crate::config::ExecutionSettings::default();
        crate::scheduler::Scheduler::new(&settings)
            .expect("a long-call lane")
            .share("shop")
    }

    fn owner() -> Arc<Owner> {
        Owner::new(
            "shop".into(),
            ResponseCache::new(1 << 20),
            Capabilities::default(),
            None,
            cpu(),
        )
    }

    fn request(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::get(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn policy(vary: &[&str]) -> CachePolicy {
        let vary: Vec<String> = vary.iter().map(|v| v.to_string()).collect();
        CachePolicy::new(60, &[], &vary).unwrap()
    }

    /// The key of a GET of `/page` with `headers`.
    fn key_with(owner: &Owner, headers: &[(&str, &str)], claims: Option<&Value>) -> CacheKey {
        let request = request("/page", headers);
        CacheKey::new(owner, 0, "/page", &request, &policy(&[]), claims)
    }

    #[test]
    fn every_cookie_field_is_part_of_the_key() {
        let owner = owner();
        let alice = key_with(
            &owner,
            &[("cookie", "theme=dark"), ("cookie", "session=alice")],
            None,
        );
        let bob = key_with(
            &owner,
            &[("cookie", "theme=dark"), ("cookie", "session=bob")],
            None,
        );
        assert_ne!(alice, bob);
        let again = key_with(
            &owner,
            &[("cookie", "theme=dark"), ("cookie", "session=alice")],
            None,
        );
        assert_eq!(alice, again);
    }

    #[test]
    fn where_one_field_ends_is_part_of_the_key() {
        let owner = owner();
        let split = |a, b| key_with(&owner, &[("cookie", a), ("cookie", b)], None);
        assert_ne!(split("ab", "c"), split("a", "bc"));
        assert_ne!(
            key_with(&owner, &[("cookie", "a=1")], None),
            key_with(&owner, &[("authorization", "a=1")], None)
        );
    }

    #[test]
    fn every_authorization_field_is_part_of_the_key() {
        let owner = owner();
        let fields = |second| {
            key_with(
                &owner,
                &[("authorization", "Bearer one"), ("authorization", second)],
                None,
            )
        };
        assert_ne!(fields("Bearer alice"), fields("Bearer bob"));
        assert_ne!(
            key_with(&owner, &[("authorization", "Bearer one")], None),
            fields("Bearer alice")
        );
    }

    #[test]
    fn a_verified_subject_stands_for_its_token() {
        let owner = owner();
        let alice = json!({ "iss": "https://auth.example", "sub": "alice" });
        let bob = json!({ "iss": "https://auth.example", "sub": "bob" });
        let token = |t: &str, claims| key_with(&owner, &[("authorization", t)], Some(claims));
        assert_eq!(token("Bearer a1", &alice), token("Bearer a2", &alice));
        assert_ne!(token("Bearer a1", &alice), token("Bearer a1", &bob));
        let elsewhere = json!({ "iss": "https://other.example", "sub": "alice" });
        assert_ne!(token("Bearer a1", &alice), token("Bearer a1", &elsewhere));
        // Without a subject, the token itself keys the entry.
        let anonymous = json!({ "iss": "https://auth.example" });
        assert_ne!(
            token("Bearer a1", &anonymous),
            token("Bearer a2", &anonymous)
        );
    }

    #[test]
    fn a_second_authorization_field_is_keyed_beside_a_verified_subject() {
        let owner = owner();
        let alice = json!({ "sub": "alice" });
        let with_second = |second| {
            key_with(
                &owner,
                &[("authorization", "Bearer a1"), ("authorization", second)],
                Some(&alice),
            )
        };
        assert_ne!(with_second("Basic eA=="), with_second("Basic eQ=="));
    }

    #[test]
    fn vary_reads_every_field_of_its_headers() {
        let owner = owner();
        let policy = policy(&["accept-language"]);
        let key = |second| {
            let request = request(
                "/page",
                &[("accept-language", "en"), ("accept-language", second)],
            );
            CacheKey::new(&owner, 0, "/page", &request, &policy, None)
        };
        assert_ne!(key("de"), key("fr"));
        assert_eq!(key("de"), key("de"));
    }

    #[test]
    fn another_load_of_the_component_never_shares_a_key() {
        let (old, new) = (owner(), owner());
        assert_eq!(old.component, new.component);
        assert_ne!(key_with(&old, &[], None), key_with(&new, &[], None));
    }

    #[test]
    fn the_query_is_keyed_in_any_order() {
        let owner = owner();
        let key = |uri| CacheKey::new(&owner, 0, "/page", &request(uri, &[]), &policy(&[]), None);
        assert_eq!(key("/page?a=1&b=2"), key("/page?b=2&a=1"));
        assert_ne!(key("/page?a=1"), key("/page?a=2"));
    }

    #[tokio::test]
    async fn forgetting_a_load_drops_its_entries_and_no_other() {
        let cache = ResponseCache::new(1 << 20);
        let old = Owner::new(
            "shop".into(),
            cache.clone(),
            Capabilities::default(),
            None,
            cpu(),
        );
        let new = Owner::new(
            "shop".into(),
            cache.clone(),
            Capabilities::default(),
            None,
            cpu(),
        );
        let policy = policy(&[]);
        let parts = request("/page", &[]);
        for owner in [&old, &new] {
            let key = CacheKey::new(owner, 0, "/page", &parts, &policy, None);
            let fetch = || async { Ok(answer(&[])) };
            let stored = cache.respond(owner, key, &policy, &parts, fetch).await;
            assert_eq!(stored.unwrap().status(), StatusCode::OK);
        }
        cache.entries.run_pending_tasks().await;
        assert_eq!(cache.entries.entry_count(), 2);
        cache.forget(&old);
        cache.entries.run_pending_tasks().await;
        assert_eq!(cache.entries.entry_count(), 1);
        let kept = CacheKey::new(&new, 0, "/page", &parts, &policy, None);
        assert!(cache.entries.contains_key(&kept));
    }

    /// An entry weighs its headers and tags, not its body alone: empty
    /// bodies with large headers, under many tags, fill the cache as their
    /// bytes do and are evicted.
    #[tokio::test]
    async fn an_entry_weighs_its_headers_and_tags() {
        let cache = ResponseCache::new(1 << 20);
        let owner = owner();
        let tags: Vec<String> = (0..64).map(|i| format!("{i:0>200}")).collect();
        let policy = CachePolicy::new(60, &tags, &[]).unwrap();
        let big = "v".repeat(100 << 10);
        for n in 0..40 {
            let parts = request(&format!("/page?n={n}"), &[]);
            let key = CacheKey::new(&owner, 0, "/page", &parts, &policy, None);
            let fetch = || async { Ok(answer(&[("x-big", big.as_str())])) };
            cache
                .respond(&owner, key, &policy, &parts, fetch)
                .await
                .unwrap();
        }
        cache.entries.run_pending_tasks().await;
        // Each weighs over 100 KiB of header and 25 KiB of tags: 1 MiB
        // holds eight of the forty.
        let (count, weight) = (cache.entries.entry_count(), cache.entries.weighted_size());
        assert!((1..=8).contains(&count), "{count} entries kept");
        assert!(weight <= 1 << 20, "{weight}");
        assert!(weight >= count * (125 << 10), "{weight} for {count}");
    }

    /// A guest invalidating faster than its host sends them fills the
    /// queue, and what overflows becomes one message dropping the
    /// component's entries.
    #[tokio::test]
    async fn invalidations_past_the_queue_become_one_per_component() {
        let cache = ResponseCache::new(1 << 20);
        let fanout = cache.broadcast(2);
        for n in 0..5 {
            cache.invalidate("shop", &[format!("tag-{n}")]);
        }
        cache.invalidate("blog", &["posts".to_string()]);
        let many: Vec<String> = (0..65).map(|n| n.to_string()).collect();
        cache.invalidate("wiki", &many);
        let mut heard = Vec::new();
        while let Ok(Some(next)) =
            tokio::time::timeout(Duration::from_millis(50), fanout.next()).await
        {
            heard.push(serde_json::to_string(&next).unwrap());
        }
        let component = |c: &str| format!(r#"{{"component":"{c}"}}"#);
        let tags = |n: u32| format!(r#"{{"tags":{{"component":"shop","tags":["tag-{n}"]}}}}"#);
        let mut expected = vec![tags(0), tags(1)];
        expected.extend([component("blog"), component("shop"), component("wiki")]);
        assert_eq!(heard, expected);
        assert!(fanout.overflowed.lock().unwrap().is_empty());
        assert!(fanout.queued.lock().unwrap().is_empty());
    }

    /// Many tags travel as many at a time as a policy may name; a tag no
    /// policy could name goes nowhere.
    #[tokio::test]
    async fn a_long_list_of_tags_travels_in_pieces() {
        let cache = ResponseCache::new(1 << 20);
        let fanout = cache.broadcast(1024);
        let mut tags: Vec<String> = (0..65).map(|n| n.to_string()).collect();
        tags.push("x".repeat(policy::MAX_TAG_BYTES + 1));
        cache.invalidate("wiki", &tags);
        let mut sizes = Vec::new();
        while let Ok(Some(Invalidation::Tags { tags, .. })) =
            tokio::time::timeout(Duration::from_millis(50), fanout.next()).await
        {
            sizes.push(tags.len());
        }
        assert_eq!(sizes, [64, 1]);
    }

    /// One component invalidating in a loop fills only its own share of
    /// the queue: another's tag invalidation still travels as it is.
    #[tokio::test]
    async fn a_component_invalidating_in_a_loop_leaves_room_for_the_others() {
        let cache = ResponseCache::new(1 << 20);
        let fanout = cache.broadcast(1024);
        for n in 0..500 {
            cache.invalidate("flood", &[format!("tag-{n}")]);
        }
        cache.invalidate("blog", &["posts".to_string()]);
        let mut heard = Vec::new();
        while let Ok(Some(next)) =
            tokio::time::timeout(Duration::from_millis(50), fanout.next()).await
        {
            heard.push(next);
        }
        let tags = |c: &str| {
            heard
                .iter()
                .filter(|i| matches!(i, Invalidation::Tags { component, .. } if component == c))
                .count()
        };
        assert_eq!(tags("flood"), Fanout::PER_COMPONENT);
        assert_eq!(tags("blog"), 1);
        assert_eq!(heard.last(), Some(&Invalidation::Component("flood".into())));
        assert_eq!(heard.len(), Fanout::PER_COMPONENT + 2);
    }

    fn answer(headers: &[(&str, &str)]) -> Fetched {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::try_from(*name).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        Fetched {
            status: StatusCode::OK,
            headers: map,
            body: Bytes::new(),
        }
    }

    #[test]
    fn a_response_that_varies_on_an_unkeyed_header_is_not_stored() {
        let policy = policy(&["accept-language"]);
        assert!(storable(&answer(&[]), &policy));
        for keyed in ["Accept-Language", "cookie", "Authorization, Cookie"] {
            assert!(storable(&answer(&[("vary", keyed)]), &policy), "{keyed}");
        }
        for unkeyed in ["user-agent", "*", "cookie, x-user"] {
            assert!(
                !storable(&answer(&[("vary", unkeyed)]), &policy),
                "{unkeyed}"
            );
        }
        let two_fields = answer(&[("vary", "cookie"), ("vary", "x-user")]);
        assert!(!storable(&two_fields, &policy));
    }

    #[test]
    fn private_and_cookie_setting_responses_are_not_stored() {
        let policy = policy(&[]);
        assert!(!storable(&answer(&[("cache-control", "private")]), &policy));
        assert!(!storable(&answer(&[("set-cookie", "a=1")]), &policy));
    }

    #[test]
    fn private_naming_fields_and_capitals_are_not_stored_either() {
        let policy = policy(&[]);
        for directive in [
            "private=\"x\"",
            "max-age=60, private=\"set-cookie, x-user\"",
            "no-cache=\"set-cookie\"",
            "Private",
            "no-store",
        ] {
            let fetched = answer(&[("cache-control", directive)]);
            assert!(!storable(&fetched, &policy), "{directive}");
        }
        let public = answer(&[("cache-control", "public, max-age=60")]);
        assert!(storable(&public, &policy));
    }

    #[test]
    fn if_none_match_compares_etags_weakly() {
        let stored = |etag: &str| {
            let fetched = answer(&[("etag", etag)]);
            Entry::new(owner(), fetched, &policy(&[]))
        };
        let status = |entry: &Entry, wanted: &str| {
            let request = request("/page", &[("if-none-match", wanted)]);
            entry.to_response(&request, true).status()
        };
        let weak = stored("W/\"v1\"");
        for wanted in ["W/\"v1\"", "\"v1\"", "\"v0\", W/\"v1\"", "*"] {
            assert_eq!(status(&weak, wanted), StatusCode::NOT_MODIFIED, "{wanted}");
        }
        assert_eq!(status(&weak, "\"v2\""), StatusCode::OK);
        let strong = stored("\"v1\"");
        assert_eq!(status(&strong, "W/\"v1\""), StatusCode::NOT_MODIFIED);
        assert_eq!(status(&strong, "W/\"v2\""), StatusCode::OK);
    }
}
