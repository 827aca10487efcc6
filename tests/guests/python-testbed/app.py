"""Routes that let the tests observe the host from inside a Python guest."""

import os
import threading
import uuid
from dataclasses import dataclass
from typing import Annotated

from cello import (
    APIRouter,
    App,
    Depends,
    Header,
    HTTPException,
    Json,
    Path,
    Query,
    RateLimitConfig,
    Request,
    Response,
    RoleGuard,
    Router,
    cache,
    injectable,
    status,
)
from cello.controllers import controller, get, post
from cello.host import sleep

app = App("python-testbed")

# Drawn per instance at its first request. (The `random` module is seeded
# at build time, in the snapshot, so every instance would draw the same.)
_instance_id = None


def instance_id() -> str:
    global _instance_id
    if _instance_id is None:
        _instance_id = os.urandom(8).hex()
    return _instance_id


@app.get("/wait/{ms}")
async def wait(ms: int):
    await sleep(ms / 1000)
    return instance_id()


@app.get("/raise")
def fail():
    raise ValueError("the testbed was asked to fail")


@app.get("/raise-async")
async def fail_async():
    await sleep(0.001)
    raise RuntimeError("the testbed was asked to fail asynchronously")


@app.get("/search")
def search(q: str, limit: int = 10):
    return {"q": q, "limit": limit}


def seen(request: Request) -> dict:
    """Everything the SDK's Request was given by the host."""
    return {
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "params": request.params,
        "header": request.headers.get("x-probe"),
        "body": request.text(),
        "request_id": request.request_id,
        "client": request.client,
        "user": request.user,
        "tenant": request.tenant,
    }


@app.post("/seen/{name}")
def seen_sync(name: str, request: Request):
    return seen(request)


@app.post("/seen-async/{name}")
async def seen_async(name: str, request: Request):
    return seen(request)


# The response cache. Each route counts its calls in module state, so a test
# can tell whether the guest ran; the tests give this component one instance.
_calls: dict[str, int] = {}
_items: dict[str, str] = {}


def called(route: str) -> int:
    _calls[route] = _calls.get(route, 0) + 1
    return _calls[route]


@app.get("/cached/{name}")
@cache(ttl=60, tags=["items"])
def cached_item(name: str):
    return {
        "name": name,
        "value": _items.get(name, "original"),
        "calls": called("item"),
    }


@app.post("/cached/{name}")
def update_item(name: str, request: Request):
    _items[name] = request.text()
    return {"invalidated": app.invalidate_cache(["items"])}


@cache(ttl=1)
@app.get("/short")
def short_lived():
    return {"calls": called("short")}


@app.get("/lang")
@cache(ttl=60, vary=["Accept-Language"])
def by_language(request: Request):
    return {"lang": request.headers.get("accept-language"), "calls": called("lang")}


@app.get("/me")
@cache(ttl=60)
def whoami(request: Request):
    return {
        "authorization": request.headers.get("authorization"),
        "calls": called("me"),
    }


@app.get("/slow-cached")
@cache(ttl=60)
async def slow_cached():
    n = called("slow")
    await sleep(0.3)
    return {"calls": n}


@app.get("/teapot")
@cache(ttl=60)
def teapot():
    return {"calls": called("teapot")}, 418


@app.get("/cookie")
@cache(ttl=60)
def with_cookie():
    return Response.json({"calls": called("cookie")}, headers={"Set-Cookie": "session=1"})


@app.get("/no-store")
@cache(ttl=60)
def no_store():
    return Response.json({"calls": called("no-store")}, headers={"Cache-Control": "no-store"})


# A router mounted under a prefix, with a status code on its decorator.
admin = Router(prefix="/admin")


@admin.post("/things", status_code=201)
def make_thing(request: Request):
    return request.json()


app.include_router(admin)


@dataclass
class Thing:
    name: str
    price: float


@app.post("/typed/{thing_id}")
def typed(thing_id: uuid.UUID, thing: Thing):
    return {"id": str(thing_id), "name": thing.name, "price": thing.price}


# Middleware: declared here, enforced by the host before the handler runs.
@app.get("/py-editor", guards=[RoleGuard(["editor"])])
def py_editor(request: Request):
    return {"user": request.user, "roles": request.claims["roles"]}


@app.get("/py-limited", rate_limit=RateLimitConfig.sliding_window(capacity=1, window_seconds=60))
def py_limited():
    return "within the limit"


# The seeds' code as written: Lauren's controllers, extractors and services.


@injectable()  # SINGLETON by default
class Counter:
    def __init__(self):
        self._lock = threading.Lock()
        self._n = 0

    def increment(self) -> int:
        with self._lock:
            self._n += 1
            return self._n


@controller("/counter")
class CounterController:
    def __init__(self, counter: Counter): ...

    @post("/")
    def bump(self) -> dict:
        return {"n": self.counter.increment(), "instance": instance_id()}


@controller("/items")
class ItemController:
    @get("/async/{id}")
    async def get_async(self, id: Path[int]) -> dict:  # noqa: A002 - the seed's name
        await sleep(0.001)
        return {"id": id}

    @post("/body")
    def with_body(self, payload: Json[Thing]) -> dict:
        return {"name": payload.name}


app.include_router(CounterController)
app.include_router(ItemController)


# FastAPI's spellings: markers with constraints, an Annotated header, a
# router with dependencies, and a trailing-slash redirect.
def verify_token(x_token: Annotated[str, Header()]):
    if x_token != "secret":
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail="bad token")


things = APIRouter(prefix="/things", tags=["things"], dependencies=[Depends(verify_token)])


@things.get("/")
def list_things(limit: Annotated[int, Query(ge=1, le=10)] = 5):
    return {"limit": limit}


app.include_router(things)
