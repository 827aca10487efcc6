"""The tutorial's tests, as written for FastAPI; only the TestClient import
differs (it was ``from fastapi.testclient import TestClient``)."""

from cello.testing import TestClient
from main import app, fake_db, log_lines

client = TestClient(app)
TOKEN = {"X-Token": "fake-super-secret-token"}


def test_read_main():
    response = client.get("/")
    assert response.status_code == 200
    assert response.json() == {"message": "Hello Bigger Applications!"}


def test_read_items():
    response = client.get("/items/", headers=TOKEN)
    assert response.status_code == 200
    assert response.json()[0]["name"] == "Foo"


def test_read_items_bad_token():
    response = client.get("/items/", headers={"X-Token": "hailhydra"})
    assert response.status_code == 400
    assert response.json() == {"detail": "X-Token header invalid"}


def test_read_items_without_token():
    response = client.get("/items/")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "x-token"]


def test_read_items_limit_is_bounded():
    response = client.get("/items/?limit=1000", headers=TOKEN)
    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["type"] == "less_than_equal"
    assert error["loc"] == ["query", "limit"]


def test_read_item():
    response = client.get("/items/1", headers=TOKEN)
    assert response.status_code == 200
    assert response.json()["name"] == "Foo"


def test_read_nonexistent_item():
    response = client.get("/items/999", headers=TOKEN)
    assert response.status_code == 404
    assert response.json() == {"detail": "Item not found"}


def test_read_item_id_must_be_positive():
    response = client.get("/items/0", headers=TOKEN)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "greater_than_equal"


def test_create_item():
    response = client.post(
        "/items/",
        headers=TOKEN,
        json={"name": "Bar", "price": 12.5, "tags": ["new"]},
    )
    assert response.status_code == 201
    created = response.json()
    assert created["name"] == "Bar"
    assert created["description"] is None
    assert created["tags"] == ["new"]
    assert log_lines[-1] == f"created item {created['id']}"
    assert fake_db.open_sessions == 0


def test_create_item_bad_price():
    response = client.post("/items/", headers=TOKEN, json={"name": "Bar", "price": 0})
    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["type"] == "greater_than"
    assert error["loc"] == ["body", "price"]


def test_create_item_missing_name():
    response = client.post("/items/", headers=TOKEN, json={"price": 3})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "name"]


def test_update_item():
    response = client.put(
        "/items/1",
        headers=TOKEN,
        json={"item": {"name": "Foo", "price": 42}, "importance": 5},
    )
    assert response.status_code == 200
    assert response.json()["importance"] == 5
    assert response.json()["item"]["price"] == 42


def test_update_item_needs_importance():
    response = client.put("/items/1", headers=TOKEN, json={"item": {"name": "Foo", "price": 4}})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "importance"]


def test_delete_item():
    created = client.post("/items/", headers=TOKEN, json={"name": "Gone", "price": 1}).json()
    response = client.delete(f"/items/{created['id']}", headers=TOKEN)
    assert response.status_code == 204
    assert client.get(f"/items/{created['id']}", headers=TOKEN).status_code == 404


def test_read_user():
    response = client.get("/users/7?q=abc", headers={"User-Agent": "tests"})
    assert response.json() == {"user_id": 7, "q": "abc", "user_agent": "tests"}


def test_read_user_query_constraints():
    too_long = client.get("/users/7?q=abcdefghijkl")
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["type"] == "string_too_long"
    wrong = client.get("/users/7?q=ABC")
    assert wrong.json()["detail"][0]["type"] == "string_pattern_mismatch"


def test_hello_returns_a_json_string():
    response = client.get("/hello?name=Ada")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == "Hello Ada"


def test_openapi():
    schema = client.get("/openapi.json").json()
    assert schema["info"]["title"] == "Tutorial"
    operation = schema["paths"]["/items/{item_id}"]["put"]
    assert operation["tags"] == ["items", "custom"]
    assert set(operation["responses"]) >= {"200", "403", "404", "422"}
