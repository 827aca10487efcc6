"""Routes and routers: a handler, its path and methods, how its parameters
are found, and the policies the host enforces for it."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import params
from .messages import Request, Response

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


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


@dataclass
class Route:
    """One route: its methods, path pattern, handler and how to call it."""

    methods: list[str]
    path: str
    handler: Callable[..., Any]
    is_async: bool
    arguments: list[Callable[[Request], Any]]
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
        self.path_params = frozenset(_PARAM.findall(self.path))
        self.hidden = tuple(p.name for p in self.arguments if p.name.startswith(_HIDDEN))
        # Routes without dependencies or background tasks skip the scope.
        self.scoped = any(p.source in ("depends", "background") for p in self.arguments)

    def call(self, request: Request) -> Any:
        """Calls the handler with its arguments taken from ``request``."""
        if not self.arguments:
            return self.handler()
        return self.handler(**params.resolve_all(self.arguments, request))

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
        ``include_in_schema`` shape its OpenAPI operation, as in FastAPI."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            full_path = self.prefix + path if path != "/" or not self.prefix else self.prefix
            depends = self.dependencies + tuple(dependencies or ())
            self.routes.append(
                Route(
                    methods=[m.upper() for m in (methods or ["GET"])],
                    path=full_path,
                    handler=handler,
                    # Fixed once here, like a compiled flag: the host calls
                    # `handle-async` for these routes, `handle` for the rest.
                    is_async=inspect.iscoroutinefunction(handler),
                    arguments=_resolvers(handler, full_path, depends),
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
                    arguments=_resolvers(route.handler, path, depends),
                    status_code=route.status_code,
                    tags=self.tags + tuple(tags or ()) + route.tags,
                    guards=route.guards,
                    rate_limit=route.rate_limit,
                    dependencies=depends,
                    meta=meta,
                )
            )


#: Names of the arguments that run a route's ``dependencies=[...]``.
_HIDDEN = "__cello_dependency_"


def _resolvers(
    handler: Callable[..., Any], path: str, dependencies: tuple = ()
) -> list[params.Resolver]:
    """For each parameter of ``handler``, a function that finds its value,
    then one per route dependency (whose values the handler never sees)."""
    found = params.resolvers(handler, set(_PARAM.findall(path)))
    for i, depends in enumerate(dependencies):
        name = f"{_HIDDEN}{i}"
        found.append(params.Param(name, "depends", name, Any, False, _never, depends))
    return found


def _never(request: Request) -> Any:
    raise AssertionError("resolved by the request's dependency scope")


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
