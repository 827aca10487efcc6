"""The App: its routes and options, lifecycle hooks, and dispatch."""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import Callable
from typing import Any

from . import _blocking, openapi
from .analysis import Param
from .background import collect_tasks, merged_tasks
from .deps import RequestScope, drive
from .docs import docs_page
from .messages import HTTPException, Request, Response, StreamingResponse, to_response
from .routing import CachePolicy, Route, Router, cache, slash_redirect

__all__ = ["App", "CachePolicy", "Route", "Router", "cache"]

log = logging.getLogger("cello")

#: What handlers return most, none of it awaitable: checked by type first,
#: since ``inspect.isawaitable`` asks an ABC about every other value.
_PLAIN = frozenset({str, bytes, dict, list, tuple, int, type(None), Response})


def _awaitable(value: Any) -> bool:
    return type(value) not in _PLAIN and inspect.isawaitable(value)


class App(Router):
    """An app: a name and its routes in declaration order."""

    def __init__(
        self,
        name: str | None = None,
        version: str = "0.1.0",
        openapi_url: str | None = "/openapi.json",
        docs_url: str | None = "/docs",
        *,
        title: str | None = None,
        description: str = "",
        summary: str | None = None,
        dependencies: list | None = None,
        responses: dict | None = None,
        openapi_tags: list[dict] | None = None,
        redirect_slashes: bool = True,
        fastapi_compat: bool = False,
        root_path: str = "",
        leftover_task_seconds: float = 30.0,
        **_ignored: Any,
    ):
        """``openapi_url`` serves the app's OpenAPI 3.1 document and
        ``docs_url`` a page that shows it; ``None`` turns either off.

        FastAPI's keywords work as they do there: ``title``, ``description``,
        ``summary``, ``openapi_tags``, app-wide ``dependencies`` and
        ``responses``; others (``redoc_url``, ``contact``, ...) are accepted
        and ignored. ``redirect_slashes`` answers ``/items/`` with a 307 to
        ``/items`` (and back), as FastAPI does. ``fastapi_compat=True``
        coerces return values as FastAPI does: a ``str`` or ``None`` is JSON,
        not ``text/plain`` or 204, and a tuple is a JSON array.

        ``leftover_task_seconds``: inside a component, how long tasks a
        handler started and left running may go on after its response
        before they are cancelled (see docs/python.md)."""
        super().__init__(dependencies=dependencies, responses=responses)
        self.name = name or title or "app"
        self.title = title or self.name
        self.description = description
        self.summary = summary
        self.openapi_tags = openapi_tags
        self.version = version
        self.redirect_slashes = redirect_slashes
        self.fastapi_compat = fastapi_compat
        #: The path the app is served under, for the document's ``servers``.
        self.root_path = root_path.rstrip("/")
        self.leftover_task_seconds = leftover_task_seconds
        self.exception_handlers: dict[type[BaseException], Callable[..., Any]] = {}
        #: Replacements for dependencies, for tests: ``{get_db: fake_db}``.
        self.dependency_overrides: dict[Callable[..., Any], Callable[..., Any]] = {}
        self._singletons: dict[Callable[..., Any], Any] = {}
        #: The plans of ``dependency_overrides``' replacements, by path params.
        self._override_plans: dict[Any, tuple[Param, ...]] = {}
        self._handlers: dict[str, list[Callable[[], Any]]] = {"startup": [], "shutdown": []}
        #: The rate limit of every route that declares none.
        self.rate_limit: Any = None
        #: Wishes for the host: CORS rules and an access log.
        self.cors: dict[str, Any] | None = None
        self.access_log = False
        # Set by the component glue to the host's `cache.invalidate`.
        self._invalidate: Callable[[list[str]], int] | None = None
        self._openapi: dict[str, Any] | None = None
        self._docs = (openapi_url, docs_url)
        self._finalized = False

    def finalize(self) -> App:
        """Adds the built-in routes after the app's own, once. The component
        glue and the TestClient call it; an app need not."""
        if not self._finalized:
            self._finalized = True
            openapi_url, docs_url = self._docs
            own = {url for url in self._docs if url}
            if openapi_url:
                self.get(openapi_url, include_in_schema=False)(
                    lambda request: Response.json(self._served_openapi(request, own))
                )
            if docs_url:
                self.get(docs_url, include_in_schema=False)(
                    lambda request: Response.html(
                        docs_page(docs_url, openapi_url, self._prefix(request), self.title)
                    )
                )
            if self.redirect_slashes:
                self._addslash_redirects()
        return self

    def _addslash_redirects(self) -> None:
        """For each path, its spelling with (or without) a trailing slash
        answers 307 to it, by a relative ``Location`` so it holds under any
        prefix the host mounts the app at."""
        methods: dict[str, list[str]] = {}
        for route in self.routes:
            methods.setdefault(route.path, []).extend(route.methods)
        for path, verbs in methods.items():
            if path == "/":
                continue
            other = path[:-1] if path.endswith("/") else path + "/"
            if other not in methods:
                self.route(other, sorted(set(verbs)), include_in_schema=False)(slash_redirect)

    def _prefix(self, request: Request) -> str:
        """The path the app is served under: ``root_path``, or the
        ``X-Forwarded-Prefix`` the host (or a proxy) sends."""
        return self.root_path or request.headers.get("x-forwarded-prefix", "").rstrip("/")

    def _served_openapi(self, request: Request, skip: set[str]) -> dict[str, Any]:
        """The document with the path the app is served under in ``servers``."""
        prefix = self._prefix(request)
        document = self.openapi(skip=skip)
        if prefix:
            document = {**document, "servers": [{"url": prefix}]}
        return document

    def openapi(self, skip: set[str] | None = None) -> dict[str, Any]:
        """The app's OpenAPI 3.1 document, made on first use."""
        if self._openapi is None:
            self._openapi = openapi.document(self, skip or set())
        return self._openapi

    def enable_cors(
        self,
        allow_origins: list[str] | tuple[str, ...] = ("*",),
        allow_methods: list[str] | tuple[str, ...] = (),
        allow_headers: list[str] | tuple[str, ...] = (),
        expose_headers: list[str] | tuple[str, ...] = (),
        allow_credentials: bool = False,
        max_age: int = 600,
    ) -> None:
        """Asks the host to answer CORS for every route: preflights and
        headers are handled in Rust, before and after the handler. Empty
        methods and headers mean the usual ones. The operator's ``[cors]``
        table, if any, wins, and the host config can refuse the wish. With
        no arguments every origin may call with the usual methods."""
        self.cors = {
            "allow_origins": list(allow_origins),
            "allow_methods": [m.upper() for m in allow_methods],
            "allow_headers": [h.lower() for h in allow_headers],
            "expose_headers": [h.lower() for h in expose_headers],
            "allow_credentials": allow_credentials,
            "max_age_seconds": int(max_age),
        }

    def enable_logging(self) -> None:
        """Asks the host for an access log line per request to this app."""
        self.access_log = True

    def enable_rate_limit(self, config: Any) -> None:
        """Gives every route without its own ``rate_limit`` this one
        (a ``RateLimitConfig``); the host counts it per route and caller."""
        self.rate_limit = config

    def on_event(self, event: str):
        """Registers a ``startup`` or ``shutdown`` hook (sync or async).

        Startup hooks run once per instance, before its first request (the
        host calls ``on-start``); an exception in one keeps the instance
        from serving, and the host answers 503. Shutdown hooks run when the
        instance is retired. Code at module level runs once, at build time.
        """
        if event not in self._handlers:
            raise ValueError(f"unknown event {event!r}: use 'startup' or 'shutdown'")

        def register(handler: Callable[[], Any]) -> Callable[[], Any]:
            self._handlers[event].append(handler)
            return handler

        return register

    def add_event_handler(
        self, event: str, handler: Callable[[], Any], *, first: bool = False
    ) -> None:
        """Registers ``handler`` for ``event``, as ``on_event`` does;
        ``first=True`` runs it before the hooks registered so far."""
        self.on_event(event)(handler)
        if first:
            handlers = self._handlers[event]
            handlers.insert(0, handlers.pop())

    async def run_event(self, event: str) -> None:
        """Runs the hooks registered for ``event``, in order."""
        for handler in self._handlers[event]:
            result = handler()
            if inspect.isawaitable(result):
                await result

    def exception_handler(self, exc_type: type[BaseException]):
        """Registers ``handler(request, exc)`` for exceptions of ``exc_type``;
        its return value is coerced like a route's."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.exception_handlers[exc_type] = handler
            return handler

        return register

    def invalidate_cache(self, tags: list[str]) -> int:
        """Drops this app's cached responses tagged with any of ``tags``;
        returns how many were dropped (0 when run outside the host)."""
        if self._invalidate is None:
            return 0
        return self._invalidate(list(tags))

    def dispatch(self, index: int, request: Request) -> Response:
        """Runs the sync handler of route ``index``."""
        made, token = collect_tasks()
        response = self._dispatch(self.routes[index], request)
        background = merged_tasks(made, token, response.background)
        if background is not response.background:
            response.background = background
        return response

    def collect_stream(self, index: int, request: Request, response: StreamingResponse) -> Response:
        """A ``def`` route's stream, collected whole: an async generator runs
        to its end on a loop whose sleeps block (see ``_blocking``), and
        ``sent_chunks`` keeps the chunks for the test client. A stream that
        fails answers as a failing handler does."""
        try:
            if hasattr(response.body_iterator, "__aiter__"):
                chunks = _blocking.run(response.whole())
            else:
                chunks = response.whole_now()
        except (Exception, asyncio.CancelledError) as error:
            failed = self._error_response(error, self.routes[index], request)
            failed.background = response.background
            return failed
        response.sent_chunks = chunks
        response.body = b"".join(chunks)
        return response

    async def dispatch_async(self, index: int, request: Request) -> Response:
        """Runs the handler of route ``index``, awaiting it if it is async."""
        made, token = collect_tasks()
        response = await self._dispatch_async(self.routes[index], request)
        background = merged_tasks(made, token, response.background)
        if background is not response.background:
            response.background = background
        return response

    def _dispatch(self, route: Route, request: Request) -> Response:
        if route.scoped:
            return drive(self._dispatch_scoped(route, request, run_async=False))
        try:
            result = route.call(request)
            if type(result) is Response:  # the common case, as it is
                return result
            if _awaitable(result):
                if hasattr(result, "close"):
                    result.close()  # never to be awaited
                raise TypeError(f"{route.path}: async handler called synchronously")
            return to_response(route.shape(result), route.status_code, self.fastapi_compat)
        except Exception as error:  # noqa: BLE001 - every failure becomes a response
            return self._error_response(error, route, request)

    async def _dispatch_async(self, route: Route, request: Request) -> Response:
        if route.scoped:
            return await self._dispatch_scoped(route, request, run_async=True)
        try:
            result = route.call(request)
            if _awaitable(result):
                result = await result
            return to_response(route.shape(result), route.status_code, self.fastapi_compat)
        except Exception as error:  # noqa: BLE001
            return self._error_response(error, route, request)

    async def _dispatch_scoped(self, route: Route, request: Request, run_async: bool) -> Response:
        """Runs a handler with dependencies: solves them, calls it, closes
        generator dependencies, and attaches queued background tasks."""
        scope = RequestScope(self, request, route.path_params)
        failure = None
        try:
            values = await scope.solve(route.arguments)
            for name in route.hidden:
                del values[name]
            result = route.handler(**values)
            if inspect.isawaitable(result):
                if not run_async:
                    raise TypeError(f"{route.path}: async handler called synchronously")
                result = await result
            response = to_response(route.shape(result), route.status_code, self.fastapi_compat)
        except Exception as error:  # noqa: BLE001
            failure = error
            response = self._error_response(error, route, request)
        await scope.close(failure)
        if scope.background is not None and scope.background.tasks:
            if response.background is None or response.background is scope.background:
                response.background = scope.background
            else:  # both the parameter's tasks and the response's own
                tasks = scope.background.tasks + response.background.tasks
                response.background = type(scope.background)(tasks)
        return response

    def _error_response(self, error: Exception, route: Route, request: Request) -> Response:
        for exc_type in type(error).__mro__:
            handler = self.exception_handlers.get(exc_type)
            if handler is not None:
                try:
                    return to_response(handler(request, error))
                except Exception as failure:  # noqa: BLE001
                    error = failure
                    break
        if isinstance(error, HTTPException):
            return error.to_response()
        # The traceback goes to the host's log, never to the client.
        log.error(
            "unhandled error in %s %s\n%s",
            route.methods,
            route.path,
            "".join(traceback.format_exception(error)),
        )
        return Response.json({"detail": "Internal Server Error"}, 500)
