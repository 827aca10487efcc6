"""The glue between an App and the component's WIT exports.

Imported only inside a component, where componentize-py provides
``wit_world``. Everything at module level here, and in the app module,
runs once at build time and is captured in the component's snapshot; the
WIT bindings must be imported here, at build time, because only modules in
the snapshot exist at run time.
"""

import asyncio
import logging
import math
import time
import traceback

import componentize_py_async_support as _runtime
import wit_world
import wit_world.exports
from componentize_py_types import Err
from wit_world.imports import cache, host, streams, types

from . import _tasks, concurrency, sleeps
from .app import App
from .messages import HTTPException, Request, Response, StreamingResponse

_LEVELS = {
    logging.DEBUG: host.Level.DEBUG,
    logging.INFO: host.Level.INFO,
    logging.WARNING: host.Level.WARN,
    logging.ERROR: host.Level.ERROR,
    logging.CRITICAL: host.Level.ERROR,
}


class _HostLog(logging.Handler):
    """Sends Python log records to the host's structured log."""

    def emit(self, record: logging.LogRecord) -> None:
        level = _LEVELS.get(record.levelno, host.Level.INFO)
        host.log(level, self.format(record))


def _install_logging() -> None:
    root = logging.getLogger()
    root.handlers[:] = [_HostLog()]
    root.setLevel(logging.INFO)


def _context(request_id: str, client_addr: str, tenant: str | None, claims: str | None) -> tuple:
    """The WIT ``context`` record, as componentize-py builds it: a tuple
    instead of a dataclass."""
    return (request_id, client_addr, tenant, claims)


def _request(method, path, query, headers, body, route, params, context) -> Request:
    """The WIT ``request`` record, as componentize-py builds it: straight
    into the SDK's Request, with the route index kept for the dispatch."""
    request_id, client_addr, tenant, claims = context
    request = Request(
        method, path, query, headers, body, params, request_id, client_addr, claims, tenant
    )
    request.route_index = route
    return request


# componentize-py builds each record with whatever constructor its bindings
# module holds when the component is snapshotted. Building the SDK's objects
# directly saves a dataclass per record, and a copy, on every request.
types.Context = _context
types.Request = _request


#: Background tasks by request id, from the response until the host calls
#: ``run-background``.
_PENDING: dict = {}


def _response(response: Response, request: Request) -> Response:
    """The WIT ``response`` record: the SDK's Response itself, whose
    ``status``, ``headers``, ``body`` and ``background`` are the record's
    fields (``background`` is read as a bool: tasks queued or not)."""
    if response.background is not None:
        _PENDING[request.request_id] = response.background
    return response


_KINDS = {
    "token-bucket": types.RateLimitKind.TOKEN_BUCKET,
    "sliding-window": types.RateLimitKind.SLIDING_WINDOW,
}
_KEYS = {
    "client-address": types.RateLimitKey.CLIENT_ADDRESS,
    "subject": types.RateLimitKey.SUBJECT,
    "tenant": types.RateLimitKey.TENANT,
}


def _policy(route, app: App) -> types.RoutePolicy:
    cache = route.cache
    if cache is not None:
        cache = types.CachePolicy(
            ttl_seconds=cache.ttl, tags=list(cache.tags), vary=list(cache.vary)
        )
    limit = route.rate_limit or app.rate_limit
    if limit is not None:
        limit = types.RateLimitPolicy(
            kind=_KINDS[limit.kind],
            key=_KEYS[limit.key],
            capacity=limit.capacity,
            period_seconds=limit.period_seconds,
        )
    return types.RoutePolicy(
        cache=cache, roles=route.roles(), scopes=route.scopes(), rate_limit=limit
    )


def _call_at(self, when, callback, *args, context=None):
    """A timer on host sleeps. A cancelled one is never cancelled as a task
    (componentize-py cannot cancel a pending host call): it notices at the
    end of its current slice and stops."""
    handle = asyncio.TimerHandle(when, callback, args, self, context)

    async def fire() -> None:
        while not handle.cancelled():
            delay = when - self.time()
            if delay <= 0:
                handle._run()
                return
            await sleeps.slept(host, min(math.ceil(delay * 1000), sleeps.SLICE_MS))

    self.create_task(fire())
    return handle


def _call_later(self, delay, callback, *args, context=None):
    return self.call_at(self.time() + delay, callback, *args, context=context)


def _timer_handle_cancelled(self, handle) -> None:
    return None


_timed_loops: set = set()


def _add_timers() -> None:
    """Gives componentize-py's event loop (whose timer methods raise
    NotImplementedError in 0.25) timers on host sleeps, so
    ``asyncio.wait_for``, ``asyncio.timeout`` and ``asyncio.sleep`` work;
    ``run_in_executor`` (and so ``asyncio.to_thread``) running inline; and
    the task recording that keeps left-over tasks from trapping."""
    loop_type = type(asyncio.get_running_loop())
    if loop_type in _timed_loops:
        return
    _timed_loops.add(loop_type)
    concurrency.install(loop_type)
    _tasks.install(loop_type)
    for name, method in (
        ("time", lambda self: time.monotonic()),
        ("call_at", _call_at),
        ("call_later", _call_later),
        ("_timer_handle_cancelled", _timer_handle_cancelled),
    ):
        setattr(loop_type, name, method)


_BODY_ERRORS = {
    streams.StreamError_TooLarge: lambda e: HTTPException(
        413, f"The request body is larger than the {e.value} bytes allowed."
    ),
    streams.StreamError_TimedOut: lambda e: HTTPException(
        408, "The request body did not arrive in time; send it faster."
    ),
}


def _body_error(error: Err) -> HTTPException:
    """A failed body read as the client's error: 413, 408 or 400."""
    value = error.value
    make = _BODY_ERRORS.get(type(value))
    if make is not None:
        return make(value)
    why = getattr(value, "value", None) or "the client went away"
    return HTTPException(400, f"The request body could not be read: {why}")


def _reader(body: streams.BodyReader):
    """``body.read`` as ``Request.stream`` calls it: bytes, or None at the
    end; a failed read raises the HTTPException it answers."""

    async def read() -> bytes | None:
        try:
            return await body.read()
        except Err as error:
            raise _body_error(error) from None

    return read


async def _read_whole(body: streams.BodyReader) -> bytes | Response:
    """The whole body, or the error response a failed read answers."""
    read = _reader(body)
    chunks = []
    try:
        while (chunk := await read()) is not None:
            chunks.append(chunk)
    except HTTPException as error:
        return error.to_response()
    return b"".join(chunks)


#: The most bytes one ``write`` passes to the host (its ``MAX_CHUNK_HINT``).
_MAX_WRITE = 1 << 20


async def _send_stream(response: StreamingResponse, out: streams.ResponseWriter) -> None:
    """Starts ``response`` and writes its chunks as they come. A failed
    write (the client left, the stream sat idle) stops it: the generator is
    closed, so its ``finally`` runs."""
    chunks = response.chunks()
    try:
        out.start(response.status, response.headers)
        async for chunk in chunks:
            # At most _MAX_WRITE at once: the host holds what a write passes
            # until it is sent, within a budget per instance.
            for start in range(0, max(len(chunk), 1), _MAX_WRITE):
                await out.write(chunk[start : start + _MAX_WRITE])
    except Err as error:
        logging.getLogger("cello").info("stream stopped: %s", type(error.value).__name__)
    finally:
        await chunks.aclose()
        await response.aclose()


def make_world(app: App) -> type:
    """The ``WitWorld`` class componentize-py exports for ``app``."""
    _install_logging()
    # At build time, into the snapshot: sync calls need the loop's patches too.
    _add_timers()
    app.finalize()
    app._invalidate = cache.invalidate

    class WitWorld(wit_world.WitWorld):
        def describe(self) -> types.Manifest:
            return types.Manifest(
                name=app.name,
                routes=[
                    types.Route(
                        methods=route.methods,
                        path=route.path,
                        is_async=route.is_async,
                        policy=_policy(route, app),
                    )
                    for route in app.routes
                ],
                policy=types.AppPolicy(
                    cors=types.CorsPolicy(**app.cors) if app.cors else None,
                    access_log=app.access_log,
                ),
            )

        def handle(self, req: Request) -> Response:
            response = app.dispatch(req.route_index, req)
            if isinstance(response, StreamingResponse):
                # A `def` route's stream goes whole.
                response = app.collect_stream(req.route_index, req, response)
            return _response(response, req)

        async def handle_async(self, req: Request) -> Response:
            _add_timers()
            spawned = _tasks.record()
            response = await app.dispatch_async(req.route_index, req)
            if isinstance(response, StreamingResponse):
                # A cached route: its stream is collected and sent whole.
                response.body = b"".join([c async for c in response.chunks()])
            if _tasks.leftover(spawned):
                # The response goes now; the call goes on until they end.
                what = f"request {req.request_id} ({req.method} {req.path})"
                _runtime.spawn(_tasks.finish(spawned, what, app.leftover_task_seconds))
            return _response(response, req)

        async def on_start(self) -> None:
            _add_timers()
            spawned = _tasks.record()
            try:
                await app.run_event("startup")
            except Exception as error:  # noqa: BLE001 - reported to the host
                logging.getLogger("cello").error(
                    "startup failed\n%s", "".join(traceback.format_exception(error))
                )
                await _tasks.finish(spawned, "a startup hook", limit=0)
                raise Err(f"{type(error).__name__}: {error}") from None
            # An instance's start cannot wait on work meant to run forever.
            await _tasks.finish(spawned, "a startup hook", limit=0)

        async def on_stop(self) -> None:
            spawned = _tasks.record()
            try:
                await app.run_event("shutdown")
            except Exception:  # noqa: BLE001
                logging.getLogger("cello").exception("shutdown hook failed")
            await _tasks.finish(spawned, "a shutdown hook", limit=0)

        async def run_background(self, request_id: str) -> None:
            tasks = _PENDING.pop(request_id, None)
            if tasks is not None:
                _add_timers()
                spawned = _tasks.record()
                await tasks.run()
                await _tasks.finish(spawned, f"the background tasks of request {request_id}")

    return WitWorld


def make_streaming(app: App) -> type:
    """The ``Streaming`` class componentize-py exports for ``app``: async
    routes with their request bodies read as they arrive, and responses
    that may be streams."""

    class Streaming(wit_world.exports.Streaming):
        async def handle(
            self, req: Request, body: streams.BodyReader, out: streams.ResponseWriter
        ) -> Response | None:
            _add_timers()
            spawned = _tasks.record()
            try:
                if app.routes[req.route_index].meta.get("stream_request"):
                    req._reader = _reader(body)
                else:
                    whole = await _read_whole(body)
                    if isinstance(whole, Response):
                        return whole
                    req.body = whole
                response = await app.dispatch_async(req.route_index, req)
                streamed = isinstance(response, StreamingResponse)
                if streamed:
                    await _send_stream(response, out)
            finally:
                body.__exit__(None, None, None)
                out.__exit__(None, None, None)
            what = f"request {req.request_id} ({req.method} {req.path})"
            if streamed and response.background is not None:
                # The body has gone: its tasks run now, in the same call.
                await response.background.run()
            if _tasks.leftover(spawned):
                _runtime.spawn(_tasks.finish(spawned, what, app.leftover_task_seconds))
            return None if streamed else _response(response, req)

    return Streaming
