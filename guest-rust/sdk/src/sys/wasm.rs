//! The component's imports, as the rest of the SDK calls them.

use crate::bindings::cello::component::{cache, config, host, kv, outbound};
use crate::host::Level;
use crate::outbound::{OutgoingRequest, Reply, SendError};

pub(crate) fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => host::Level::Trace,
        Level::Debug => host::Level::Debug,
        Level::Info => host::Level::Info,
        Level::Warn => host::Level::Warn,
        Level::Error => host::Level::Error,
    };
    host::log(level, message);
}

pub(crate) async fn sleep(ms: u32) {
    host::sleep(ms).await;
}

pub(crate) fn cache_invalidate(tags: &[String]) -> u32 {
    cache::invalidate(tags)
}

pub(crate) fn kv_get(key: &str) -> Result<Option<Vec<u8>>, String> {
    kv::get(key)
}

pub(crate) fn kv_set(key: &str, value: &[u8], ttl_seconds: Option<u32>) -> Result<(), String> {
    kv::set(key, value, ttl_seconds)
}

pub(crate) fn kv_delete(key: &str) -> Result<bool, String> {
    kv::delete(key)
}

pub(crate) fn kv_list_keys(prefix: &str) -> Result<Vec<String>, String> {
    kv::list_keys(prefix)
}

pub(crate) fn kv_increment(key: &str, delta: i64) -> Result<i64, String> {
    kv::increment(key, delta)
}

pub(crate) fn config_get(name: &str) -> Option<String> {
    config::get(name)
}

pub(crate) fn config_secret(name: &str) -> Option<String> {
    config::get_secret(name)
}

pub(crate) async fn outbound_send(request: OutgoingRequest) -> Result<Reply, SendError> {
    let request = outbound::OutgoingRequest {
        method: request.method,
        url: request.url,
        headers: request.headers,
        body: request.body,
        timeout_ms: request.timeout_ms,
    };
    match outbound::send(request).await {
        Ok(r) => Ok(Reply::from_wire(r.status, r.headers, r.body)),
        Err(outbound::Error::Denied(why)) => Err(SendError::Denied(why)),
        Err(outbound::Error::Timeout) => Err(SendError::Timeout),
        Err(outbound::Error::Failed(why)) => Err(SendError::Failed(why)),
    }
}
