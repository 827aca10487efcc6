"""An OpenAPI 3.1 document for an app, built from its routes, parameter
annotations and dataclass / TypedDict schemas, and a page that shows it.

The page is self-contained: no script or style comes from anywhere else.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import posixpath
import re
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
        if route.path in skip or not route.meta.get("include_in_schema", True):
            continue
        operation = _operation(route, schemas)
        for method in route.methods:
            item = dict(operation, operationId=route.meta.get("operation_id") or _id(route, method))
            paths.setdefault(route.path, {})[method.lower()] = item
    info: dict[str, Any] = {"title": app.title, "version": app.version}
    if app.description:
        info["description"] = app.description
    if app.summary:
        info["summary"] = app.summary
    doc: dict[str, Any] = {"openapi": "3.1.0", "info": info, "paths": paths}
    if app.openapi_tags:
        doc["tags"] = app.openapi_tags
    if schemas:
        doc["components"] = {"schemas": schemas}
    return doc


def _id(route, method: str) -> str:
    """FastAPI's operation id: name, path and method, so two handlers of
    one name (in two routers, say) never share one."""
    return re.sub(r"\W", "_", f"{route.handler.__name__}{route.path}") + f"_{method.lower()}"


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
    meta = route.meta
    operation: dict[str, Any] = {
        "summary": meta.get("summary")
        or (doc.splitlines()[0] if doc else route.handler.__name__.replace("_", " ").title())
    }
    if meta.get("description") or doc:
        operation["description"] = meta.get("description") or doc
    if meta.get("deprecated"):
        operation["deprecated"] = True
    if route.tags:
        operation["tags"] = list(route.tags)
    parameters, body, seen = [], None, set()
    for param in _flatten(route.arguments, route.path_params):
        if param.source in ("path", "query", "header", "cookie"):
            if (param.source, param.key) in seen:
                continue
            seen.add((param.source, param.key))
            marker = param.marker
            if marker is not None and not marker.include_in_schema:
                continue
            entry = {
                "name": param.key,
                "in": param.source,
                "required": param.required or param.source == "path",
                "schema": schema(param.annotation, schemas),
            }
            if marker is not None:
                entry["schema"].update(marker.schema())
                if marker.description:
                    entry["description"] = marker.description
                if marker.deprecated:
                    entry["deprecated"] = True
            if "default" not in entry["schema"] and _plain(param.default):
                entry["schema"]["default"] = param.default
            parameters.append(entry)
        elif param.source == "body":
            body_schema = schema(param.annotation, schemas)
            if param.marker is not None and param.marker.constrained:
                body_schema = {**body_schema, **param.marker.schema()}
            if body is not None or getattr(param.marker, "embed", False):
                # Several body parameters: one object, keyed by their names.
                merged = body["content"]["application/json"]["schema"] if body else None
                if not merged or "properties" not in merged:
                    merged = {"type": "object", "properties": {}, "required": []}
                    if body is not None:  # the first one, now a property too
                        first = body["_param"]
                        merged["properties"][first.key] = body["_schema"]
                        if first.required:
                            merged["required"].append(first.key)
                merged["properties"][param.key] = body_schema
                if param.required:
                    merged["required"].append(param.key)
                body_schema = merged
            body = {
                "required": (body or {}).get("required", False) or param.required,
                "content": {"application/json": {"schema": body_schema}},
                "_param": param,
                "_schema": body_schema,
            }
    if parameters:
        operation["parameters"] = parameters
    if body:
        body.pop("_param")
        body.pop("_schema")
        operation["requestBody"] = body
    status = str(route.status_code or 200)
    operation["responses"] = {status: {"description": "Successful Response"}}
    for code, extra in (meta.get("responses") or {}).items():
        extra = dict(extra)
        model = extra.pop("model", None)
        if model is not None:
            extra.setdefault("content", {"application/json": {"schema": schema(model, schemas)}})
        extra.setdefault("description", "Additional Response")
        operation["responses"][str(code)] = extra
    if parameters or body:
        schemas.update(_VALIDATION_SCHEMAS)
        operation["responses"]["422"] = {
            "description": "Validation Error",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
            },
        }
    return operation


def _plain(value: Any) -> bool:
    from .markers import MISSING

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
        return annotation.model_json_schema()
    return {}


def _model(cls: type, schemas: dict[str, Any]) -> dict[str, Any]:
    """A ``cello.BaseModel``: its fields, constraints and defaults."""
    from .markers import MISSING

    name = cls.__name__
    if name not in schemas:
        schemas[name] = {}
        properties, required = {}, []
        for field, (annotation, marker, default) in cls.model_fields_info().items():
            key = marker.alias if marker is not None and marker.alias else field
            prop = schema(annotation, schemas)
            if marker is not None:
                prop = {**prop, **marker.schema()}
            if default is MISSING:
                required.append(key)
            elif _plain(default) or isinstance(default, list | dict):
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


#: The docs page, read at import: at build time, into the component's snapshot.
DOCS_PAGE = (Path(__file__).parent / "docs.html").read_text()


def docs_page(docs_url: str, openapi_url: str | None) -> str:
    """The docs page served at ``docs_url``, fetching the document from
    ``openapi_url`` by a relative URL, so it holds under any prefix."""
    if not openapi_url:
        return DOCS_PAGE.replace('fetch("openapi.json")', "Promise.reject('no document')")
    relative = posixpath.relpath(openapi_url, posixpath.dirname(docs_url) or "/")
    return DOCS_PAGE.replace('fetch("openapi.json")', f"fetch({json.dumps(relative)})")
