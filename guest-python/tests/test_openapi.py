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


def test_the_docs_page_needs_nothing_from_elsewhere():
    page = TestClient(app()).get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'fetch("openapi.json")' in page.text
    assert "http://" not in page.text and "https://" not in page.text


def test_the_routes_can_be_turned_off():
    quiet = App(openapi_url=None, docs_url=None).finalize()
    assert quiet.routes == []
