"""The Python example app: sync and async routes, path params, JSON."""

from cello import App, HTTPException, Request
from cello.host import sleep

app = App("hello-python")


@app.get("/")
def index():
    return "Hello from Python!"


@app.get("/hello/{name}")
def hello(name: str):
    return {"message": f"Hello, {name}!"}


@app.get("/slow/{ms}")
async def slow(ms: int):
    # Awaiting the host frees the instance for other requests meanwhile.
    await sleep(ms / 1000)
    return {"slept_ms": ms}


@app.post("/items")
def create_item(request: Request):
    item = request.json()
    if not isinstance(item, dict) or "name" not in item:
        raise HTTPException(422, "an item needs a name")
    return item, 201
