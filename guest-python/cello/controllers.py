"""Class-based controllers: routes as methods of a class whose constructor
receives injected dependencies.

    @controller("/items", tags=["items"])
    class Items:
        def __init__(self, store: kv.KV = Depends(kv.client)):
            self.store = store

        @get("/{item_id}")
        async def read(self, item_id: int):
            return await self.store.get_json(f"item:{item_id}")

        @staticmethod
        @get("/count")
        def count():
            ...

    app.include_router(Items)

A new instance of the class is made for each request that reaches one of
its instance methods (its constructor's parameters are resolved like a
dependency's, ``@injectable()`` services by their annotation alone); static
and class methods are called without one. Sync and async methods mix freely.

As in Lauren, a constructor parameter the constructor does not store is
stored for it: ``def __init__(self, counter: Counter): ...`` gives the
methods ``self.counter``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from .markers import Depends
from .routing import Router

_SELF = "_cello_controller"


def route(path: str, methods: list[str] | None = None, status_code: int | None = None):
    """Marks a controller method as serving ``path``."""

    def mark(fn: Any) -> Any:
        target = fn.__func__ if isinstance(fn, staticmethod | classmethod) else fn
        target.__cello_route__ = (path, methods or ["GET"], status_code)
        return fn

    return mark


def get(path: str, status_code: int | None = None):
    return route(path, ["GET"], status_code)


def post(path: str, status_code: int | None = None):
    return route(path, ["POST"], status_code)


def put(path: str, status_code: int | None = None):
    return route(path, ["PUT"], status_code)


def patch(path: str, status_code: int | None = None):
    return route(path, ["PATCH"], status_code)


def delete(path: str, status_code: int | None = None):
    return route(path, ["DELETE"], status_code)


def controller(prefix: str = "", tags: list[str] | None = None):
    """Turns a class into a router of its marked methods; mount it with
    ``app.include_router(TheClass)``."""

    def build(cls: type) -> type:
        router = Router(prefix, tags)
        make = _constructor(cls)
        for name, attribute in vars(cls).items():
            fn = (
                attribute.__func__
                if isinstance(attribute, staticmethod | classmethod)
                else attribute
            )
            marked = getattr(fn, "__cello_route__", None)
            if marked is None or not callable(fn):
                continue
            path, methods, status_code = marked
            if isinstance(attribute, staticmethod):
                handler = fn
            elif isinstance(attribute, classmethod):
                handler = _bound(fn, lambda kwargs, fn=fn: fn(cls, **kwargs), None)
            else:
                handler = _bound(
                    fn, lambda kwargs, fn=fn: fn(kwargs.pop(_SELF), **kwargs), Depends(make)
                )
            handler.__name__ = name
            router.route(path, methods, status_code)(handler)
        cls.__cello_router__ = router
        return cls

    return build


def _constructor(cls: type) -> Callable[..., Any]:
    """Makes an instance of ``cls``, storing each constructor argument the
    constructor left unstored as an attribute of its name."""

    def make(**kwargs: Any) -> Any:
        instance = cls(**kwargs)
        for name, value in kwargs.items():
            if not hasattr(instance, name) and not hasattr(instance, "_" + name):
                setattr(instance, name, value)
        return instance

    make.__signature__ = inspect.signature(cls)
    make.__cello_hints__ = cls
    make.__name__ = cls.__name__
    return make


def _bound(fn: Callable[..., Any], call: Callable[[dict], Any], instance: Depends | None):
    """A handler with ``fn``'s parameters after the first (self or cls),
    plus, for an instance method, the instance as a dependency."""
    signature = inspect.signature(fn)
    parameters = list(signature.parameters.values())[1:]
    annotations = {k: v for k, v in getattr(fn, "__annotations__", {}).items() if k != "self"}
    if instance is not None:
        parameters.insert(
            0, inspect.Parameter(_SELF, inspect.Parameter.KEYWORD_ONLY, default=instance)
        )
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def handler(**kwargs: Any) -> Any:
            return await call(kwargs)
    else:

        @functools.wraps(fn)
        def handler(**kwargs: Any) -> Any:
            return call(kwargs)

    handler.__signature__ = signature.replace(parameters=sorted(parameters, key=lambda p: p.kind))
    handler.__annotations__ = annotations
    del handler.__wrapped__
    return handler
