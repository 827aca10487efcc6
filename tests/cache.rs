//! The response cache: the guest declares a policy, the host stores and
//! serves, and invalidation by tag drops entries.

use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use support::{Components, Host};

const OPS: &[&str] = &["--ops-listen", "127.0.0.1:0"];

fn host() -> Host {
    Components::new().with("python-testbed").serve_with(OPS)
}

async fn get_with(host: &Host, path: &str, headers: &[(&str, &str)]) -> support::Reply {
    host.send(http::Method::GET, path, headers, Vec::new())
        .await
}

#[tokio::test]
async fn a_hit_is_served_without_calling_the_guest() {
    let host = host();
    let first = host.get("/cached/a").await;
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert_eq!(first.json()["calls"], 1);
    let second = host.get("/cached/a").await;
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.json()["calls"], 1, "the guest ran again");
    assert_eq!(second.header("cache-control"), Some("max-age=60"));
    assert_eq!(second.header("etag"), first.header("etag"));
    assert!(second.header("age").is_some());
}

#[tokio::test]
async fn an_expired_entry_is_fetched_again() {
    let host = host();
    assert_eq!(host.get("/short").await.json()["calls"], 1);
    assert_eq!(host.get("/short").await.header("x-cache"), Some("HIT"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let refetched = host.get("/short").await;
    assert_eq!(refetched.header("x-cache"), Some("MISS"));
    assert_eq!(refetched.json()["calls"], 2);
}

#[tokio::test]
async fn vary_keeps_one_entry_per_header_value() {
    let host = host();
    let en = [("accept-language", "en")];
    let de = [("accept-language", "de")];
    assert_eq!(
        get_with(&host, "/lang", &en).await.json(),
        json!({ "lang": "en", "calls": 1 })
    );
    assert_eq!(
        get_with(&host, "/lang", &de).await.json(),
        json!({ "lang": "de", "calls": 2 })
    );
    let en_again = get_with(&host, "/lang", &en).await;
    assert_eq!(en_again.header("x-cache"), Some("HIT"));
    assert_eq!(en_again.json(), json!({ "lang": "en", "calls": 1 }));
    assert_eq!(get_with(&host, "/lang", &de).await.json()["lang"], "de");
}

#[tokio::test]
async fn one_callers_response_never_reaches_another() {
    let host = host();
    let alice = [("authorization", "Bearer alice")];
    let bob = [("authorization", "Bearer bob")];
    assert_eq!(
        get_with(&host, "/me", &alice).await.json()["authorization"],
        "Bearer alice"
    );
    let for_bob = get_with(&host, "/me", &bob).await;
    assert_eq!(for_bob.header("x-cache"), Some("MISS"));
    assert_eq!(for_bob.json()["authorization"], "Bearer bob");
    let alice_again = get_with(&host, "/me", &alice).await;
    assert_eq!(alice_again.header("x-cache"), Some("HIT"));
    assert_eq!(alice_again.json()["authorization"], "Bearer alice");
}

#[tokio::test]
async fn invalidating_a_tag_makes_the_next_get_a_miss_with_new_data() {
    let host = host();
    assert_eq!(host.get("/cached/x").await.json()["value"], "original");
    assert_eq!(host.get("/cached/x").await.header("x-cache"), Some("HIT"));
    let update = host.post("/cached/x", "text/plain", "changed").await;
    assert_eq!(update.json(), json!({ "invalidated": 1 }));
    let after = host.get("/cached/x").await;
    assert_eq!(after.header("x-cache"), Some("MISS"));
    assert_eq!(after.json()["value"], "changed");
}

#[tokio::test]
async fn a_matching_if_none_match_is_answered_304_without_the_guest() {
    let host = host();
    let first = host.get("/cached/y").await;
    let etag = first.header("etag").unwrap().to_string();
    let revalidated = get_with(&host, "/cached/y", &[("if-none-match", &etag)]).await;
    assert_eq!(revalidated.status, 304);
    assert_eq!(revalidated.body, "");
    assert_eq!(revalidated.header("etag"), Some(etag.as_str()));
    let other = get_with(&host, "/cached/y", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.json()["calls"], 1);
}

#[tokio::test]
async fn concurrent_misses_call_the_guest_once() {
    let host = host();
    let client = support::client();
    let replies = join_all((0..50).map(|_| {
        let request = host.request(http::Method::GET, "/slow-cached", &[], Vec::new());
        support::send(&client, request)
    }))
    .await;
    let bodies: HashSet<String> = replies.iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies, HashSet::from([json!({ "calls": 1 }).to_string()]));
    let misses = replies
        .iter()
        .filter(|r| r.header("x-cache") == Some("MISS"))
        .count();
    assert_eq!(misses, 1);
    let component = r#"component="python-testbed""#;
    assert_eq!(
        host.metric("cello_cache_misses_total", component).await,
        1.0
    );
    assert_eq!(host.metric("cello_cache_hits_total", component).await, 49.0);
    assert_eq!(
        host.metric("cello_cache_stores_total", component).await,
        1.0
    );
}

#[tokio::test]
async fn errors_cookies_and_no_store_responses_are_not_stored() {
    let host = host();
    for (path, status) in [("/teapot", 418), ("/cookie", 200), ("/no-store", 200)] {
        let first = host.get(path).await;
        assert_eq!(first.status, status);
        assert_eq!(first.json()["calls"], 1);
        let second = host.get(path).await;
        assert_eq!(
            second.json()["calls"],
            2,
            "{path} was served from the cache"
        );
        assert_eq!(second.header("x-cache"), Some("MISS"));
    }
}

#[tokio::test]
async fn cached_responses_carry_no_internal_headers() {
    let host = host();
    host.get("/cached/h").await;
    let hit = host.get("/cached/h").await;
    let names: HashSet<&str> = hit.headers.keys().map(|k| k.as_str()).collect();
    let expected = [
        "content-type",
        "etag",
        "age",
        "cache-control",
        "x-cache",
        "x-request-id",
        "content-length",
        "date",
        // The host's security headers, on every response.
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
    ];
    assert_eq!(names, HashSet::from(expected));
}

#[tokio::test]
async fn the_operator_invalidates_one_components_tags() {
    let host = host();
    host.get("/cached/op").await;
    let client = support::client();
    let invalidate = |component: &str| {
        let body = json!({ "component": component, "tags": ["items"] }).to_string();
        let request = http::Request::post(format!("http://{}/cache/invalidate", host.ops.unwrap()))
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        support::send(&client, request)
    };
    assert_eq!(
        invalidate("another-component").await.json(),
        json!({ "invalidated": 0 })
    );
    assert_eq!(host.get("/cached/op").await.header("x-cache"), Some("HIT"));
    assert_eq!(
        invalidate("python-testbed").await.json(),
        json!({ "invalidated": 1 })
    );
    assert_eq!(host.get("/cached/op").await.header("x-cache"), Some("MISS"));
    let component = r#"component="python-testbed""#;
    assert_eq!(
        host.metric("cello_cache_invalidations_total", component)
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_sidecar_gives_every_get_route_a_default_policy() {
    let host = Components::new()
        .with_sidecar("testbed", "[cache]\nttl-seconds = 60")
        .serve();
    assert_eq!(host.get("/count").await.body, "1");
    let hit = host.get("/count").await;
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert_eq!(hit.body, "1");
}

#[tokio::test]
async fn a_rust_route_declares_its_policy() {
    let host = Components::new().with("testbed").serve();
    assert_eq!(host.get("/cached-count").await.body, "1");
    assert_eq!(
        host.get("/cached-count").await.header("x-cache"),
        Some("HIT")
    );
    // Routes without a policy are not cached.
    assert_eq!(host.get("/count").await.header("x-cache"), None);
}
