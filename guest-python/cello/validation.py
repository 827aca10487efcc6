"""Turning a request into a handler's arguments, by the handler's plan
(``analysis``): each parameter read from where it is, converted to its
type and checked against its marker's constraints.

Every problem is collected into one 422 in FastAPI's shape:
``{"detail": [{"type", "loc", "msg", "input"}]}``, constraint errors in
pydantic's (``string_too_long``, ``greater_than_equal``, ..., with ``ctx``).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
import uuid
from collections.abc import Callable, Iterable
from http.cookies import SimpleCookie
from typing import Any

from .analysis import Param, is_pydantic, is_typed_dict, optional, strip_optional
from .markers import MISSING, Marker, Source
from .messages import HTTPException, Request, parse_json

_EMPTY = inspect.Parameter.empty


class Invalid(Exception):
    """Validation problems, each in FastAPI's shape."""

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__(errors)
        self.errors = errors


def arguments(plan: Iterable[Param], request: Request) -> dict[str, Any]:
    """Every argument of a plan without dependencies, or one 422 listing
    every problem."""
    values, errors = {}, []
    for param in plan:
        try:
            values[param.name] = read(param, request)
        except Invalid as invalid:
            errors.extend(invalid.errors)
    if errors:
        raise HTTPException(422, errors)
    return values


def read(param: Param, request: Request) -> Any:
    """``param``'s value in ``request``, or ``Invalid``. Dependencies and
    background tasks are not in the request: ``deps`` fills those."""
    return _READERS[param.source](param, request)


def _path(param: Param, request: Request) -> Any:
    loc = ["path", param.key]
    return _checked(validate(request.params[param.key], param.annotation, loc, True), param, loc)


def _header(param: Param, request: Request) -> Any:
    if param.many:
        return _text(param, request.headers.get_all(param.key) or None)
    return _text(param, request.headers.get(param.key))


def _cookie(param: Param, request: Request) -> Any:
    jar = SimpleCookie(request.headers.get("cookie", ""))
    return _text(param, jar[param.key].value if param.key in jar else None)


def _query(param: Param, request: Request) -> Any:
    if param.many:
        values = [v for k, v in request.query_pairs() if k == param.key]
        return _text(param, values or None)
    return _text(param, request.query.get(param.key))


def _text(param: Param, raw: Any) -> Any:
    """A query, header or cookie value (``None`` when the request has none)."""
    loc = [param.source.value, param.key]
    if raw is None:
        return _absent(param, loc)
    return _checked(validate(raw, param.annotation, loc, text=True), param, loc)


def _body(param: Param, request: Request) -> Any:
    loc = ["body", param.key] if param.embed else ["body"]
    data = MISSING
    if request.body:
        try:
            data = parse_json(request.body)
        except ValueError as e:
            raise Invalid(
                [_error("json_invalid", ["body", e.pos], f"JSON decode error: {e.msg}", {})]
            ) from None
        if param.embed:
            data = data.get(param.key, MISSING) if isinstance(data, dict) else MISSING
    if data is MISSING:
        return _absent(param, loc)
    return _checked(validate(data, param.annotation, loc), param, loc)


def _request(param: Param, request: Request) -> Any:
    return request


def _absent(param: Param, loc: list[Any]) -> Any:
    """The value of a parameter the request lacks: its default, ``None`` if
    it is optional, else a ``missing`` error."""
    if param.default is not MISSING:
        return param.default
    if optional(param.annotation):
        return None
    raise Invalid([_error("missing", loc, "Field required", None)])


_READERS: dict[Source, Callable[[Param, Request], Any]] = {
    Source.PATH: _path,
    Source.QUERY: _query,
    Source.HEADER: _header,
    Source.COOKIE: _cookie,
    Source.BODY: _body,
    Source.REQUEST: _request,
}


def _checked(value: Any, param: Param, loc: list[Any]) -> Any:
    marker = param.marker
    if marker is not None and marker.constrained:
        errors = check(marker, value, loc)
        if errors:
            raise Invalid(errors)
    return value


def check(marker: Marker, value: Any, loc: list[Any]) -> list[dict[str, Any]]:
    """The errors of ``value`` against ``marker``'s constraints, in
    pydantic's shape."""
    errors = []
    if isinstance(value, str | list | tuple | dict | bytes):
        what = "String" if isinstance(value, str) else "List"
        unit = "character" if isinstance(value, str) else "item"
        kind = "string" if isinstance(value, str) else ""
        size = len(value)
        if marker.min_length is not None and size < marker.min_length:
            n = marker.min_length
            msg = f"{what} should have at least {n} {unit}{'s' if n != 1 else ''}"
            errors.append(_error(f"{kind}_too_short" if kind else "too_short", loc, msg, value,
                                 {"min_length": n}))  # fmt: skip
        if marker.max_length is not None and size > marker.max_length:
            n = marker.max_length
            msg = f"{what} should have at most {n} {unit}{'s' if n != 1 else ''}"
            errors.append(_error(f"{kind}_too_long" if kind else "too_long", loc, msg, value,
                                 {"max_length": n}))  # fmt: skip
        pattern = marker.compiled_pattern
        if pattern is not None and isinstance(value, str) and not pattern.search(value):
            msg = f"String should match pattern '{marker.pattern}'"
            errors.append(
                _error("string_pattern_mismatch", loc, msg, value, {"pattern": marker.pattern})
            )
    elif isinstance(value, int | float) and not isinstance(value, bool):
        for bound, kind, key, words, ok in (
            (marker.gt, "greater_than", "gt", "greater than", lambda v, b: v > b),
            (
                marker.ge,
                "greater_than_equal",
                "ge",
                "greater than or equal to",
                lambda v, b: v >= b,
            ),
            (marker.lt, "less_than", "lt", "less than", lambda v, b: v < b),
            (marker.le, "less_than_equal", "le", "less than or equal to", lambda v, b: v <= b),
        ):
            if bound is not None and not ok(value, bound):
                msg = f"Input should be {words} {bound}"
                errors.append(_error(kind, loc, msg, value, {key: bound}))
    return errors


def _error(
    kind: str, loc: list[Any], msg: str, value: Any, ctx: dict[str, Any] | None = None
) -> dict[str, Any]:
    error = {"type": kind, "loc": loc, "msg": msg, "input": value}
    if ctx is not None:
        error["ctx"] = ctx
    return error


def validate(value: Any, annotation: Any, loc: list[Any], text: bool = False) -> Any:
    """``value`` as ``annotation``, or ``Invalid`` naming every problem.
    ``text`` values come from a path, query or header and may be parsed."""
    if annotation in (_EMPTY, Any, object):
        return value
    if optional(annotation):
        if value is None:
            return None
        annotation = strip_optional(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list:
        if not isinstance(value, list):
            raise Invalid([_error("list_type", loc, "Input should be a valid list", value)])
        (item_type,) = args or (Any,)
        return _each(enumerate(value), item_type, loc, text, list)
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise Invalid([_error("dict_type", loc, "Input should be a valid dictionary", value)])
        item_type = args[1] if args else Any
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
    if is_typed_dict(annotation):
        hints = typing.get_type_hints(annotation)
        return _object(value, hints, set(annotation.__required_keys__), loc)
    if is_pydantic(annotation):
        try:
            return annotation.model_validate(value)
        except Exception as e:  # noqa: BLE001 - pydantic's ValidationError
            raise Invalid([_model_error(x, loc) for x in _model_errors(e)]) from None
    return _scalar(value, annotation, loc, text)


def _model_errors(error: Exception) -> list[dict[str, Any]]:
    """A model's validation errors; pydantic's without their docs URL, as
    FastAPI reports them."""
    errors = getattr(error, "errors", None)
    if errors is None:
        return []
    try:
        return errors(include_url=False)
    except TypeError:  # cello.BaseModel's take no options
        return errors()


def _model_error(error: dict[str, Any], loc: list[Any]) -> dict[str, Any]:
    # A validator's exception in `ctx` is no JSON: FastAPI's encoder makes it {}.
    ctx = error.get("ctx")
    if ctx is not None:
        ctx = {k: {} if isinstance(v, BaseException) else v for k, v in ctx.items()}
    return _error(error["type"], loc + list(error["loc"]), error["msg"], error.get("input"), ctx)


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
            if name in required and not optional(annotation):
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
