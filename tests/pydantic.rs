//! pydantic v2 inside a Python component: `from pydantic import BaseModel`
//! with the pydantic-core the SDK ships built for WASI, as a request body
//! and a response model, over real HTTP.

use crate::support;

use serde_json::json;
use support::{Components, Host};

/// On one instance, so what one request stores the next one reads.
fn serve() -> Host {
    Components::new()
        .with_sidecar(
            "python-pydantic",
            "prefix = \"/pd\"\n[limits]\nmax-instances = 1\n",
        )
        .serve()
}

#[tokio::test]
async fn pydantic_and_its_native_core_load_in_the_component() {
    let host = serve();
    let versions = host.get("/pd/versions").await;
    assert_eq!(versions.status, 200, "{}", host.log());
    assert_eq!(
        versions.json(),
        json!({"pydantic": "2.14.4", "pydantic_core": "2.50.5"})
    );
}

#[tokio::test]
async fn a_body_model_is_validated_and_the_response_model_shapes_the_reply() {
    let host = serve();
    let created = host
        .post(
            "/pd/items",
            "application/json",
            r#"{"name": "pen", "price": "2.5", "released": "2024-05-01", "tags": [{"name": "x"}]}"#,
        )
        .await;
    assert_eq!(created.status, 201, "{}", host.log());
    let item = json!({
        "id": 1, "name": "pen", "price": 2.5, "released": "2024-05-01", "tags": [{"name": "x"}]
    });
    assert_eq!(created.json(), item);
    // The handler returns a dict with a `secret` the response model drops.
    assert_eq!(host.get("/pd/items/1").await.json(), item);
    assert_eq!(host.get("/pd/items/2").await.status, 404);
}

#[tokio::test]
async fn validation_errors_answer_422_in_fastapis_shape() {
    let host = serve();
    let reply = host
        .post(
            "/pd/items",
            "application/json",
            r#"{"name": "LOUD", "price": -1, "tags": [{"name": ""}]}"#,
        )
        .await;
    assert_eq!(reply.status, 422, "{}", host.log());
    // What FastAPI answers for the same model and body.
    assert_eq!(
        reply.json(),
        json!({"detail": [
            {"type": "value_error", "loc": ["body", "name"],
             "msg": "Value error, name must not be all capitals", "input": "LOUD",
             "ctx": {"error": {}}},
            {"type": "greater_than", "loc": ["body", "price"],
             "msg": "Input should be greater than 0", "input": -1, "ctx": {"gt": 0.0}},
            {"type": "string_too_short", "loc": ["body", "tags", 0, "name"],
             "msg": "String should have at least 1 character", "input": "",
             "ctx": {"min_length": 1}},
        ]})
    );
    let missing = host
        .post("/pd/items", "application/json", r#"{"name": "pen"}"#)
        .await;
    assert_eq!(
        missing.json(),
        json!({"detail": [{"type": "missing", "loc": ["body", "price"],
                           "msg": "Field required", "input": {"name": "pen"}}]})
    );
}

#[tokio::test]
async fn the_openapi_document_lists_pydantics_models_as_components() {
    let host = serve();
    let reply = host.get("/pd/openapi.json").await;
    assert_eq!(reply.status, 200, "{}", host.log());
    let document = reply.json();
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["ItemIn"]["properties"]["tags"]["items"],
        json!({"$ref": "#/components/schemas/Tag"})
    );
    assert_eq!(schemas["Tag"]["properties"]["name"]["minLength"], 1);
    let create = &document["paths"]["/items"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"],
        json!({"$ref": "#/components/schemas/ItemIn"})
    );
    assert_eq!(
        create["responses"]["201"]["content"]["application/json"]["schema"],
        json!({"$ref": "#/components/schemas/ItemOut"})
    );
    assert!(!document.to_string().contains("$defs"));
}
