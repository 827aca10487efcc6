"""The todos example, natively (an in-memory SQLite)."""

from pathlib import Path

import pytest
from cello import sql
from cello.testing import TestClient
from todos import app


@pytest.fixture
def client():
    sql.reset()
    return TestClient(app)


def test_crud_round_trip(client):
    created = client.post("/", json={"title": "write docs", "tags": ["docs"]})
    assert created.status_code == 201
    item = created.json()
    assert item == {"id": 1, "title": "write docs", "done": False, "tags": ["docs"]}
    assert client.get("/1").json() == item
    assert client.put("/1", json={"title": "write docs", "done": True}).json()["done"] is True
    assert client.get("/", params={"done": True}).json()[0]["tags"] == []
    assert client.get("/stats/counts").json() == {"total": 1, "done": 1, "open": 0}
    assert client.delete("/1").status_code == 204
    assert client.get("/1").status_code == 404


def test_a_failed_batch_leaves_nothing(client):
    reply = client.post("/batch", json=[{"title": "a"}, {"title": "  "}])
    assert reply.status_code == 409, reply.text
    assert client.get("/").json() == []
    assert client.post("/batch", json=[{"title": "a"}, {"title": "b"}]).json() == {"ids": [1, 2]}


def test_parameters_in_each_style_and_errors_by_kind(client):
    db = sql.Connection()
    client.post("/", json={"title": "x"})
    assert db.sync.fetch_val("SELECT title FROM todos WHERE id = $1", 1) == "x"
    assert db.sync.fetch_val("SELECT title FROM todos WHERE id = ?1", [1]) == "x"
    assert db.sync.fetch_one("SELECT title FROM todos WHERE id = ?", values=[1])[0] == "x"
    with pytest.raises(sql.ProgrammingError):
        db.sync.fetch_all("SELECT nope FROM todos")
    with pytest.raises(sql.IntegrityError):
        db.sync.execute("INSERT INTO todos (title) VALUES (NULL)")


def test_migrations_apply_once_and_a_changed_one_is_refused(client):
    assert client.get("/").json() == []  # the first request ran them
    assert sql._native.migrate(sql.migrations_in(Path(__file__).parent / "migrations")) == 0
    changed = [sql.Migration("001_todos", "CREATE TABLE other (id INTEGER)")]
    with pytest.raises(sql.ProgrammingError, match="changed after it was applied"):
        sql._native.migrate(changed)


def test_a_json_column_holding_other_text_reads_as_that_text(client):
    client.post("/", json={"title": "x", "tags": ["a"]})
    db = sql.Connection()
    db.sync.execute("UPDATE todos SET tags = 'not json' WHERE id = 1")
    assert client.get("/1").json()["tags"] == "not json"
