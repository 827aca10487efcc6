"""Depends, dependency_overrides, singletons, lifecycle hooks, background
tasks and the native fallbacks of the capability modules."""

from typing import Annotated

import pytest
from cello import (
    App,
    BackgroundTasks,
    Depends,
    Header,
    HTTPException,
    Request,
    config,
    kv,
    singleton,
)
from cello.deps import drive
from cello.testing import TestClient


def make_app(events: list[str]) -> App:
    app = App()

    def get_db():
        events.append("open")
        try:
            yield {"users": {"t1": "ada"}}
        finally:
            events.append("close")

    def get_user(x_token: str = Header(), db: dict = Depends(get_db)):
        user = db["users"].get(x_token)
        if user is None:
            raise HTTPException(401, "bad token")
        return user

    @app.get("/me")
    def me(user: str = Depends(get_user), db: dict = Depends(get_db)):
        events.append("handler")
        return {"user": user, "db_users": len(db["users"])}

    @app.get("/me-async")
    async def me_async(user: Annotated[str, Depends(get_user)]):
        return {"user": user}

    app.get_db = get_db
    app.get_user = get_user
    return app


def test_a_yield_dependency_chain_opens_once_and_closes_after_the_handler():
    events: list[str] = []
    client = TestClient(make_app(events))
    reply = client.get("/me", headers={"x-token": "t1"})
    assert reply.json() == {"user": "ada", "db_users": 1}
    assert events == ["open", "handler", "close"]


def test_a_failing_dependency_still_runs_cleanup_and_its_error_is_the_response():
    events: list[str] = []
    client = TestClient(make_app(events))
    reply = client.get("/me", headers={"x-token": "nope"})
    assert reply.status_code == 401
    assert reply.json() == {"detail": "bad token"}
    assert events == ["open", "close"]


def test_a_dependencys_own_parameters_are_validated_into_one_422():
    client = TestClient(make_app([]))
    reply = client.get("/me")
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["header", "x-token"]


def test_annotated_depends_in_an_async_route():
    client = TestClient(make_app([]))
    assert client.get("/me-async", headers={"x-token": "t1"}).json() == {"user": "ada"}


def test_dependency_overrides_replace_a_dependency_for_tests():
    app = make_app([])
    client = TestClient(app, dependency_overrides={app.get_user: lambda: "test-user"})
    assert client.get("/me").json()["user"] == "test-user"


def test_a_clients_overrides_leave_the_app_and_other_clients_alone():
    app = make_app([])
    overridden = TestClient(app, dependency_overrides={app.get_user: lambda: "test-user"})
    plain = TestClient(app)
    assert overridden.get("/me").json()["user"] == "test-user"
    assert app.dependency_overrides == {}
    assert plain.get("/me").status_code == 422
    assert overridden.get("/me").json()["user"] == "test-user"


def test_the_apps_own_overrides_apply_to_every_client_as_in_fastapi():
    app = make_app([])
    app.dependency_overrides[app.get_user] = lambda: "everyone"
    assert TestClient(app).get("/me").json()["user"] == "everyone"


def test_overriding_a_deep_dependency_reaches_through_the_chain():
    app = make_app([])

    def fake_db():
        yield {"users": {"x": "fake"}}

    app.dependency_overrides[app.get_db] = fake_db
    reply = TestClient(app).get("/me", headers={"x-token": "x"})
    assert reply.json() == {"user": "fake", "db_users": 1}


def test_async_and_async_generator_dependencies():
    app = App()
    closed = []

    async def settings():
        return {"region": "eu"}

    async def session(s: dict = Depends(settings)):
        yield f"session-{s['region']}"
        closed.append(True)

    @app.get("/sync")
    def sync_route(sess: str = Depends(session)):
        return sess

    @app.get("/async")
    async def async_route(sess: str = Depends(session)):
        return sess

    client = TestClient(app)
    assert client.get("/sync").text == "session-eu"
    assert client.get("/async").text == "session-eu"
    assert closed == [True, True]


def test_use_cache_false_computes_a_dependency_again():
    app = App()
    calls = []

    def counter():
        calls.append(1)
        return len(calls)

    def twice(a: int = Depends(counter), b: int = Depends(counter, use_cache=False)):
        return [a, b]

    @app.get("/")
    def index(pair: list = Depends(twice), again: int = Depends(counter)):
        return {"pair": pair, "again": again}

    assert TestClient(app).get("/").json() == {"pair": [1, 2], "again": 1}


def test_singletons_live_as_long_as_the_app():
    app = App()
    made = []

    @singleton
    def client_factory():
        made.append(1)
        return object()

    @app.get("/")
    def index(c: object = Depends(client_factory)):
        return {"id": id(c)}

    client = TestClient(app)
    assert client.get("/").json() == client.get("/").json()
    assert made == [1]


def test_depends_without_an_argument_uses_the_annotated_class():
    app = App()

    class Pager:
        def __init__(self, page: int = 1, size: int = 10):
            self.page, self.size = page, size

    @app.get("/items")
    def items(pager: Pager = Depends()):
        return {"page": pager.page, "size": pager.size}

    assert TestClient(app).get("/items?page=3").json() == {"page": 3, "size": 10}


def test_a_def_route_refuses_a_dependency_that_waits_on_the_host():
    class Suspend:
        def __await__(self):
            yield "waiting on the host"

    async def waits():
        await Suspend()

    with pytest.raises(RuntimeError, match="declare the route `async def`"):
        drive(waits())


def test_background_tasks_run_after_the_response_and_failures_are_only_logged(caplog):
    app = App()
    done = []

    def fail():
        raise ValueError("boom")

    async def record(value: str):
        done.append(value)

    @app.post("/send")
    def send(tasks: BackgroundTasks, request: Request):
        tasks.add_task(fail)
        tasks.add_task(record, request.text())
        done.append("handler")
        return {"queued": 2}

    reply = TestClient(app).post("/send", content="mail")
    assert reply.json() == {"queued": 2}
    assert done == ["handler", "mail"]
    assert "background task fail failed" in caplog.text


def test_startup_and_shutdown_hooks():
    app = App()
    events = []

    @app.on_event("startup")
    async def start():
        events.append("start")

    @app.on_event("shutdown")
    def stop():
        events.append("stop")

    @app.get("/")
    def index():
        return events

    with TestClient(app) as client:
        assert client.get("/").json() == ["start"]
    assert events == ["start", "stop"]
    with pytest.raises(ValueError, match="unknown event"):
        app.on_event("boot")


def test_native_kv_matches_the_host_semantics():
    store = kv.SyncKV()
    store.set("a:1", "one")
    store.set_json("a:2", {"n": 2})
    store.set("b", b"\x00bytes")
    assert store.get_text("a:1") == "one"
    assert store.get_json("a:2") == {"n": 2}
    assert store.keys("a:") == ["a:1", "a:2"]
    assert store.incr("n", 5) == 5 and store.incr("n") == 6
    with pytest.raises(kv.KVError):
        store.incr("a:1")
    assert store.delete("b") and not store.delete("b")


def test_native_config_reads_the_environment(monkeypatch):
    monkeypatch.setenv("API_TOKEN", "t0ken")
    monkeypatch.setenv("GREETING", "hi")
    assert config.get("greeting") == "hi"
    assert config.get("missing", "fallback") == "fallback"
    secret = config.secret("api-token")
    assert repr(secret) == "Secret('***')" and str(secret) == "Secret('***')"
    assert secret.reveal() == "t0ken"


def test_openapi_lists_the_parameters_of_dependencies():
    doc = make_app([]).openapi()
    parameters = doc["paths"]["/me"]["get"]["parameters"]
    assert parameters == [
        {"name": "x-token", "in": "header", "required": True, "schema": {"type": "string"}}
    ]


def test_a_callable_instance_is_a_dependency_with_its_call_annotations():
    class AtLeast:
        def __init__(self, floor: int):
            self.floor = floor

        def __call__(self, n: int = 0) -> bool:
            return n >= self.floor

    app = App()

    @app.get("/check")
    def check(enough: bool = Depends(AtLeast(3))):
        return {"enough": enough}

    client = TestClient(app)
    assert client.get("/check", params={"n": 5}).json() == {"enough": True}
    assert client.get("/check", params={"n": 1}).json() == {"enough": False}
    assert client.get("/check", params={"n": "many"}).status_code == 422
    (param,) = app.openapi()["paths"]["/check"]["get"]["parameters"]
    assert param["schema"] == {"type": "integer", "default": 0}
