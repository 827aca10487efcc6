//! What the SQL tests share, whichever backend keeps the databases: the
//! todos sidecar, posting bodies, and two tenants serving rust-sql.

use serde_json::json;

use super::admin::{component, create_tenant, push_with};
use super::{Host, Reply};

pub const TODOS: &str = "prefix = \"/todos\"\n[grants]\nsql = true\n";

pub async fn post_json(host: &Host, path: &str, body: serde_json::Value) -> Reply {
    host.post(path, "application/json", body.to_string()).await
}

pub async fn post_text(host: &Host, path: &str, body: &str) -> Reply {
    host.post(path, "text/plain", body.to_string()).await
}

/// Tenants `small` (SQL quotas of 1 MiB and 300 ms) and `large` on `host`,
/// each serving rust-sql as `notes`.
pub async fn tenants_on(host: &Host, small: &str, large: &str) {
    let grants = json!({"sql": true, "config": true});
    let quotas = json!({"sql-mb": 1, "sql-query-ms": 300});
    create_tenant(host, small, json!({"grants": grants, "quotas": quotas})).await;
    create_tenant(host, large, json!({"grants": grants})).await;
    for tenant in [small, large] {
        let reply = push_with(host, tenant, "notes", component("rust-sql"), "").await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
}
