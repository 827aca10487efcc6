//! Cluster mode: many hosts sharing tenants and state through servers
//! operators already run. PostgreSQL is the store of record for tenants
//! and their uploads; Redis holds the key-value store, the rate-limit
//! counters and the cache invalidations every host must hear.
//!
//! Without a `[cluster]` table a host keeps everything on its own disk,
//! as on one machine.

pub mod follower;
pub mod schema;
pub mod tenant_store;

use serde::Deserialize;

pub mod invalidations;
pub mod rate_limits;
pub mod redis;

use crate::capabilities::config::ValueSource;

/// The `[cluster]` table.
///
/// ```toml
/// [cluster]
/// postgres = { env = "CELLO_POSTGRES_URL" }   # tenants' store of record
/// redis = "redis://redis:6379/0"              # KV, rate limits, invalidations
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterSettings {
    /// A PostgreSQL URL: tenants, their quotas, grants, tokens and
    /// component versions are kept there, and every host follows it.
    pub postgres: Option<ValueSource>,
    /// A Redis URL: the key-value store, shared rate limits and cache
    /// invalidations go through it.
    pub redis: Option<ValueSource>,
}

impl ClusterSettings {
    /// The PostgreSQL URL, if one is configured.
    pub fn postgres_url(&self) -> Result<Option<String>, String> {
        self.postgres
            .as_ref()
            .map(|url| url.resolve("cluster", "postgres"))
            .transpose()
    }

    /// The Redis URL, if one is configured.
    pub fn redis_url(&self) -> Result<Option<String>, String> {
        self.redis
            .as_ref()
            .map(|url| url.resolve("cluster", "redis"))
            .transpose()
    }
}
