"""Run an app natively, without Wasm or a host, for fast unit tests.

    from cello.testing import TestClient

    client = TestClient(app)
    assert client.get("/items/1").json() == {"id": 1}

Routing follows the host: static segments win over ``{params}``, an unknown
path is 404, a known path with another method is 405 with ``Allow``, and HEAD
is answered by a GET route.
"""

from __future__ import annotations

import asyncio
import json as _json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from .app import App
from .messages import Headers, Request, Response

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _compile(path: str) -> re.Pattern[str]:
    """A regex for a route path: literal text, ``{name}`` as one segment."""
    pieces, last = [], 0
    for param in _PARAM.finditer(path):
        pieces.append(re.escape(path[last : param.start()]))
        pieces.append(f"(?P<{param.group(1)}>[^/]+)")
        last = param.end()
    pieces.append(re.escape(path[last:]))
    return re.compile("^" + "".join(pieces) + "$")


class TestResponse:
    """A response as a test sees it."""

    __test__ = False  # not a pytest test class

    def __init__(self, response: Response):
        self.status_code = response.status
        self.headers = Headers(response.headers)
        self.content = response.body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return _json.loads(self.content)


class TestClient:
    """Sends requests straight to an app's handlers."""

    __test__ = False

    def __init__(self, app: App, dependency_overrides: Mapping[Any, Any] | None = None):
        """``dependency_overrides`` are added to ``app.dependency_overrides``.
        Startup hooks run before the first request (or on ``with``), and
        shutdown hooks when the ``with`` block ends."""
        self.app = app.finalize()
        self.app.dependency_overrides.update(dependency_overrides or {})
        self._patterns = [(index, _compile(route.path)) for index, route in enumerate(app.routes)]
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
        headers: Mapping[str, str] | None = None,
    ) -> TestResponse:
        method = method.upper()
        parts = urlsplit(url)
        query = parts.query
        if params:
            query = "&".join(filter(None, [query, urlencode(params, doseq=True)]))
        header_pairs = [(k.lower(), v) for k, v in (headers or {}).items()]
        body = b""
        if json is not None:
            body = _json.dumps(json).encode()
            header_pairs.append(("content-type", "application/json"))
        elif content is not None:
            body = content.encode() if isinstance(content, str) else content
        return TestResponse(self._send(method, parts.path or "/", query, header_pairs, body))

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

    def head(self, url: str, **kwargs) -> TestResponse:
        return self.request("HEAD", url, **kwargs)

    def _send(self, method: str, path: str, query: str, headers, body: bytes) -> Response:
        matches = []
        for index, pattern in self._patterns:
            found = pattern.match(path)
            if found:
                matches.append((len(found.groupdict()), index, found.groupdict()))
        if not matches:
            return Response.json({"detail": "Not Found"}, 404)
        # Fewer parameters first: a static segment beats a {param}.
        matches.sort(key=lambda m: m[0])
        fewest = matches[0][0]
        candidates = [m for m in matches if m[0] == fewest]
        for wanted in [method] + (["GET"] if method == "HEAD" else []):
            for _, index, path_params in candidates:
                if wanted in self.app.routes[index].methods:
                    request = Request(method, path, query, headers, body, path_params, "test")
                    response = self._call(index, request)
                    if method == "HEAD":
                        response.body = b""
                    return response
        allow = sorted({m for _, i, _ in candidates for m in self.app.routes[i].methods})
        return Response.json({"detail": "Method Not Allowed"}, 405, {"allow": ", ".join(allow)})

    def _call(self, index: int, request: Request) -> Response:
        self._start()
        if self.app.routes[index].is_async:
            response = asyncio.run(self.app.dispatch_async(index, request))
        else:
            response = self.app.dispatch(index, request)
        # As on the host, background tasks run once the response is made.
        if response.background is not None:
            asyncio.run(response.background.run())
        return response
