"""StreamingResponse, EventSourceResponse and request.stream(), through the
TestClient: the chunks a handler yields and the SSE framing."""

import asyncio
import time

from cello import App, EventSourceResponse, Request, ServerSentEvent, StreamingResponse
from cello.host import sleep
from cello.testing import TestClient

app = App("streams")


@app.get("/chunks")
async def chunks():
    async def body():
        yield "one\n"
        yield b"two\n"

    return StreamingResponse(body(), media_type="text/plain")


@app.get("/plain")
def plain():
    return StreamingResponse(iter(["a", "b"]), media_type="text/plain")


@app.get("/events")
async def events():
    async def body():
        yield {"event": "update", "id": 7, "data": "one\ntwo", "retry": 2500}
        yield ServerSentEvent("typed", comment="note")
        yield "bare"

    return EventSourceResponse(body())


@app.get("/def-async")
def def_async():
    async def body():
        yield "a"
        await asyncio.sleep(0.05)
        yield "b"
        await sleep(0.05)
        yield "c"

    return StreamingResponse(body(), media_type="text/plain")


@app.get("/def-events")
def def_events():
    async def body():
        yield {"data": "one"}
        await asyncio.sleep(0.01)
        yield {"event": "last", "data": "two"}

    return EventSourceResponse(body())


closed: list[str] = []


@app.get("/def-stuck")
def def_stuck():
    async def body():
        try:
            yield "never sent"
            await asyncio.Event().wait()
        finally:
            closed.append("stuck")

    return StreamingResponse(body())


@app.get("/def-work")
def def_work():
    async def body():
        yield await asyncio.to_thread(lambda: "in a thread;")
        try:
            async with asyncio.timeout(0.05):
                await sleep(5)
        except TimeoutError:
            yield "timed out;"
        asyncio.ensure_future(asyncio.sleep(30))  # left behind: cancelled
        yield "done"

    return StreamingResponse(body())


@app.get("/def-cancelled")
def def_cancelled():
    async def body():
        yield "one"
        raise asyncio.CancelledError

    return StreamingResponse(body())


@app.post("/upload", stream_request=True)
async def upload(request: Request):
    return {"bytes": sum([len(c) async for c in request.stream()])}


client = TestClient(app)


def test_a_streaming_response_arrives_in_the_chunks_the_generator_yielded():
    response = client.get("/chunks")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain"
    assert list(response.iter_bytes()) == [b"one\n", b"two\n"]
    assert response.text == "one\ntwo\n"


def test_a_def_route_streams_a_plain_iterable_too():
    assert list(client.get("/plain").iter_text()) == ["a", "b"]


def test_server_sent_events_are_framed_with_a_data_line_per_line():
    response = client.get("/events")
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-store"
    assert response.text == (
        "id: 7\r\nevent: update\r\ndata: one\r\ndata: two\r\nretry: 2500\r\n\r\n"
        ": note\r\ndata: typed\r\n\r\n"
        "data: bare\r\n\r\n"
    )


def test_request_stream_yields_the_body():
    assert client.post("/upload", content=b"x" * 1000).json() == {"bytes": 1000}


def test_a_def_routes_async_stream_is_collected_and_sent_whole():
    started = time.monotonic()
    response = client.get("/def-async")
    assert response.status_code == 200
    assert response.text == "abc"
    assert time.monotonic() - started >= 0.1  # both sleeps were slept


def test_a_def_routes_events_go_whole_without_pings():
    response = client.get("/def-events")
    assert response.text == "data: one\r\n\r\nevent: last\r\ndata: two\r\n\r\n"


def test_a_def_routes_stream_that_waits_for_nothing_answers_500():
    response = client.get("/def-stuck")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error"}
    assert closed == ["stuck"]  # its generator was closed, its `finally` run


def test_a_def_routes_stream_may_use_threads_timeouts_and_leave_tasks():
    started = time.monotonic()
    assert client.get("/def-work").text == "in a thread;timed out;done"
    assert time.monotonic() - started < 2  # the left task was cancelled


def test_a_def_routes_stream_cancelling_itself_answers_500():
    assert client.get("/def-cancelled").status_code == 500
