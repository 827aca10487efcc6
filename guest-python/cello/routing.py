"""Routes and routers: a handler, its path and methods, its plan (how its
parameters are found), and the policies the host enforces for it; and the
path matcher that picks a route for a request as the host does.

A route's plan, its dependencies' included, is made when it is registered
(``analysis``), so a handler or dependency that cannot be served is an
error at its decorator, not at its first request.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import analysis, validation
from .analysis import Param
from .markers import Source
from .messages import Request, Response

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class PathPattern:
    """A route's path: literal text and ``{name}`` segments, each matching
    one segment of a request's path."""

    def __init__(self, path: str):
        self.path = path
        self.params = frozenset(_PARAM.findall(path))
        pieces, last = [], 0
        for param in _PARAM.finditer(path):
            pieces.append(re.escape(path[last : param.start()]))
            pieces.append(f"(?P<{param.group(1)}>[^/]+)")
            last = param.end()
        pieces.append(re.escape(path[last:]))
        self._regex = re.compile("^" + "".join(pieces) + "$")

    def match(self, path: str) -> dict[str, str] | None:
        """The ``{name}`` values if ``path`` matches, else ``None``."""
        found = self._regex.match(path)
        return None if found is None else found.groupdict()


@dataclass(frozen=True)
class Found:
    """The route a request goes to, and its ``{name}`` values."""

    index: int
    params: dict[str, str]


def find(routes: Sequence[Route], method: str, path: str) -> Found | Response:
    """The route for ``method`` and ``path``, picked as the host picks it:
    static segments win over ``{params}``, and HEAD is answered by a GET
    route. Else the host's answer: 404, or 405 with ``Allow``."""
    matches = []
    for index, route in enumerate(routes):
        params = route.pattern.match(path)
        if params is not None:
            matches.append((len(params), index, params))
    if not matches:
        return Response.json({"detail": "Not Found"}, 404)
    # Fewer parameters first: a static segment beats a {param}.
    fewest = min(count for count, _, _ in matches)
    candidates = [(index, params) for count, index, params in matches if count == fewest]
    for wanted in [method] + (["GET"] if method == "HEAD" else []):
        for index, params in candidates:
            if wanted in routes[index].methods:
                return Found(index, params)
    allow = sorted({m for index, _ in candidates for m in routes[index].methods})
    return Response.json({"detail": "Method Not Allowed"}, 405, {"allow": ", ".join(allow)})


@dataclass(frozen=True)
class CachePolicy:
    """How long the host may keep a route's responses, under which tags."""

    ttl: int
    tags: tuple[str, ...] = ()
    vary: tuple[str, ...] = ()


def cache(ttl: int, tags: list[str] | tuple[str, ...] = (), vary: list[str] | tuple[str, ...] = ()):
    """Lets the host cache a GET route's responses for ``ttl`` seconds.

    The host stores 2xx responses (without Set-Cookie), keyed by path, query,
    the ``vary`` request headers and the caller's credentials, and answers
    repeats without calling the handler. ``app.invalidate_cache(tags)`` drops
    them early. Put it above or below the route decorator.
    """
    if ttl <= 0:
        raise ValueError("cache ttl must be a positive number of seconds")
    policy = CachePolicy(int(ttl), tuple(tags), tuple(h.lower() for h in vary))

    def mark(handler: Callable[..., Any]) -> Callable[..., Any]:
        handler.__cello_cache__ = policy
        return handler

    return mark


#: The sources a request's dependency scope fills (``deps.RequestScope``).
_SCOPED = (Source.DEPENDS, Source.BACKGROUND)


@dataclass
class Route:
    """One route: its methods, path pattern, handler and how to call it."""

    methods: list[str]
    path: str
    handler: Callable[..., Any]
    is_async: bool
    #: The handler's plan, then one parameter per route dependency.
    arguments: tuple[Param, ...]
    status_code: int | None = None
    tags: tuple[str, ...] = ()
    guards: tuple = ()
    rate_limit: Any = None
    #: ``dependencies=[Depends(...)]``: run before the handler, values unused.
    dependencies: tuple = ()
    #: What the OpenAPI document says beyond the handler's signature:
    #: ``responses``, ``summary``, ``description``, ``operation_id``, ...
    meta: dict = field(default_factory=dict)

    def roles(self) -> list[str]:
        """Roles the host must find in the caller's token."""
        return [r for g in self.guards for r in getattr(g, "roles", ())]

    def scopes(self) -> list[str]:
        """Scopes the host must find in the caller's token."""
        return [s for g in self.guards for s in getattr(g, "scopes", ())]

    def __post_init__(self) -> None:
        self.pattern = PathPattern(self.path)
        self.path_params = self.pattern.params
        self.hidden = tuple(p.name for p in self.arguments if p.name.startswith(analysis.HIDDEN))
        # Routes without dependencies or background tasks skip the scope.
        self.scoped = any(p.source in _SCOPED for p in self.arguments)
        self.response_model = self.meta.get("response_model") or _returned_model(self.handler)

    def shape(self, result: Any) -> Any:
        """``result`` as the route's response model, as FastAPI serialises
        it: validated, fields the model does not declare dropped. A result
        that does not fit is the handler's error, not the client's."""
        model = self.response_model
        if model is None or isinstance(result, Response | tuple):  # tuples: (body, status)
            return result
        if (
            isinstance(model, type)
            and hasattr(result, "model_dump")
            and not isinstance(result, model)
        ):
            result = result.model_dump()  # another model: by its fields
        try:
            return validation.validate(result, model, ["response"])
        except validation.Invalid as invalid:
            raise ResponseValidationError(self.path, invalid.errors) from None

    def call(self, request: Request) -> Any:
        """Calls the handler with its arguments taken from ``request``."""
        if not self.arguments:
            return self.handler()
        return self.handler(**validation.arguments(self.arguments, request))

    @property
    def cache(self) -> CachePolicy | None:
        """The route's cache policy, from ``@cache`` in either order."""
        return getattr(self.handler, "__cello_cache__", None)


class Router:
    """A group of routes under a path prefix, mounted on an App (or another
    Router) with ``include_router``: FastAPI's APIRouter, Flask's Blueprint.
    ``dependencies`` run before every route's handler; ``responses`` and
    ``tags`` go into every route's OpenAPI operation."""

    def __init__(
        self,
        prefix: str = "",
        tags: list[str] | None = None,
        dependencies: list | None = None,
        responses: dict | None = None,
        **_ignored: Any,
    ):
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ValueError(f"router prefix {prefix!r} must start with '/' and not end with '/'")
        self.prefix = prefix
        self.tags = tuple(tags or ())
        self.dependencies = tuple(dependencies or ())
        self.responses = dict(responses or {})
        self.routes: list[Route] = []

    def route(
        self,
        path: str,
        methods: list[str] | None = None,
        status_code: int | None = None,
        guards: list | None = None,
        rate_limit: Any = None,
        tags: list[str] | None = None,
        dependencies: list | None = None,
        responses: dict | None = None,
        **meta: Any,
    ):
        """Registers a handler for ``path``; ``{name}`` segments are path
        params. ``guards`` (``RoleGuard``, ``ScopeGuard``) and ``rate_limit``
        (a ``RateLimitConfig``) are enforced by the host before it runs.
        ``dependencies`` run first; ``responses``, ``summary``,
        ``description``, ``operation_id``, ``deprecated`` and
        ``include_in_schema`` shape its OpenAPI operation, as in FastAPI.
        ``response_model`` (else a model as the return annotation)
        validates the result and drops the fields it does not declare."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            full_path = self.prefix + path if path != "/" or not self.prefix else self.prefix
            depends = self.dependencies + tuple(dependencies or ())
            verbs = [m.upper() for m in (methods or ["GET"])]
            self.routes.append(
                Route(
                    methods=verbs,
                    path=full_path,
                    handler=handler,
                    # Fixed once here, like a compiled flag: the host calls
                    # `handle-async` for these routes, `handle` for the rest.
                    is_async=inspect.iscoroutinefunction(handler),
                    arguments=_plan(handler, verbs, full_path, depends),
                    status_code=status_code,
                    tags=self.tags + tuple(tags or ()),
                    guards=tuple(guards or ()),
                    rate_limit=rate_limit,
                    dependencies=depends,
                    meta={**meta, "responses": {**self.responses, **(responses or {})}},
                )
            )
            return handler

        return register

    def get(self, path: str, status_code: int | None = None, **options: Any):
        return self.route(path, ["GET"], status_code, **options)

    def post(self, path: str, status_code: int | None = None, **options: Any):
        return self.route(path, ["POST"], status_code, **options)

    def put(self, path: str, status_code: int | None = None, **options: Any):
        return self.route(path, ["PUT"], status_code, **options)

    def patch(self, path: str, status_code: int | None = None, **options: Any):
        return self.route(path, ["PATCH"], status_code, **options)

    def delete(self, path: str, status_code: int | None = None, **options: Any):
        return self.route(path, ["DELETE"], status_code, **options)

    def options(self, path: str, status_code: int | None = None, **options: Any):
        return self.route(path, ["OPTIONS"], status_code, **options)

    def head(self, path: str, status_code: int | None = None, **options: Any):
        return self.route(path, ["HEAD"], status_code, **options)

    def api_route(self, path: str, methods: list[str] | None = None, **options: Any):
        return self.route(path, methods, **options)

    def include_router(
        self,
        router: Router | type,
        prefix: str = "",
        tags: list[str] | None = None,
        dependencies: list | None = None,
        responses: dict | None = None,
        **_ignored: Any,
    ) -> None:
        """Mounts ``router``'s routes under this one's prefix (and ``prefix``),
        with ``tags``, ``dependencies`` and ``responses`` added to each; a
        ``@controller`` class mounts the same way."""
        router = getattr(router, "__cello_router__", router)
        for route in router.routes:
            path = self.prefix + prefix + route.path
            if path.endswith("/") and len(path) > 1 and route.path == "/":
                path = path[:-1]
            depends = self.dependencies + tuple(dependencies or ()) + route.dependencies
            meta = dict(route.meta)
            meta["responses"] = {**self.responses, **(responses or {}), **meta.get("responses", {})}
            self.routes.append(
                Route(
                    methods=route.methods,
                    path=path,
                    handler=route.handler,
                    is_async=route.is_async,
                    arguments=_plan(route.handler, route.methods, path, depends),
                    status_code=route.status_code,
                    tags=self.tags + tuple(tags or ()) + route.tags,
                    guards=route.guards,
                    rate_limit=route.rate_limit,
                    dependencies=depends,
                    meta=meta,
                )
            )


class ResponseValidationError(Exception):
    """A handler's result that does not fit its route's response model."""

    def __init__(self, path: str, errors: list[dict[str, Any]]):
        super().__init__(f"{path}: the response does not fit its response_model: {errors}")
        self.errors = errors


def _returned_model(handler: Callable[..., Any]) -> Any:
    """The model ``handler``'s return annotation names, the response model
    FastAPI takes from it; other return annotations are left alone."""
    try:
        returned = typing.get_type_hints(handler).get("return")
    except Exception:  # noqa: BLE001 - unresolvable: no model
        return None
    if typing.get_origin(returned) is list:
        (item,) = typing.get_args(returned) or (None,)
        return returned if analysis.is_pydantic(item) else None
    return returned if analysis.is_pydantic(returned) else None


def _plan(
    handler: Callable[..., Any], methods: list[str], path: str, dependencies: tuple
) -> tuple[Param, ...]:
    """The plan of ``handler`` served at ``path``, then one parameter per
    route dependency (whose values the handler never sees)."""
    route = f"{' '.join(methods)} {path}"
    return analysis.plan(handler, frozenset(_PARAM.findall(path)), dependencies, route)


def slash_redirect(request: Request) -> Response:
    """307 to the request's path with its trailing slash toggled."""
    path = request.path
    if path.endswith("/"):
        location = "../" + path.rstrip("/").rsplit("/", 1)[-1]
    else:
        location = path.rsplit("/", 1)[-1] + "/"
    if request.query_string:
        location += "?" + request.query_string
    return Response(b"", 307, {"location": location})
