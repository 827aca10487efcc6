"""Requests, responses, and how handler return values become responses."""

from __future__ import annotations

import dataclasses
import json as _json
import math
import re
from collections.abc import Iterable, Mapping
from itertools import accumulate
from typing import Any
from urllib.parse import parse_qsl

#: How deep a request body's arrays and objects may nest (serde_json's limit).
MAX_JSON_DEPTH = 128

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class _NotFinite(ValueError):
    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def _refuse_constant(text: str) -> Any:
    raise _NotFinite(text)


def parse_json(data: bytes | str) -> Any:
    """``data`` parsed as strict JSON: nested at most ``MAX_JSON_DEPTH`` deep,
    numbers finite (no ``NaN``, ``Infinity`` or ``1e999999``). Every problem
    is a ``json.JSONDecodeError``, so callers answer it with a 422."""
    text = data
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode(_json.detect_encoding(data), "surrogatepass")
        except UnicodeDecodeError as e:
            raise _json.JSONDecodeError(f"not valid text: {e.reason}", "", e.start) from None
    _check_depth(text)
    try:
        return _json.loads(text, parse_float=_finite, parse_constant=_refuse_constant)
    except _NotFinite as e:
        msg = f"{e.text} is not a finite number, and JSON numbers must be"
        raise _json.JSONDecodeError(msg, text, max(text.find(e.text), 0)) from None
    except _json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as e:  # an integer too long to convert, say
        raise _json.JSONDecodeError(str(e), text, 0) from None


def _check_depth(text: str) -> None:
    """Refuses ``text`` when its brackets nest deeper than ``MAX_JSON_DEPTH``,
    without parsing it: a deep body would exhaust the parser's stack."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return  # the common case, two scans in C
    bare = _JSON_STRING.sub("", text)  # brackets inside strings do not nest
    steps = map(_DEPTH_STEP.__getitem__, _JSON_BRACKET.findall(bare))
    if max(accumulate(steps), default=0) > MAX_JSON_DEPTH:
        msg = f"nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects"
        raise _json.JSONDecodeError(msg, text, 0)


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only header mapping (first value wins)."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()):
        self._pairs = [(k.lower(), v) for k, v in pairs]
        self._first: dict[str, str] = {}
        for key, value in self._pairs:
            self._first.setdefault(key, value)

    def __getitem__(self, key: str) -> str:
        return self._first[key.lower()]

    def __iter__(self):
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def get_all(self, key: str) -> list[str]:
        """Every value of header ``key``."""
        key = key.lower()
        return [v for k, v in self._pairs if k == key]


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-TRACE-SPAN-FLAGS``), or
    ``None`` when it is missing or malformed (an all-zero id is invalid)."""
    if traceparent is None:
        return None
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    trace = parts[1]
    if len(trace) != 32 or trace.strip("0123456789abcdef") or trace == "0" * 32:
        return None
    return trace


class Request:
    """An HTTP request, as routed by the host.

    Headers and query parameters are parsed on first use: a handler that
    reads neither pays for neither.
    """

    def __init__(
        self,
        method: str = "GET",
        path: str = "/",
        query: str = "",
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        params: Mapping[str, str] | None = None,
        request_id: str = "",
        client: str = "",
        claims: str | dict | None = None,
        tenant: str | None = None,
    ):
        self.method = method
        self.path = path
        self.query_string = query
        self.body = body
        self.params: dict[str, str] = dict(params) if params else {}
        self.request_id = request_id
        self.client = client
        self._raw_headers = headers
        self._headers: Headers | None = None
        self._query: dict[str, str] | None = None
        self._claims = claims
        #: The tenant whose component serves the request; ``None`` for a
        #: component of the host's own directory.
        self.tenant = tenant

    @property
    def headers(self) -> Headers:
        """Case-insensitive headers (first value of each name)."""
        if self._headers is None:
            self._headers = Headers(self._raw_headers)
        return self._headers

    @property
    def query(self) -> dict[str, str]:
        """Query parameters, the first value of each key."""
        if self._query is None:
            self._query = {}
            for key, value in parse_qsl(self.query_string, keep_blank_values=True):
                self._query.setdefault(key, value)
        return self._query

    @property
    def claims(self) -> dict[str, Any] | None:
        """The verified JWT claims, when the host authenticated the caller."""
        if isinstance(self._claims, str):
            self._claims = _json.loads(self._claims)
        return self._claims

    @property
    def trace_id(self) -> str | None:
        """The W3C trace id (32 hex digits) of the request's ``traceparent``:
        with the host's traces on, the id it exports the request's spans
        under; otherwise the caller's, if it sent one. ``None`` without a
        valid ``traceparent``."""
        return trace_id(self.headers.get("traceparent"))

    @property
    def user(self) -> str | None:
        """The authenticated caller's subject (the ``sub`` claim)."""
        claims = self.claims
        return None if claims is None else claims.get("sub")

    def query_pairs(self) -> list[tuple[str, str]]:
        """Every query parameter, repeated keys included, in order."""
        return parse_qsl(self.query_string, keep_blank_values=True)

    async def stream(self):
        """The body, chunk by chunk as it arrives: ``async for chunk in
        request.stream()``, as in Starlette. On a route declared with
        ``stream_request=True`` the body is never held whole (``body`` is
        empty); elsewhere it was read already and comes as one chunk."""
        reader, self._reader = getattr(self, "_reader", None), None
        if reader is None:
            if self.body:
                yield self.body
            return
        while (chunk := await reader()) is not None:
            yield chunk

    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; malformed JSON raises a 422 HTTPException."""
        try:
            return parse_json(self.body)
        except ValueError as e:
            raise HTTPException(422, f"Invalid JSON body: {e}") from None


class Response:
    """An HTTP response. Handlers may return one, or a value coerced into one."""

    #: Tasks to run once the response is sent (set by the app, not by hand).
    background: Any = None

    def __init__(
        self,
        body: bytes | str = b"",
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        media_type: str | None = None,
        *,
        background: Any = None,
        status_code: int | None = None,
    ):
        """``background`` (a ``BackgroundTasks``) runs once the response is
        sent; ``status_code`` is Starlette's name for ``status``."""
        self.body = body.encode() if isinstance(body, str) else bytes(body or b"")
        self.status = status_code or status
        if background is not None:
            self.background = background
        self.headers: list[tuple[str, str]]
        if headers is None:  # the common case, without the ABC check below
            self.headers = [("content-type", media_type)] if media_type else []
            return
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        self.headers = [(k.lower(), str(v)) for k, v in pairs]
        if media_type and not any(k == "content-type" for k, _ in self.headers):
            self.headers.append(("content-type", media_type))

    @classmethod
    def json(
        cls, value: Any, status: int = 200, headers: Mapping[str, str] | None = None, **options
    ):
        """``value`` encoded as a JSON body."""
        # NaN and Infinity are not JSON: refused, as Starlette's JSONResponse does.
        body = _json.dumps(value, default=_encode_default, separators=(",", ":"), allow_nan=False)
        return cls(body, status, headers, "application/json", **options)

    @classmethod
    def text(
        cls, value: str, status: int = 200, headers: Mapping[str, str] | None = None, **options
    ):
        """A ``text/plain`` body."""
        return cls(value, status, headers, "text/plain; charset=utf-8", **options)

    @classmethod
    def html(
        cls, value: str, status: int = 200, headers: Mapping[str, str] | None = None, **options
    ):
        """A ``text/html`` body."""
        return cls(value, status, headers, "text/html; charset=utf-8", **options)

    @classmethod
    def binary(
        cls,
        value: bytes,
        media_type: str = "application/octet-stream",
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ):
        """Bytes with their media type."""
        return cls(value, status, headers, media_type)

    @classmethod
    def redirect(cls, location: str, status: int = 307):
        """A redirect to ``location`` (307 by default, as in FastAPI)."""
        return cls(b"", status, {"location": location})

    @classmethod
    def created(cls, value: Any = None, location: str | None = None):
        """201, with ``value`` as JSON and a ``Location`` when given."""
        headers = {"location": location} if location else None
        return cls.json(value, 201, headers)

    @classmethod
    def no_content(cls):
        """204 with no body."""
        return cls(b"", 204)

    def header(self, name: str) -> str | None:
        """The first value of header ``name``."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def __repr__(self) -> str:
        return f"Response(status={self.status}, body={self.body[:60]!r})"


def _chunk(chunk: str | bytes) -> bytes:
    return chunk.encode() if isinstance(chunk, str) else bytes(chunk)


class StreamingResponse(Response):
    """A response whose body is sent as ``content`` yields it, as in
    Starlette: an async generator (or async iterable), or a plain iterable,
    of ``str`` or ``bytes`` chunks. From an ``async def`` route each chunk
    reaches the client as it is written; the generator waits while the
    client is slow, and is closed (its ``finally`` runs) once the client
    has gone. A ``def`` route's stream is collected and sent whole."""

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: Any = None,
    ):
        super().__init__(b"", status_code, headers, media_type, background=background)
        self.body_iterator = content

    async def chunks(self):
        """The body's chunks as bytes, from an async or a plain iterable."""
        content = self.body_iterator
        if hasattr(content, "__aiter__"):
            async for chunk in content:
                yield _chunk(chunk)
        else:
            for chunk in content:
                yield _chunk(chunk)

    async def aclose(self) -> None:
        """Closes the content's generator, so its ``finally`` runs."""
        close = getattr(self.body_iterator, "aclose", None) or getattr(
            self.body_iterator, "close", None
        )
        if close is not None:
            closed = close()
            if hasattr(closed, "__await__"):
                await closed

    def whole_now(self) -> list[bytes]:
        """As :meth:`whole`, for a plain iterable."""
        return [_chunk(c) for c in self.body_iterator]

    async def whole(self) -> list[bytes]:
        """The chunks of a stream collected whole (a ``def`` route's)."""
        return await self.sent()

    async def sent(self) -> list[bytes]:
        """The chunks as they are sent, read to its end (an endless stream
        never ends); then the generator is closed."""
        chunks = self.chunks()
        try:
            return [chunk async for chunk in chunks]
        finally:
            await chunks.aclose()
            await self.aclose()

    def __repr__(self) -> str:
        return f"StreamingResponse(status={self.status})"


class HTTPException(Exception):
    """Raise to answer with ``status_code`` and ``{"detail": detail}``."""

    def __init__(
        self, status_code: int, detail: Any = None, headers: Mapping[str, str] | None = None
    ):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail if detail is not None else _reason(status_code)
        self.headers = dict(headers or {})

    def to_response(self) -> Response:
        return Response.json({"detail": self.detail}, self.status_code, self.headers)


def to_response(value: Any, status_code: int | None = None, compat: bool = False) -> Response:
    """Coerces a handler's return value, with the route's ``status_code``
    for plain values; ``compat`` coerces as FastAPI does (all JSON)."""
    if compat and not isinstance(value, Response):
        response = Response.json(list(value) if isinstance(value, tuple) else value)
        if status_code is not None:
            response.status = status_code
        return response
    response = _coerce(value)
    if status_code is not None and not isinstance(value, Response | tuple):
        response.status = status_code
    return response


def _coerce(value: Any) -> Response:
    """Coerces a handler's return value into a Response.

    dict/list/dataclass → 200 JSON, str → 200 text/plain, bytes → 200
    application/octet-stream, None → 204, ``(body, status)`` and
    ``(body, status, headers)`` tuples, Response as it is.
    """
    if isinstance(value, Response):
        return value
    if isinstance(value, tuple) and len(value) in (2, 3) and isinstance(value[1], int):
        response = _coerce(value[0])
        response.status = value[1]
        if len(value) == 3:
            response.headers.extend((k.lower(), str(v)) for k, v in value[2].items())
        return response
    if value is None:
        return Response(status=204)
    if isinstance(value, str):
        return Response.text(value)
    if isinstance(value, bytes | bytearray):
        return Response(bytes(value), 200, None, "application/octet-stream")
    return Response.json(value)


def _encode_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "model_dump"):  # a pydantic (or cello.BaseModel) model
        if hasattr(type(value), "__pydantic_core_schema__"):
            return value.model_dump(mode="json")  # dates and the like as JSON, like FastAPI
        return value.model_dump()
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
