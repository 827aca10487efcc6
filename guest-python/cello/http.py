"""HTTP clients, httpx-like, over the host's outbound capability.

    from cello import http

    @app.get("/weather")
    async def weather(city: str):
        response = await http.get("https://api.example.com/weather", params={"q": city})
        response.raise_for_status()
        return response.json()

    @app.get("/forecast")
    def forecast(city: str):
        with http.Client(base_url="https://api.example.com") as client:
            return client.get("/forecast", params={"q": city}).json()

``http.get`` and the other functions, and ``AsyncClient``, are awaited
without blocking the instance: ``asyncio.gather`` over several runs them at
once. ``Client`` blocks until the response is in, for ``def`` routes (as
``requests`` or ``httpx.Client`` would in FastAPI). A URL outside the
sidecar's allow-list (``outbound = [...]`` under ``[grants]``) raises
``Denied``; no response in time raises ``Timeout`` (a ``TimeoutError``).
Run natively, requests go out through urllib (the async ones in a thread).
"""

from __future__ import annotations

import asyncio
import json as _json
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlencode

from . import _blocking
from ._hostcalls import call as _hostcall
from .messages import Headers

try:
    from wit_world.imports import outbound as _wit
except ImportError:  # run natively
    _wit = None


class HTTPError(Exception):
    """An outbound request failed."""


class Denied(HTTPError):
    """The URL is outside the component's outbound allow-list."""


class Timeout(HTTPError, TimeoutError):
    """No complete response within the timeout."""


class HTTPStatusError(HTTPError):
    """``raise_for_status`` on a 4xx or 5xx response."""

    def __init__(self, message: str, response: HTTPResponse):
        super().__init__(message)
        self.response = response


class HTTPResponse:
    """A response: ``status_code``, ``headers``, ``content``, ``text``, ``json()``."""

    def __init__(self, status_code: int, headers: list[tuple[str, str]], content: bytes, url: str):
        self.status_code = status_code
        self.headers = Headers(headers)
        self.content = content
        self.url = url

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return _json.loads(self.content)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def raise_for_status(self) -> HTTPResponse:
        if self.status_code >= 400:
            raise HTTPStatusError(f"{self.status_code} from {self.url}", self)
        return self

    def __repr__(self) -> str:
        return f"<HTTPResponse [{self.status_code}]>"


class _Requests:
    """What both clients keep: ``base_url`` and ``headers`` apply to each
    request, ``timeout`` (seconds) to each one that sets none."""

    def __init__(
        self,
        base_url: str = "",
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout = timeout

    def _prepare(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> _Outgoing:
        if self.base_url and not url.startswith(("http://", "https://")):
            url = self.base_url + "/" + url.lstrip("/")
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
        pairs = {**self.headers, **(headers or {})}
        body = b""
        if json is not None:
            body = _json.dumps(json).encode()
            pairs.setdefault("content-type", "application/json")
        elif content is not None:
            body = content.encode() if isinstance(content, str) else bytes(content)
        header_list = [(k.lower(), str(v)) for k, v in pairs.items()]
        timeout = timeout if timeout is not None else self.timeout
        return _Outgoing(method.upper(), url, header_list, body, timeout)


class AsyncClient(_Requests):
    """Sends requests, awaited without blocking the instance: for
    ``async def`` routes."""

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def request(self, method: str, url: str, **kwargs: Any) -> HTTPResponse:
        """``params``, ``headers``, ``content`` (bytes or text), ``json``
        and ``timeout`` (seconds) as keywords."""
        outgoing = self._prepare(method, url, **kwargs)
        if _wit is None:
            return await asyncio.to_thread(_native, outgoing)
        if _blocking.running():  # a `def` route's stream cannot suspend
            return _send_blocking(outgoing)
        return await _send(outgoing)

    async def get(self, url: str, **kwargs: Any) -> HTTPResponse:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> HTTPResponse:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> HTTPResponse:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> HTTPResponse:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> HTTPResponse:
        return await self.request("DELETE", url, **kwargs)


class Client(_Requests):
    """Sends requests, blocking: for ``def`` routes, as ``httpx.Client``
    or ``requests`` would be in FastAPI. The instance waits for each
    response (in an ``async def`` route too, where ``AsyncClient`` would
    let it serve other requests meanwhile)."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def request(self, method: str, url: str, **kwargs: Any) -> HTTPResponse:
        """``params``, ``headers``, ``content`` (bytes or text), ``json``
        and ``timeout`` (seconds) as keywords."""
        outgoing = self._prepare(method, url, **kwargs)
        if _wit is None:
            return _native(outgoing)
        return _send_blocking(outgoing)

    def get(self, url: str, **kwargs: Any) -> HTTPResponse:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> HTTPResponse:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> HTTPResponse:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> HTTPResponse:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> HTTPResponse:
        return self.request("DELETE", url, **kwargs)


class _Outgoing(NamedTuple):
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    timeout: float | None

    def to_wit(self) -> Any:
        timeout = self.timeout
        return _wit.OutgoingRequest(
            method=self.method,
            url=self.url,
            headers=self.headers,
            body=self.body,
            timeout_ms=None if timeout is None else max(1, round(timeout * 1000)),
        )

    def response(self, reply: Any) -> HTTPResponse:
        return HTTPResponse(reply.status, list(reply.headers), bytes(reply.body), self.url)


async def _send(outgoing: _Outgoing) -> HTTPResponse:
    try:
        # Through host.call: a timeout around this must not cancel the call.
        reply = await _hostcall(_wit.send(outgoing.to_wit()))
    except Exception as error:  # componentize-py's Err carries the variant
        raise _error(error, outgoing.url) from None
    return outgoing.response(reply)


def _send_blocking(outgoing: _Outgoing) -> HTTPResponse:
    try:
        reply = _wit.send_blocking(outgoing.to_wit())
    except Exception as error:  # componentize-py's Err carries the variant
        raise _error(error, outgoing.url) from None
    return outgoing.response(reply)


def _error(error: Exception, url: str) -> Exception:
    """The SDK's error for the host's ``Err(variant)``; any other
    exception as it was."""
    if type(error).__name__ != "Err":
        return error
    variant = error.value
    kind = type(variant).__name__.rsplit("_", 1)[-1]
    detail = getattr(variant, "value", None)
    if kind == "Denied":
        return Denied(f"{url}: {detail}")
    if kind == "Timeout":
        return Timeout(f"{url}: no response in time")
    return HTTPError(f"{url}: {detail}")


def _native(outgoing: _Outgoing) -> HTTPResponse:
    """Sends ``outgoing`` through urllib, for native runs."""
    import urllib.error
    import urllib.request

    method, url, headers, body, timeout = outgoing
    request = urllib.request.Request(url, data=body or None, method=method, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=timeout or 30) as reply:
            return HTTPResponse(reply.status, list(reply.headers.items()), reply.read(), url)
    except urllib.error.HTTPError as reply:
        return HTTPResponse(reply.code, list(reply.headers.items()), reply.read(), url)
    except TimeoutError:
        raise Timeout(f"{url}: no response in time") from None
    except OSError as error:
        raise HTTPError(f"{url}: {error}") from None


_DEFAULT = AsyncClient()


async def get(url: str, **kwargs: Any) -> HTTPResponse:
    return await _DEFAULT.get(url, **kwargs)


async def post(url: str, **kwargs: Any) -> HTTPResponse:
    return await _DEFAULT.post(url, **kwargs)


async def put(url: str, **kwargs: Any) -> HTTPResponse:
    return await _DEFAULT.put(url, **kwargs)


async def delete(url: str, **kwargs: Any) -> HTTPResponse:
    return await _DEFAULT.delete(url, **kwargs)


async def request(method: str, url: str, **kwargs: Any) -> HTTPResponse:
    return await _DEFAULT.request(method, url, **kwargs)
