"""The items example, natively."""

import json

import pytest
from app import app
from cello import kv
from cello.testing import TestClient
from replay import replay


@pytest.fixture(autouse=True)
def empty_store():
    kv._MEMORY.items.clear()


def test_crud_round_trip():
    client = TestClient(app)
    created = client.post("/items", json={"name": "bow", "price": 120.5})
    assert created.status_code == 201
    item = created.json()
    assert item == {"name": "bow", "price": 120.5, "tags": [], "description": None, "id": 1}
    assert client.get("/items/1").json() == item
    assert client.put("/items/1", json={"name": "bow", "price": 99}).json()["price"] == 99.0
    assert client.delete("/items/1").status_code == 204
    assert client.get("/items/1").status_code == 404


def test_validation_errors_point_at_the_field():
    reply = TestClient(app).post("/items", json={"name": "x", "price": "cheap"})
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "price"]


def test_a_fake_store_can_be_injected():
    class Fake(kv.KV):
        async def keys(self, prefix=""):
            return ["item:7"]

        async def get_json(self, key):
            return {"id": 7, "name": "fake", "price": 1.0, "tags": [], "description": None}

    from app import store

    app.dependency_overrides[store] = Fake
    try:
        assert TestClient(app).get("/items").json()[0]["name"] == "fake"
    finally:
        app.dependency_overrides.clear()


def test_the_shared_cases_replay_natively():
    lines = replay(app)
    assert [line["status"] for line in lines] == [
        200, 201, 201, 422, 422, 200, 422, 404, 200, 200, 200, 204, 404, 200, 405, 404,
    ]  # fmt: skip
    assert json.dumps(lines[1]["body"]) == json.dumps(
        {"name": "bow", "price": 120.5, "tags": ["strings"], "description": None, "id": 1}
    )
