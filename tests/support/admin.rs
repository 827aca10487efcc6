//! Tenants through the real admin API: a host with it on, and the calls
//! tests make to it.

use std::time::Duration;

use http::Method;

use super::{Components, Host, Reply, components_dir};

pub const OPERATOR: &str = "operator-secret";

/// A host with the admin API on, serving `components`.
pub fn serve(components: Components) -> Host {
    serve_with(components, &[])
}

pub fn serve_with(components: Components, extra: &[&str]) -> Host {
    let mut args = vec!["--admin-token", OPERATOR, "--admin-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    components.serve_with(&args)
}

/// A host started again over the tenants `components` kept, once every
/// tenant's components are restored (they load after the listener opens).
pub async fn restarted(components: Components) -> Host {
    let host = serve(components);
    wait_restored(&host, Duration::from_secs(120)).await;
    host
}

/// Waits until the host says every tenant is restored.
pub async fn wait_restored(host: &Host, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    while !host.log().contains("every tenant restored") {
        assert!(
            std::time::Instant::now() < deadline,
            "tenants not restored within {within:?}; the log:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The bytes of built component `name`.
pub fn component(name: &str) -> Vec<u8> {
    std::fs::read(components_dir().join(format!("{name}.wasm"))).unwrap()
}

pub async fn create_tenant(host: &Host, name: &str, settings: serde_json::Value) {
    let mut body = settings;
    body["name"] = name.into();
    let reply = host
        .admin(
            Method::POST,
            "/v1/tenants",
            OPERATOR,
            "application/json",
            body.to_string().into(),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

pub async fn token(host: &Host, tenant: &str) -> String {
    let path = format!("/v1/tenants/{tenant}/tokens");
    let reply = call(host, Method::POST, &path, OPERATOR).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["token"].as_str().unwrap().to_string()
}

pub async fn push(host: &Host, tenant: &str, name: &str, token: &str, bytes: Vec<u8>) -> Reply {
    let path = format!("/v1/tenants/{tenant}/components/{name}");
    host.admin(Method::PUT, &path, token, "application/wasm", bytes)
        .await
}

/// An upload as a multipart form with sidecar settings, by the operator.
pub async fn push_with(
    host: &Host,
    tenant: &str,
    name: &str,
    bytes: Vec<u8>,
    settings: &str,
) -> Reply {
    host.upload(tenant, name, OPERATOR, bytes, settings).await
}

/// An admin request without a body.
pub async fn call(host: &Host, method: Method, path: &str, token: &str) -> Reply {
    host.admin(method, path, token, "application/json", Vec::new())
        .await
}
