//! `wasi:keyvalue` over Cello's key-value store, through a standard
//! `wasi:http` component (tests/guests/wasi-keyvalue) served by the real
//! host: its calls, where its values live, who sees them, and how a full
//! quota or a Redis outage reaches the guest.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::redis::Redis;
use support::{Components, Host, Reply, components_dir};

const KV: &str = "[grants]\nkv = true\n";
const OPERATOR: &str = "operator-secret";

/// The guest's answer to the call `query` names (`op=get&key=k`...),
/// under `prefix` (a served component's, or a tenant's `/t/NAME`).
async fn call(host: &Host, prefix: &str, query: &str) -> Reply {
    let reply = tokio::time::timeout(
        Duration::from_secs(30),
        host.get(&format!("{prefix}/?{query}")),
    )
    .await
    .expect("the host did not answer within 30 s");
    assert_ne!(reply.status, 502, "{}\n{}", reply.body, host.log());
    reply
}

/// Asserts that `query` answers `status` with `body`.
async fn expect(host: &Host, query: &str, status: u16, body: &str) {
    let reply = call(host, "", query).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (status, body),
        "{query}"
    );
}

/// Asserts that `query` fails (500) with an error that starts `error`.
async fn refused(host: &Host, query: &str, error: &str) {
    let reply = call(host, "", query).await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert!(reply.body.starts_with(error), "{}", reply.body);
}

fn granted() -> Host {
    Components::new().with_sidecar("wasi-keyvalue", KV).serve()
}

/// The guest, granted, on a host with `config` as its host config.
fn granted_with_config(config: &str) -> Host {
    let components = Components::new()
        .with_sidecar("wasi-keyvalue", KV)
        .with_file("host-config.toml", config.as_bytes());
    let path = components.path().join("host-config.toml");
    components.serve_with(&["--config", path.to_str().unwrap()])
}

#[tokio::test]
async fn get_set_exists_and_delete_keep_values_across_requests() {
    let host = granted();
    expect(&host, "op=get&key=greeting", 404, "absent").await;
    expect(&host, "op=exists&key=greeting", 200, "false").await;
    expect(&host, "op=set&key=greeting&value=hello", 200, "ok").await;
    expect(&host, "op=get&key=greeting", 200, "hello").await;
    expect(&host, "op=exists&key=greeting", 200, "true").await;
    expect(&host, "op=delete&key=greeting", 200, "ok").await;
    expect(&host, "op=get&key=greeting", 404, "absent").await;
    // Deleting what is absent is not an error.
    expect(&host, "op=delete&key=greeting", 200, "ok").await;
}

#[tokio::test]
async fn increment_list_keys_and_the_batch_calls_work() {
    let host = granted();
    expect(&host, "op=increment&key=n&by=5", 200, "5").await;
    expect(&host, "op=increment&key=n&by=2", 200, "7").await;
    expect(&host, "op=set-many&pairs=a:1,b:2", 200, "ok").await;
    expect(&host, "op=get-many&keys=a,missing,b", 200, "a=1,-,b=2").await;
    expect(&host, "op=keys", 200, "a,b,n").await;
    expect(&host, "op=delete-many&keys=a,n", 200, "ok").await;
    expect(&host, "op=keys", 200, "b").await;
}

#[tokio::test]
async fn a_batch_too_large_is_the_calls_error_and_the_instance_keeps_serving() {
    let host = granted();
    let keys = vec!["a"; 1001].join(",");
    let over = "other: a batch of 1001 keys is over the limit of 1000; split it";
    refused(&host, &format!("op=get-many&keys={keys}"), over).await;
    refused(&host, &format!("op=delete-many&keys={keys}"), over).await;
    // One value of 1 MiB named 17 times: more than the host will gather.
    expect(&host, "op=fill&key=big&size=1048576", 200, "ok").await;
    let too_much = "other: the values come to more than 16777216 bytes";
    refused(&host, "op=get-many&keys=big&times=17", too_much).await;
    // 1000 keys is a batch (absent ones: the guest writes its answer in
    // one write of at most 4096 bytes).
    let keys = vec!["absent"; 1000].join(",");
    let found = call(&host, "", &format!("op=get-many&keys={keys}")).await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.body, vec!["-"; 1000].join(","));
    assert!(!host.log().contains("trap"), "{}", host.log());
}

#[tokio::test]
async fn a_bucket_is_its_name_and_a_slash_before_the_components_keys() {
    let host = granted();
    expect(&host, "op=set&bucket=orders&key=1&value=tea", 200, "ok").await;
    expect(&host, "op=set&key=plain&value=v", 200, "ok").await;
    expect(&host, "op=get&key=orders/1", 200, "tea").await;
    expect(&host, "op=get&bucket=default&key=orders/1", 200, "tea").await;
    expect(&host, "op=keys&bucket=orders", 200, "1").await;
    expect(&host, "op=keys", 200, "orders/1,plain").await;
    expect(&host, "op=get&bucket=other&key=1", 404, "absent").await;
}

#[tokio::test]
async fn a_value_set_through_wasi_keyvalue_is_the_components_own_kv_key_after_a_restart() {
    let components = Components::new().with_as("wasi-keyvalue", "shop", Some(KV));
    let host = components.serve();
    expect(&host, "op=set&key=greeting&value=hello", 200, "ok").await;
    // The same name, now a Cello app reading through cello:component/kv.
    let components = host.stop().with_as(
        "rust-caps",
        "shop",
        Some("[grants]\nkv = true\nconfig = true\noutbound = [\"http://127.0.0.1:*\"]\n"),
    );
    let host = components.serve();
    let reply = host.get("/kv/greeting").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "hello"),
        "{}",
        host.log()
    );
}

#[tokio::test]
async fn two_served_components_do_not_see_each_others_keys() {
    let host = Components::new()
        .with_as(
            "wasi-keyvalue",
            "one",
            Some(&format!("prefix = \"/one\"\n{KV}")),
        )
        .with_as(
            "wasi-keyvalue",
            "two",
            Some(&format!("prefix = \"/two\"\n{KV}")),
        )
        .serve();
    let set = call(&host, "/one", "op=set&key=k&value=mine").await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(call(&host, "/one", "op=get&key=k").await.body, "mine");
    assert_eq!(call(&host, "/two", "op=get&key=k").await.status, 404);
    assert_eq!(call(&host, "/two", "op=keys").await.body, "");
}

#[tokio::test]
async fn two_tenants_do_not_see_each_others_keys() {
    let host =
        Components::new().serve_with(&["--admin-token", OPERATOR, "--admin-listen", "127.0.0.1:0"]);
    let component = std::fs::read(components_dir().join("wasi-keyvalue.wasm")).unwrap();
    for tenant in ["acme", "globex"] {
        let settings = json!({ "name": tenant, "grants": { "kv": true } });
        let created = host
            .admin(
                http::Method::POST,
                "/v1/tenants",
                OPERATOR,
                "application/json",
                settings.to_string().into_bytes(),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        let uploaded = host
            .upload(tenant, "shop", OPERATOR, component.clone(), "")
            .await;
        assert_eq!(uploaded.status, 201, "{}", uploaded.body);
    }
    let set = call(&host, "/t/acme", "op=set&key=k&value=acme's").await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(call(&host, "/t/acme", "op=get&key=k").await.body, "acme's");
    assert_eq!(call(&host, "/t/globex", "op=get&key=k").await.status, 404);
    assert_eq!(call(&host, "/t/globex", "op=keys").await.body, "");
}

#[tokio::test]
async fn a_full_quota_is_the_calls_error_and_the_instance_keeps_serving() {
    let host = granted_with_config("[kv]\nmax-keys = 1\n");
    expect(&host, "op=set&key=a&value=1", 200, "ok").await;
    let full = "other: the key-value quota of 1 keys is full";
    refused(&host, "op=set&key=b&value=2", full).await;
    refused(&host, "op=set-many&pairs=c:3", full).await;
    // A rewrite does not grow the store, and nothing trapped.
    expect(&host, "op=set&key=a&value=2", 200, "ok").await;
    expect(&host, "op=get&key=a", 200, "2").await;
    assert!(!host.log().contains("trap"), "{}", host.log());
}

#[test]
fn an_ungranted_wasi_keyvalue_import_is_refused_at_load_naming_the_grant() {
    let output = Components::new().with("wasi-keyvalue").check();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        stdout.contains(
            "imports wasi:keyvalue/store@0.2.0-draft, which it is not granted; add `kv = true`"
        ),
        "{stdout}"
    );
}

#[tokio::test]
async fn on_redis_values_are_shared_and_an_outage_is_the_calls_error() {
    let mut redis = Redis::start();
    let host = granted_with_config(&format!("[cluster]\nredis = \"{}\"\n", redis.url()));
    expect(&host, "op=set&bucket=orders&key=1&value=tea", 200, "ok").await;
    expect(&host, "op=get&key=orders/1", 200, "tea").await;
    expect(&host, "op=increment&key=n", 200, "1").await;
    expect(&host, "op=keys&bucket=orders", 200, "1").await;

    redis.stop();
    let started = Instant::now();
    let refused = call(&host, "", "op=set&key=k&value=v").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(refused.status, 500, "{}", refused.body);
    assert!(
        refused
            .body
            .starts_with("other: the key-value store is unavailable"),
        "{}",
        refused.body
    );

    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    while call(&host, "", "op=set&key=k&value=back").await.status != 200 {
        assert!(
            Instant::now() < deadline,
            "KV did not work again:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    expect(&host, "op=get&key=k", 200, "back").await;
}
