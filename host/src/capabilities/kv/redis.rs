//! The key-value store on the cluster's Redis: what every host of a
//! cluster shares, with the semantics of the redb store.
//!
//! Each value is one Redis string, `cello:kv:{SCOPE}REST:KEY` for the
//! namespace `SCOPE` + `REST` (`{acme/}shop`, or `{shop}` for a served
//! component): the namespace, and so the tenant, is part of every key a
//! host builds, and the braces keep a scope's keys in one hash slot. A TTL
//! is Redis' own expiry. Prefix listing walks the keyspace with `SCAN`
//! (never `KEYS`, which stops the server).
//!
//! What a scope holds is counted in the hash `cello:kv-usage:{SCOPE}`
//! (`bytes`, `keys`), changed by the same Lua script as each write, so a
//! quota holds however many hosts write at once. Values with a TTL are
//! also listed in `cello:kv-expiring:{SCOPE}` (a sorted set by expiry, their
//! sizes in the usage hash): a value Redis expired is uncounted when its
//! key is next written, or when a write finds the quota full.

use redis::aio::ConnectionManager;
use redis::{Script, ScriptInvocation};

use super::{KvQuota, KvResult, MAX_LISTED, quota_refusal, scope_of};
use crate::cluster::redis::{Redis, RedisFailure};

/// Keys a `SCAN` step asks for.
const SCAN_COUNT: usize = 1000;

/// Uncounts `KEYS[1]` if Redis expired it; then the quota check; then the
/// write. KEYS: value, usage, expiring. ARGV: value, ttl ms (0: none),
/// key bytes, max bytes (-1: none), max keys. Returns `{1}` when stored,
/// `{0, bytes, keys, grown, is_new}` when the quota refuses.
const PREAMBLE: &str = r#"
local data, usage, expiring = KEYS[1], KEYS[2], KEYS[3]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function settle(key)
  if redis.call('ZSCORE', expiring, key) and redis.call('EXISTS', key) == 0 then
    local size = tonumber(redis.call('HGET', usage, key) or '0')
    redis.call('HINCRBY', usage, 'bytes', -size)
    redis.call('HINCRBY', usage, 'keys', -1)
    redis.call('HDEL', usage, key)
    redis.call('ZREM', expiring, key)
  end
end
local function used()
  return tonumber(redis.call('HGET', usage, 'bytes') or '0'),
         tonumber(redis.call('HGET', usage, 'keys') or '0')
end
local function reclaim()
  local expired = redis.call('ZRANGEBYSCORE', expiring, '-inf', now_ms(), 'LIMIT', 0, 10000)
  for _, key in ipairs(expired) do settle(key) end
end
-- Whether growing by `grown` bytes (and a key, if `is_new`) passes the quota.
local function over(max_bytes, max_keys, grown, is_new)
  if max_bytes < 0 then return false end
  local bytes, keys = used()
  return (grown > 0 and bytes + grown > max_bytes) or (is_new and keys >= max_keys)
end
local function refusal(grown, is_new)
  local bytes, keys = used()
  return {0, bytes, keys, grown, is_new and 1 or 0}
end
-- Counts `data` as `new` bytes (its old size `old`, nil when new), with a TTL or not.
local function count(old, new, ttl)
  redis.call('HINCRBY', usage, 'bytes', new - (old or 0))
  if not old then redis.call('HINCRBY', usage, 'keys', 1) end
  if ttl > 0 then
    redis.call('ZADD', expiring, now_ms() + ttl, data)
    redis.call('HSET', usage, data, new)
  else
    redis.call('ZREM', expiring, data)
    redis.call('HDEL', usage, data)
  end
end
local function size_of(key_bytes)
  if redis.call('EXISTS', data) == 1 then return key_bytes + redis.call('STRLEN', data) end
  return nil
end
"#;

const SET: &str = r#"
local value, ttl, key_bytes = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local max_bytes, max_keys = tonumber(ARGV[4]), tonumber(ARGV[5])
settle(data)
local old = size_of(key_bytes)
local new = key_bytes + #value
local grown = new - (old or 0)
if over(max_bytes, max_keys, grown, not old) then
  reclaim()
  if over(max_bytes, max_keys, grown, not old) then return refusal(grown, not old) end
end
if ttl > 0 then
  redis.call('SET', data, value, 'PX', ttl)
else
  redis.call('SET', data, value)
end
count(old, new, ttl)
return {1}
"#;

/// ARGV: delta, key bytes, max bytes, max keys. Returns `{1, value}`,
/// a refusal as for a set, or `{2, why}` for a value that is no integer.
const INCREMENT: &str = r#"
local delta, key_bytes = ARGV[1], tonumber(ARGV[2])
local max_bytes, max_keys = tonumber(ARGV[3]), tonumber(ARGV[4])
settle(data)
local old = size_of(key_bytes)
local before = redis.call('GET', data)
local ttl = redis.call('PTTL', data)
if not old and over(max_bytes, max_keys, 0, true) then
  reclaim()
  if over(max_bytes, max_keys, 0, true) then return refusal(0, true) end
end
local done = redis.pcall('INCRBY', data, delta)
if type(done) == 'table' and done.err then return {2, done.err} end
local new = size_of(key_bytes)
local grown = new - (old or 0)
if over(max_bytes, max_keys, grown, false) and grown > 0 then
  if before then redis.call('SET', data, before, 'KEEPTTL') else redis.call('DEL', data) end
  return refusal(grown, not old)
end
if ttl < 0 then ttl = 0 end
count(old, new, ttl)
return {1, redis.call('GET', data)}
"#;

/// ARGV: key bytes. Returns 1 when a live value was deleted.
const DELETE: &str = r#"
local key_bytes = tonumber(ARGV[1])
settle(data)
local old = size_of(key_bytes)
if not old then return 0 end
redis.call('DEL', data)
redis.call('HINCRBY', usage, 'bytes', -old)
redis.call('HINCRBY', usage, 'keys', -1)
redis.call('ZREM', expiring, data)
redis.call('HDEL', usage, data)
return 1
"#;

/// The scripts, each loaded once per process (invoked by `EVALSHA`).
struct Scripts {
    set: Script,
    increment: Script,
    delete: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        set: Script::new(&format!("{PREAMBLE}{SET}")),
        increment: Script::new(&format!("{PREAMBLE}{INCREMENT}")),
        delete: Script::new(&format!("{PREAMBLE}{DELETE}")),
    })
}

/// The Redis key of everything in `namespace`, up to the key itself.
fn namespace_prefix(namespace: &str) -> String {
    let scope = scope_of(namespace);
    format!("cello:kv:{{{scope}}}{}:", &namespace[scope.len()..])
}

fn usage_key(scope: &str) -> String {
    format!("cello:kv-usage:{{{scope}}}")
}

fn expiring_key(scope: &str) -> String {
    format!("cello:kv-expiring:{{{scope}}}")
}

/// `text` as a `SCAN MATCH` pattern that matches only itself.
fn glob_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// What a guest sees when Redis fails.
fn failed(failure: RedisFailure) -> String {
    match failure {
        RedisFailure::Unreachable(_) => {
            format!("the key-value store is unavailable: {failure}; try again in a few seconds")
        }
        RedisFailure::Refused(_) => {
            tracing::error!("key-value store error: {failure}");
            format!("the key-value store failed: {failure}")
        }
    }
}

/// One namespace of the store on Redis.
pub(super) struct RedisNamespace<'a> {
    pub redis: &'a Redis,
    pub namespace: &'a str,
    pub quota: Option<KvQuota>,
}

/// A script's keys and the quota's arguments, for a write of `key`.
struct Write {
    data: String,
    usage: String,
    expiring: String,
    max_bytes: i64,
    max_keys: i64,
}

impl RedisNamespace<'_> {
    fn write_of(&self, key: &str) -> Write {
        let scope = scope_of(self.namespace);
        let (max_bytes, max_keys) = self.quota.map_or((-1, -1), |q| {
            let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            (clamp(q.max_bytes), clamp(q.max_keys))
        });
        Write {
            data: format!("{}{key}", namespace_prefix(self.namespace)),
            usage: usage_key(scope),
            expiring: expiring_key(scope),
            max_bytes,
            max_keys,
        }
    }

    /// A refusal the script returned, as the guest's sentence.
    fn refused(&self, reply: &[redis::Value]) -> String {
        let number = |i: usize| match reply.get(i) {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        };
        let quota = self.quota.expect("only a quota refuses");
        let used = (number(1).max(0) as u64, number(2).max(0) as u64);
        quota_refusal(
            scope_of(self.namespace),
            quota,
            used,
            number(3).max(0) as u64,
            number(4) == 1,
        )
    }

    pub async fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>> {
        let data = &format!("{}{key}", namespace_prefix(self.namespace));
        self.redis
            .call(|mut c| async move {
                redis::cmd("GET")
                    .arg(data)
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
            })
            .await
            .map_err(failed)
    }

    /// Runs `script` on `key`, its scope's usage and expiry index, with
    /// the arguments `args` adds (given the quota's).
    async fn write<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        key: &str,
        args: impl Fn(&mut ScriptInvocation<'_>, &Write),
    ) -> KvResult<T> {
        let w = &self.write_of(key);
        let args = &args;
        self.redis
            .call(|mut c: ConnectionManager| async move {
                let mut invocation = script.prepare_invoke();
                invocation.key(&w.data).key(&w.usage).key(&w.expiring);
                args(&mut invocation, w);
                invocation.invoke_async(&mut c).await
            })
            .await
            .map_err(failed)
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl_ms: u64) -> KvResult<()> {
        let reply: Vec<redis::Value> = self
            .write(&scripts().set, key, |invocation, w| {
                invocation.arg(value).arg(ttl_ms).arg(key.len());
                invocation.arg(w.max_bytes).arg(w.max_keys);
            })
            .await?;
        match reply.first() {
            Some(redis::Value::Int(1)) => Ok(()),
            _ => Err(self.refused(&reply)),
        }
    }

    pub async fn delete(&self, key: &str) -> KvResult<bool> {
        let deleted: i64 = self
            .write(&scripts().delete, key, |invocation, _| {
                invocation.arg(key.len());
            })
            .await?;
        Ok(deleted == 1)
    }

    pub async fn increment(&self, key: &str, delta: i64) -> KvResult<i64> {
        let reply: Vec<redis::Value> = self
            .write(&scripts().increment, key, |invocation, w| {
                invocation.arg(delta).arg(key.len());
                invocation.arg(w.max_bytes).arg(w.max_keys);
            })
            .await?;
        let text = |value: Option<&redis::Value>| match value {
            Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            Some(redis::Value::SimpleString(text)) => text.clone(),
            _ => String::new(),
        };
        match reply.first() {
            Some(redis::Value::Int(1)) => text(reply.get(1))
                .parse()
                .map_err(|_| format!("{key:?} does not hold an integer")),
            Some(redis::Value::Int(2)) if text(reply.get(1)).contains("overflow") => {
                Err(format!("{key:?} would overflow a 64-bit integer"))
            }
            Some(redis::Value::Int(2)) => Err(format!("{key:?} does not hold an integer")),
            _ => Err(self.refused(&reply)),
        }
    }

    pub async fn list_keys(&self, prefix: &str) -> KvResult<Vec<String>> {
        let namespace_prefix = namespace_prefix(self.namespace);
        let pattern = format!("{}*", glob_escaped(&format!("{namespace_prefix}{prefix}")));
        let mut keys = Vec::new();
        scan(self.redis, &pattern, |key| {
            if keys.len() == MAX_LISTED {
                return Err(format!(
                    "more than {MAX_LISTED} keys start with {prefix:?}; use a longer prefix"
                ));
            }
            keys.extend(key.strip_prefix(&namespace_prefix).map(str::to_string));
            Ok(())
        })
        .await?;
        // SCAN may return a key twice; redb lists in order.
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// Deletes every key of the namespace, each counted out; how many.
    pub async fn clear(&self) -> KvResult<usize> {
        let mut removed = 0;
        for key in self.list_all().await? {
            removed += usize::from(self.delete(&key).await?);
        }
        Ok(removed)
    }

    /// Every key, however many.
    async fn list_all(&self) -> KvResult<Vec<String>> {
        let namespace_prefix = namespace_prefix(self.namespace);
        let mut keys = Vec::new();
        scan(
            self.redis,
            &format!("{}*", glob_escaped(&namespace_prefix)),
            |key| {
                keys.extend(key.strip_prefix(&namespace_prefix).map(str::to_string));
                Ok(())
            },
        )
        .await?;
        Ok(keys)
    }
}

/// Walks the keys matching `pattern` with `SCAN`, giving each to `each`
/// (a key may come twice).
async fn scan(
    redis: &Redis,
    pattern: &str,
    mut each: impl FnMut(&str) -> KvResult<()>,
) -> KvResult<()> {
    let mut cursor = 0u64;
    loop {
        let (next, found): (u64, Vec<Vec<u8>>) = redis
            .call(|mut c| async move {
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(&mut c)
                    .await
            })
            .await
            .map_err(failed)?;
        for key in &found {
            each(&String::from_utf8_lossy(key))?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Every namespace with keys on Redis, from the names of their keys.
pub(super) async fn namespaces(redis: &Redis) -> KvResult<Vec<String>> {
    let mut namespaces = std::collections::BTreeSet::new();
    scan(redis, "cello:kv:{*", |key| {
        namespaces.extend(namespace_of(key));
        Ok(())
    })
    .await?;
    Ok(namespaces.into_iter().collect())
}

/// The namespace a value's Redis key belongs to.
fn namespace_of(key: &str) -> Option<String> {
    let rest = key.strip_prefix("cello:kv:{")?;
    let (scope, rest) = rest.split_once('}')?;
    let (tail, _) = rest.split_once(':')?;
    Some(format!("{scope}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_namespaces_share_a_hash_tag_and_no_prefix() {
        assert_eq!(namespace_prefix("acme/shop"), "cello:kv:{acme/}shop:");
        assert_eq!(namespace_prefix("acme/blog"), "cello:kv:{acme/}blog:");
        assert_eq!(namespace_prefix("shop"), "cello:kv:{shop}:");
        assert_eq!(usage_key("acme/"), "cello:kv-usage:{acme/}");
    }

    #[test]
    fn a_value_key_names_its_namespace() {
        for namespace in ["acme/shop", "shop"] {
            let key = format!("{}a:b:c", namespace_prefix(namespace));
            assert_eq!(namespace_of(&key).as_deref(), Some(namespace));
        }
    }

    #[test]
    fn glob_characters_in_a_prefix_match_only_themselves() {
        assert_eq!(glob_escaped("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(glob_escaped("plain:key"), "plain:key");
    }
}
