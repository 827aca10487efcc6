"""An OpenAPI 3.1 document for an app, built from its routes, parameter
annotations and dataclass / TypedDict schemas, and a page that shows it.

The page is self-contained: no script or style comes from anywhere else.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
import uuid
from pathlib import Path
from typing import Any

from .messages import Request

_EMPTY = inspect.Parameter.empty

_VALIDATION_SCHEMAS = {
    "ValidationError": {
        "title": "ValidationError",
        "type": "object",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"},
            "type": {"type": "string"},
            "input": {},
        },
    },
    "HTTPValidationError": {
        "title": "HTTPValidationError",
        "type": "object",
        "properties": {
            "detail": {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}
        },
    },
}

_SCALARS = {
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    bool: {"type": "boolean"},
    bytes: {"type": "string", "format": "binary"},
    uuid.UUID: {"type": "string", "format": "uuid"},
}


def document(app, skip: set[str]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``app``, leaving out the ``skip`` paths."""
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for route in app.routes:
        if route.path in skip:
            continue
        operation = _operation(route, schemas)
        for method in route.methods:
            item = dict(operation, operationId=f"{route.handler.__name__}_{method.lower()}")
            paths.setdefault(route.path, {})[method.lower()] = item
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": app.name, "version": app.version},
        "paths": paths,
    }
    if schemas:
        doc["components"] = {"schemas": schemas}
    return doc


def _flatten(arguments: list, path_params: frozenset[str], depth: int = 0):
    """The parameters of a route and, recursively, of its dependencies."""
    from .params import resolvers

    for param in arguments:
        if param.source == "depends" and depth < 16:
            inner = resolvers(param.dependency.dependency, set(path_params))
            yield from _flatten(inner, path_params, depth + 1)
        else:
            yield param


def _operation(route, schemas: dict[str, Any]) -> dict[str, Any]:
    doc = inspect.getdoc(route.handler) or ""
    operation: dict[str, Any] = {
        "summary": doc.splitlines()[0] if doc else route.handler.__name__.replace("_", " ").title()
    }
    if route.tags:
        operation["tags"] = list(route.tags)
    parameters, body, seen = [], None, set()
    for param in _flatten(route.arguments, route.path_params):
        if param.source in ("path", "query", "header", "cookie"):
            if (param.source, param.key) in seen:
                continue
            seen.add((param.source, param.key))
            parameters.append(
                {
                    "name": param.key,
                    "in": param.source,
                    "required": param.required or param.source == "path",
                    "schema": schema(param.annotation, schemas),
                }
            )
        elif param.source == "body":
            body = {
                "required": param.required,
                "content": {"application/json": {"schema": schema(param.annotation, schemas)}},
            }
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = body
    status = str(route.status_code or 200)
    operation["responses"] = {status: {"description": "Successful Response"}}
    if parameters or body:
        schemas.update(_VALIDATION_SCHEMAS)
        operation["responses"]["422"] = {
            "description": "Validation Error",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
            },
        }
    return operation


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
    if isinstance(annotation, type) and hasattr(annotation, "model_json_schema"):
        return annotation.model_json_schema()
    return {}


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


#: The docs page, read at import: at build time, into the component's snapshot.
DOCS_PAGE = (Path(__file__).parent / "docs.html").read_text()
