"""How a handler's parameters are filled, and validated, from a request.

Each parameter is resolved by name and annotation, once, when the route is
declared:

- a ``Request`` annotation (or the name ``request``/``req``): the request;
- a name that is a ``{param}`` of the path: that segment, converted;
- a default of ``Header()`` or ``Cookie()``: that header (``user_agent`` is
  read from ``user-agent``) or cookie, converted;
- a dataclass, a ``TypedDict``, a pydantic model, or a ``dict``/``list``
  annotation: the JSON body, validated;
- anything else: the query parameter of that name (``list[int]`` collects
  repeated keys; ``Optional`` or a default makes it optional).

Every problem is collected into one 422 in FastAPI's shape:
``{"detail": [{"type", "loc", "msg", "input"}]}``.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
import uuid
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

from .markers import MISSING as _MISSING
from .markers import Body, Cookie, Header, Marker, Path, Query
from .messages import HTTPException, Request, parse_json

__all__ = ["Body", "Cookie", "Header", "Path", "Query"]

_EMPTY = inspect.Parameter.empty


class Invalid(Exception):
    """Validation problems, each in FastAPI's shape."""

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__(errors)
        self.errors = errors


@dataclasses.dataclass(frozen=True)
class Param:
    """One handler parameter: where its value comes from, and how to get it."""

    name: str
    #: "request", "path", "query", "header", "cookie" or "body".
    source: str
    #: The path segment, query key, header or cookie name it is read by.
    key: str
    annotation: Any
    required: bool
    read: Callable[[Request], tuple[str, Any]]
    #: For a "depends" parameter, what fills it.
    dependency: Any = None
    #: The ``Path()``/``Query()``/... marker, with constraints, if any.
    marker: Marker | None = None
    #: The value when the request has none.
    default: Any = _MISSING

    def __call__(self, request: Request) -> tuple[str, Any]:
        return self.read(request)


Resolver = Param


def resolvers(handler: Callable[..., Any], path_params: set[str]) -> list[Param]:
    """For each parameter of ``handler``, a function that finds its value."""
    from .deps import BackgroundTasks, Depends, injected

    hints = _hints(handler)
    found = []
    for name, parameter in inspect.signature(handler).parameters.items():
        annotation = hints.get(name, _EMPTY)
        default = parameter.default
        depends = default if isinstance(default, Depends) else _annotated(annotation, Depends)
        marker = default if isinstance(default, Marker) else _annotated(annotation, Marker)
        if isinstance(default, Marker):
            default = default.default
        if default is _MISSING:
            default = _EMPTY
        if depends is None and marker is None and default is _EMPTY:
            depends = injected(_unannotated(annotation))
        if depends is not None:
            if depends.dependency is None:
                # `db: Database = Depends()` depends on the annotated class.
                depends = Depends(_unannotated(annotation), use_cache=depends.use_cache)
            found.append(Param(name, "depends", name, annotation, False, _unread, depends))
        elif annotation is BackgroundTasks:
            found.append(Param(name, "background", name, annotation, False, _unread))
        elif annotation is Request or (annotation is _EMPTY and name in ("request", "req")):
            read = lambda request, name=name: (name, request)  # noqa: E731
            found.append(Param(name, "request", name, Request, False, read))
        elif name in path_params or isinstance(marker, Path):
            found.append(_path(name, annotation, marker))
        elif isinstance(marker, Header | Cookie):
            found.append(_header_or_cookie(name, annotation, marker, default))
        elif isinstance(marker, Body) or (marker is None and _is_body(annotation)):
            found.append(_body(name, annotation, default, marker))
        else:
            found.append(_query(name, annotation, default, marker))
    bodies = [p for p in found if p.source == "body"]
    if len(bodies) > 1 or (bodies and getattr(bodies[0].marker, "embed", False)):
        # Several body parameters: each is the body's key of its name.
        found = [
            _body(p.name, p.annotation, p.default, p.marker, embed=True)
            if p.source == "body"
            else p
            for p in found
        ]
    return found


def _unread(request: Request) -> tuple[str, Any]:
    raise AssertionError("resolved by the request's dependency scope")


def _annotated(annotation: Any, marker: type) -> Any:
    """The first ``marker`` instance in ``Annotated[T, ...]`` metadata."""
    if typing.get_origin(annotation) is typing.Annotated:
        for extra in annotation.__metadata__:
            if isinstance(extra, marker):
                return extra
    return None


def _unannotated(annotation: Any) -> Any:
    if typing.get_origin(annotation) is typing.Annotated:
        return _args(annotation)[0]
    return annotation


def resolve_all(resolvers: list[Param], request: Request) -> dict[str, Any]:
    """Every argument, or one 422 listing every problem."""
    arguments, errors = {}, []
    for resolve in resolvers:
        try:
            name, value = resolve(request)
            arguments[name] = value
        except Invalid as invalid:
            errors.extend(invalid.errors)
    if errors:
        raise HTTPException(422, errors)
    return arguments


def _hints(handler: Callable[..., Any]) -> dict[str, Any]:
    handler = getattr(handler, "__cello_hints__", handler)
    if inspect.isclass(handler):  # a class dependency: its constructor's
        handler = handler.__init__
    try:
        return typing.get_type_hints(handler, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable hints fall back to strings
        return {}


def _checked(value: Any, marker: Marker | None, loc: list[Any]) -> Any:
    if marker is not None and marker.constrained:
        errors = marker.check(value, loc)
        if errors:
            raise Invalid(errors)
    return value


def _path(name: str, annotation: Any, marker: Marker | None) -> Param:
    annotation = _unannotated(annotation)

    def resolve(request: Request) -> tuple[str, Any]:
        loc = ["path", name]
        return name, _checked(
            validate(request.params[name], annotation, loc, text=True), marker, loc
        )

    return Param(name, "path", name, annotation, True, resolve, marker=marker)


def _header_or_cookie(name: str, annotation: Any, marker: Header | Cookie, default: Any) -> Param:
    is_header = isinstance(marker, Header)
    if marker.alias:
        key = marker.alias.lower() if is_header else marker.alias
    elif is_header and marker.convert_underscores:
        key = name.replace("_", "-")
    else:
        key = name
    where = "header" if is_header else "cookie"
    annotation = _unannotated(annotation)
    many = is_header and typing.get_origin(_strip_optional(annotation)) is list

    def resolve(request: Request) -> tuple[str, Any]:
        if is_header:
            raw = request.headers.get_all(key) or None if many else request.headers.get(key)
        else:
            jar = SimpleCookie(request.headers.get("cookie", ""))
            raw = jar[key].value if key in jar else None
        if raw is None:
            if default is not _EMPTY:
                return name, default
            if _optional(annotation):
                return name, None
            raise Invalid([_error("missing", [where, key], "Field required", None)])
        loc = [where, key]
        return name, _checked(validate(raw, annotation, loc, text=True), marker, loc)

    required = default is _EMPTY and not _optional(annotation)
    return Param(name, where, key, annotation, required, resolve, marker=marker, default=default)


def _query(name: str, annotation: Any, default: Any, marker: Marker | None = None) -> Param:
    annotation = _unannotated(annotation)
    many = typing.get_origin(_strip_optional(annotation)) is list
    key = (marker.alias if marker is not None else None) or name

    def resolve(request: Request) -> tuple[str, Any]:
        loc = ["query", key]
        if many:
            values = [v for k, v in request.query_pairs() if k == key]
            if values:
                return name, _checked(validate(values, annotation, loc, text=True), marker, loc)
        elif key in request.query:
            value = validate(request.query[key], annotation, loc, text=True)
            return name, _checked(value, marker, loc)
        if default is not _EMPTY:
            return name, default
        if _optional(annotation):
            return name, None
        raise Invalid([_error("missing", loc, "Field required", None)])

    required = default is _EMPTY and not _optional(annotation)
    return Param(name, "query", key, annotation, required, resolve, marker=marker, default=default)


def _body(
    name: str, annotation: Any, default: Any, marker: Marker | None = None, embed: bool = False
) -> Param:
    annotation = _unannotated(annotation)
    key = (marker.alias if marker is not None else None) or name

    def resolve(request: Request) -> tuple[str, Any]:
        data = _MISSING
        if request.body:
            try:
                data = parse_json(request.body)
            except ValueError as e:
                raise Invalid(
                    [_error("json_invalid", ["body", e.pos], f"JSON decode error: {e.msg}", {})]
                ) from None
            if embed:
                data = data.get(key, _MISSING) if isinstance(data, dict) else _MISSING
        if data is _MISSING:
            if default is not _EMPTY:
                return name, default
            if _optional(annotation):
                return name, None
            loc = ["body", key] if embed else ["body"]
            raise Invalid([_error("missing", loc, "Field required", None)])
        loc = ["body", key] if embed else ["body"]
        return name, _checked(validate(data, annotation, loc), marker, loc)

    required = default is _EMPTY and not _optional(annotation)
    return Param(name, "body", key, annotation, required, resolve, marker=marker, default=default)


def _is_body(annotation: Any) -> bool:
    target = _strip_optional(annotation)
    origin = typing.get_origin(target) or target
    return (
        dataclasses.is_dataclass(target)
        or _is_typed_dict(target)
        or _is_pydantic(target)
        or origin is dict
        or (origin is list and _is_body(_args(target)[0] if _args(target) else Any))
    )


def _is_typed_dict(annotation: Any) -> bool:
    return isinstance(annotation, type) and typing.is_typeddict(annotation)


def _is_pydantic(annotation: Any) -> bool:
    return isinstance(annotation, type) and hasattr(annotation, "model_validate")


def _args(annotation: Any) -> tuple[Any, ...]:
    return typing.get_args(annotation)


def _optional(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in _args(
        annotation
    )


def _strip_optional(annotation: Any) -> Any:
    if _optional(annotation):
        rest = [a for a in _args(annotation) if a is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


def _error(kind: str, loc: list[Any], msg: str, value: Any) -> dict[str, Any]:
    return {"type": kind, "loc": loc, "msg": msg, "input": value}


def validate(value: Any, annotation: Any, loc: list[Any], text: bool = False) -> Any:
    """``value`` as ``annotation``, or ``Invalid`` naming every problem.
    ``text`` values come from a path, query or header and may be parsed."""
    if annotation in (_EMPTY, Any, object):
        return value
    if _optional(annotation):
        if value is None:
            return None
        annotation = _strip_optional(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = _args(annotation)[0]
    origin = typing.get_origin(annotation)
    if origin is list:
        if not isinstance(value, list):
            raise Invalid([_error("list_type", loc, "Input should be a valid list", value)])
        (item_type,) = _args(annotation) or (Any,)
        return _each(enumerate(value), item_type, loc, text, list)
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise Invalid([_error("dict_type", loc, "Input should be a valid dictionary", value)])
        item_type = _args(annotation)[1] if _args(annotation) else Any
        return _each(value.items(), item_type, loc, text, dict)
    if dataclasses.is_dataclass(annotation):
        fields = {f.name: f for f in dataclasses.fields(annotation)}
        hints = typing.get_type_hints(annotation)
        required = {
            name
            for name, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        return annotation(**_object(value, hints, required, loc))
    if _is_typed_dict(annotation):
        hints = typing.get_type_hints(annotation)
        return _object(value, hints, set(annotation.__required_keys__), loc)
    if _is_pydantic(annotation):
        try:
            return annotation.model_validate(value)
        except Exception as e:  # noqa: BLE001 - pydantic's ValidationError
            errors = getattr(e, "errors", lambda: [])()
            raise Invalid(
                [_error(x["type"], loc + list(x["loc"]), x["msg"], x.get("input")) for x in errors]
            ) from None
    return _scalar(value, annotation, loc, text)


def _each(items, item_type: Any, loc: list[Any], text: bool, kind: type) -> Any:
    out, errors = [], []
    for key, item in items:
        try:
            out.append((key, validate(item, item_type, loc + [key], text)))
        except Invalid as invalid:
            errors.extend(invalid.errors)
    if errors:
        raise Invalid(errors)
    return [v for _, v in out] if kind is list else dict(out)


def _object(value: Any, hints: dict[str, Any], required: set[str], loc: list[Any]) -> dict:
    if not isinstance(value, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        raise Invalid([_error("model_attributes_type", loc, msg, value)])
    fields, errors = {}, []
    for name, annotation in hints.items():
        if name not in value:
            if name in required and not _optional(annotation):
                errors.append(_error("missing", loc + [name], "Field required", value))
            elif name in required:
                fields[name] = None
            continue
        try:
            fields[name] = validate(value[name], annotation, loc + [name])
        except Invalid as invalid:
            errors.extend(invalid.errors)
    if errors:
        raise Invalid(errors)
    return fields


_SCALARS: dict[type, tuple[str, str]] = {
    int: ("int", "a valid integer"),
    float: ("float", "a valid number"),
    str: ("string", "a valid string"),
    bool: ("bool", "a valid boolean"),
    uuid.UUID: ("uuid", "a valid UUID"),
}


def _scalar(value: Any, annotation: Any, loc: list[Any], text: bool) -> Any:
    name, what = _SCALARS.get(annotation, (getattr(annotation, "__name__", "value"), "valid"))
    if text and isinstance(value, str):
        try:
            return _parse(value, annotation)
        except (TypeError, ValueError):
            raise Invalid(
                [_error(f"{name}_parsing", loc, f"Input should be {what}", value)]
            ) from None
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation is uuid.UUID and isinstance(value, str):
        return _scalar(value, annotation, loc, text=True)
    if isinstance(value, annotation) and not (annotation is int and isinstance(value, bool)):
        return value
    raise Invalid([_error(f"{name}_type", loc, f"Input should be {what}", value)])


def _parse(value: str, annotation: Any) -> Any:
    if annotation is bool:
        lowered = value.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(value)
    return annotation(value)
