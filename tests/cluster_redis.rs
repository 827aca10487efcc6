//! Cluster mode on Redis: several real hosts share one real Redis for the
//! key-value store, rate limits and cache invalidations, and keep serving
//! when it goes away.

use crate::support;

use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;
use support::admin::{OPERATOR, component, create_tenant};
use support::redis::{Link, Redis};
use support::{Components, Host, Reply};

/// What python-caps imports (its KV routes are at `/`).
const KV: &str = "[grants]\nkv = true\nconfig = true\noutbound = [\"http://127.0.0.1:*\"]\n";

/// A host over python-caps at `/` and the Rust testbed at `/tb` (with
/// `testbed` in its sidecar), sharing `redis`, with `config` added to its
/// host config.
fn host(redis: &Redis, testbed: &str, config: &str) -> Host {
    host_with(&redis.url(), testbed, config, &[])
}

/// [`host`], on Redis at `url`, with `extra` arguments.
fn host_with(url: &str, testbed: &str, config: &str, extra: &[&str]) -> Host {
    let host_config = format!("[cluster]\nredis = \"{url}\"\n{config}");
    let components = Components::new()
        .with_sidecar("python-caps", KV)
        .with_sidecar("testbed", &format!("prefix = \"/tb\"\n{testbed}"))
        .with_file("host-config.toml", host_config.as_bytes());
    let path = components.path().join("host-config.toml");
    let mut args = vec![
        "--config",
        path.to_str().unwrap(),
        "--ops-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    components.serve_with(&args)
}

/// Three hosts, as [`host`] makes them.
fn three_hosts(redis: &Redis, testbed: &str, config: &str) -> [Host; 3] {
    std::array::from_fn(|_| host(redis, testbed, config))
}

async fn put(host: &Host, path: &str, body: &str) -> Reply {
    within(host.send(Method::PUT, path, &[], body.as_bytes().to_vec())).await
}

/// `call`'s reply, which must come well within the time a hang would take.
async fn within(call: impl Future<Output = Reply>) -> Reply {
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the host did not answer within 10 s")
}

/// Drops `tags` of `component` through `host`'s ops listener.
async fn invalidate(host: &Host, component: &str, tags: &[&str]) -> Reply {
    let body = json!({ "component": component, "tags": tags }).to_string();
    let request = http::Request::post(format!("http://{}/cache/invalidate", host.ops.unwrap()))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    support::send(&support::client(), request).await
}

/// Polls `check` every 100 ms until it is true, for at most `limit`.
async fn eventually<F: Future<Output = bool>>(
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Rate-limit decisions `host` made on its own, Redis failing.
async fn fallbacks(host: &Host) -> f64 {
    let metrics = host.ops_get("/metrics").await.body;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("cello_rate_limit_fallbacks_total "))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn kv_written_through_one_host_is_read_through_another() {
    let redis = Redis::start();
    let [one, two, three] = three_hosts(&redis, "", "");
    assert_eq!(put(&one, "/kv/greeting", "hello").await.status, 200);
    let read = three.get("/kv/greeting").await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["value"], "hello");

    for host in [&one, &two, &three] {
        host.post("/incr/visits", "text/plain", "").await;
    }
    assert_eq!(
        one.post("/incr/visits?by=10", "text/plain", "")
            .await
            .json(),
        json!({ "value": 13 })
    );
    put(&two, "/kv/user:1", "ann").await;
    put(&three, "/kv/user:2", "bob").await;
    assert_eq!(
        one.get("/keys?prefix=user:").await.json(),
        json!(["user:1", "user:2"])
    );
    assert_eq!(
        one.send(Method::DELETE, "/kv/user:1", &[], Vec::new())
            .await
            .json(),
        json!({ "deleted": true })
    );
    assert_eq!(three.get("/kv/user:1").await.status, 404);
}

#[tokio::test]
async fn a_value_with_a_ttl_expires_for_every_host() {
    let redis = Redis::start();
    let (one, two) = (host(&redis, "", ""), host(&redis, "", ""));
    assert_eq!(put(&one, "/kv/session?ttl=1", "s").await.status, 200);
    assert_eq!(two.get("/kv/session").await.status, 200);
    let expired = eventually(Duration::from_secs(5), || async {
        two.get("/kv/session").await.status == 404
    })
    .await;
    assert!(expired, "the value outlived its TTL");
}

#[tokio::test]
async fn two_components_keys_stay_apart_on_redis() {
    let redis = Redis::start();
    let other = format!("prefix = \"/other\"\n{KV}");
    let serve = || {
        let config = format!("[cluster]\nredis = \"{}\"\n", redis.url());
        let components = Components::new()
            .with_sidecar("python-caps", KV)
            .with_as("python-caps", "other", Some(&other))
            .with_file("host-config.toml", config.as_bytes());
        let path = components.path().join("host-config.toml");
        components.serve_with(&["--config", path.to_str().unwrap()])
    };
    let (one, two) = (serve(), serve());
    put(&one, "/kv/mine", "private").await;
    put(&two, "/other/kv/mine", "other's").await;
    assert_eq!(two.get("/kv/mine").await.json()["value"], "private");
    assert_eq!(one.get("/other/kv/mine").await.json()["value"], "other's");
    let listed = two.get("/other/keys?prefix=mi").await;
    assert_eq!(listed.json(), json!(["mine"]), "{}", listed.body);
    let mut stored: Vec<String> = redis
        .cli(&["--scan", "--pattern", "cello:kv:*:mine"])
        .lines()
        .map(str::to_string)
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        ["cello:kv:{other}:mine", "cello:kv:{python-caps}:mine"]
    );
}

#[tokio::test]
async fn the_kv_quota_holds_across_hosts() {
    let redis = Redis::start();
    let [one, two, three] = three_hosts(&redis, "", "[kv]\nmax-keys = 4\n");
    // python-caps' on-start keeps two keys: room for two more.
    let a = put(&one, "/kv/a", "1").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(put(&two, "/kv/b", "2").await.status, 200);
    let refused = put(&three, "/kv/c", "3").await;
    assert_eq!(refused.status, 507, "{}", refused.body);
    assert!(
        refused.body.contains("quota of 4 keys is full"),
        "{}",
        refused.body
    );
    // Rewriting a key takes no new room; deleting one frees it.
    let rewritten = put(&three, "/kv/a", "rewritten").await;
    assert_eq!(rewritten.status, 200, "{rewritten:?}");
    one.send(Method::DELETE, "/kv/a", &[], Vec::new()).await;
    assert_eq!(put(&three, "/kv/c", "3").await.status, 200);
}

#[tokio::test]
async fn an_expired_value_frees_its_room_in_the_kv_quota() {
    let redis = Redis::start();
    let (one, two) = (
        host(&redis, "", "[kv]\nmax-keys = 4\n"),
        host(&redis, "", "[kv]\nmax-keys = 4\n"),
    );
    // Two keys of python-caps' on-start, and two that expire in a second.
    assert_eq!(put(&one, "/kv/a?ttl=1", "1").await.status, 200);
    assert_eq!(put(&two, "/kv/b?ttl=1", "2").await.status, 200);
    assert_eq!(put(&one, "/kv/c", "3").await.status, 507);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stored = put(&two, "/kv/c", "3").await;
    assert_eq!(stored.status, 200, "{}", stored.body);
    assert_eq!(put(&one, "/kv/d", "4").await.status, 200);
    assert_eq!(put(&one, "/kv/e", "5").await.status, 507);
}

/// Sends GET `path` through each of `hosts` in turn for 3 s, and checks
/// that about one limit of 10 a second (burst 10) allowed them, not one
/// per host: returns the last refusal.
async fn counted_once_for_the_cluster(hosts: &[Host], path: &str) -> Reply {
    let started = Instant::now();
    let (mut allowed, mut refused) = (0u32, None);
    for host in hosts.iter().cycle() {
        if started.elapsed() >= Duration::from_secs(3) {
            break;
        }
        let reply = host.get(path).await;
        match reply.status {
            200 => allowed += 1,
            429 => refused = Some(reply),
            status => panic!("{status}: {}", reply.body),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    // One limit: a burst of 10 and 10 a second, about 40; three limits
    // of one host each would allow about 120.
    let cluster = 10.0 + 10.0 * seconds;
    let Some(refused) = refused else {
        panic!("nothing was refused in {allowed} requests");
    };
    assert!(
        f64::from(allowed) <= cluster * 1.5,
        "{allowed} allowed in {seconds:.1} s: more than one limit of {cluster:.0}"
    );
    assert!(f64::from(allowed) >= 10.0, "{allowed} allowed");
    refused
}

#[tokio::test]
async fn a_rate_limit_counts_requests_through_every_host() {
    let redis = Redis::start();
    // 10 requests a second, with a burst of 10, for the whole cluster.
    let limit = "[rate-limit]\ncapacity = 10\nperiod-s = 1\n";
    let hosts = three_hosts(&redis, limit, "");
    let refused = counted_once_for_the_cluster(&hosts, "/tb/instance").await;
    assert_eq!(refused.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn a_tenants_request_rate_quota_counts_requests_through_every_host() {
    let redis = Redis::start();
    let admin = ["--admin-token", OPERATOR, "--admin-listen", "127.0.0.1:0"];
    let hosts: [Host; 3] = std::array::from_fn(|_| host_with(&redis.url(), "", "", &admin));
    // Without [cluster] postgres each host keeps its own tenants: the
    // same tenant, with the same quota, is made on each.
    let quota = json!({ "quotas": { "requests-per-second": 10 } });
    for host in &hosts {
        create_tenant(host, "acme", quota.clone()).await;
        let reply = host
            .upload("acme", "app", OPERATOR, component("testbed"), "")
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let refused = counted_once_for_the_cluster(&hosts, "/t/acme/instance").await;
    assert!(refused.body.contains("Too many requests to tenant acme"));
    assert!(refused.header("retry-after").is_some());
    assert_eq!(fallbacks(&hosts[0]).await, 0.0);
}

#[tokio::test]
async fn a_tag_invalidation_on_one_host_drops_the_entry_on_another() {
    let redis = Redis::start();
    let (one, two) = (host(&redis, "", ""), host(&redis, "", ""));
    assert_eq!(
        two.get("/tb/cached-count").await.header("x-cache"),
        Some("MISS")
    );
    assert_eq!(
        two.get("/tb/cached-count").await.header("x-cache"),
        Some("HIT")
    );
    invalidate(&one, "testbed", &["counts"]).await;
    let dropped = eventually(Duration::from_secs(5), || async {
        two.get("/tb/cached-count").await.header("x-cache") == Some("MISS")
    })
    .await;
    assert!(dropped, "host two kept serving the invalidated entry");
}

#[tokio::test]
async fn kv_calls_answer_the_guests_error_while_redis_is_down_and_work_once_it_is_back() {
    let mut redis = Redis::start();
    let host = host(&redis, "", "");
    assert_eq!(put(&host, "/kv/k", "before").await.status, 200);
    // Warm the async routes' instance: its on-start writes to KV too.
    assert_eq!(host.post("/incr/n", "text/plain", "").await.status, 200);
    redis.stop();
    let started = Instant::now();
    let refused = put(&host, "/kv/k", "during").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the write took {:?}",
        started.elapsed()
    );
    // The guest caught the KV error and answered 507 with its text.
    assert_eq!(refused.status, 507, "{}", refused.body);
    assert!(
        refused.body.contains("the key-value store is unavailable"),
        "{}",
        refused.body
    );
    let counted = within(host.post("/incr/n", "text/plain", "")).await;
    assert_eq!(counted.status, 409, "{}\n{}", counted.body, host.log());

    redis.resume();
    let back = eventually(Duration::from_secs(15), || async {
        put(&host, "/kv/k", "after").await.status == 200
    })
    .await;
    assert!(back, "KV did not work again; log:\n{}", host.log());
    assert_eq!(host.get("/kv/k").await.json()["value"], "after");
}

#[tokio::test]
async fn while_redis_is_down_other_routes_serve_and_readyz_says_degraded() {
    let mut redis = Redis::start();
    let host = host(&redis, "", "");
    assert_eq!(host.ops_get("/readyz").await.body, "ready\n");
    redis.stop();
    let degraded = eventually(Duration::from_secs(10), || async {
        host.ops_get("/readyz")
            .await
            .body
            .contains("degraded: Redis")
    })
    .await;
    assert!(degraded, "{}", host.ops_get("/readyz").await.body);
    let ready = host.ops_get("/readyz").await;
    assert_eq!(ready.status, 200, "degraded is still ready: {}", ready.body);
    assert_eq!(within(host.get("/tb/instance")).await.status, 200);

    redis.resume();
    let restored = eventually(Duration::from_secs(15), || async {
        host.ops_get("/readyz").await.body == "ready\n"
    })
    .await;
    assert!(restored, "{}", host.ops_get("/readyz").await.body);
    let log = host.log();
    assert_eq!(
        log.matches("Redis is unreachable").count(),
        1,
        "one warning per outage:\n{log}"
    );
}

#[tokio::test]
async fn rate_limits_fall_back_to_each_host_while_redis_is_down() {
    let mut redis = Redis::start();
    let limit = "[rate-limit]\ncapacity = 2\nperiod-s = 60\n";
    let (one, two) = (host(&redis, limit, ""), host(&redis, limit, ""));
    redis.stop();
    // Each host now counts on its own: two requests each, not two in all.
    for host in [&one, &two] {
        for _ in 0..2 {
            let reply = within(host.get("/tb/instance")).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
        let refused = within(host.get("/tb/instance")).await;
        assert_eq!(refused.status, 429);
        assert!(refused.header("retry-after").is_some());
        assert!(fallbacks(host).await >= 3.0);
    }
}

#[tokio::test]
async fn an_entry_invalidated_while_a_host_was_cut_off_is_not_served_after_reconnect() {
    let mut redis = Redis::start();
    let (one, two) = (host(&redis, "", ""), host(&redis, "", ""));
    two.get("/tb/cached-count").await;
    assert_eq!(
        two.get("/tb/cached-count").await.header("x-cache"),
        Some("HIT")
    );
    redis.stop();
    // Host two cannot hear this one.
    invalidate(&one, "testbed", &["counts"]).await;
    let cut_off = eventually(Duration::from_secs(10), || async {
        two.ops_get("/readyz").await.body.contains("degraded")
    })
    .await;
    assert!(cut_off, "host two never noticed the outage");
    redis.resume();
    let reconnected = eventually(Duration::from_secs(15), || async {
        two.ops_get("/readyz").await.body == "ready\n"
    })
    .await;
    assert!(reconnected, "{}", two.log());
    assert_eq!(
        two.get("/tb/cached-count").await.header("x-cache"),
        Some("MISS"),
        "a possibly stale entry was served after the outage"
    );
}

#[tokio::test]
async fn an_invalidation_made_by_a_host_cut_off_alone_reaches_the_others_once_it_is_back() {
    let redis = Redis::start();
    let link = Link::to(&redis);
    let (one, two) = (host_with(&link.url(), "", "", &[]), host(&redis, "", ""));
    two.get("/tb/cached-count").await;
    assert_eq!(
        two.get("/tb/cached-count").await.header("x-cache"),
        Some("HIT")
    );
    link.cut();
    let cut_off = eventually(Duration::from_secs(10), || async {
        one.ops_get("/readyz").await.body.contains("degraded")
    })
    .await;
    assert!(cut_off, "host one never noticed it was cut off");
    invalidate(&one, "testbed", &["counts"]).await;
    // Host two never lost Redis, so it cannot know; it still serves the
    // entry host one dropped.
    assert_eq!(
        two.get("/tb/cached-count").await.header("x-cache"),
        Some("HIT")
    );
    link.mend();
    let heard = eventually(Duration::from_secs(15), || async {
        two.get("/tb/cached-count").await.header("x-cache") == Some("MISS")
    })
    .await;
    assert!(
        heard,
        "host two never heard the invalidation: {}",
        one.log()
    );
}
