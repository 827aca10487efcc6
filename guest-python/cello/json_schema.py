"""JSON Schema for the types handlers take and return: scalars, lists,
dicts, unions, dataclasses, TypedDicts and models, ``cello.BaseModel`` or
pydantic's (referenced from a shared ``schemas`` map), and the constraints
of a parameter's marker."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
import uuid
from typing import Any

from .markers import MISSING, Marker
from .messages import Request

_EMPTY = inspect.Parameter.empty

_SCALARS = {
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    bool: {"type": "boolean"},
    bytes: {"type": "string", "format": "binary"},
    uuid.UUID: {"type": "string", "format": "uuid"},
}


def constraints(marker: Marker) -> dict[str, Any]:
    """A marker's constraints as JSON Schema keywords (and its default, if any)."""
    out: dict[str, Any] = {}
    for key, value in (
        ("exclusiveMinimum", marker.gt),
        ("minimum", marker.ge),
        ("exclusiveMaximum", marker.lt),
        ("maximum", marker.le),
        ("minLength", marker.min_length),
        ("maxLength", marker.max_length),
        ("pattern", marker.pattern),
        ("title", marker.title),
        ("description", marker.description),
        ("examples", marker.examples),
    ):
        if value is not None:
            out[key] = value
    if plain(marker.default) or isinstance(marker.default, list | dict):
        out["default"] = marker.default
    return out


def plain(value: Any) -> bool:
    """Whether ``value`` is a default JSON Schema can state as it is."""
    return (
        value is not MISSING
        and value is not _EMPTY
        and (value is None or isinstance(value, str | int | float | bool))
    )


def schema(annotation: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of ``annotation``; dataclasses and TypedDicts are
    added to ``schemas`` and referenced."""
    if annotation in (_EMPTY, Any, object, Request):
        return {}
    if annotation in _SCALARS:
        return dict(_SCALARS[annotation])
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return schema(args[0], schemas)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [schema(a, schemas) for a in args]}
    if annotation is type(None):
        return {"type": "null"}
    if origin is list or annotation is list:
        return {"type": "array", "items": schema(args[0], schemas) if args else {}}
    if origin is dict or annotation is dict:
        values = schema(args[1], schemas) if args else {}
        return {"type": "object", "additionalProperties": values}
    if dataclasses.is_dataclass(annotation):
        required = [
            f.name
            for f in dataclasses.fields(annotation)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        return _object(annotation, required, schemas)
    if isinstance(annotation, type) and typing.is_typeddict(annotation):
        return _object(annotation, sorted(annotation.__required_keys__), schemas)
    if isinstance(annotation, type) and hasattr(annotation, "model_fields_info"):
        return _model(annotation, schemas)
    if isinstance(annotation, type) and hasattr(annotation, "model_json_schema"):
        return _pydantic(annotation, schemas)
    return {}


def _pydantic(cls: type, schemas: dict[str, Any]) -> dict[str, Any]:
    """A pydantic model, with the models it nests, in ``schemas`` as FastAPI
    puts them: referenced from ``#/components/schemas/``, not ``$defs``."""
    name = cls.__name__
    if name not in schemas:
        body = cls.model_json_schema(ref_template="#/components/schemas/{model}")
        for nested, nested_body in body.pop("$defs", {}).items():
            schemas.setdefault(nested, nested_body)
        schemas[name] = body
    return {"$ref": f"#/components/schemas/{name}"}


def _model(cls: type, schemas: dict[str, Any]) -> dict[str, Any]:
    """A ``cello.BaseModel``: its fields, constraints and defaults."""
    name = cls.__name__
    if name not in schemas:
        schemas[name] = {}
        properties, required = {}, []
        for field, (annotation, marker, default) in cls.model_fields_info().items():
            key = marker.alias if marker is not None and marker.alias else field
            prop = schema(annotation, schemas)
            if marker is not None:
                prop = {**prop, **constraints(marker)}
            if default is MISSING:
                required.append(key)
            elif plain(default) or isinstance(default, list | dict):
                prop.setdefault("default", default)
            prop.setdefault("title", field.replace("_", " ").title())
            properties[key] = prop
        body: dict[str, Any] = {"title": name, "type": "object", "properties": properties}
        if required:
            body["required"] = required
        schemas[name] = body
    return {"$ref": f"#/components/schemas/{name}"}


def _object(cls: type, required: list[str], schemas: dict[str, Any]) -> dict[str, Any]:
    name = cls.__name__
    if name not in schemas:
        schemas[name] = {}  # reserved first, so a recursive type refers to itself
        properties = {
            field: schema(annotation, schemas)
            for field, annotation in typing.get_type_hints(cls).items()
        }
        body: dict[str, Any] = {"title": name, "type": "object", "properties": properties}
        if required:
            body["required"] = required
        schemas[name] = body
    return {"$ref": f"#/components/schemas/{name}"}
