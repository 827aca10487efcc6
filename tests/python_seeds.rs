//! The seeds' code and FastAPI's spellings, served from a real Python
//! component: Lauren's controllers, extractors and services, markers with
//! constraints, router dependencies and the trailing-slash redirect.

use crate::support;

use serde_json::json;
use support::{Components, Host};

/// The testbed under /tb, on one instance so its singletons are one.
fn serve() -> Host {
    Components::new()
        .with_sidecar(
            "python-testbed",
            "prefix = \"/tb\"\n[limits]\nmax-instances = 1\n",
        )
        .serve()
}

#[tokio::test]
async fn an_injectable_singleton_reaches_a_controller_by_its_annotation() {
    let host = serve();
    let first = host.post("/tb/counter", "text/plain", "").await;
    assert_eq!(first.status, 200, "{}", host.log());
    let second = host.post("/tb/counter", "text/plain", "").await.json();
    assert_eq!(first.json()["instance"], second["instance"]);
    assert_eq!(
        second["n"].as_i64().unwrap(),
        first.json()["n"].as_i64().unwrap() + 1
    );
}

#[tokio::test]
async fn laurens_extractors_read_the_path_and_the_body() {
    let host = serve();
    assert_eq!(host.get("/tb/items/async/7").await.json(), json!({"id": 7}));
    assert_eq!(host.get("/tb/items/async/seven").await.status, 422);
    let reply = host
        .post(
            "/tb/items/body",
            "application/json",
            r#"{"name": "bow", "price": 1}"#,
        )
        .await;
    assert_eq!(reply.json(), json!({"name": "bow"}), "{}", host.log());
}

#[tokio::test]
async fn a_router_dependency_and_a_query_constraint_answer_as_in_fastapi() {
    let host = serve();
    let token = [("x-token", "secret")];
    let ok = host
        .send(http::Method::GET, "/tb/things", &token, Vec::new())
        .await;
    assert_eq!(ok.json(), json!({"limit": 5}), "{}", host.log());
    let bounded = host
        .send(http::Method::GET, "/tb/things?limit=50", &token, Vec::new())
        .await;
    assert_eq!(bounded.status, 422);
    assert_eq!(bounded.json()["detail"][0]["type"], "less_than_equal");
    let missing = host.get("/tb/things").await;
    assert_eq!(
        missing.json()["detail"][0]["loc"],
        json!(["header", "x-token"])
    );
    let bad = host
        .send(
            http::Method::GET,
            "/tb/things",
            &[("x-token", "no")],
            Vec::new(),
        )
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn a_trailing_slash_is_redirected_relative_to_the_prefix() {
    let host = serve();
    let reply = host.get("/tb/things/?limit=2").await;
    assert_eq!(reply.status, 307, "{}", host.log());
    assert_eq!(reply.header("location"), Some("../things?limit=2"));
}

#[tokio::test]
async fn routers_and_controllers_get_unique_operation_ids_and_constraints() {
    let host = serve();
    let doc = host.get("/tb/openapi.json").await.json();
    let mut ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|operation| operation["operationId"].as_str().unwrap())
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "operation ids repeat: {ids:?}");
    let parameters = &doc["paths"]["/things"]["get"]["parameters"];
    let limit = parameters
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap_or_else(|| panic!("{parameters}"));
    assert_eq!(limit["schema"]["maximum"], 10);
    assert_eq!(limit["schema"]["default"], 5);
}
