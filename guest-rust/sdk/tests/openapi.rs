//! The OpenAPI document (feature `openapi`): what an app of several routes
//! says of its paths, parameters, bodies, responses and policies; that a
//! real validator takes it as OpenAPI 3.1; and how it is served.

use std::path::PathBuf;
use std::process::Command;

use cello::openapi::{JsonSchema, OpenApi, Operation, OperationInput, documented};
use cello::{
    App, Cache, FromRequest, Header, HttpError, Json, Path, Query, RateLimit, Request, StatusCode,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An item for sale.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Item {
    /// What it is called.
    name: String,
    price: f64,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Search {
    /// Words to look for.
    q: String,
    limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Agent {
    user_agent: String,
}

#[derive(Serialize, JsonSchema)]
struct Page<T> {
    items: Vec<T>,
    total: usize,
}

fn read_item(Path(_id): Path<u64>) -> Option<Json<Item>> {
    None
}

fn search_items(Query(_search): Query<Search>, Header(_agent): Header<Agent>) -> Json<Page<Item>> {
    Json(Page {
        items: Vec::new(),
        total: 0,
    })
}

fn create_item(Json(item): Json<Item>) -> Result<(StatusCode, Json<Item>), HttpError> {
    Ok((StatusCode::CREATED, Json(item)))
}

fn delete_post(Path((_user, _post)): Path<(String, u32)>) {}

/// Not a schema in sight: an undocumented route may take it all the same.
#[derive(Deserialize)]
struct Opaque {}

fn shop() -> App {
    App::new("shop")
        .openapi(
            OpenApi::new()
                .version("1.2.0")
                .description("Things to buy."),
        )
        .get("/items/{id}", documented(read_item))
        .tags(&["items"])
        .get("/items", documented(search_items))
        .summary("Find items")
        .cached(Cache::ttl(60).tags(&["items"]))
        .post("/items", documented(create_item))
        .roles(&["editor"])
        .rate_limit(RateLimit::token_bucket(2, 60))
        .delete("/users/{user}/posts/{post}", documented(delete_post))
        .post("/raw/{id}", |Json(_): Json<Opaque>| "stored")
}

fn operation<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "no {method} {path} in {doc:#}");
    operation
}

fn operation_ids(doc: &Value) -> Vec<String> {
    let paths = doc["paths"].as_object().unwrap();
    let operations = paths
        .values()
        .flat_map(|item| item.as_object().unwrap().values());
    operations
        .map(|op| op["operationId"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let doc = shop()
        .test_client()
        .get("/openapi.json")
        .send()
        .json::<Value>();
    validate(&doc);
    assert_eq!(doc["openapi"], "3.1.0");
    let info = json!({"title": "shop", "version": "1.2.0", "description": "Things to buy."});
    assert_eq!(doc["info"], info);
}

#[test]
fn every_route_is_a_path_and_the_document_itself_is_not() {
    let doc = shop().openapi_document();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert_eq!(
        paths,
        [
            "/items",
            "/items/{id}",
            "/raw/{id}",
            "/users/{user}/posts/{post}"
        ]
    );
    let items = doc["paths"]["/items"].as_object().unwrap();
    assert_eq!(items.keys().collect::<Vec<_>>(), ["get", "post"]);
}

#[test]
fn path_parameters_take_their_types_by_position_or_alone() {
    let doc = shop().openapi_document();
    let read = operation(&doc, "/items/{id}", "get");
    let id = json!({"format": "uint64", "minimum": 0, "type": "integer"});
    assert_eq!(
        read["parameters"],
        json!([{"name": "id", "in": "path", "required": true, "schema": id}])
    );
    let delete = operation(&doc, "/users/{user}/posts/{post}", "delete");
    let params = delete["parameters"].as_array().unwrap();
    assert_eq!(params[0]["name"], "user");
    assert_eq!(params[0]["schema"], json!({"type": "string"}));
    assert_eq!(params[1]["name"], "post");
    assert_eq!(params[1]["schema"]["type"], "integer");
}

#[test]
fn query_and_header_fields_are_parameters() {
    let doc = shop().openapi_document();
    let search = operation(&doc, "/items", "get");
    let params = search["parameters"].as_array().unwrap();
    let found = |name: &str| params.iter().find(|p| p["name"] == name).unwrap();
    assert_eq!(found("q")["in"], "query");
    assert_eq!(found("q")["required"], true);
    assert_eq!(found("q")["description"], "Words to look for.");
    assert_eq!(found("limit")["required"], false);
    assert_eq!(found("user-agent")["in"], "header");
    assert_eq!(found("user-agent")["required"], true);
}

#[test]
fn a_json_body_and_a_json_response_refer_to_their_schemas() {
    let doc = shop().openapi_document();
    let create = operation(&doc, "/items", "post");
    let body = &create["requestBody"];
    assert_eq!(body["required"], true);
    assert_eq!(
        body["content"]["application/json"]["schema"],
        json!({"$ref": "#/components/schemas/Item"})
    );
    let item = &doc["components"]["schemas"]["Item"];
    assert_eq!(item["required"], json!(["name", "price"]));
    assert_eq!(
        item["properties"]["name"]["description"],
        "What it is called."
    );
    assert_eq!(item["description"], "An item for sale.");

    // A status chosen at run time: any success.
    let created = &create["responses"]["2XX"]["content"]["application/json"]["schema"];
    assert_eq!(created["$ref"], "#/components/schemas/Item-Output");
    // Serde always writes the `#[serde(default)]` field it may go without.
    let written = &doc["components"]["schemas"]["Item-Output"];
    assert_eq!(written["required"], json!(["name", "price", "tags"]));

    let search = operation(&doc, "/items", "get");
    let page = &search["responses"]["200"]["content"]["application/json"]["schema"];
    let page = page["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
    let items = &doc["components"]["schemas"][page]["properties"]["items"];
    assert_eq!(items["items"]["$ref"], "#/components/schemas/Item-Output");
}

#[test]
fn results_say_which_responses_a_route_has() {
    let doc = shop().openapi_document();
    let statuses = |path: &str, method: &str| {
        let responses = operation(&doc, path, method)["responses"]
            .as_object()
            .unwrap();
        responses.keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(statuses("/items/{id}", "get"), ["200", "404", "422"]);
    assert_eq!(
        statuses("/users/{user}/posts/{post}", "delete"),
        ["204", "422"]
    );
    let read = operation(&doc, "/items/{id}", "get");
    let invalid = &read["responses"]["422"]["content"]["application/json"]["schema"];
    assert_eq!(invalid["$ref"], "#/components/schemas/HTTPValidationError");
    let error = &doc["components"]["schemas"]["ValidationError"];
    assert_eq!(error["required"], json!(["loc", "msg", "type"]));
}

#[test]
fn roles_are_security_and_policies_are_extensions() {
    let doc = shop().openapi_document();
    let create = operation(&doc, "/items", "post");
    assert_eq!(create["security"], json!([{"jwt": ["editor"]}]));
    let scheme = &doc["components"]["securitySchemes"]["jwt"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&json!("http"), &json!("bearer"))
    );
    for status in ["401", "403", "429"] {
        assert!(create["responses"][status].is_object(), "{status}");
    }
    assert_eq!(create["x-cello-rate-limit"]["capacity"], 2);
    let search = operation(&doc, "/items", "get");
    assert_eq!(
        search["x-cello-cache"],
        json!({"ttl-seconds": 60, "tags": ["items"]})
    );
    assert!(search.get("security").is_none());
}

#[test]
fn summaries_come_from_handler_names_unless_given_and_tags_from_the_route() {
    let doc = shop().openapi_document();
    let read = operation(&doc, "/items/{id}", "get");
    assert_eq!(read["summary"], "Read Item");
    assert_eq!(read["tags"], json!(["items"]));
    assert_eq!(operation(&doc, "/items", "get")["summary"], "Find items");
    // A closure has no name to make one of.
    assert!(
        operation(&doc, "/raw/{id}", "post")
            .get("summary")
            .is_none()
    );
}

#[test]
fn operation_ids_are_name_path_and_method() {
    let doc = shop().openapi_document();
    let read = operation(&doc, "/items/{id}", "get");
    assert_eq!(read["operationId"], "read_item_items__id__get");
    assert_eq!(
        operation(&doc, "/raw/{id}", "post")["operationId"],
        "raw__id__post"
    );
    let ids = operation_ids(&doc);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
}

fn index() -> &'static str {
    "index"
}

#[test]
fn one_handler_name_on_paths_that_read_alike_still_has_unique_ids() {
    let app = App::new("two")
        .nest("/a-b", App::new("x").get("/", documented(index)))
        .nest("/a_b", App::new("y").get("/", documented(index)))
        .get("/c", index)
        .operation_id("list")
        .route(&["GET", "POST"], "/d", index)
        .operation_id("list");
    let doc = app
        .test_client()
        .get("/openapi.json")
        .send()
        .json::<Value>();
    validate(&doc);
    let mut ids = operation_ids(&doc);
    ids.sort();
    assert_eq!(
        ids,
        [
            "index_a_b_get",
            "index_a_b_get_2",
            "list",
            "list_2",
            "list_3"
        ]
    );
}

#[test]
fn a_route_whose_types_have_no_schema_is_listed_with_any_value() {
    let doc = shop().openapi_document();
    let raw = operation(&doc, "/raw/{id}", "post");
    assert_eq!(raw["parameters"][0]["schema"], json!({}));
    assert_eq!(
        raw["responses"],
        json!({"200": {"description": "Successful Response"}})
    );
}

/// An extractor of the app's own, which reads the id from the path.
struct Existing(u64);

impl FromRequest for Existing {
    type Rejection = cello::Response;

    async fn from_request(req: &Request) -> Result<Self, cello::Response> {
        use cello::IntoResponse;
        let Path(id) = (req.extract::<Path<u64>>().await).map_err(IntoResponse::into_response)?;
        Ok(Existing(id))
    }
}

impl OperationInput for Existing {
    fn describe(op: &mut Operation<'_>) {
        op.input::<Path<u64>>()
            .response(StatusCode::NOT_FOUND, "No such item");
    }
}

#[test]
fn an_extractor_of_your_own_says_what_it_reads() {
    let app = App::new("own").get(
        "/things/{id}",
        documented(|Existing(id): Existing| id.to_string()),
    );
    let doc = app.openapi_document();
    let read = operation(&doc, "/things/{id}", "get");
    assert_eq!(read["parameters"][0]["schema"]["type"], "integer");
    assert_eq!(read["responses"]["404"]["description"], "No such item");
    let text = &read["responses"]["200"]["content"]["text/plain"]["schema"];
    assert_eq!(text, &json!({"type": "string"}));
}

#[test]
fn servers_name_the_prefix_a_proxy_forwards() {
    let client = shop().test_client();
    let forwarded = client
        .get("/openapi.json")
        .header("X-Forwarded-Prefix", "/shop/")
        .send();
    assert_eq!(
        forwarded.json::<Value>()["servers"],
        json!([{"url": "/shop"}])
    );
    let direct = client.get("/openapi.json").send().json::<Value>();
    assert!(direct.get("servers").is_none());
}

#[test]
fn the_document_can_be_served_elsewhere_or_not_at_all() {
    let moved = App::new("m")
        .openapi(OpenApi::new().url("/api/schema.json"))
        .get("/x", documented(index))
        .test_client();
    assert_eq!(
        moved.get("/api/schema.json").send().status(),
        StatusCode::OK
    );
    assert_eq!(
        moved.get("/openapi.json").send().status(),
        StatusCode::NOT_FOUND
    );

    let quiet = App::new("q")
        .openapi(OpenApi::new().not_served())
        .get("/x", index);
    assert_eq!(
        quiet.openapi_document()["paths"]["/x"]["get"]["operationId"],
        "index_x_get"
    );
    let client = quiet.test_client();
    assert_eq!(
        client.get("/openapi.json").send().status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn an_app_that_serves_the_path_itself_keeps_it() {
    let app = App::new("own").get("/openapi.json", || "mine");
    assert_eq!(app.test_client().get("/openapi.json").send().text(), "mine");
}

/// Runs the `openapi-spec-validator` the repository's Python tests use:
/// `CELLO_PYTHON`, or the project's `.venv` (`make setup`).
fn validate(doc: &Value) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var_os("CELLO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} not found: validating the document needs a Python with \
         openapi-spec-validator; run `make setup`, or set CELLO_PYTHON",
        python.display()
    );
    let file = tempfile(doc);
    let output = Command::new(&python)
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             validate(json.load(open(sys.argv[1])))",
        ])
        .arg(&file)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the document is not valid OpenAPI 3.1:\n{}\n{doc:#}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `doc` in a file of its own under the test's temporary directory.
fn tempfile(doc: &Value) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static WRITTEN: AtomicUsize = AtomicUsize::new(0);
    let n = WRITTEN.fetch_add(1, Ordering::Relaxed);
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("openapi-{}-{n}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
    file
}
