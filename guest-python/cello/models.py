"""``BaseModel`` and ``Field``: the part of pydantic's API that request and
response models use, over the SDK's own validation.

pydantic v2 validates in ``pydantic_core``, a native extension that no
build for the component's WASI CPython ships, so ``from pydantic import
BaseModel`` cannot load inside a component. A port swaps that import:

    from cello import BaseModel, Field

    class Item(BaseModel):
        name: str = Field(max_length=50)
        price: float = Field(gt=0)
        tags: list[str] = []
        description: str | None = None

``Item.model_validate(data)``, ``item.model_dump()``,
``item.model_dump_json()``, ``Item.model_json_schema()`` and keyword
construction behave as in pydantic, with its error shapes; models nest, and
fields take any annotation the SDK validates (scalars, lists, dicts,
dataclasses, other models, ``Optional``).
"""

from __future__ import annotations

import copy
import json as _json
import typing
from typing import Any, ClassVar

from .json_schema import schema
from .markers import MISSING, Marker
from .validation import Invalid, check, validate


class Field(Marker):
    """A model field's default and constraints (pydantic's ``Field``)."""


class ValidationError(ValueError):
    """The problems of one validation, each in pydantic's shape."""

    def __init__(self, title: str, errors: list[dict[str, Any]]):
        super().__init__(f"{len(errors)} validation error(s) for {title}: {errors}")
        self.title = title
        self._errors = errors

    def errors(self) -> list[dict[str, Any]]:
        return self._errors


class BaseModel:
    """A typed record validated from JSON-like data."""

    __slots__ = ("__dict__", "_cello_set_")
    # Unannotated: the model's annotations are its fields.
    __cello_fields__ = None

    @classmethod
    def model_fields_info(cls) -> dict[str, tuple[Any, Marker | None, Any]]:
        """Each field's annotation, ``Field`` (if any) and default."""
        fields = cls.__dict__.get("__cello_fields__")
        if fields is None:
            fields = {}
            for name, annotation in typing.get_type_hints(cls).items():
                if name.startswith("_") or typing.get_origin(annotation) is ClassVar:
                    continue
                default = getattr(cls, name, MISSING)
                marker = default if isinstance(default, Marker) else None
                if marker is not None:
                    default = marker.default
                fields[name] = (annotation, marker, default)
            cls.__cello_fields__ = fields
        return fields

    def __init__(self, **data: Any):
        values = type(self)._validated(data)
        object.__setattr__(self, "__dict__", values)
        object.__setattr__(self, "_cello_set_", frozenset(k for k in data if k in values))

    @classmethod
    def _validated(cls, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            msg = "Input should be a valid dictionary or instance of " + cls.__name__
            raise ValidationError(
                cls.__name__, [{"type": "model_type", "loc": [], "msg": msg, "input": data}]
            )
        values, errors = {}, []
        for name, (annotation, marker, default) in cls.model_fields_info().items():
            key = marker.alias if marker is not None and marker.alias else name
            if key not in data:
                if default is MISSING:
                    errors.append(
                        {"type": "missing", "loc": [key], "msg": "Field required", "input": data}
                    )
                else:
                    values[name] = copy.copy(default)
                continue
            try:
                value = validate(data[key], annotation, [key])
                if marker is not None and marker.constrained:
                    problems = check(marker, value, [key])
                    if problems:
                        raise Invalid(problems)
                values[name] = value
            except Invalid as invalid:
                errors.extend(invalid.errors)
        if errors:
            raise ValidationError(cls.__name__, errors)
        return values

    @classmethod
    def model_validate(cls, obj: Any) -> BaseModel:
        """``obj`` (a dict, or already a model) as this model."""
        if isinstance(obj, cls):
            return obj
        instance = cls.__new__(cls)
        object.__setattr__(instance, "__dict__", cls._validated(obj))
        object.__setattr__(instance, "_cello_set_", frozenset(obj))
        return instance

    @classmethod
    def model_validate_json(cls, data: str | bytes) -> BaseModel:
        return cls.model_validate(_json.loads(data))

    def model_dump(
        self, *, exclude_unset: bool = False, exclude_none: bool = False, by_alias: bool = False
    ) -> dict[str, Any]:
        """The model as plain data; nested models become dicts."""
        out = {}
        for name, (_, marker, _) in self.model_fields_info().items():
            if exclude_unset and name not in self._cello_set_:
                continue
            value = _plain(self.__dict__[name])
            if exclude_none and value is None:
                continue
            key = marker.alias if by_alias and marker is not None and marker.alias else name
            out[key] = value
        return out

    def model_dump_json(self, **options: Any) -> str:
        return _json.dumps(self.model_dump(**options), separators=(",", ":"))

    def model_copy(self, *, update: dict[str, Any] | None = None) -> BaseModel:
        return type(self).model_validate({**self.model_dump(), **(update or {})})

    @classmethod
    def model_json_schema(cls) -> dict[str, Any]:
        """The model's JSON Schema, with nested models under ``$defs``."""
        definitions: dict[str, Any] = {}
        root = schema(cls, definitions)
        name = root["$ref"].rsplit("/", 1)[-1]
        body = dict(definitions.pop(name))
        if definitions:
            text = _json.dumps(definitions).replace("#/components/schemas/", "#/$defs/")
            body["$defs"] = _json.loads(text)
        text = _json.dumps(body).replace("#/components/schemas/", "#/$defs/")
        return _json.loads(text)

    @property
    def model_fields_set(self) -> set[str]:
        return set(self._cello_set_)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({fields})"

    def __iter__(self):
        return iter(self.__dict__.items())

    # pydantic v1 names, still common in tutorials.
    def dict(self, **options: Any) -> dict[str, Any]:
        return self.model_dump(**options)

    def json(self, **options: Any) -> str:
        return self.model_dump_json(**options)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
