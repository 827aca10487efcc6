//! Serving Cello apps in Rust and Python, and plain wasi:http components.

use crate::support;

use serde_json::json;
use support::{Components, Host};

fn examples() -> Host {
    Components::new()
        .with_sidecar("hello-rust", "prefix = \"/rs\"")
        .with_sidecar("hello-python", "prefix = \"/py\"")
        .with_sidecar("http-proxy", "prefix = \"/proxy\"")
        .with("python-testbed")
        .serve()
}

#[tokio::test]
async fn rust_sync_route_receives_path_params() {
    let host = examples();
    let reply = host.get("/rs/hello/world").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "Hello, world!");
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

#[tokio::test]
async fn rust_async_route_awaits_the_host() {
    let host = examples();
    let reply = host.get("/rs/slow/20").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({ "slept_ms": 20 }));
}

#[tokio::test]
async fn rust_route_echoes_a_json_body() {
    let host = examples();
    let item = json!({ "name": "cello", "price": 9.5 });
    let reply = host
        .post("/rs/items", "application/json", item.to_string())
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json(), item);
}

#[tokio::test]
async fn rust_route_rejects_a_malformed_json_body_with_422() {
    let host = examples();
    let reply = host
        .post("/rs/items", "application/json", "{\"name\":")
        .await;
    assert_eq!(reply.status, 422);
    let problem = &reply.json()["detail"][0];
    assert_eq!(problem["type"], "json_invalid");
    assert_eq!(problem["loc"], json!(["body", 8]));
}

#[tokio::test]
async fn python_sync_route_receives_path_params() {
    let host = examples();
    let reply = host.get("/py/hello/world").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({ "message": "Hello, world!" }));
}

#[tokio::test]
async fn python_async_route_awaits_the_host() {
    let host = examples();
    let reply = host.get("/py/slow/20").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({ "slept_ms": 20 }));
}

#[tokio::test]
async fn python_route_echoes_a_json_body_with_201() {
    let host = examples();
    let item = json!({ "name": "cello", "price": 9.5 });
    let reply = host
        .post("/py/items", "application/json", item.to_string())
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json(), item);
}

#[tokio::test]
async fn python_path_param_of_the_wrong_type_is_422() {
    let host = examples();
    let reply = host.get("/py/slow/soon").await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.json()["detail"][0]["loc"], json!(["path", "ms"]));
}

#[tokio::test]
async fn python_query_params_fill_handler_arguments() {
    let host = examples();
    let reply = host.get("/search?q=cello&limit=3").await;
    assert_eq!(reply.json(), json!({ "q": "cello", "limit": 3 }));
    let reply = host.get("/search?q=viola").await;
    assert_eq!(reply.json(), json!({ "q": "viola", "limit": 10 }));
}

#[tokio::test]
async fn python_request_carries_everything_the_host_knows_on_sync_and_async_routes() {
    let host = examples();
    for (route, name) in [("seen", "sync"), ("seen-async", "async")] {
        let reply = host
            .send(
                http::Method::POST,
                &format!("/{route}/{name}?x=1&y=two"),
                &[("x-probe", "probed"), ("x-request-id", "probe-7")],
                b"the body".to_vec(),
            )
            .await;
        assert_eq!(reply.status, 200, "{route}: {}", reply.body);
        let seen = reply.json();
        assert_eq!(seen["method"], "POST");
        assert_eq!(seen["path"], format!("/{route}/{name}"));
        assert_eq!(seen["query"], "x=1&y=two");
        assert_eq!(seen["params"], json!({ "name": name }));
        assert_eq!(seen["header"], "probed");
        assert_eq!(seen["body"], "the body");
        assert_eq!(seen["request_id"], "probe-7");
        assert!(
            seen["client"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{seen}"
        );
        assert_eq!(seen["user"], serde_json::Value::Null);
        assert_eq!(seen["tenant"], serde_json::Value::Null, "not a tenant's");
    }
}

#[tokio::test]
async fn prefixed_app_root_answers_with_and_without_slash() {
    let host = examples();
    assert_eq!(host.get("/py").await.body, "Hello from Python!");
    assert_eq!(host.get("/py/").await.body, "Hello from Python!");
}

#[tokio::test]
async fn unknown_path_is_404_json() {
    let host = examples();
    let reply = host.get("/no/such/path").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json(), json!({ "detail": "Not Found" }));
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let host = examples();
    let reply = host
        .send(http::Method::DELETE, "/rs/hello/x", &[], Vec::new())
        .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET"));
}

#[tokio::test]
async fn wasi_http_proxy_component_is_served_under_its_prefix() {
    let host = examples();
    let reply = host.get("/proxy/some/path?x=1").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        "Hello from wasi:http! You asked for /some/path?x=1"
    );
    assert_eq!(host.get("/proxy").await.status, 200);
    assert_eq!(
        host.get("/proxy/").await.body,
        "Hello from wasi:http! You asked for /"
    );
}

#[tokio::test]
async fn wasi_http_proxy_component_without_prefix_takes_every_path() {
    let host = Components::new().with("http-proxy").serve();
    assert_eq!(
        host.get("/").await.body,
        "Hello from wasi:http! You asked for /"
    );
    assert_eq!(
        host.get("/a/b").await.body,
        "Hello from wasi:http! You asked for /a/b"
    );
}

#[tokio::test]
async fn request_id_is_returned_and_a_given_one_is_kept() {
    let host = examples();
    let made = host.get("/rs/hello/x").await;
    assert!(!made.header("x-request-id").unwrap_or("").is_empty());
    let kept = host
        .send(
            http::Method::GET,
            "/rs/hello/x",
            &[("x-request-id", "abc-123")],
            Vec::new(),
        )
        .await;
    assert_eq!(kept.header("x-request-id"), Some("abc-123"));
}

#[tokio::test]
async fn http2_requests_are_served() {
    let host = examples();
    let request = host.request(http::Method::GET, "/rs/hello/h2", &[], Vec::new());
    let reply = support::send(&support::h2_client(), request).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "Hello, h2!");
}

#[tokio::test]
async fn python_router_routes_are_served_under_their_prefix_with_their_status() {
    let host = examples();
    let thing = json!({ "name": "bow" });
    let reply = host
        .post("/admin/things", "application/json", thing.to_string())
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json(), thing);
}

#[tokio::test]
async fn python_typed_body_and_uuid_path_validate_in_the_component() {
    let host = examples();
    let id = "0b6a1b2c-3d4e-4f60-8a7b-9c0d1e2f3a4b";
    let good = json!({ "name": "bow", "price": 9 });
    let reply = host
        .post(
            &format!("/typed/{id}"),
            "application/json",
            good.to_string(),
        )
        .await;
    assert_eq!(
        reply.json(),
        json!({ "id": id, "name": "bow", "price": 9.0 })
    );
    let bad = json!({ "name": "bow", "price": "cheap" });
    let reply = host
        .post("/typed/nope", "application/json", bad.to_string())
        .await;
    assert_eq!(reply.status, 422);
    let locs: Vec<_> = reply.json()["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["loc"].clone())
        .collect();
    assert_eq!(
        locs,
        [json!(["path", "thing_id"]), json!(["body", "price"])]
    );
}

#[tokio::test]
async fn a_python_apps_openapi_document_is_served_and_valid() {
    let host = examples();
    let doc = host.get("/py/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert!(
        doc.json()["paths"]["/hello/{name}"]["get"].is_object(),
        "{}",
        doc.body
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &doc.body).unwrap();
    let check = "import json, sys\n\
                 from openapi_spec_validator import validate\n\
                 validate(json.load(open(sys.argv[1])))";
    let validated = std::process::Command::new(cello_test_components::PYTHON)
        .args(["-c", check])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        validated.status.success(),
        "{}",
        String::from_utf8_lossy(&validated.stderr)
    );
    let page = host.get("/py/docs").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
}
