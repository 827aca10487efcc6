"""An OpenAPI 3.1 document for an app, built from its routes' plans (the
handler's parameters and, through ``Depends``, its dependencies'). The page
that shows it is ``docs``."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Iterator
from typing import Any

from .analysis import Param
from .json_schema import constraints, plain, schema
from .markers import Source
from .routing import Route

#: The sources OpenAPI lists as ``parameters``, by their ``in``.
_PARAMETERS = (Source.PATH, Source.QUERY, Source.HEADER, Source.COOKIE)

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


def document(app: Any, skip: set[str]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``app`` (an ``App``, which serves it),
    leaving out the ``skip`` paths."""
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


def _id(route: Route, method: str) -> str:
    """FastAPI's operation id: name, path and method, so two handlers of
    one name (in two routers, say) never share one."""
    return re.sub(r"\W", "_", f"{route.handler.__name__}{route.path}") + f"_{method.lower()}"


def _flatten(plan: Iterable[Param]) -> Iterator[Param]:
    """The parameters of a route and, recursively, of its dependencies."""
    for param in plan:
        if param.source is Source.DEPENDS:
            yield from _flatten(param.plan)
        else:
            yield param


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
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
    for param in _flatten(route.arguments):
        if param.source in _PARAMETERS:
            if (param.source, param.key) in seen:
                continue
            seen.add((param.source, param.key))
            marker = param.marker
            if marker is not None and not marker.include_in_schema:
                continue
            entry = {
                "name": param.key,
                "in": param.source.value,
                "required": param.required or param.source is Source.PATH,
                "schema": schema(param.annotation, schemas),
            }
            if marker is not None:
                entry["schema"].update(constraints(marker))
                if marker.description:
                    entry["description"] = marker.description
                if marker.deprecated:
                    entry["deprecated"] = True
            if "default" not in entry["schema"] and plain(param.default):
                entry["schema"]["default"] = param.default
            parameters.append(entry)
        elif param.source is Source.BODY:
            body_schema = schema(param.annotation, schemas)
            if param.marker is not None and param.marker.constrained:
                body_schema = {**body_schema, **constraints(param.marker)}
            if body is not None or param.embed:
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
    if route.response_model is not None:
        returned = {"application/json": {"schema": schema(route.response_model, schemas)}}
        operation["responses"][status]["content"] = returned
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
