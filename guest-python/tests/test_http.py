"""``cello.http`` run natively: both clients against a local server, as a
handler's test would use them (inside a component the host sends them)."""

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cello import App, http
from cello.testing import TestClient


class _Echo(BaseHTTPRequestHandler):
    """Answers with what it was sent; ``/slow`` after a second, ``/missing`` 404."""

    def _answer(self):
        if self.path.startswith("/slow"):
            time.sleep(1)
        length = int(self.headers.get("content-length") or 0)
        seen = {
            "method": self.command,
            "path": self.path,
            "x-from": self.headers.get("x-from"),
            "content-type": self.headers.get("content-type"),
            "body": self.rfile.read(length).decode(),
        }
        body = json.dumps(seen).encode()
        self.send_response(404 if self.path.startswith("/missing") else 200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_blocking_client_sends_what_the_async_one_does(upstream):
    with http.Client(base_url=upstream, headers={"x-from": "def"}) as client:
        reply = client.post("/items", params={"page": 2}, json={"name": "bow"})
    assert reply.status_code == 200 and reply.is_success
    seen = reply.json()
    assert seen == {
        "method": "POST",
        "path": "/items?page=2",
        "x-from": "def",
        "content-type": "application/json",
        "body": '{"name": "bow"}',
    }
    async_reply = asyncio.run(
        http.AsyncClient(base_url=upstream, headers={"x-from": "def"}).post(
            "/items", params={"page": 2}, json={"name": "bow"}
        )
    )
    assert async_reply.json() == seen


def test_the_blocking_client_reports_statuses_timeouts_and_failures(upstream):
    client = http.Client()
    missing = client.get(f"{upstream}/missing")
    assert missing.status_code == 404
    with pytest.raises(http.HTTPStatusError):
        missing.raise_for_status()
    with pytest.raises(http.Timeout):
        client.get(f"{upstream}/slow", timeout=0.2)
    with pytest.raises(http.HTTPError):
        client.get("http://127.0.0.1:9/")
    assert client.delete(f"{upstream}/x", content="gone").json()["body"] == "gone"


def test_a_def_route_calls_out_with_the_blocking_client(upstream):
    app = App()

    @app.get("/forward/{name}")
    def forward(name: str):
        return http.Client(base_url=upstream).get(f"/hello/{name}").json()

    reply = TestClient(app).get("/forward/ann")
    assert reply.status_code == 200
    assert reply.json()["path"] == "/hello/ann"
