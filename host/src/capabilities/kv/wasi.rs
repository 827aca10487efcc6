//! `wasi:keyvalue@0.2.0-draft` (`store`, `atomics`, `batch`, as `wasmtime
//! serve -S keyvalue` and Spin offer them) over a component's namespace of
//! the host's store, under the same `kv` grant, quotas and backends as
//! `cello:component/kv`.
//!
//! A bucket is a part of the namespace: `open("")` and `open("default")`
//! give the whole namespace, and `open(NAME)` the keys that start with
//! `NAME/`, so bucket `orders`' key `1` is the namespace's key `orders/1`.
//! What the store refuses (a full quota, Redis out of reach, a key too
//! long) is the call's `error::other` with the store's sentence, never a
//! trap.

use tracing::Span;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::{KvNamespace, MAX_KEY_BYTES};
use crate::capabilities::Has;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/wasi-keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: { "wasi:keyvalue/store.bucket": super::Bucket },
        trappable_error_type: { "wasi:keyvalue/store.error" => super::KeyValueError },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// An open bucket: the prefix its keys carry in the namespace.
pub struct Bucket {
    prefix: String,
}

/// Why a call failed: what the guest sees as `error`, or a host failure
/// that traps.
pub enum KeyValueError {
    AccessDenied,
    Other(String),
    Trap(wasmtime::Error),
}

impl From<String> for KeyValueError {
    fn from(sentence: String) -> Self {
        Self::Other(sentence)
    }
}

impl From<wasmtime::Error> for KeyValueError {
    fn from(error: wasmtime::Error) -> Self {
        Self::Trap(error)
    }
}

type Outcome<T> = Result<T, KeyValueError>;

/// Adds `wasi:keyvalue/{store,atomics,batch}` to `linker`.
pub fn add_to_linker<T: Has<super::Kv>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    fn view<T: Has<super::Kv>>(state: &mut T) -> WasiKv<'_> {
        let span = state.call_span();
        let (kv, table) = state.granted_with_table();
        WasiKv { kv, table, span }
    }
    store::add_to_linker::<T, WasiKvAccess>(linker, view)?;
    atomics::add_to_linker::<T, WasiKvAccess>(linker, view)?;
    batch::add_to_linker::<T, WasiKvAccess>(linker, view)
}

struct WasiKvAccess;

impl HasData for WasiKvAccess {
    type Data<'a> = WasiKv<'a>;
}

/// A store's namespace and its open buckets, as the host functions see
/// them, with the trace span of the call using them.
pub struct WasiKv<'a> {
    kv: Option<&'a KvNamespace>,
    table: &'a mut ResourceTable,
    span: Span,
}

impl WasiKv<'_> {
    fn namespace(&self) -> Outcome<KvNamespace> {
        self.kv.cloned().ok_or(KeyValueError::AccessDenied)
    }

    /// The namespace, and `key`'s name in it through `bucket`.
    fn key(&self, bucket: &Resource<Bucket>, key: &str) -> Outcome<(KvNamespace, String)> {
        let kv = self.namespace()?;
        let prefix = &self.bucket(bucket)?.prefix;
        Ok((kv, full_key(prefix, key)?))
    }

    fn bucket(&self, bucket: &Resource<Bucket>) -> Outcome<&Bucket> {
        Ok(self.table.get(bucket).map_err(wasmtime::Error::from)?)
    }
}

/// `key` of the bucket whose keys carry `prefix`, as the namespace names it.
fn full_key(prefix: &str, key: &str) -> Outcome<String> {
    if key.is_empty() {
        return Err(KeyValueError::Other("the key is empty".into()));
    }
    let full = format!("{prefix}{key}");
    if full.len() > MAX_KEY_BYTES {
        return Err(KeyValueError::Other(format!(
            "the key with its bucket's prefix {prefix:?} is {} bytes, over the limit of \
             {MAX_KEY_BYTES}; use a shorter key or bucket name",
            full.len()
        )));
    }
    Ok(full)
}

/// The prefix of bucket `identifier`'s keys: none for the component's own
/// space, `NAME/` for bucket `NAME`.
fn prefix_of(identifier: &str) -> String {
    match identifier {
        "" | "default" => String::new(),
        name => format!("{name}/"),
    }
}

impl store::Host for WasiKv<'_> {
    async fn open(&mut self, identifier: String) -> Outcome<Resource<Bucket>> {
        self.namespace()?;
        let bucket = Bucket {
            prefix: prefix_of(&identifier),
        };
        Ok(self.table.push(bucket).map_err(wasmtime::Error::from)?)
    }

    fn convert_error(&mut self, error: KeyValueError) -> wasmtime::Result<store::Error> {
        match error {
            KeyValueError::AccessDenied => Ok(store::Error::AccessDenied),
            KeyValueError::Other(sentence) => Ok(store::Error::Other(sentence)),
            KeyValueError::Trap(error) => Err(error),
        }
    }
}

impl store::HostBucket for WasiKv<'_> {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Outcome<Option<Vec<u8>>> {
        let (kv, key) = self.key(&bucket, &key)?;
        Ok(kv.call_get(&self.span, key).await??)
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Outcome<()> {
        let (kv, key) = self.key(&bucket, &key)?;
        Ok(kv.call_set(&self.span, key, value, None).await??)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Outcome<()> {
        let (kv, key) = self.key(&bucket, &key)?;
        kv.call_delete(&self.span, key).await??;
        Ok(())
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Outcome<bool> {
        Ok(self.get(bucket, key).await?.is_some())
    }

    /// Every key of the bucket in one response (at most 10,000, as
    /// `cello:component/kv` lists); a cursor skips that many.
    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Outcome<store::KeyResponse> {
        let kv = self.namespace()?;
        let prefix = self.bucket(&bucket)?.prefix.clone();
        let keys = kv.call_list_keys(&self.span, prefix.clone()).await??;
        let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        let keys = keys
            .into_iter()
            .skip(skip)
            .map(|key| key[prefix.len()..].to_string())
            .collect();
        Ok(store::KeyResponse { keys, cursor: None })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for WasiKv<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Outcome<u64> {
        let (kv, key) = self.key(&bucket, &key)?;
        let delta = i64::try_from(delta)
            .map_err(|_| format!("a delta of {delta} is over the largest, {}", i64::MAX))?;
        let value = kv.call_increment(&self.span, key.clone(), delta).await??;
        Ok(
            u64::try_from(value)
                .map_err(|_| format!("{key:?} holds {value}, which is negative"))?,
        )
    }
}

/// The most keys one batch call may name.
pub const MAX_BATCH_KEYS: usize = 1000;

/// The most value bytes one `get-many` gathers before it answers: the host
/// holds them all until then.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// Refuses a batch of `count` keys over [`MAX_BATCH_KEYS`], before any is
/// read or written.
fn batch_size(count: usize) -> Outcome<()> {
    if count > MAX_BATCH_KEYS {
        return Err(format!(
            "a batch of {count} keys is over the limit of {MAX_BATCH_KEYS}; split it"
        )
        .into());
    }
    Ok(())
}

// Not atomic, as the interface allows: each key is its own call, and a
// failure stops the batch where it is.
impl batch::Host for WasiKv<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Outcome<Vec<Option<(String, Vec<u8>)>>> {
        batch_size(keys.len())?;
        let mut values = Vec::with_capacity(keys.len());
        let mut gathered = 0;
        for key in keys {
            let (kv, full) = self.key(&bucket, &key)?;
            let value = kv.call_get(&self.span, full).await??;
            gathered += value.as_ref().map_or(0, Vec::len);
            if gathered > MAX_BATCH_BYTES {
                return Err(format!(
                    "the values come to more than {MAX_BATCH_BYTES} bytes; get fewer keys at once"
                )
                .into());
            }
            values.push(value.map(|value| (key, value)));
        }
        Ok(values)
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Outcome<()> {
        batch_size(key_values.len())?;
        for (key, value) in key_values {
            let (kv, key) = self.key(&bucket, &key)?;
            kv.call_set(&self.span, key, value, None).await??;
        }
        Ok(())
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Outcome<()> {
        batch_size(keys.len())?;
        for key in keys {
            let (kv, key) = self.key(&bucket, &key)?;
            kv.call_delete(&self.span, key).await??;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_bucket_is_the_whole_namespace_and_others_a_prefix() {
        assert_eq!(prefix_of(""), "");
        assert_eq!(prefix_of("default"), "");
        assert_eq!(prefix_of("orders"), "orders/");
        assert_eq!(full_key("orders/", "1").ok(), Some("orders/1".into()));
    }

    #[test]
    fn a_key_too_long_with_its_prefix_is_refused_with_a_sentence() {
        let key = "k".repeat(MAX_KEY_BYTES);
        match full_key("orders/", &key) {
            Err(KeyValueError::Other(sentence)) => {
                assert!(sentence.contains("over the limit of 1024"), "{sentence}")
            }
            _ => panic!("a key over the limit was accepted"),
        }
        assert!(matches!(full_key("", ""), Err(KeyValueError::Other(_))));
    }
}
