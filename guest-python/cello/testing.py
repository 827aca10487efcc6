"""Run an app natively, without Wasm or a host, for fast unit tests.

    from cello.testing import TestClient

    client = TestClient(app)
    assert client.get("/items/1").json() == {"id": 1}

Routing follows the host, by the app's own path matcher (``routing.find``):
static segments win over ``{params}``, an unknown path is 404, a known path
with another method is 405 with ``Allow``, and HEAD is answered by a GET
route.
"""

from __future__ import annotations

import asyncio
import json as _json
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from .app import App
from .deps import _client_overrides
from .messages import Headers, Request, Response, StreamingResponse
from .routing import Found, find


class TestResponse:
    """A response as a test sees it."""

    __test__ = False  # not a pytest test class

    def __init__(self, response: Response, url: str = ""):
        self.status_code = response.status
        self.headers = Headers(response.headers)
        self.content = response.body
        #: A stream's chunks as the handler yielded them (the whole body
        #: as one chunk otherwise).
        self.chunks: list[bytes] = getattr(response, "sent_chunks", None) or [response.body]
        self.url = url
        #: The redirects followed to get here, oldest first.
        self.history: list[TestResponse] = []

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_redirect(self) -> bool:
        return self.status_code in (301, 302, 303, 307, 308) and "location" in self.headers

    @property
    def cookies(self) -> dict[str, str]:
        """Cookies the response sets, by name."""
        from http.cookies import SimpleCookie

        jar: dict[str, str] = {}
        for line in self.headers.get_all("set-cookie"):
            parsed = SimpleCookie(line)
            jar.update({k: m.value for k, m in parsed.items()})
        return jar

    def raise_for_status(self) -> TestResponse:
        if self.status_code >= 400:
            raise AssertionError(f"{self.status_code} from {self.url}: {self.text[:200]}")
        return self

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def iter_bytes(self):
        """The body chunk by chunk, as a stream's handler yielded it."""
        return iter(self.chunks)

    def iter_text(self):
        return (chunk.decode("utf-8", errors="replace") for chunk in self.chunks)

    def iter_lines(self):
        return iter(self.text.splitlines())

    def json(self) -> Any:
        return _json.loads(self.content)


class TestClient:
    """Sends requests straight to an app's handlers."""

    __test__ = False

    def __init__(
        self,
        app: App,
        dependency_overrides: Mapping[Any, Any] | None = None,
        *,
        base_url: str = "http://testserver",
        cookies: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = True,
        raise_server_exceptions: bool = True,
        tenant: str | None = None,
    ):
        """``dependency_overrides`` apply to this client's requests only,
        over the app's own ``app.dependency_overrides``; the app is left as
        it was. ``cookies`` and ``headers`` go with every request; redirects
        are followed, as Starlette's TestClient does. Startup hooks run
        before the first request (or on ``with``), and shutdown hooks when
        the ``with`` block ends. ``tenant`` is what ``request.tenant``
        reads, as if a tenant had uploaded the app."""
        self.app = app.finalize()
        self.tenant = tenant
        self.dependency_overrides: dict[Any, Any] = dict(dependency_overrides or {})
        self.base_url = base_url
        self.cookies: dict[str, str] = dict(cookies or {})
        self.headers: dict[str, str] = dict(headers or {})
        self.follow_redirects = follow_redirects
        self._started = False

    def __enter__(self) -> TestClient:
        self._start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._started:
            self._started = False
            asyncio.run(self.app.run_event("shutdown"))

    def _start(self) -> None:
        if not self._started:
            self._started = True
            asyncio.run(self.app.run_event("startup"))

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        data: Mapping[str, Any] | str | bytes | None = None,
        files: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        follow_redirects: bool | None = None,
    ) -> TestResponse:
        """Sends one request. The body is ``json``, ``content`` (bytes or
        text), ``data`` (a form, urlencoded; raw bytes or text as they are)
        or ``files`` (multipart, with ``data`` as its other fields; a file
        is bytes, a file object, or ``(name, content[, media type])``)."""
        method = method.upper()
        parts = urlsplit(url)
        query = parts.query
        if params:
            query = "&".join(filter(None, [query, urlencode(params, doseq=True)]))
        merged = {**self.headers, **(headers or {})}
        header_pairs = [(k.lower(), str(v)) for k, v in merged.items()]
        jar = {**self.cookies, **(cookies or {})}
        if jar:
            header_pairs.append(("cookie", "; ".join(f"{k}={v}" for k, v in jar.items())))
        body, media_type = _body(json, content, data, files)
        if media_type and not any(k == "content-type" for k, _ in header_pairs):
            header_pairs.append(("content-type", media_type))
        path = parts.path or "/"
        response = TestResponse(self._send(method, path, query, header_pairs, body), url)
        follow = self.follow_redirects if follow_redirects is None else follow_redirects
        history: list[TestResponse] = []
        while follow and response.is_redirect and len(history) < 20:
            history.append(response)
            target = urlsplit(urljoin(path, response.headers["location"]))
            if target.netloc and target.netloc != urlsplit(self.base_url).netloc:
                break  # off this app: leave it to the test
            path, query = target.path or "/", target.query
            if response.status_code == 303:
                method, body = "GET", b""
            response = TestResponse(self._send(method, path, query, header_pairs, body), path)
        response.history = history
        return response

    def get(self, url: str, **kwargs) -> TestResponse:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> TestResponse:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs) -> TestResponse:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs) -> TestResponse:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs) -> TestResponse:
        return self.request("DELETE", url, **kwargs)

    def options(self, url: str, **kwargs) -> TestResponse:
        return self.request("OPTIONS", url, **kwargs)

    def head(self, url: str, **kwargs) -> TestResponse:
        return self.request("HEAD", url, **kwargs)

    def _send(self, method: str, path: str, query: str, headers, body: bytes) -> Response:
        found = find(self.app.routes, method, path)
        if not isinstance(found, Found):
            return found
        request = Request(
            method, path, query, headers, body, found.params, "test", tenant=self.tenant
        )
        response = self._call(found.index, request)
        if method == "HEAD":
            response.body = b""
        return response

    def _call(self, index: int, request: Request) -> Response:
        self._start()
        token = _client_overrides.set(self.dependency_overrides or None)
        try:
            if self.app.routes[index].is_async:
                response = asyncio.run(self.app.dispatch_async(index, request))
            else:
                response = self.app.dispatch(index, request)
            if isinstance(response, StreamingResponse):
                if self.app.routes[index].is_async:
                    response.sent_chunks = asyncio.run(response.sent())
                    response.body = b"".join(response.sent_chunks)
                else:  # as the component collects it
                    response = self.app.collect_stream(index, request, response)
        finally:
            _client_overrides.reset(token)
        # As on the host, background tasks run once the response is made.
        if response.background is not None:
            asyncio.run(response.background.run())
        return response


def _body(json: Any, content: Any, data: Any, files: Any) -> tuple[bytes, str | None]:
    """A request body and its media type."""
    if json is not None:
        return _json.dumps(json).encode(), "application/json"
    if content is not None:
        return (content.encode() if isinstance(content, str) else bytes(content)), None
    if files:
        return _multipart(data if isinstance(data, Mapping) else {}, files)
    if isinstance(data, Mapping):
        return urlencode(data, doseq=True).encode(), "application/x-www-form-urlencoded"
    if data is not None:
        return (data.encode() if isinstance(data, str) else bytes(data)), None
    return b"", None


def _multipart(fields: Mapping[str, Any], files: Mapping[str, Any]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = bytearray()
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            out += f'--{boundary}\r\ncontent-disposition: form-data; name="{name}"\r\n\r\n'.encode()
            out += str(item).encode() + b"\r\n"
    for name, file in files.items():
        filename, media_type = name, "application/octet-stream"
        if isinstance(file, tuple):
            filename, file, *rest = file
            media_type = rest[0] if rest else media_type
        payload = file.read() if hasattr(file, "read") else file
        payload = payload.encode() if isinstance(payload, str) else bytes(payload)
        out += (
            f'--{boundary}\r\ncontent-disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\ncontent-type: {media_type}\r\n\r\n'
        ).encode()
        out += payload + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"
