"""Reading a handler's signature into a plan: for each parameter, where its
value comes from and what it must be.

A route's plan is made once, when the route is registered, for the handler
and, through every ``Depends``, for each dependency it needs, down the whole
tree; so a mistake in any of their signatures is an error at registration
that names the function. Each parameter is resolved by name and annotation:

- a ``Request`` annotation (or the name ``request``/``req``): the request;
- ``Depends(fn)`` as the default or in ``Annotated``, or an ``@injectable``
  class as the annotation: what ``fn`` (or the class) returns;
- a ``BackgroundTasks`` annotation: the request's background tasks;
- a name that is a ``{param}`` of the path, or ``Path()``: that segment;
- ``Header()`` or ``Cookie()``: that header (``user_agent`` is read from
  ``user-agent``) or cookie;
- ``Body()``, or a dataclass, a ``TypedDict``, a model, or a
  ``dict``/``list`` annotation: the JSON body (beside other body
  parameters, or with ``embed=True``: the body's key of its name);
- anything else: the query parameter of that name (``list[int]`` collects
  repeated keys; ``Optional`` or a default makes it optional).

``validation`` turns a plan and a request into the arguments.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import types
import typing
from collections.abc import Callable
from typing import Any

from .background import BackgroundTasks
from .markers import MISSING, Depends, Header, Marker, Scope, Source
from .messages import Request

_EMPTY = inspect.Parameter.empty

#: Names of the parameters that run a route's ``dependencies=[...]``, whose
#: values the handler never sees.
HIDDEN = "__cello_dependency_"


class SignatureError(TypeError):
    """A handler or dependency whose signature cannot be served."""


@dataclasses.dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a handler or dependency, and where its value is."""

    name: str
    source: Source
    #: The path segment, query key, header, cookie or body key it is read by.
    key: str
    #: Its type, without ``Annotated``.
    annotation: Any
    required: bool
    #: The ``Path()``/``Query()``/... marker, with constraints, if any.
    marker: Marker | None = None
    #: The value when the request has none.
    default: Any = MISSING
    #: A query or header parameter typed as a list: every value of its key.
    many: bool = False
    #: A body parameter that is one key of the body, not the whole body.
    embed: bool = False
    #: For ``Source.DEPENDS``: what fills it, and that dependency's own plan.
    depends: Depends | None = None
    plan: tuple[Param, ...] = ()


def plan(
    handler: Callable[..., Any],
    path_params: frozenset[str],
    dependencies: tuple[Depends, ...] = (),
    route: str = "",
) -> tuple[Param, ...]:
    """The plan of ``handler`` served at a path with ``path_params``, then
    one parameter per route dependency (``dependencies=[...]``), each with
    its whole tree. ``route`` names the route in errors."""
    analysis = _Analysis(path_params, route)
    found = analysis.parameters(handler, [handler], strict=False)
    for i, depends in enumerate(dependencies):
        name = f"{HIDDEN}{i}"
        found.append(analysis.dependency(name, Any, depends, [handler]))
    return tuple(found)


def dependency_plan(fn: Callable[..., Any], path_params: frozenset[str]) -> tuple[Param, ...]:
    """The plan of one dependency, with its tree: for a replacement in
    ``dependency_overrides``, which is read when it is first used."""
    return tuple(_Analysis(path_params, "").parameters(fn, [fn], strict=True))


def describe(fn: Any) -> str:
    """A function's name and where it is defined, for error messages."""
    fn = getattr(fn, "__cello_hints__", fn)  # a controller: its class
    name = getattr(fn, "__name__", None) or repr(fn)
    code = getattr(fn, "__code__", None)
    if code is None and inspect.isclass(fn):
        code = getattr(fn.__init__, "__code__", None)
    if code is None:
        return name
    return f"{name} ({os.path.basename(code.co_filename)}, line {code.co_firstlineno})"


class _Analysis:
    """One route's analysis: its path parameters, and the plans of the
    dependencies met so far (a dependency shared by two parameters is read
    once)."""

    def __init__(self, path_params: frozenset[str], route: str):
        self.path_params = path_params
        self.route = route
        self.plans: dict[Any, tuple[Param, ...]] = {}

    def fail(self, chain: list[Any], problem: str) -> SignatureError:
        where = ", needed by ".join(describe(fn) for fn in reversed(chain))
        route = f"{self.route}: " if self.route else ""
        return SignatureError(f"{route}{where}: {problem}")

    def parameters(self, fn: Callable[..., Any], chain: list[Any], strict: bool) -> list[Param]:
        """``fn``'s parameters; ``chain`` is ``fn`` and what needs it, nearest
        last. In a dependency (``strict``), an annotation that names something
        not defined is an error where it decides the value (not beside a
        ``Depends(fn)``); a handler's is read as no annotation."""
        try:
            parameters = inspect.signature(fn).parameters
        except (TypeError, ValueError) as error:
            raise self.fail(chain, f"its signature cannot be read ({error})") from None
        hints, unresolved = _hints(fn)
        found = []
        for name, parameter in parameters.items():
            default = parameter.default
            if strict and name in unresolved and not _names_its_dependency(default):
                problem = (
                    f"the annotation of parameter {name!r} uses a name not defined when the "
                    f"route is registered ({unresolved[name]}); define it before the route"
                )
                raise self.fail(chain, problem)
            found.append(self.parameter(name, hints.get(name, _EMPTY), default, chain))
        bodies = [p for p in found if p.source is Source.BODY]
        if len(bodies) > 1 or (bodies and getattr(bodies[0].marker, "embed", False)):
            # Several body parameters: each is the body's key of its name.
            found = [
                dataclasses.replace(p, embed=True) if p.source is Source.BODY else p for p in found
            ]
        return found

    def parameter(self, name: str, annotation: Any, default: Any, chain: list[Any]) -> Param:
        depends = default if isinstance(default, Depends) else _annotated(annotation, Depends)
        marker = default if isinstance(default, Marker) else _annotated(annotation, Marker)
        if isinstance(default, Marker):
            default = default.default
        if default is _EMPTY:
            default = MISSING
        if depends is None and marker is None and default is MISSING:
            depends = _injected(unannotated(annotation))
        if depends is not None:
            return self.dependency(name, annotation, depends, chain)
        if annotation is BackgroundTasks:
            return Param(name, Source.BACKGROUND, name, annotation, False)
        if annotation is Request or (annotation is _EMPTY and name in ("request", "req")):
            return Param(name, Source.REQUEST, name, Request, False)
        annotation = unannotated(annotation)
        source = marker.source if marker is not None else Source.QUERY
        if name in self.path_params or source is Source.PATH:
            return Param(name, Source.PATH, name, annotation, True, marker)
        required = default is MISSING and not optional(annotation)
        if source in (Source.HEADER, Source.COOKIE):
            key = _header_or_cookie_key(name, marker)
            many = source is Source.HEADER and _is_list(annotation)
            return Param(name, source, key, annotation, required, marker, default, many)
        key = (marker.alias if marker is not None else None) or name
        if source is Source.BODY or (marker is None and is_body(annotation)):
            return Param(name, Source.BODY, key, annotation, required, marker, default)
        many = _is_list(annotation)
        return Param(name, Source.QUERY, key, annotation, required, marker, default, many)

    def dependency(self, name: str, annotation: Any, depends: Depends, chain: list[Any]) -> Param:
        """A parameter filled by ``depends``, with the plan of its tree."""
        if depends.dependency is None:
            # `db: Database = Depends()` depends on the annotated class.
            target = unannotated(annotation)
            if target is _EMPTY or target is Any:
                problem = f"parameter {name!r} is Depends() without a class in its annotation"
                raise self.fail(chain, problem)
            depends = Depends(target, use_cache=depends.use_cache)
        fn = depends.dependency
        if not callable(fn):
            problem = f"parameter {name!r} depends on {fn!r}, which is not a function or a class"
            raise self.fail(chain, problem)
        if any(fn is seen for seen in chain):
            raise self.fail(chain + [fn], "it depends on itself")
        plan = self.plans.get(fn)
        if plan is None:
            plan = tuple(self.parameters(fn, chain + [fn], strict=True))
            self.plans[fn] = plan
        return Param(name, Source.DEPENDS, name, annotation, False, depends=depends, plan=plan)


def _injected(annotation: Any) -> Depends | None:
    """``Depends`` for a parameter annotated with an ``@injectable`` class."""
    scope = (
        getattr(annotation, "__cello_injectable__", None) if inspect.isclass(annotation) else None
    )
    if scope is None:
        return None
    depends = Depends(annotation, use_cache=scope is not Scope.TRANSIENT)
    depends.singleton = scope is Scope.SINGLETON
    return depends


def _header_or_cookie_key(name: str, marker: Marker) -> str:
    is_header = marker.source is Source.HEADER
    if marker.alias:
        return marker.alias.lower() if is_header else marker.alias
    if isinstance(marker, Header) and marker.convert_underscores:
        return name.replace("_", "-")
    return name


def _names_its_dependency(default: Any) -> bool:
    """Whether ``default`` is ``Depends(fn)``: the annotation beside it is unused."""
    return isinstance(default, Depends) and default.dependency is not None


def _hints(fn: Callable[..., Any]) -> tuple[dict[str, Any], dict[str, NameError]]:
    """``fn``'s resolved parameter annotations, and for each one that names
    something not defined (say, imported only under ``TYPE_CHECKING``), the
    ``NameError``."""
    fn = getattr(fn, "__cello_hints__", fn)
    if inspect.isclass(fn):  # a class dependency: its constructor's
        fn = fn.__init__
    elif not inspect.isroutine(fn) and callable(fn):  # a callable object: its __call__'s
        fn = type(fn).__call__
    try:
        return typing.get_type_hints(fn, include_extras=True), {}
    except NameError:
        pass  # one by one below, to know which
    except Exception:  # noqa: BLE001 - a partial, a callable object: unannotated
        return {}, {}
    namespace = getattr(inspect.unwrap(fn), "__globals__", {})
    hints, unresolved = {}, {}
    for name, annotation in fn.__annotations__.items():
        if name == "return":
            continue
        try:
            hints.update(
                typing.get_type_hints(_Annotation(name, annotation), namespace, include_extras=True)
            )
        except NameError as error:
            unresolved[name] = error
    return hints, unresolved


class _Annotation:
    """One annotation alone, for ``typing.get_type_hints`` to resolve."""

    def __init__(self, name: str, annotation: Any):
        self.__annotations__ = {name: annotation}


def _annotated(annotation: Any, marker: type) -> Any:
    """The first ``marker`` instance in ``Annotated[T, ...]`` metadata."""
    if typing.get_origin(annotation) is typing.Annotated:
        for extra in annotation.__metadata__:
            if isinstance(extra, marker):
                return extra
    return None


def unannotated(annotation: Any) -> Any:
    """``T`` of ``Annotated[T, ...]``; any other annotation as it is."""
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def optional(annotation: Any) -> bool:
    """Whether ``annotation`` admits ``None`` (``T | None``, ``Optional[T]``)."""
    return typing.get_origin(annotation) in (
        typing.Union,
        types.UnionType,
    ) and type(None) in typing.get_args(annotation)


def strip_optional(annotation: Any) -> Any:
    """``T`` of ``T | None``; any other annotation as it is."""
    if optional(annotation):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(strip_optional(annotation)) is list


def is_body(annotation: Any) -> bool:
    """Whether a parameter of this type is read from the JSON body."""
    target = strip_optional(annotation)
    origin = typing.get_origin(target) or target
    args = typing.get_args(target)
    return (
        dataclasses.is_dataclass(target)
        or is_typed_dict(target)
        or is_pydantic(target)
        or origin is dict
        or (origin is list and is_body(args[0] if args else Any))
    )


def is_typed_dict(annotation: Any) -> bool:
    return isinstance(annotation, type) and typing.is_typeddict(annotation)


def is_pydantic(annotation: Any) -> bool:
    """A pydantic model, or a ``cello.BaseModel``: it has ``model_validate``."""
    return isinstance(annotation, type) and hasattr(annotation, "model_validate")
