//! The order of the request pipeline, in-process (no socket is the point
//! here): each stage's answer passes back through the stages before it, and
//! only those. Served by `cello_host::testing::TestHost`, as a user's own
//! tests would be.

use crate::support;

use cello_host::testing::{TestHost, TestResponse};
use http::Method;

const SECRET: &str = "a-test-secret-of-enough-length";

/// The testbed with CORS, auth and its routes' own roles and rate limits.
async fn testbed() -> TestHost {
    let sidecar = format!(
        "[cors]\nallow-origins = [\"https://app.test\"]\n\
         [auth]\nalgorithm = \"HS256\"\nsecret = \"{SECRET}\"\n"
    );
    TestHost::builder()
        .component_with(support::components_dir().join("testbed.wasm"), &sidecar)
        .build()
        .await
        .expect("the testbed loads")
}

async fn send(
    host: &TestHost,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> TestResponse {
    let mut request = http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    host.request(request.body(Vec::<u8>::new()).unwrap()).await
}

const ORIGIN: (&str, &str) = ("origin", "https://app.test");

#[tokio::test(flavor = "multi_thread")]
async fn a_preflight_is_answered_before_auth() {
    let host = testbed().await;
    let preflight = send(
        &host,
        Method::OPTIONS,
        "/editor",
        &[ORIGIN, ("access-control-request-method", "GET")],
    )
    .await;
    assert!(preflight.status.is_success(), "{preflight:?}");
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.test")
    );
    assert!(preflight.header("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_by_auth_carries_cors_request_id_and_security_headers() {
    let host = testbed().await;
    let refused = send(&host, Method::GET, "/editor", &[ORIGIN]).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert!(refused.header("www-authenticate").is_some());
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some("https://app.test"),
        "CORS comes before auth, so its headers are on auth's answer"
    );
    assert!(refused.header("x-request-id").is_some());
    assert_eq!(refused.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        host.get("/guarded-calls").await.text(),
        "0",
        "the guest never ran"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_refusal_passes_back_through_cors_and_a_pass_carries_its_budget() {
    let host = testbed().await;
    let first = send(&host, Method::GET, "/limited", &[ORIGIN]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("ratelimit-remaining"), Some("1"));
    assert_eq!(
        send(&host, Method::GET, "/limited", &[ORIGIN]).await.status,
        200
    );
    let refused = send(
        &host,
        Method::GET,
        "/limited",
        &[ORIGIN, ("x-request-id", "r-429")],
    )
    .await;
    assert_eq!(refused.status, 429);
    assert!(refused.header("retry-after").is_some());
    assert_eq!(refused.header("x-request-id"), Some("r-429"));
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some("https://app.test")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_routing_refuses_never_reaches_a_components_stages() {
    let host = testbed().await;
    let missing = send(&host, Method::GET, "/no-such-route", &[ORIGIN]).await;
    assert_eq!(missing.status, 404);
    assert!(missing.header("x-request-id").is_some());
    assert_eq!(missing.header("access-control-allow-origin"), None);
    let wrong_method = send(&host, Method::DELETE, "/count", &[ORIGIN]).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), Some("GET"));
    assert_eq!(
        wrong_method.header("access-control-allow-origin"),
        Some("https://app.test"),
        "a path the component owns gets its CORS, 405 included"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guests_bad_response_is_a_500_and_the_host_goes_on() {
    let host = testbed().await;
    let bad = host.get("/bad-status").await;
    assert_eq!(bad.status, 500);
    assert_eq!(
        bad.json::<serde_json::Value>().unwrap()["detail"],
        "Internal Server Error"
    );
    assert_eq!(host.get("/count").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn text_is_compressed_and_opaque_bytes_are_not() {
    let host = testbed().await;
    let echo = async |content_type: &str| {
        let request = http::Request::post("/echo")
            .header("content-type", content_type)
            .header("accept-encoding", "gzip")
            .body(vec![b'a'; 8 << 10])
            .unwrap();
        host.request(request).await
    };
    let text = echo("text/plain").await;
    assert_eq!(text.header("content-encoding"), Some("gzip"));
    assert!(text.body.len() < 1024, "{} bytes", text.body.len());
    // Opaque bytes, and bodies compressed already, in any case.
    for content_type in [
        "application/octet-stream",
        "application/gzip",
        "IMAGE/PNG",
        "video/mp4",
        "audio/mpeg",
        "font/woff2",
        "application/zip",
        "TEXT/EVENT-STREAM",
    ] {
        let bytes = echo(content_type).await;
        assert_eq!(bytes.header("content-encoding"), None, "{content_type}");
        assert_eq!(bytes.body.len(), 8 << 10, "{content_type}");
    }
    // An SVG image is text.
    let svg = echo("image/svg+xml").await;
    assert_eq!(svg.header("content-encoding"), Some("gzip"));
}
