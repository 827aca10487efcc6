"""StreamingResponse, EventSourceResponse and request.stream(), through the
TestClient: the chunks a handler yields and the SSE framing."""

from cello import App, EventSourceResponse, Request, ServerSentEvent, StreamingResponse
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
