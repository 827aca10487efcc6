//! Tenant quotas over the real admin API and real traffic: every limit a
//! tenant's settings may set has a ceiling, key-value data has a quota,
//! settings text counts against the size quotas, and a PATCH changes only
//! the quotas it names.

use crate::support;

use http::Method;
use serde_json::json;
use support::{Components, Host, Reply, components_dir};

const OPERATOR: &str = "operator-secret";

/// What rust-caps and python-caps import.
fn grants() -> serde_json::Value {
    json!({ "kv": true, "config": true, "outbound": ["http://127.0.0.1:*"] })
}

fn serve_with(components: Components, extra: &[&str]) -> Host {
    let mut args = vec!["--admin-token", OPERATOR, "--admin-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    components.serve_with(&args)
}

fn serve() -> Host {
    serve_with(Components::new(), &[])
}

fn component(name: &str) -> Vec<u8> {
    std::fs::read(components_dir().join(format!("{name}.wasm"))).unwrap()
}

async fn admin_json(host: &Host, method: Method, path: &str, body: serde_json::Value) -> Reply {
    let body = body.to_string().into_bytes();
    host.admin(method, path, OPERATOR, "application/json", body)
        .await
}

/// Creates `name` with `settings` (quotas, grants).
async fn create_tenant(host: &Host, name: &str, mut settings: serde_json::Value) {
    settings["name"] = name.into();
    let reply = admin_json(host, Method::POST, "/v1/tenants", settings).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

async fn deploy(host: &Host, tenant: &str, name: &str, guest: &str, settings: &str) {
    let reply = host
        .upload(tenant, name, OPERATOR, component(guest), settings)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

async fn put_kv(host: &Host, path: &str, value: Vec<u8>) -> Reply {
    host.send(Method::PUT, path, &[], value).await
}

#[tokio::test]
async fn a_limit_above_its_tenant_quota_is_refused_naming_the_key_value_and_quota() {
    let host = serve();
    let ceilings = [
        ("max-body-kb", 64),
        ("queue", 4),
        ("async-concurrency", 2),
        ("p3-concurrency", 2),
        ("max-resources", 100),
        ("idle-timeout-s", 5),
        ("background-timeout-ms", 500),
        ("cpu-ms", 200),
        ("memory-mb", 64),
        ("timeout-ms", 1000),
        ("max-instances", 2),
    ];
    let quotas: serde_json::Map<_, _> = ceilings
        .iter()
        .map(|(key, quota)| (key.to_string(), json!(quota)))
        .collect();
    create_tenant(&host, "acme", json!({ "quotas": quotas })).await;
    for (key, quota) in ceilings {
        let asked = quota + 1;
        let settings = format!("[limits]\n{key} = {asked}\n");
        let reply = host
            .upload("acme", "shop", OPERATOR, component("testbed"), &settings)
            .await;
        assert_eq!(reply.status, 422, "{key}: {}", reply.body);
        let expected = format!("[limits] {key} = {asked} is over the tenant's quota of {quota}");
        assert!(reply.body.contains(&expected), "{key}: {}", reply.body);
    }
    // At the ceiling is allowed.
    let settings: String = ceilings
        .iter()
        .map(|(key, quota)| format!("{key} = {quota}\n"))
        .collect();
    deploy(
        &host,
        "acme",
        "shop",
        "testbed",
        &format!("[limits]\n{settings}"),
    )
    .await;
}

#[tokio::test]
async fn an_unset_limit_is_the_lower_of_the_host_default_and_the_quota() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[limits]\nmax-body-kb = 2\n").unwrap();
    let host = serve_with(
        Components::new(),
        &["--config", config.path().to_str().unwrap()],
    );
    // The quota is lower than the host's default: the quota holds.
    create_tenant(&host, "tight", json!({ "quotas": { "max-body-kb": 1 } })).await;
    // The host's default is lower than the quota: the default holds.
    create_tenant(&host, "roomy", json!({ "quotas": { "max-body-kb": 1000 } })).await;
    deploy(&host, "tight", "shop", "testbed", "").await;
    deploy(&host, "roomy", "shop", "testbed", "").await;

    let echoed = async |path: &str, bytes: usize| {
        host.post(path, "text/plain", vec![b'x'; bytes])
            .await
            .status
    };
    assert_eq!(echoed("/t/tight/echo", 1000).await, 200);
    assert_eq!(echoed("/t/tight/echo", 1500).await, 413);
    assert_eq!(echoed("/t/roomy/echo", 1500).await, 200);
    assert_eq!(echoed("/t/roomy/echo", 2500).await, 413);
}

/// A host where `acme` (with `quotas`) and `globex` serve rust-caps, with
/// the key-value grant.
async fn kv_tenants(quotas: serde_json::Value) -> Host {
    let host = serve();
    let grants = grants();
    create_tenant(&host, "acme", json!({ "quotas": quotas, "grants": grants })).await;
    create_tenant(&host, "globex", json!({ "grants": grants })).await;
    deploy(&host, "acme", "shop", "rust-caps", "").await;
    deploy(&host, "globex", "shop", "rust-caps", "").await;
    host
}

#[tokio::test]
async fn a_kv_write_past_the_tenants_byte_quota_fails_for_the_guest_across_its_components() {
    let host = kv_tenants(json!({ "kv-mb": 1 })).await;
    deploy(&host, "acme", "blog", "rust-caps", "prefix = \"/blog\"").await;
    let half = vec![b'x'; 600 << 10];

    let reply = put_kv(&host, "/t/acme/kv/first", half.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // The second write is through the tenant's other component: the quota
    // covers the tenant, not one component.
    let reply = put_kv(&host, "/t/acme/blog/kv/second", half.clone()).await;
    assert_eq!(reply.status, 507, "{}", reply.body);
    assert!(
        reply
            .body
            .contains("key-value quota of 1048576 bytes is full")
            && reply.body.contains("kv-mb"),
        "{}",
        reply.body
    );
    assert_eq!(host.get("/t/acme/kv/second").await.status, 404);
    // Another tenant's store is its own.
    for key in ["a", "b", "c"] {
        let reply = put_kv(&host, &format!("/t/globex/kv/{key}"), half.clone()).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // The tenant still reads and rewrites what it holds.
    assert_eq!(host.get("/t/acme/kv/first").await.status, 200);
    let reply = put_kv(&host, "/t/acme/kv/first", b"small".to_vec()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = put_kv(&host, "/t/acme/blog/kv/second", half).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn a_kv_write_past_the_key_quota_fails_and_deleting_a_key_frees_room() {
    // on-start writes one key ("startup"), leaving two.
    let host = kv_tenants(json!({ "kv-keys": 3 })).await;
    for key in ["a", "b"] {
        let reply = put_kv(&host, &format!("/t/acme/kv/{key}"), b"v".to_vec()).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let reply = put_kv(&host, "/t/acme/kv/c", b"v".to_vec()).await;
    assert_eq!(reply.status, 507, "{}", reply.body);
    assert!(
        reply.body.contains("key-value quota of 3 keys is full") && reply.body.contains("kv-keys"),
        "{}",
        reply.body
    );
    // Rewriting a key adds none.
    let reply = put_kv(&host, "/t/acme/kv/a", b"again".to_vec()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let deleted = host
        .send(Method::DELETE, "/t/acme/kv/a", &[], Vec::new())
        .await;
    assert_eq!(deleted.body, "true");
    let reply = put_kv(&host, "/t/acme/kv/c", b"v".to_vec()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = put_kv(&host, "/t/globex/kv/c", b"v".to_vec()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn raising_the_kv_quota_applies_to_the_next_write() {
    let host = kv_tenants(json!({ "kv-keys": 1 })).await;
    let reply = put_kv(&host, "/t/acme/kv/a", b"v".to_vec()).await;
    assert_eq!(reply.status, 507, "{}", reply.body);
    let patch = json!({ "quotas": { "kv-keys": 2 } });
    let reply = admin_json(&host, Method::PATCH, "/v1/tenants/acme", patch).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = put_kv(&host, "/t/acme/kv/a", b"v".to_vec()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn a_python_guest_gets_the_kv_quota_as_a_kv_error() {
    let host = serve();
    let quotas = json!({ "kv-mb": 1 });
    create_tenant(
        &host,
        "acme",
        json!({ "quotas": quotas, "grants": grants() }),
    )
    .await;
    deploy(&host, "acme", "shop", "python-caps", "").await;
    let big = vec![b'x'; 600 << 10];
    let reply = put_kv(&host, "/t/acme/kv/first", big.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // The route turns `kv.KVError` into a 507 with its message.
    let reply = put_kv(&host, "/t/acme/kv/second", big).await;
    assert_eq!(reply.status, 507, "{}", reply.body);
    assert!(
        reply.json()["detail"]
            .as_str()
            .unwrap()
            .contains("key-value quota of 1048576 bytes is full"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn expired_values_stop_counting_once_the_kv_quota_is_full() {
    let host = serve();
    let quotas = json!({ "kv-keys": 4 });
    create_tenant(
        &host,
        "acme",
        json!({ "quotas": quotas, "grants": grants() }),
    )
    .await;
    // on-start writes two keys, leaving two: filled by sessions with a TTL.
    deploy(&host, "acme", "shop", "python-caps", "").await;
    for key in ["session-1", "session-2"] {
        let reply = put_kv(&host, &format!("/t/acme/kv/{key}?ttl=1"), b"v".to_vec()).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let reply = put_kv(&host, "/t/acme/kv/session-3", b"v".to_vec()).await;
    assert_eq!(reply.status, 507, "{}", reply.body);

    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(host.get("/t/acme/kv/session-1").await.status, 404);
    let reply = put_kv(&host, "/t/acme/kv/session-3", b"v".to_vec()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = put_kv(&host, "/t/acme/kv/session-4", b"v".to_vec()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = put_kv(&host, "/t/acme/kv/session-5", b"v".to_vec()).await;
    assert_eq!(reply.status, 507, "{}", reply.body);
}

#[tokio::test]
async fn a_served_component_has_the_host_configs_kv_quota() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[kv]\nmax-keys = 2\n").unwrap();
    let sidecar = "[grants]\nkv = true\nconfig = true\noutbound = [\"http://127.0.0.1:*\"]\n";
    let components = Components::new().with_sidecar("rust-caps", sidecar);
    let host = serve_with(components, &["--config", config.path().to_str().unwrap()]);
    let reply = put_kv(&host, "/kv/a", b"v".to_vec()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = put_kv(&host, "/kv/b", b"v".to_vec()).await;
    assert_eq!(reply.status, 507, "{}", reply.body);
    assert!(reply.body.contains("[kv] max-keys"), "{}", reply.body);
}

#[tokio::test]
async fn settings_text_over_64_kib_is_refused() {
    let host = serve();
    create_tenant(&host, "acme", json!({})).await;
    let settings = format!("# {}\n", "x".repeat(70 << 10));
    let reply = host
        .upload("acme", "shop", OPERATOR, component("testbed"), &settings)
        .await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    let expected = format!(
        "the settings are {} bytes, over the limit of 65536",
        settings.len()
    );
    assert!(reply.body.contains(&expected), "{}", reply.body);
}

#[tokio::test]
async fn settings_text_counts_against_the_size_quotas() {
    let host = serve();
    create_tenant(&host, "acme", json!({ "quotas": { "max-total-mb": 0 } })).await;
    let settings = format!("# {}\n", "x".repeat(1000));
    let bytes = component("testbed");
    let size = bytes.len() + settings.len();
    let reply = host
        .upload("acme", "shop", OPERATOR, bytes, &settings)
        .await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    let expected = format!("components and their settings would take {size} bytes");
    assert!(reply.body.contains(&expected), "{}", reply.body);
}

#[tokio::test]
async fn a_patch_changes_only_the_quotas_it_names() {
    let host = serve();
    let quotas = json!({ "memory-mb": 32, "max-instances": 2 });
    create_tenant(&host, "acme", json!({ "quotas": quotas })).await;
    let patch = json!({ "quotas": { "kv-keys": 5 } });
    let reply = admin_json(&host, Method::PATCH, "/v1/tenants/acme", patch).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let quotas = &reply.json()["quotas"];
    assert_eq!(quotas["kv-keys"], 5);
    assert_eq!(quotas["memory-mb"], 32);
    assert_eq!(quotas["max-instances"], 2);
    // Created with only some quotas, the others are the defaults.
    assert_eq!(quotas["timeout-ms"], 10_000);
}

#[tokio::test]
async fn a_patch_with_an_unknown_quota_is_refused_and_changes_nothing() {
    let host = serve();
    create_tenant(&host, "acme", json!({ "quotas": { "memory-mb": 32 } })).await;
    let patch = json!({ "quotas": { "memory-mb": 64, "memroy-mb": 64 } });
    let reply = admin_json(&host, Method::PATCH, "/v1/tenants/acme", patch).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(
        reply.body.contains("unknown field `memroy-mb`"),
        "{}",
        reply.body
    );
    let reply = admin_json(&host, Method::GET, "/v1/tenants/acme", json!({})).await;
    assert_eq!(reply.json()["quotas"]["memory-mb"], 32);
}
