"""Typed parameters and FastAPI-shaped validation errors."""

import uuid
from dataclasses import dataclass, field
from typing import Optional, TypedDict

import pytest
from cello import App, Cookie, Header
from cello.messages import MAX_JSON_DEPTH, parse_json
from cello.testing import TestClient


@dataclass
class Item:
    name: str
    price: float
    tags: list[str] = field(default_factory=list)
    note: Optional[str] = None  # noqa: UP045 - the spelling users write


@dataclass
class Order:
    customer: str
    items: list[Item]


class Address(TypedDict):
    street: str
    city: str


def app() -> App:
    app = App()

    @app.post("/items")
    def create_item(item: Item):
        return {"name": item.name, "price": item.price, "tags": item.tags, "note": item.note}

    @app.post("/orders")
    def create_order(order: Order):
        return {"customer": order.customer, "total": sum(i.price for i in order.items)}

    @app.post("/addresses")
    def create_address(address: Address):
        return address

    @app.get("/things/{thing_id}")
    def thing(thing_id: uuid.UUID, verbose: bool = False):
        return {"id": str(thing_id), "verbose": verbose}

    @app.get("/search")
    def search(tag: list[str], limit: Optional[int] = None):  # noqa: UP045
        return {"tag": tag, "limit": limit}

    @app.get("/whoami")
    def whoami(user_agent: str = Header(), session: str = Cookie(default="none")):
        return {"ua": user_agent, "session": session}

    return app


def test_a_json_body_fills_a_dataclass_with_defaults():
    response = TestClient(app()).post("/items", json={"name": "bow", "price": 9})
    assert response.status_code == 200
    assert response.json() == {"name": "bow", "price": 9.0, "tags": [], "note": None}


def test_nested_dataclasses_and_lists_validate():
    order = {"customer": "ann", "items": [{"name": "a", "price": 1.5}, {"name": "b", "price": 2}]}
    assert TestClient(app()).post("/orders", json=order).json() == {"customer": "ann", "total": 3.5}


def test_a_nested_error_has_fastapis_location():
    order = {"customer": "ann", "items": [{"name": "a", "price": "cheap"}]}
    response = TestClient(app()).post("/orders", json=order)
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "float_type",
                "loc": ["body", "items", 0, "price"],
                "msg": "Input should be a valid number",
                "input": "cheap",
            }
        ]
    }


def test_every_problem_is_listed_at_once():
    response = TestClient(app()).post("/items", json={"price": "x"})
    locs = [e["loc"] for e in response.json()["detail"]]
    assert locs == [["body", "name"], ["body", "price"]]
    assert response.json()["detail"][0]["type"] == "missing"


def test_a_typed_dict_body_requires_its_keys():
    client = TestClient(app())
    assert client.post("/addresses", json={"street": "a", "city": "b"}).status_code == 200
    missing = client.post("/addresses", json={"street": "a"})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "city"]


def test_malformed_json_is_422_not_500():
    response = TestClient(app()).post("/items", content=b'{"name": ')
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("number", ["1e999999", "-1e999999", "NaN", "Infinity", "-Infinity"])
def test_a_non_finite_number_in_the_body_is_422(number):
    body = b'{"name": "bow", "price": ' + number.encode() + b"}"
    response = TestClient(app()).post("/items", content=body)
    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["type"] == "json_invalid"
    assert "finite" in error["msg"]


def test_a_body_nested_too_deep_is_422_not_500():
    for depth in (MAX_JSON_DEPTH + 1, 100_000):
        body = b"[" * depth + b"]" * depth
        response = TestClient(app()).post("/addresses", content=body)
        assert response.status_code == 422
        assert "nested deeper than" in response.json()["detail"][0]["msg"]


def test_nesting_up_to_the_limit_and_brackets_in_strings_are_accepted():
    assert parse_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    text = '{"s": "' + "[" * 1000 + '", "t": "\\\\"}'
    assert parse_json(text.encode()) == {"s": "[" * 1000, "t": "\\"}


def test_an_integer_too_long_to_convert_is_422():
    response = TestClient(app()).post("/addresses", content=b"[" + b"9" * 5000 + b"]")
    assert response.status_code == 422


def test_a_missing_body_is_422():
    response = TestClient(app()).post("/items")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]


def test_uuid_path_params_and_bool_query_params_convert():
    thing = uuid.uuid4()
    response = TestClient(app()).get(f"/things/{thing}?verbose=true")
    assert response.json() == {"id": str(thing), "verbose": True}
    bad = TestClient(app()).get("/things/not-a-uuid")
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["path", "thing_id"]
    assert bad.json()["detail"][0]["type"] == "uuid_parsing"


def test_repeated_query_keys_fill_a_list_and_optional_defaults_to_none():
    response = TestClient(app()).get("/search?tag=a&tag=b")
    assert response.json() == {"tag": ["a", "b"], "limit": None}
    bad = TestClient(app()).get("/search?tag=a&limit=many")
    assert bad.json()["detail"][0]["loc"] == ["query", "limit"]


def test_headers_and_cookies_are_read_by_marker():
    client = TestClient(app())
    response = client.get("/whoami", headers={"User-Agent": "t", "Cookie": "session=abc"})
    assert response.json() == {"ua": "t", "session": "abc"}
    assert client.get("/whoami", headers={"User-Agent": "t"}).json()["session"] == "none"
    missing = client.get("/whoami")
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["header", "user-agent"]
