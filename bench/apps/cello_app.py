"""The Python hello app as a Cello component, for `make bench`."""

import time

from cello import App, EventSourceResponse, Response, cache
from cello.host import sleep

app = App("bench-python")


@app.get("/events/{count}")
async def events(count: int):
    """Server-sent events, one a second, each carrying when it was sent."""

    async def ticks():
        for n in range(count):
            yield {"id": n, "data": f"{time.time():.3f}"}
            await sleep(1)

    return EventSourceResponse(ticks())


@app.get("/sync")
def hello_sync():
    return Response.text("Hello, world!")


@app.get("/async")
async def hello_async():
    return Response.text("Hello, world!")


def busy(ms: float) -> int:
    """CPU-bound work for `ms` milliseconds."""
    end = time.monotonic() + ms / 1000
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


@app.get("/busy/{ms}")
def busy_route(ms: int):
    return Response.text(str(busy(ms)))


_hoard: list[bytearray] = []


@app.get("/grow/{mb}")
def grow(mb: int):
    """Keeps `mb` MiB more of memory, written, on every call: the noisy
    neighbour that grows memory (with per-request instances, every call
    starts from nothing and grows again)."""
    kept = bytearray(mb << 20)
    kept[::4096] = b"x" * (len(kept) // 4096)  # one write a page: all of it resident
    _hoard.append(kept)
    return Response.text(str(len(_hoard)))


@app.get("/report")
def report():
    return Response.text(f"report {busy(5)}")


@app.get("/report-cached")
@cache(ttl=300)
def report_cached():
    return Response.text(f"report {busy(5)}")
