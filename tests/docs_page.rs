//! The docs page of a Python app: Swagger UI, its files served by the host
//! from its own binary, tried in a real headless browser. Nothing the page
//! loads comes from anywhere but the host.

use crate::support;

use std::time::Duration;

use http::Method;
use support::Components;
use support::browser::Browser;

const BUNDLE: &str = "/_cello/swagger-ui/swagger-ui-bundle.js";

/// Long enough for a page on a loaded two-core machine.
const PAGE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_host_serves_swagger_ui_gzipped_and_cacheable_with_no_component() {
    let host = Components::new().serve();
    let gzip = [("accept-encoding", "gzip, br")];
    let reply = host.send(Method::GET, BUNDLE, &gzip, Vec::new()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    assert_eq!(reply.header("cache-control"), Some("public, max-age=86400"));
    assert!(reply.bytes.len() < 600_000, "{} bytes", reply.bytes.len());
    let etag = reply.header("etag").expect("an entity tag").to_string();
    let again = [gzip[0], ("if-none-match", etag.as_str())];
    let reply = host.send(Method::GET, BUNDLE, &again, Vec::new()).await;
    assert_eq!((reply.status, reply.body.as_str()), (304, ""));
    // Made once, at build time: a client that takes no gzip gets the file
    // as it is, never compressed for it on the spot.
    let brotli = [("accept-encoding", "br")];
    let reply = host.send(Method::GET, BUNDLE, &brotli, Vec::new()).await;
    assert_eq!(reply.header("content-encoding"), None);
    assert!(reply.bytes.len() > 1_000_000, "{} bytes", reply.bytes.len());
    let reply = host.get("/_cello/swagger-ui/swagger-ui.css").await;
    assert_eq!(
        reply.header("content-type"),
        Some("text/css; charset=utf-8")
    );
}

#[tokio::test]
async fn the_docs_page_is_a_swagger_ui_that_calls_the_app_under_its_prefix() {
    let host = Components::new()
        .with_sidecar("items", "prefix = \"/shop\"\n[grants]\nkv = true\n")
        .serve();
    let browser = Browser::start().await;
    browser.open(&host.url("/shop/docs")).await;

    // The operations, grouped by their tag, and the schemas as models.
    browser.wait_for(".opblock", PAGE).await;
    let tags = browser.text_of(".opblock-tag").await;
    assert!(tags.contains("items"), "{tags}");
    let paths = browser.text_of(".opblock-summary-path").await;
    let mut paths: Vec<&str> = paths.lines().map(str::trim).collect();
    paths.dedup();
    assert_eq!(paths, ["/items", "/items/{item_id}"]);
    let methods = browser.text_of(".opblock-summary-method").await;
    assert_eq!(
        methods.lines().collect::<Vec<_>>(),
        ["GET", "POST", "GET", "PUT", "DELETE"]
    );
    let models = browser
        .text_of("section.models .json-schema-2020-12__title")
        .await;
    assert!(models.lines().any(|m| m == "ItemIn"), "{models}");

    // Try it out: POST /items with the example Swagger UI makes from the
    // body's schema (a $ref it resolved), then execute it.
    let post = browser
        .select(".opblock-post .opblock-summary-control")
        .await;
    browser.click(&post[0]).await;
    let try_out = browser.wait_for(".opblock-post .try-out__btn", PAGE).await;
    browser.click(&try_out[0]).await;
    let example = browser
        .wait_for_text(".opblock-post .body-param__text", "price", PAGE)
        .await;
    assert!(example.contains("\"tags\""), "{example}");
    let execute = browser.wait_for(".opblock-post .execute", PAGE).await;
    browser.click(&execute[0]).await;
    let status = browser
        .wait_for_text(
            ".opblock-post .live-responses-table tbody .response-col_status",
            "201",
            PAGE,
        )
        .await;
    assert_eq!(status.trim(), "201");
    let body = browser
        .text_of(".opblock-post .live-responses-table tbody .response-col_description")
        .await;
    assert!(body.contains("\"id\": 1"), "{body}");
    let url = browser.text_of(".opblock-post .request-url pre").await;
    assert_eq!(url.trim(), host.url("/shop/items"));
    // The item is really stored.
    let stored = host.get("/shop/items/1").await;
    assert_eq!(stored.status, 200, "{}", stored.body);

    // Everything the page loaded came from the host.
    let loaded = browser.loaded().await;
    assert!(
        loaded.iter().any(|name| name.ends_with(BUNDLE)),
        "{loaded:?}"
    );
    let origin = host.url("/");
    let elsewhere: Vec<_> = loaded.iter().filter(|n| !n.starts_with(&origin)).collect();
    assert!(elsewhere.is_empty(), "loaded from elsewhere: {elsewhere:?}");
}
