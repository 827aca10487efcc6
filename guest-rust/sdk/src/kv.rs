//! The component's own key-value store, granted by `kv = true` under
//! `[grants]`. Calls return at once (the store is local) and values
//! survive restarts. Take a [`Kv`] as a handler argument, or call the
//! functions here. Natively, a test client's in-memory store stands in.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::response::internal_error;
use crate::{FromRequest, IntoResponse, Request, Response, sys};

/// Why a key-value call failed, in the host's words (a quota reached, a key
/// too long, a value that is not what was asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvError(pub String);

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key-value store: {}", self.0)
    }
}

impl std::error::Error for KvError {}

/// 500, with the reason logged.
impl IntoResponse for KvError {
    fn into_response(self) -> Response {
        internal_error(&self.to_string())
    }
}

/// The value under `key`, if any and not expired.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    sys::kv_get(key).map_err(KvError)
}

/// The value under `key` as UTF-8 text (invalid bytes replaced).
pub fn get_text(key: &str) -> Result<Option<String>, KvError> {
    Ok(get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// The value under `key` parsed as JSON.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, KvError> {
    match get(key)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| KvError(format!("{key:?} does not hold the JSON asked for: {e}"))),
        None => Ok(None),
    }
}

/// Stores `value` under `key`; with `ttl_seconds`, it expires.
pub fn set(key: &str, value: impl AsRef<[u8]>, ttl_seconds: Option<u32>) -> Result<(), KvError> {
    sys::kv_set(key, value.as_ref(), ttl_seconds).map_err(KvError)
}

/// Stores `value` as JSON under `key`.
pub fn set_json<T: Serialize + ?Sized>(
    key: &str,
    value: &T,
    ttl_seconds: Option<u32>,
) -> Result<(), KvError> {
    let bytes = serde_json::to_vec(value).map_err(|e| KvError(format!("{key:?}: {e}")))?;
    set(key, bytes, ttl_seconds)
}

/// Removes `key`; true if it was there.
pub fn delete(key: &str) -> Result<bool, KvError> {
    sys::kv_delete(key).map_err(KvError)
}

/// Keys starting with `prefix`, in order.
pub fn list_keys(prefix: &str) -> Result<Vec<String>, KvError> {
    sys::kv_list_keys(prefix).map_err(KvError)
}

/// Adds `delta` to the integer under `key` (0 if absent) atomically, and
/// returns the new value.
pub fn increment(key: &str, delta: i64) -> Result<i64, KvError> {
    sys::kv_increment(key, delta).map_err(KvError)
}

/// The store, as a handler argument: `fn visit(kv: Kv) -> Result<String, KvError>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kv;

impl Kv {
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        get(key)
    }

    pub fn get_text(&self, key: &str) -> Result<Option<String>, KvError> {
        get_text(key)
    }

    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, KvError> {
        get_json(key)
    }

    pub fn set(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        ttl_seconds: Option<u32>,
    ) -> Result<(), KvError> {
        set(key, value, ttl_seconds)
    }

    pub fn set_json<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl_seconds: Option<u32>,
    ) -> Result<(), KvError> {
        set_json(key, value, ttl_seconds)
    }

    pub fn delete(&self, key: &str) -> Result<bool, KvError> {
        delete(key)
    }

    pub fn list_keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        list_keys(prefix)
    }

    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        increment(key, delta)
    }
}

impl FromRequest for Kv {
    type Rejection = std::convert::Infallible;

    async fn from_request(_req: &Request) -> Result<Self, Self::Rejection> {
        Ok(Kv)
    }
}
