//! What one tenant may use: its quotas, set by the operator.

use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::capabilities::kv::KvQuota;
use crate::capabilities::sql::SqlQuota;

/// What one tenant may use. Every field has a default.
///
/// Each `[limits]` key a component's settings may set has its ceiling
/// here, under the same name: a setting above it is refused, and an unset
/// key gets the lower of the host's default and the ceiling.
///
/// ```json
/// {"memory-mb": 128, "timeout-ms": 10000, "cpu-ms": 10000, "max-instances": 8,
///  "queue": 256, "async-concurrency": 64, "p3-concurrency": 16, "max-resources": 10000,
///  "idle-timeout-s": 60, "background-timeout-ms": 10000, "max-body-kb": 10240,
///  "max-components": 10, "max-component-mb": 64, "max-total-mb": 256,
///  "requests-per-second": 500, "kv-mb": 64, "kv-keys": 100000,
///  "sql-mb": 64, "sql-query-ms": 5000}
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Quotas {
    /// Memory per instance, MiB: the ceiling of a component's `memory-mb`.
    pub memory_mb: u64,
    /// Time per request, ms: the ceiling of a component's `timeout-ms`.
    pub timeout_ms: u64,
    /// CPU time per request, ms: the ceiling of a component's `cpu-ms`.
    pub cpu_ms: u64,
    /// Instances alive at once across all the tenant's components, and the
    /// ceiling of a component's `max-instances`.
    pub max_instances: usize,
    /// Requests waiting for an instance: the ceiling of `queue`.
    pub queue: usize,
    /// Async requests on one instance: the ceiling of `async-concurrency`.
    pub async_concurrency: usize,
    /// Requests on one instance of a `wasi:http` 0.3 service: the ceiling
    /// of `p3-concurrency`.
    pub p3_concurrency: usize,
    /// Host resources one instance holds: the ceiling of `max-resources`.
    pub max_resources: usize,
    /// Seconds an idle instance is kept: the ceiling of `idle-timeout-s`.
    pub idle_timeout_s: u64,
    /// Background time after a response, ms: the ceiling of
    /// `background-timeout-ms`.
    pub background_timeout_ms: u64,
    /// Request body, KiB: the ceiling of `max-body-kb`.
    pub max_body_kb: u64,
    /// Time a streamed response may go without a chunk, ms: the ceiling of
    /// `stream-idle-ms`.
    pub stream_idle_ms: u64,
    pub max_components: usize,
    /// Size of one uploaded component with its settings, MiB.
    pub max_component_mb: u64,
    /// Size of all current versions together with their settings, MiB.
    pub max_total_mb: u64,
    /// Requests per second across all the tenant's components; 0 for none.
    pub requests_per_second: u32,
    /// Key-value data across all the tenant's components (keys and values),
    /// MiB.
    pub kv_mb: u64,
    /// Key-value keys across all the tenant's components.
    pub kv_keys: u64,
    /// Size of each of the tenant's SQL databases (one per component),
    /// MiB.
    pub sql_mb: u64,
    /// Time one SQL statement may run, ms.
    pub sql_query_ms: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            memory_mb: 128,
            timeout_ms: 10_000,
            cpu_ms: 10_000,
            max_instances: 8,
            queue: 256,
            async_concurrency: 64,
            p3_concurrency: 16,
            max_resources: 10_000,
            idle_timeout_s: 60,
            background_timeout_ms: 10_000,
            max_body_kb: 10 << 10,
            stream_idle_ms: 60_000,
            max_components: 10,
            max_component_mb: 64,
            max_total_mb: 256,
            requests_per_second: 500,
            kv_mb: 64,
            kv_keys: 100_000,
            sql_mb: 64,
            sql_query_ms: 5_000,
        }
    }
}

/// Quota changes as an operator sends them: some keys of [`Quotas`].
pub type QuotaChanges = serde_json::Map<String, serde_json::Value>;

impl Quotas {
    /// These quotas with `changes` laid over them; an unknown key or a
    /// value of the wrong type is refused with a sentence.
    pub fn merged(&self, changes: QuotaChanges) -> Result<Self, String> {
        let mut merged = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(fields)) => fields,
            _ => unreachable!("quotas serialise as a JSON object"),
        };
        merged.extend(changes);
        let merged: Self = serde_json::from_value(merged.into())
            .map_err(|e| format!("quotas: {e}; see the quota keys in docs/tenants.md#quotas"))?;
        for (name, value) in [
            ("timeout-ms", merged.timeout_ms),
            ("memory-mb", merged.memory_mb),
        ] {
            if value == 0 {
                return Err(format!(
                    "quotas: {name} = 0 leaves none of the tenant's requests able to run: \
                     it must be at least 1"
                ));
            }
        }
        Ok(merged)
    }

    /// The key-value quota, in the store's terms.
    pub fn kv(&self) -> KvQuota {
        KvQuota {
            max_bytes: self.kv_mb.saturating_mul(1 << 20),
            max_keys: self.kv_keys,
        }
    }

    /// The SQL quota of each of the tenant's databases.
    pub fn sql(&self) -> SqlQuota {
        SqlQuota {
            max_bytes: self.sql_mb.saturating_mul(1 << 20),
            query_timeout: Duration::from_millis(self.sql_query_ms),
        }
    }
}
