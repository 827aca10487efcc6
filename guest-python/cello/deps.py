"""Dependency injection the FastAPI way, at request time: solving a
route's plan, its dependencies' values, their cleanup, background tasks
and instance-wide singletons. (The markers, ``Depends``, ``@injectable()``
and ``@singleton``, live in ``markers``; they are re-exported here.)

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
- Every dependency's signature is read when the route is registered
  (``analysis``), so a mistake in one is an error there, naming it.

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
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

from . import analysis
from .analysis import Param
from .background import BackgroundTasks, collect_tasks, merged_tasks
from .markers import Depends, Scope, Source, injectable, singleton
from .messages import HTTPException, Request
from .validation import Invalid, read

__all__ = [
    "BackgroundTasks",
    "Depends",
    "RequestScope",
    "Scope",
    "collect_tasks",
    "drive",
    "injectable",
    "merged_tasks",
    "singleton",
]

log = logging.getLogger("cello")

#: A TestClient's dependency overrides, for the requests it sends.
_client_overrides: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "cello_client_overrides", default=None
)


class RequestScope:
    """One request's dependency state: values computed so far, generator
    dependencies waiting for their cleanup, and queued background tasks.

    ``app`` is the ``App`` whose ``dependency_overrides`` and singletons
    apply (``app`` sits above this module, which reads only those)."""

    def __init__(self, app: Any, request: Request, path_params: frozenset[str]):
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

    async def solve(self, plan: Iterable[Param]) -> dict[str, Any]:
        """Every argument of ``plan``, or one 422 listing every problem."""
        values, errors = {}, []
        for param in plan:
            try:
                if param.source is Source.DEPENDS:
                    values[param.name] = await self.call(param)
                elif param.source is Source.BACKGROUND:
                    values[param.name] = self.tasks()
                else:
                    values[param.name] = read(param, self.request)
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

    async def call(self, param: Param) -> Any:
        """The value of one dependency, computed (or reused) for this request."""
        depends = param.depends
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
        kwargs = await self.solve(param.plan if fn is original else self.replaced(fn))
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

    def replaced(self, fn: Callable[..., Any]) -> tuple[Param, ...]:
        """The plan of a dependency's replacement, read on its first use (an
        override may be set after the routes are registered)."""
        key = (fn, self.path_params)
        plan = self.app._override_plans.get(key)
        if plan is None:
            plan = analysis.dependency_plan(fn, self.path_params)
            self.app._override_plans[key] = plan
        return plan

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
