"""Routes that let the tests observe the host from inside a Python guest."""

import os

from cello import App
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
