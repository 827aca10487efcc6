"""A Python guest that uses every capability: key-value, config, outbound
HTTP, dependencies, lifecycle hooks and background tasks."""

import asyncio
import time
from concurrent.futures import ProcessPoolExecutor

from cello import (
    App,
    BackgroundTasks,
    Depends,
    Header,
    HTTPException,
    Request,
    Response,
    StreamingResponse,
    config,
    http,
    kv,
    log,
)
from cello.host import sleep

# Tasks a handler leaves running get 2 s after its response (30 by default).
app = App("python-caps", leftover_task_seconds=2)
# Wishes for the host, which the operator may override or refuse.
app.enable_cors(allow_origins=["https://py.example"], allow_methods=["GET"])
app.enable_logging()


@app.on_event("startup")
def fill_store():
    if config.get("fail-startup") == "yes":
        raise RuntimeError("the sidecar asked this instance to fail at startup")
    kv.sync.set("startup:greeting", "filled at startup")
    kv.sync.incr("startup:count")


@app.on_event("shutdown")
async def count_shutdown():
    await kv.incr("shutdown:count")


@app.get("/log")
def write_log():
    log.info("a line from the log route")
    return "logged"


@app.get("/log-after/{ms}")
async def write_log_after(ms: int):
    """Logs and prints after a wait, while other calls are in flight."""
    await sleep(ms / 1000)
    log.info("logged after the wait")
    print("printed after the wait", flush=True)
    return "logged"


@app.get("/startup")
async def startup_value():
    return {"greeting": await kv.get_text("startup:greeting")}


@app.get("/kv/{key}")
async def read(key: str):
    value = await kv.get_text(key)
    if value is None:
        raise HTTPException(404, f"no key {key}")
    return {"key": key, "value": value}


@app.put("/kv/{key}")
def write(key: str, request: Request, ttl: int | None = None):
    try:
        kv.sync.set(key, request.text(), ttl)
    except kv.KVError as error:
        raise HTTPException(507, str(error)) from None
    return {"stored": key}


@app.delete("/kv/{key}")
async def remove(key: str):
    return {"deleted": await kv.delete(key)}


@app.get("/keys")
async def list_keys(prefix: str = ""):
    return await kv.keys(prefix)


@app.post("/incr/{key}")
async def incr(key: str, by: int = 1):
    try:
        return {"value": await kv.incr(key, by)}
    except kv.KVError as error:
        raise HTTPException(409, str(error)) from None


# A dependency chain: a "connection" that logs its life in the store, a user
# looked up through it, and a handler that depends on the user.
class Connection:
    def __init__(self, request_id: str):
        self.request_id = request_id

    def log(self, event: str) -> None:
        kv.sync.set(f"db:{self.request_id}:{event}", str(time.time_ns()))


def get_db(request: Request):
    db = Connection(request.headers.get("x-trace", "untraced"))
    db.log("opened")
    try:
        yield db
    finally:
        db.log("closed")


def get_current_user(x_user: str = Header(), db: Connection = Depends(get_db)):
    if x_user == "nobody":
        raise HTTPException(401, "unknown user")
    db.log("user")
    return {"name": x_user}


@app.get("/me")
def me(user: dict = Depends(get_current_user), db: Connection = Depends(get_db)):
    # get_db is computed once per request: the user's connection is this one.
    db.log("handler")
    return {"user": user["name"]}


@app.get("/config")
def show_config():
    token = config.secret("api-token")
    return {
        "greeting": config.get("greeting"),
        "missing": config.get("nope", "default"),
        "token": repr(token),
        "token_length": len(token.reveal()) if token else 0,
    }


async def record_later(key: str):
    kv.sync.set(f"{key}:task-started", str(time.time_ns()))
    await sleep(0.3)
    kv.sync.set(f"{key}:task-done", str(time.time_ns()))


def failing_task():
    raise RuntimeError("this background task fails on purpose")


@app.post("/background/{key}")
async def background(key: str, tasks: BackgroundTasks):
    tasks.add_task(failing_task)
    tasks.add_task(record_later, key)
    responded = time.time_ns()
    kv.sync.set(f"{key}:responded", str(responded))
    return {"responded": responded}


@app.post("/background-sync/{key}")
def background_sync(key: str, tasks: BackgroundTasks):
    tasks.add_task(record_later, key)
    kv.sync.set(f"{key}:responded", str(time.time_ns()))
    return {"queued": True}


def _fetched(send) -> dict:
    """What `send()` answered, or the error it raised."""
    try:
        response = send()
    except http.Denied as error:
        return {"error": "denied", "detail": str(error)}
    except http.HTTPError as error:
        return {"error": type(error).__name__, "detail": str(error)}
    return {"status": response.status_code, "body": response.text}


@app.get("/fetch")
async def fetch(url: str):
    try:
        response = await http.get(url)
    except http.Denied as error:
        return {"error": "denied", "detail": str(error)}
    except http.HTTPError as error:
        return {"error": type(error).__name__, "detail": str(error)}
    return {"status": response.status_code, "body": response.text}


@app.get("/fetch-blocking")
def fetch_blocking(url: str, timeout: float | None = None):
    """A `def` route's blocking client, as `requests` would be."""
    with http.Client(headers={"x-from": "def"}) as client:
        return _fetched(lambda: client.get(url, timeout=timeout))


@app.get("/fetch-blocking-async")
async def fetch_blocking_async(url: str):
    """The blocking client in an `async def` route: the instance waits."""
    return _fetched(lambda: http.Client().post(url, json={"n": 1}))


@app.get("/fetch-in-stream")
def fetch_in_stream(url: str):
    """A `def` route's stream awaiting outbound HTTP: a sync call cannot
    suspend, so the request blocks the instance and the body goes whole."""

    async def body():
        response = await http.get(url)
        yield str(response.status_code)

    return StreamingResponse(body())


@app.get("/gather")
async def gather(url: str):
    started = time.monotonic()
    replies = await asyncio.gather(*(http.get(f"{url}?n={n}") for n in range(3)))
    return {
        "bodies": [r.text for r in replies],
        "elapsed_ms": round((time.monotonic() - started) * 1000),
    }


@app.get("/wait-for")
async def wait_for(timeout_ms: int, sleep_ms: int):
    try:
        await asyncio.wait_for(sleep(sleep_ms / 1000), timeout=timeout_ms / 1000)
    except TimeoutError:
        return {"timed_out": True}
    return {"timed_out": False}


# Async code that must never take the instance down (issue 21).


@app.post("/spawn/{key}")
async def spawn(key: str):
    """A fire-and-forget task that outlives its handler, and one that fails."""
    asyncio.create_task(record_later(key))  # noqa: RUF006 - the pattern under test
    asyncio.create_task(failing_later())  # noqa: RUF006
    kv.sync.set(f"{key}:responded", str(time.time_ns()))
    return {"spawned": True}


@app.post("/spawn-forever")
async def spawn_forever():
    """A task that would never end: cancelled after the limit."""
    asyncio.create_task(forever())  # noqa: RUF006
    return {"spawned": True}


async def forever():
    try:
        while True:
            await sleep(0.05)
    except asyncio.CancelledError:
        kv.sync.set("forever:cancelled", str(time.time_ns()))
        raise


@app.post("/spawn-sync")
def spawn_sync():
    """A `def` route has no event loop to start a task on."""
    asyncio.create_task(forever())  # noqa: RUF006
    return {"spawned": True}


async def failing_later():
    await sleep(0.05)
    raise RuntimeError("this spawned task fails on purpose")


@app.get("/wait-for-http")
async def wait_for_http(url: str, timeout_ms: int):
    """A timeout around an outbound call slower than the timeout."""
    try:
        response = await asyncio.wait_for(http.get(url), timeout=timeout_ms / 1000)
    except TimeoutError:
        return {"timed_out": True}
    return {"timed_out": False, "body": response.text}


@app.post("/orders/{key}")
async def create_order(key: str, request: Request):
    """The seed's background tasks: made in the handler, never attached."""
    tasks = BackgroundTasks()
    tasks.add_task(record_later, key)
    kv.sync.set(f"{key}:responded", str(time.time_ns()))
    return Response.json({"order_id": key, "status": "created"}, status=201)


@app.post("/orders-attached/{key}")
def create_order_attached(key: str):
    """Starlette's spelling: the tasks passed to the response."""
    tasks = BackgroundTasks()
    tasks.add_task(record_later, key)
    kv.sync.set(f"{key}:responded", str(time.time_ns()))
    return Response.json({"order_id": key}, status=201, background=tasks)


def heavy_computation(n: int) -> int:
    return sum(range(n))


# Made at module level, as the seeds do: inline inside a component.
executor = ProcessPoolExecutor()


@app.get("/compute")
async def compute(n: int = 1_000_000):
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(executor, heavy_computation, n)
    threaded = await asyncio.to_thread(heavy_computation, n)
    return {"result": result, "threaded": threaded}
