"""The Python hello app as a Cello component, for `make bench`."""

import time

from cello import App, Response

app = App("bench-python")


@app.get("/sync")
def hello_sync():
    return Response.text("Hello, world!")


@app.get("/async")
async def hello_async():
    return Response.text("Hello, world!")


@app.get("/work/{ms}")
def work(ms: int):
    # CPU-bound work, to hold an instance for a while.
    end = time.monotonic() + ms / 1000
    n = 0
    while time.monotonic() < end:
        n += 1
    return Response.text(str(n))
