"""Dependency injection the FastAPI way: ``Depends``, background tasks,
and instance-wide singletons.

A handler parameter whose default is ``Depends(fn)`` (or whose annotation
is ``Annotated[T, Depends(fn)]``) receives what ``fn`` returns. ``fn``'s own
parameters are resolved like a handler's, so dependencies can take path and
query parameters, headers, the request, and other dependencies:

    def get_db():
        db = connect()
        try:
            yield db          # the value handlers receive
        finally:
            db.close()        # runs after the response is made

    def get_user(token: str = Header(), db=Depends(get_db)): ...

    @app.get("/me")
    def me(user=Depends(get_user)): ...

- ``async def`` dependencies and async generators work in ``async def``
  routes, and in ``def`` routes as long as they never wait on the host.
- One request computes each dependency once (``use_cache=False`` opts out).
- ``@singleton`` makes a dependency's value live as long as the instance.
- ``app.dependency_overrides[get_db] = fake_db`` swaps one in tests.

Services in Lauren's style are classes marked ``@injectable()``; a
parameter annotated with one (a controller's constructor's, a handler's, a
dependency's) receives an instance, by its ``Scope``:

    @injectable()                      # Scope.SINGLETON by default
    class Counter: ...

    @injectable(scope=Scope.REQUEST)   # one per request, shared within it
    class UnitOfWork: ...

A singleton is one per component *instance*: the host runs several
instances side by side and each makes its own. State that must be shared
by every instance belongs in the host's KV store (``cello.kv``).
"""

from __future__ import annotations

import contextvars
import enum
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .messages import HTTPException
from .params import Invalid, resolvers

if TYPE_CHECKING:
    from .app import App
    from .messages import Request

log = logging.getLogger("cello")


class Depends:
    """Marks a parameter as filled by calling ``dependency``."""

    #: Set for ``@injectable()`` singletons: one value per instance.
    singleton = False

    def __init__(self, dependency: Callable[..., Any] | None = None, *, use_cache: bool = True):
        self.dependency = dependency
        self.use_cache = use_cache

    def __repr__(self) -> str:
        return f"Depends({getattr(self.dependency, '__name__', self.dependency)!r})"


def singleton(dependency: Callable[..., Any]) -> Callable[..., Any]:
    """Makes ``dependency`` run once per instance; every later request gets
    the same value. Use it for clients and other costly, shareable objects."""
    dependency.__cello_singleton__ = True
    return dependency


class Scope(enum.Enum):
    """How long an ``@injectable()`` service's instance lives."""

    #: One per component instance, made on first use.
    SINGLETON = "singleton"
    #: One per request, shared by everything that request injects.
    REQUEST = "request"
    #: A new one wherever it is injected.
    TRANSIENT = "transient"


def injectable(scope: Scope = Scope.SINGLETON):
    """Marks a class as a service injected by its type annotation."""

    def mark(cls: type) -> type:
        cls.__cello_injectable__ = scope
        return cls

    return mark


def injected(annotation: Any) -> Depends | None:
    """``Depends`` for a parameter annotated with an ``@injectable`` class."""
    scope = (
        getattr(annotation, "__cello_injectable__", None) if inspect.isclass(annotation) else None
    )
    if scope is None:
        return None
    depends = Depends(annotation, use_cache=scope is not Scope.TRANSIENT)
    depends.singleton = scope is Scope.SINGLETON
    return depends


#: A TestClient's dependency overrides, for the requests it sends.
_client_overrides: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "cello_client_overrides", default=None
)

#: The background tasks made during the current request, wherever made.
_request_tasks: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "cello_request_tasks", default=None
)


def collect_tasks() -> tuple[list, contextvars.Token]:
    """Starts collecting every ``BackgroundTasks()`` the request makes."""
    made: list = []
    return made, _request_tasks.set(made)


def merged_tasks(made: list, token: contextvars.Token, current: Any) -> Any:
    """Stops collecting; the response's tasks, with every collected one."""
    _request_tasks.reset(token)
    extra = [t for t in made if t is not current and t.tasks]
    if not extra:
        return current
    merged = BackgroundTasks.__new__(BackgroundTasks)
    merged.tasks = [
        task for group in ([current] if current else []) + extra for task in group.tasks
    ]
    return merged


class BackgroundTasks:
    """Work to do after the response has been sent: declare a parameter of
    this type, or make one in the handler (``tasks = BackgroundTasks()``),
    and ``add_task(fn, *args, **kwargs)``; ``fn`` may be async. A failing
    task is logged and never changes the response."""

    def __init__(self, tasks: list | None = None) -> None:
        self.tasks: list[tuple[Callable[..., Any], tuple, dict]] = list(tasks or [])
        made = _request_tasks.get()
        if made is not None:
            made.append(self)

    def add_task(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.tasks.append((fn, args, kwargs))

    async def run(self) -> None:
        """Runs every task in order; one that fails does not stop the rest."""
        for fn, args, kwargs in self.tasks:
            try:
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - a task's failure is only logged
                log.exception("background task %s failed", getattr(fn, "__name__", fn))


class RequestScope:
    """One request's dependency state: values computed so far, generator
    dependencies waiting for their cleanup, and queued background tasks."""

    def __init__(self, app: App, request: Request, path_params: frozenset[str]):
        self.app = app
        self.request = request
        self.path_params = path_params
        self.values: dict[Callable[..., Any], Any] = {}
        self.exits: list[Any] = []
        self.background: BackgroundTasks | None = None
        #: Per-client replacements (a TestClient's), over the app's own.
        self.overrides: dict | None = _client_overrides.get()

    def tasks(self) -> BackgroundTasks:
        if self.background is None:
            self.background = BackgroundTasks()
        return self.background

    async def solve(self, arguments: list) -> dict[str, Any]:
        """Every argument in ``arguments``, or one 422 listing every problem."""
        values, errors = {}, []
        for param in arguments:
            try:
                if param.source == "depends":
                    values[param.name] = await self.call(param.dependency)
                elif param.source == "background":
                    values[param.name] = self.tasks()
                else:
                    name, value = param(self.request)
                    values[name] = value
            except Invalid as invalid:
                errors.extend(invalid.errors)
            except HTTPException as error:
                if error.status_code == 422 and isinstance(error.detail, list):
                    errors.extend(error.detail)
                else:
                    raise
        if errors:
            raise HTTPException(422, errors)
        return values

    async def call(self, depends: Depends) -> Any:
        """The value of one dependency, computed (or reused) for this request."""
        original = depends.dependency
        fn = self.app.dependency_overrides.get(original, original)
        overrides = self.overrides
        if overrides:
            fn = overrides.get(original, fn)
        singleton = depends.singleton or getattr(fn, "__cello_singleton__", False)
        if singleton and fn in self.app._singletons:
            return self.app._singletons[fn]
        if depends.use_cache and fn in self.values:
            return self.values[fn]
        key = (fn, self.path_params)
        arguments = self.app._dependency_params.get(key)
        if arguments is None:
            arguments = resolvers(fn, set(self.path_params))
            self.app._dependency_params[key] = arguments
        kwargs = await self.solve(arguments)
        if inspect.isgeneratorfunction(fn):
            generator = fn(**kwargs)
            value = next(generator)
            self.exits.append(generator)
        elif inspect.isasyncgenfunction(fn):
            generator = fn(**kwargs)
            value = await generator.__anext__()
            self.exits.append(generator)
        else:
            value = fn(**kwargs)
            if inspect.isawaitable(value):
                value = await value
        if singleton:
            self.app._singletons[fn] = value
        # Like FastAPI: the first value computed is the one later uses share.
        self.values.setdefault(fn, value)
        return value

    async def close(self, error: BaseException | None) -> None:
        """Finishes generator dependencies, last first. ``error``, if the
        handler raised, is thrown into each so ``except`` blocks see it."""
        while self.exits:
            generator = self.exits.pop()
            try:
                if inspect.isasyncgen(generator):
                    if error is None:
                        await generator.__anext__()
                    else:
                        await generator.athrow(error)
                elif error is None:
                    next(generator)
                else:
                    generator.throw(error)
            except (StopIteration, StopAsyncIteration):
                continue
            except BaseException as raised:  # noqa: BLE001
                if raised is not error:
                    log.exception("cleanup of a dependency failed")
                continue
            log.error("a dependency generator yielded more than once; only one yield is allowed")


def drive(coroutine: Any) -> Any:
    """Runs ``coroutine`` to completion without an event loop, for ``def``
    routes; it must not wait on anything (async KV calls never do)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError(
        "an async dependency waited on the host (an outbound HTTP call, a sleep) "
        "inside a `def` route; declare the route `async def`"
    )
