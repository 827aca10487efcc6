"""Streaming routes for tests/streaming.rs: a StreamingResponse, server-sent
events, a request body read as a stream, and streams that notice a client
leaving (their generators' ``finally`` counts it in the key-value store)."""

import asyncio

from cello import (
    App,
    Depends,
    EventSourceResponse,
    Request,
    ServerSentEvent,
    StreamingResponse,
    kv,
    sql,
)
from cello.host import sleep

app = App("python-stream")


@app.get("/chunks")
async def chunks():
    async def body():
        yield "one\n"
        await sleep(0.3)
        yield b"two\n"
        await sleep(0.3)
        yield "three\n"

    return StreamingResponse(body(), media_type="text/plain")


@app.get("/one-big/{mb}")
async def one_big(mb: int):
    """One chunk of ``mb`` MiB, byte ``i`` being ``i % 251``."""

    async def body():
        yield bytes(i % 251 for i in range(mb << 20))

    return StreamingResponse(body(), media_type="application/octet-stream")


@app.get("/events")
async def events():
    async def body():
        yield {"data": "plain"}
        yield {"event": "update", "id": 7, "data": "line one\nline two", "retry": 2500}
        yield ServerSentEvent("typed", event="note")
        await sleep(0.5)
        yield "last"

    return EventSourceResponse(body(), ping=0.2)


@app.get("/forever/{name}")
async def forever(name: str):
    async def body():
        try:
            n = 0
            while True:
                yield {"data": n}
                n += 1
                await sleep(0.1)
        finally:
            kv.sync.incr(f"closed:{name}")

    return EventSourceResponse(body())


@app.get("/ticks/{count}")
async def ticks(count: int):
    async def body():
        for n in range(count):
            yield {"id": n, "data": n}
            await sleep(0.2)

    return EventSourceResponse(body())


@app.get("/silent/{name}")
async def silent(name: str):
    async def body():
        try:
            yield "first\n"
            await sleep(30)
            yield "never\n"
        except BaseException:
            kv.sync.incr(f"closed:{name}")
            raise

    return StreamingResponse(body(), media_type="text/plain")


@app.get("/closed/{name}")
async def closed(name: str):  # async: on the instance the streams share
    return {"closed": int(kv.sync.get_text(f"closed:{name}") or 0)}


@app.get("/def-stream")
def def_stream():
    """A `def` route's async stream: collected whole, its sleeps blocking."""

    async def body():
        yield "a"
        await asyncio.sleep(0.1)
        yield "b"
        await sleep(0.1)
        yield "c"

    return StreamingResponse(body(), media_type="text/plain")


@app.get("/def-events")
def def_events():
    async def body():
        yield {"data": "one"}
        await sleep(0.05)
        yield {"event": "last", "data": "two"}

    return EventSourceResponse(body())


@app.get("/def-stuck/{name}")
def def_stuck(name: str):
    """Waits for what nothing in a sync call can complete: 500, and the
    generator is closed."""

    async def body():
        try:
            yield "never sent"
            await asyncio.Event().wait()
        finally:
            kv.sync.incr(f"closed:{name}")

    return StreamingResponse(body())


@app.get("/def-sql-stream/{n}")
def def_sql_stream(n: int, db: sql.Connection = Depends(sql.connection)):
    """A `def` route's async stream that awaits SQL, in a transaction that
    rolls back on a duplicate: it runs through the blocking imports."""

    async def body():
        await db.execute("CREATE TABLE IF NOT EXISTS seen (n INTEGER PRIMARY KEY)")
        try:
            async with db.transaction():
                await db.execute("INSERT INTO seen (n) VALUES ($1)", n)
                await db.execute("INSERT INTO seen (n) VALUES ($1)", n)
        except sql.IntegrityError:
            yield "rolled back\n"
        await db.execute("INSERT INTO seen (n) VALUES ($1)", n)
        for row in await db.fetch_all("SELECT n FROM seen ORDER BY n"):
            yield f"{row['n']}\n"

    return StreamingResponse(body(), media_type="text/plain")


@app.post("/upload", stream_request=True)
async def upload(request: Request):
    size = total = 0
    async for chunk in request.stream():
        size += len(chunk)
        total += sum(chunk)
    return {"bytes": size, "sum": total, "whole_body": len(request.body)}


@app.post("/echo-json")
async def echo_json(request: Request):
    return request.json()


@app.post("/echo-later")
async def echo_later(request: Request):
    """Answers 0.5 s after its body is in: time of the guest's own."""
    await sleep(0.5)
    return request.json()
