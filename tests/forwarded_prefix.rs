//! A component sees its path without the prefix it is served under, and the
//! host tells it that prefix in `X-Forwarded-Prefix`, as a reverse proxy
//! does: a Python app's OpenAPI document lists it in `servers`, so its docs
//! page calls the routes where they really are.

use crate::support;

use http::Method;
use serde_json::json;
use support::admin::{component, create_tenant, push_with, serve};
use support::{Components, Host};

/// The `servers` of the OpenAPI document at `path`.
async fn servers(host: &Host, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let reply = host.send(Method::GET, path, headers, Vec::new()).await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, host.log());
    reply.json()["servers"].clone()
}

#[tokio::test]
async fn a_prefixed_python_app_lists_its_prefix_in_servers() {
    let host = Components::new()
        .with_sidecar("python-testbed", "prefix = \"/tb\"")
        .serve();
    let servers = servers(&host, "/tb/openapi.json", &[]).await;
    assert_eq!(servers, json!([{"url": "/tb"}]));
}

#[tokio::test]
async fn a_tenants_python_app_lists_the_tenant_path_and_its_prefix_in_servers() {
    let host = serve(Components::new());
    create_tenant(&host, "acme", json!({})).await;
    let bytes = component("python-testbed");
    let reply = push_with(&host, "acme", "tb", bytes.clone(), "prefix = \"/tb\"").await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let acme = servers(&host, "/t/acme/tb/openapi.json", &[]).await;
    assert_eq!(acme, json!([{"url": "/t/acme/tb"}]));
    // Without a prefix of its own, the tenant's path is the whole prefix.
    create_tenant(&host, "beta", json!({})).await;
    let reply = push_with(&host, "beta", "tb", bytes, "").await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let beta = servers(&host, "/t/beta/openapi.json", &[]).await;
    assert_eq!(beta, json!([{"url": "/t/beta"}]));
}

#[tokio::test]
async fn a_client_cannot_choose_the_prefix_a_component_is_told() {
    let host = Components::new()
        .with_sidecar("python-testbed", "prefix = \"/tb\"")
        .with("proxy-testbed")
        .serve();
    let spoofed = [("x-forwarded-prefix", "/evil")];
    let servers = servers(&host, "/tb/openapi.json", &spoofed).await;
    assert_eq!(servers, json!([{"url": "/tb"}]));
    // A component served at the root is told nothing, not the client's word.
    let seen = host
        .send(Method::GET, "/forwarded-prefix", &spoofed, Vec::new())
        .await;
    assert_eq!((seen.status, seen.body.as_str()), (200, ""));
}

#[tokio::test]
async fn a_trusted_proxys_prefix_comes_before_the_components() {
    let sidecar = "prefix = \"/tb\"\n\
                   [rate-limit]\ncapacity = 1000\nperiod-s = 1\ntrusted-proxies = [\"127.0.0.1\"]\n";
    let host = Components::new()
        .with_sidecar("python-testbed", sidecar)
        .serve();
    let proxied = [("x-forwarded-prefix", "/api/")];
    let servers = servers(&host, "/tb/openapi.json", &proxied).await;
    assert_eq!(servers, json!([{"url": "/api/tb"}]));
}

#[tokio::test]
async fn a_wasi_http_component_is_told_its_prefix_once() {
    let host = Components::new()
        .with_sidecar("proxy-testbed", "prefix = \"/p\"")
        .serve();
    let reply = host
        .send(
            Method::GET,
            "/p/forwarded-prefix",
            &[("x-forwarded-prefix", "/evil")],
            Vec::new(),
        )
        .await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "/p"));
}
