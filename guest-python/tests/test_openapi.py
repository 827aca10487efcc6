"""The OpenAPI document and the docs page."""

from dataclasses import dataclass
from typing import Optional, TypedDict

from cello import App, Header, Router
from cello.testing import TestClient
from openapi_spec_validator import validate


@dataclass
class Item:
    name: str
    price: float
    tags: list[str]
    note: Optional[str] = None  # noqa: UP045


class Filters(TypedDict):
    color: str


def app() -> App:
    app = App("shop", version="1.2.0")
    items = Router(prefix="/items", tags=["items"])

    @items.get("/{item_id}")
    def get_item(item_id: int, verbose: bool = False, x_trace: str = Header(default="")):
        """Reads one item."""
        return {"id": item_id}

    @items.post("/", status_code=201)
    def create_item(item: Item):
        return item

    @items.post("/search")
    def search(filters: Filters):
        return []

    app.include_router(items)
    return app


def test_the_document_is_valid_openapi_3_1():
    doc = TestClient(app()).get("/openapi.json").json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["info"] == {"title": "shop", "version": "1.2.0"}


def test_the_document_describes_parameters_bodies_and_responses():
    doc = app().openapi()
    get = doc["paths"]["/items/{item_id}"]["get"]
    assert get["summary"] == "Reads one item."
    assert get["tags"] == ["items"]
    assert get["parameters"] == [
        {"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer"}},
        {
            "name": "verbose",
            "in": "query",
            "required": False,
            "schema": {"type": "boolean", "default": False},
        },
        {
            "name": "x-trace",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "default": ""},
        },
    ]
    post = doc["paths"]["/items"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Item"
    }
    assert set(post["responses"]) == {"201", "422"}
    item = doc["components"]["schemas"]["Item"]
    assert item["required"] == ["name", "price", "tags"]
    assert item["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    assert doc["components"]["schemas"]["Filters"]["required"] == ["color"]


def test_the_docs_and_openapi_routes_are_not_in_the_document():
    doc = TestClient(app()).get("/openapi.json").json()
    assert set(doc["paths"]) == {"/items/{item_id}", "/items", "/items/search"}


def test_the_docs_page_is_swagger_ui_from_the_host_and_nothing_from_elsewhere():
    page = TestClient(app()).get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="_cello/swagger-ui/swagger-ui-bundle.js">' in page.text
    assert 'href="_cello/swagger-ui/swagger-ui.css"' in page.text
    assert 'const documentUrl = "openapi.json";' in page.text
    assert "http://" not in page.text and "https://" not in page.text


def test_the_docs_page_finds_swagger_ui_at_the_hosts_root_under_any_prefix():
    page = TestClient(app()).get("/docs", headers={"X-Forwarded-Prefix": "/t/acme/shop"})
    assert '<script src="../../../_cello/swagger-ui/swagger-ui-bundle.js">' in page.text
    assert 'const documentUrl = "openapi.json";' in page.text


def test_the_docs_page_lists_the_operations_plainly_without_swagger_ui():
    page = TestClient(app()).get("/docs").text
    assert "if (window.SwaggerUIBundle)" in page
    assert "fetch(documentUrl)" in page


def test_the_routes_can_be_turned_off():
    quiet = App(openapi_url=None, docs_url=None).finalize()
    assert quiet.routes == []


def two_routers() -> App:
    from cello import Depends, Query

    app = App("two", root_path="/shop")
    users = Router(prefix="/users", tags=["users"], responses={404: {"description": "Not found"}})
    items = Router(prefix="/items", tags=["items"])

    def auth(token: str = Header()):
        return token

    @users.get("/")
    def index(limit: int = Query(10, ge=1, le=100, description="How many")):
        return []

    @items.get("/", dependencies=[Depends(auth)])
    def index_items(q: str | None = Query(None, max_length=20, pattern="^[a-z]+$")):
        return []

    @items.get("/{item_id}")
    def index_one(item_id: int):  # noqa: F811
        return {}

    # The same handler name in both routers: ids must still be unique.
    index_items.__name__ = "index"
    items.routes[0].handler.__name__ = "index"
    app.include_router(users)
    app.include_router(items)
    return app


def test_a_two_router_document_validates_with_unique_operation_ids():
    client = TestClient(two_routers())
    doc = client.get("/openapi.json").json()
    validate(doc)
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert doc["paths"]["/users"]["get"]["operationId"] == "index_users_get"
    assert doc["paths"]["/items"]["get"]["operationId"] == "index_items_get"


def test_the_prefix_the_app_is_served_under_is_in_servers():
    doc = TestClient(two_routers()).get("/openapi.json").json()
    assert doc["servers"] == [{"url": "/shop"}]
    app = App()
    app.get("/x")(lambda: {})
    forwarded = TestClient(app).get("/openapi.json", headers={"X-Forwarded-Prefix": "/tut/"})
    assert forwarded.json()["servers"] == [{"url": "/tut"}]


def test_parameters_carry_their_defaults_constraints_and_router_responses():
    doc = TestClient(two_routers()).get("/openapi.json").json()
    (limit,) = doc["paths"]["/users"]["get"]["parameters"]
    assert limit["description"] == "How many"
    assert limit["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "description": "How many",
        "default": 10,
    }
    assert doc["paths"]["/users"]["get"]["responses"]["404"] == {"description": "Not found"}
    items = doc["paths"]["/items"]["get"]["parameters"]
    assert {p["in"]: p["name"] for p in items} == {"query": "q", "header": "token"}
    (q,) = [p for p in items if p["name"] == "q"]
    assert q["schema"]["maxLength"] == 20 and q["schema"]["pattern"] == "^[a-z]+$"


def test_annotated_header_is_a_header_in_the_document():
    from typing import Annotated

    app = App()

    @app.get("/ua")
    def ua(user_agent: Annotated[str, Header()]):
        return user_agent

    (param,) = TestClient(app).get("/openapi.json").json()["paths"]["/ua"]["get"]["parameters"]
    assert (param["in"], param["name"]) == ("header", "user-agent")


def test_a_cello_model_is_a_component_schema():
    from cello import BaseModel, Field

    class Item(BaseModel):
        name: str = Field(max_length=5)
        price: float = 1.0

    app = App()
    app.post("/items")(lambda item: item)

    @app.post("/items2")
    def make(item: Item):
        return item

    doc = TestClient(app).get("/openapi.json").json()
    validate(doc)
    assert doc["components"]["schemas"]["Item"]["required"] == ["name"]
    assert doc["components"]["schemas"]["Item"]["properties"]["name"]["maxLength"] == 5


def test_the_docs_page_fetches_the_document_wherever_it_is_served():
    from cello.docs import docs_page

    def document(page: str) -> str:
        return page.split("const documentUrl = ", 1)[1].split(";", 1)[0]

    assert document(docs_page("/docs", "/api/schema.json")) == '"api/schema.json"'
    assert document(docs_page("/x/docs", "/openapi.json")) == '"../openapi.json"'
    assert document(docs_page("/docs", None)) == "null"
    app = App(openapi_url="/api/schema.json")
    page = TestClient(app).get("/docs").text
    assert document(page) == '"api/schema.json"'


def test_the_docs_page_is_titled_for_the_app_and_deeper_pages_find_swagger_ui_too():
    from cello.docs import docs_page

    page = docs_page("/api/docs", "/openapi.json", prefix="/shop/", title="<Shop & Co>")
    assert "<title>&lt;Shop &amp; Co&gt; - Swagger UI</title>" in page
    assert '<script src="../../_cello/swagger-ui/swagger-ui-bundle.js">' in page
