//! Nothing cached or stored crosses a user, a version or a tenant: the
//! response cache keys every credential field, a component's entries leave
//! with its version, and a tenant created again under an old name starts
//! with no cache entries, key-value data or metrics of the one before.

use crate::support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use support::{Components, Host, Reply, components_dir};

const OPERATOR: &str = "operator-secret";

/// A host with the admin API and the ops listener on, serving `components`.
fn serve(components: Components) -> Host {
    components.serve_with(&[
        "--admin-token",
        OPERATOR,
        "--admin-listen",
        "127.0.0.1:0",
        "--ops-listen",
        "127.0.0.1:0",
    ])
}

fn component(name: &str) -> Vec<u8> {
    std::fs::read(components_dir().join(format!("{name}.wasm"))).unwrap()
}

/// An operator's admin request with a JSON body, answered with `status`.
async fn admin(host: &Host, method: Method, path: &str, body: serde_json::Value, status: u16) {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let reply = host
        .admin(method, path, OPERATOR, "application/json", body)
        .await;
    assert_eq!(reply.status, status, "{path}: {}", reply.body);
}

/// Creates tenant acme with the grants the capability guests import.
async fn create_acme(host: &Host) {
    let grants = json!({ "kv": true, "config": true, "outbound": ["http://127.0.0.1:*"] });
    let tenant = json!({ "name": "acme", "grants": grants });
    admin(host, Method::POST, "/v1/tenants", tenant, 201).await;
}

async fn delete_acme(host: &Host) {
    admin(host, Method::DELETE, "/v1/tenants/acme", json!(null), 204).await;
}

/// Uploads built component `built` as acme's `name`, with sidecar `settings`.
async fn upload(host: &Host, name: &str, built: &str, settings: &str) {
    let boundary = "cello-test-boundary";
    let mut body = Vec::new();
    for (field, data) in [
        ("component", component(built)),
        ("settings", settings.as_bytes().to_vec()),
    ] {
        let head =
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n");
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let path = format!("/v1/tenants/acme/components/{name}");
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let reply = host
        .admin(Method::PUT, &path, OPERATOR, &content_type, body)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

async fn get_with(host: &Host, path: &str, headers: &[(&str, &str)]) -> Reply {
    host.send(Method::GET, path, headers, Vec::new()).await
}

/// GETs `path` twice and checks the second answer came from the cache.
async fn cached(host: &Host, path: &str) {
    assert_eq!(host.get(path).await.status, 200);
    let again = host.get(path).await;
    assert_eq!(again.header("x-cache"), Some("HIT"), "{path}: {:?}", again);
}

async fn assert_miss(host: &Host, path: &str, after: &str) {
    let reply = host.get(path).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("x-cache"),
        Some("MISS"),
        "{path} answered from the cache after {after}"
    );
}

#[tokio::test]
async fn every_cookie_field_keys_the_entry() {
    let host = serve(Components::new().with("python-testbed"));
    let alice = [("cookie", "theme=dark"), ("cookie", "session=alice")];
    let bob = [("cookie", "theme=dark"), ("cookie", "session=bob")];
    assert_eq!(get_with(&host, "/me", &alice).await.json()["calls"], 1);
    let for_bob = get_with(&host, "/me", &bob).await;
    assert_eq!(for_bob.header("x-cache"), Some("MISS"));
    assert_eq!(for_bob.json()["calls"], 2, "Bob was served Alice's page");
    let alice_again = get_with(&host, "/me", &alice).await;
    assert_eq!(alice_again.header("x-cache"), Some("HIT"));
    assert_eq!(alice_again.json()["calls"], 1);
}

#[tokio::test]
async fn http2_cookie_crumbs_key_the_entry() {
    let host = serve(Components::new().with("python-testbed"));
    let client = support::h2_client();
    let me = |session: &str| {
        let cookie = format!("session={session}");
        let headers = [("cookie", "theme=dark"), ("cookie", cookie.as_str())];
        let request = host.request(Method::GET, "/me", &headers, Vec::new());
        support::send(&client, request)
    };
    assert_eq!(me("alice").await.json()["calls"], 1);
    let for_bob = me("bob").await;
    assert_eq!(for_bob.header("x-cache"), Some("MISS"));
    assert_eq!(for_bob.json()["calls"], 2, "Bob was served Alice's page");
}

#[tokio::test]
async fn every_authorization_field_keys_the_entry() {
    let host = serve(Components::new().with("python-testbed"));
    let fields = |second| {
        [
            ("authorization", "Basic c2hhcmVk"),
            ("authorization", second),
        ]
    };
    let first = get_with(&host, "/me", &fields("Bearer alice")).await;
    assert_eq!(first.json()["calls"], 1);
    let other = get_with(&host, "/me", &fields("Bearer bob")).await;
    assert_eq!(other.header("x-cache"), Some("MISS"));
    assert_eq!(other.json()["calls"], 2);
    let alone = get_with(&host, "/me", &[("authorization", "Basic c2hhcmVk")]).await;
    assert_eq!(alone.header("x-cache"), Some("MISS"));
}

const SECRET: &str = "cache-isolation-secret";

fn token(subject: &str, expires_in: u64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let claims = json!({ "sub": subject, "exp": now.as_secs() + expires_in });
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

#[tokio::test]
async fn a_verified_subject_keys_the_entry_across_its_tokens() {
    let sidecar = format!("[auth]\nalgorithm = \"HS256\"\nsecret = \"{SECRET}\"\n");
    let host = serve(Components::new().with_sidecar("python-testbed", &sidecar));
    let me = async |token: String| {
        let bearer = format!("Bearer {token}");
        get_with(&host, "/me", &[("authorization", &bearer)]).await
    };
    assert_eq!(me(token("alice", 600)).await.json()["calls"], 1);
    let refreshed = me(token("alice", 900)).await;
    assert_eq!(refreshed.header("x-cache"), Some("HIT"));
    let for_bob = me(token("bob", 600)).await;
    assert_eq!(for_bob.header("x-cache"), Some("MISS"));
    assert_eq!(for_bob.json()["calls"], 2);
}

#[tokio::test]
async fn a_new_version_never_sees_the_old_ones_entries() {
    let host = serve(Components::new());
    create_acme(&host).await;
    upload(&host, "shop", "testbed", "").await;
    cached(&host, "/t/acme/cached-count").await;
    upload(&host, "shop", "testbed", "").await;
    assert_miss(&host, "/t/acme/cached-count", "a new version").await;
}

#[tokio::test]
async fn a_rollback_never_sees_an_older_loads_entries() {
    let host = serve(Components::new());
    create_acme(&host).await;
    upload(&host, "shop", "testbed", "").await;
    cached(&host, "/t/acme/cached-count").await;
    upload(&host, "shop", "testbed", "").await;
    cached(&host, "/t/acme/cached-count").await;
    let rollback = "/v1/tenants/acme/components/shop/rollback";
    admin(&host, Method::POST, rollback, json!({ "version": 1 }), 200).await;
    assert_miss(&host, "/t/acme/cached-count", "a rollback").await;
}

#[tokio::test]
async fn a_component_uploaded_after_a_delete_never_sees_the_deleted_ones_entries() {
    let host = serve(Components::new());
    create_acme(&host).await;
    upload(&host, "shop", "testbed", "").await;
    cached(&host, "/t/acme/cached-count").await;
    let path = "/v1/tenants/acme/components/shop";
    admin(&host, Method::DELETE, path, json!(null), 204).await;
    assert_eq!(host.get("/t/acme/cached-count").await.status, 404);
    upload(&host, "shop", "testbed", "").await;
    assert_miss(&host, "/t/acme/cached-count", "a delete").await;
}

#[tokio::test]
async fn a_recreated_tenant_never_sees_the_old_ones_cached_responses() {
    let host = serve(Components::new());
    create_acme(&host).await;
    upload(&host, "shop", "testbed", "").await;
    cached(&host, "/t/acme/cached-count").await;
    delete_acme(&host).await;
    create_acme(&host).await;
    upload(&host, "shop", "testbed", "").await;
    assert_miss(
        &host,
        "/t/acme/cached-count",
        "the tenant was created again",
    )
    .await;
}

#[tokio::test]
async fn a_recreated_tenant_starts_with_empty_key_values() {
    let host = serve(Components::new());
    create_acme(&host).await;
    upload(&host, "caps", "rust-caps", "").await;
    for n in 1..=3 {
        assert_eq!(
            host.post("/t/acme/count", "text/plain", "").await.body,
            n.to_string()
        );
    }
    delete_acme(&host).await;
    create_acme(&host).await;
    upload(&host, "caps", "rust-caps", "").await;
    assert_eq!(host.post("/t/acme/count", "text/plain", "").await.body, "1");
}

#[tokio::test]
async fn a_deleted_tenants_shutdown_hook_leaves_no_key_values_behind() {
    let host = serve(Components::new());
    create_acme(&host).await;
    let settings = "[variables]\ngreeting = \"hello\"\n[secrets]\napi-token = \"s3cret\"\n";
    upload(&host, "app", "python-caps", settings).await;
    assert_eq!(host.get("/t/acme/startup").await.status, 200);
    delete_acme(&host).await;
    // Its instances run on-stop once retired, after the tenant's data
    // was deleted; the hook counts itself in the key-value store.
    host.wait_for_log("previous version retired").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    create_acme(&host).await;
    upload(&host, "app", "python-caps", settings).await;
    let left = host.get("/t/acme/kv/shutdown:count").await;
    assert_eq!(
        left.status, 404,
        "the old tenant's on-stop wrote: {}",
        left.body
    );
}

#[tokio::test]
async fn a_recreated_tenant_starts_with_fresh_metrics() {
    let host = serve(Components::new());
    let requests = async || {
        let labels = r#"component="acme/shop",status="2xx""#;
        host.metric("cello_requests_total", labels).await
    };
    create_acme(&host).await;
    upload(&host, "shop", "testbed", "").await;
    for _ in 0..3 {
        assert_eq!(host.get("/t/acme/count").await.status, 200);
    }
    assert_eq!(requests().await, 3.0);
    delete_acme(&host).await;
    assert_eq!(requests().await, 0.0);
    create_acme(&host).await;
    upload(&host, "shop", "testbed", "").await;
    assert_eq!(host.get("/t/acme/count").await.status, 200);
    assert_eq!(requests().await, 1.0);
}

#[tokio::test]
async fn a_hot_reloaded_component_never_sees_the_old_ones_entries() {
    let components = Components::new().with("testbed");
    let dir = components.path().to_path_buf();
    let host = serve(components);
    cached(&host, "/cached-count").await;
    let temp = dir.join(".testbed.partial");
    std::fs::write(&temp, component("testbed")).unwrap();
    std::fs::rename(&temp, dir.join("testbed.wasm")).unwrap();
    host.wait_for_log("reloaded").await;
    assert_miss(&host, "/cached-count", "a reload").await;
}
