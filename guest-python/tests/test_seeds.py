"""The seed documents' code, as they write it, runs on the SDK."""

import asyncio
import concurrent.futures
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import pytest
from cello import App, BackgroundTasks, RateLimitConfig, Response, cache
from cello.concurrency import InlineExecutor, install, run_in_executor
from cello.controllers import controller, get, post
from cello.deps import Scope, injectable
from cello.guards import RoleGuard
from cello.markers import Json, Path, Query
from cello.testing import TestClient


def test_the_cello_seeds_middleware_lines_run_as_written():
    app = App()
    app.enable_cors()
    app.enable_logging()
    app.enable_rate_limit(RateLimitConfig.token_bucket(requests=100, window=60))
    assert app.cors["allow_origins"] == ["*"]
    assert app.access_log
    assert (app.rate_limit.capacity, app.rate_limit.period_seconds) == (100, 60)


def test_a_token_bucket_refuses_mixed_spellings():
    with pytest.raises(ValueError, match="requests= and window="):
        RateLimitConfig.token_bucket(capacity=5, requests=100, window=60)


@dataclass
class CreateItem:
    name: str
    price: float


def test_guards_cache_and_a_body_combine_with_an_async_handler():
    app = App()

    @app.post("/items", guards=[RoleGuard(["editor"])])
    async def create_item(request, item: CreateItem):
        return {"id": 1, "name": item.name}

    @app.get("/items")
    @cache(ttl=120, tags=["items"])
    async def list_items(request):
        return {"items": []}

    client = TestClient(app)
    assert client.post("/items", json={"name": "a", "price": 1}).json() == {"id": 1, "name": "a"}
    assert app.routes[0].roles() == ["editor"]
    assert app.routes[1].cache.ttl == 120


def test_background_tasks_made_in_the_handler_run_after_the_response():
    """The seed makes its own BackgroundTasks and never attaches it."""
    app = App()
    done = []

    async def send_confirmation_email(order_id):
        done.append(("email", order_id))

    def update_inventory(items):
        done.append(("inventory", items))

    @app.post("/orders")
    async def create_order(request):
        data = request.json()
        tasks = BackgroundTasks()
        tasks.add_task(send_confirmation_email, 7)
        tasks.add_task(update_inventory, data["items"])
        return Response.json({"order_id": 7, "status": "created"}, status=201)

    reply = TestClient(app).post("/orders", json={"items": [1]})
    assert reply.status_code == 201
    assert done == [("email", 7), ("inventory", [1])]


def test_background_tasks_passed_to_the_response_run_once():
    app = App()
    done = []

    @app.post("/sync")
    def handler():
        tasks = BackgroundTasks()
        tasks.add_task(done.append, "ran")
        return Response.json({"ok": True}, status=201, background=tasks)

    assert TestClient(app).post("/sync").status_code == 201
    assert done == ["ran"]


def test_lauren_extractors_read_path_query_and_json():
    app = App()

    @dataclass
    class MyModel:
        name: str

    @app.get("/async/{id}")
    async def get_async(id: Path[int], q: Query[str | None] = None) -> dict:  # noqa: A002
        return {"id": id, "q": q}

    @app.post("/body")
    def with_body(payload: Json[MyModel]) -> dict:
        return {"name": payload.name}

    client = TestClient(app)
    assert client.get("/async/3?q=x").json() == {"id": 3, "q": "x"}
    assert client.get("/async/x").status_code == 422
    assert client.post("/body", json={"name": "n"}).json() == {"name": "n"}


@injectable()  # SINGLETON by default
class Counter:
    def __init__(self):
        self._n = 0

    def increment(self) -> int:
        self._n += 1
        return self._n


@injectable(scope=Scope.REQUEST)
class UnitOfWork:
    made = 0

    def __init__(self):
        UnitOfWork.made += 1


@injectable(scope=Scope.TRANSIENT)
class Stamp:
    pass


def test_injectable_services_reach_a_controller_by_annotation():
    @controller("/counter")
    class CounterController:
        def __init__(self, counter: Counter): ...

        @post("/")
        def bump(self) -> dict:
            return {"n": self.counter.increment()}

    app = App()
    app.include_router(CounterController)
    client = TestClient(app)
    assert client.post("/counter").json() == {"n": 1}
    assert client.post("/counter").json() == {"n": 2}  # one Counter per instance


def test_request_scope_is_shared_within_a_request_and_transient_is_not():
    app = App()
    UnitOfWork.made = 0

    def repo(uow: UnitOfWork) -> UnitOfWork:
        return uow

    from cello import Depends

    @app.get("/")
    def handler(uow: UnitOfWork, other=Depends(repo), a: Stamp = None, b: Stamp = None):
        return {"same": uow is other, "made": UnitOfWork.made}

    @app.get("/stamps")
    def stamps(a: Stamp, b: Stamp):
        return {"distinct": a is not b}

    client = TestClient(app)
    assert client.get("/").json() == {"same": True, "made": 1}
    assert client.get("/").json() == {"same": True, "made": 2}
    assert client.get("/stamps").json() == {"distinct": True}


def test_every_controller_binding_style_works():
    @controller("/demo")
    class DemoController:
        @get("/instance")
        def instance_method(self) -> dict:
            return {"binding": "instance"}

        @staticmethod
        @get("/static")
        def static_method() -> dict:
            return {"binding": "static"}

        @classmethod
        @get("/cls")
        def class_method(cls) -> dict:
            return {"binding": cls.__name__}

        @get("/mixed")
        async def async_sibling(self) -> dict:
            return {"async": True}

    app = App()
    app.include_router(DemoController)
    client = TestClient(app)
    assert client.get("/demo/instance").json() == {"binding": "instance"}
    assert client.get("/demo/static").json() == {"binding": "static"}
    assert client.get("/demo/cls").json() == {"binding": "DemoController"}
    assert client.get("/demo/mixed").json() == {"async": True}


def heavy_computation(n: int) -> int:
    return sum(range(n))


def test_inline_executors_run_the_function_and_warn_once(caplog):
    executor = InlineExecutor()
    with caplog.at_level(logging.WARNING, logger="cello"):
        assert executor.submit(heavy_computation, 10).result() == 45
        assert list(executor.map(heavy_computation, [3, 4])) == [3, 6]
    assert sum("runs the function inline" in r.message for r in caplog.records) == 1


def test_run_in_executor_and_to_thread_run_inline_once_installed(monkeypatch):
    """What the build installs in a component, tried on a native loop."""
    loop_type = type(asyncio.new_event_loop())
    monkeypatch.setattr(loop_type, "run_in_executor", loop_type.run_in_executor)
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", ProcessPoolExecutor)
    monkeypatch.setattr(
        concurrent.futures, "ThreadPoolExecutor", concurrent.futures.ThreadPoolExecutor
    )
    install(loop_type)
    assert loop_type.run_in_executor is run_in_executor
    assert issubclass(concurrent.futures.ProcessPoolExecutor, InlineExecutor)

    app = App()
    executor = concurrent.futures.ProcessPoolExecutor()

    @app.get("/compute")
    async def compute(n: int = 1_000_000):
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(executor, heavy_computation, n)
        threaded = await asyncio.to_thread(heavy_computation, n)
        return {"result": result, "threaded": threaded}

    assert TestClient(app).get("/compute?n=10").json() == {"result": 45, "threaded": 45}
