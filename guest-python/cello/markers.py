"""Where a parameter comes from, and the constraints its value must meet.

Each marker works in FastAPI's spellings and in Lauren's:

    def read(item_id: int = Path(ge=1), q: str | None = Query(None, max_length=50)): ...
    def read(item_id: Annotated[int, Path(ge=1)], ua: Annotated[str, Header()]): ...
    def read(item_id: Path[int], q: Query[str], payload: Json[Item]): ...

A constraint that fails is one entry in the route's 422, in pydantic's
shape (``string_too_long``, ``greater_than_equal``, ...).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

#: No default: the parameter is required (FastAPI also spells it ``...``).
MISSING: Any = object()


class Marker:
    """A parameter's source (the subclass) and constraints."""

    source = "query"

    def __init__(
        self,
        default: Any = MISSING,
        *,
        default_factory: Any = None,
        alias: str | None = None,
        title: str | None = None,
        description: str | None = None,
        gt: float | None = None,
        ge: float | None = None,
        lt: float | None = None,
        le: float | None = None,
        min_length: int | None = None,
        max_length: int | None = None,
        pattern: str | None = None,
        regex: str | None = None,
        examples: list[Any] | None = None,
        example: Any = None,
        deprecated: bool | None = None,
        include_in_schema: bool = True,
        **extra: Any,
    ):
        self.default = MISSING if default is ... else default
        if default_factory is not None:
            self.default = default_factory()
        self.alias = alias
        self.title = title
        self.description = description
        self.gt, self.ge, self.lt, self.le = gt, ge, lt, le
        self.min_length, self.max_length = min_length, max_length
        self.pattern = pattern or regex
        self._compiled = re.compile(self.pattern) if self.pattern else None
        self.examples = examples if examples is not None else ([example] if example else None)
        self.deprecated = deprecated
        self.include_in_schema = include_in_schema
        self.extra = extra

    def __class_getitem__(cls, item: Any) -> Any:
        """``Path[int]`` is ``Annotated[int, Path()]`` (Lauren's extractors)."""
        return Annotated[item, cls()]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @property
    def constrained(self) -> bool:
        return any(
            v is not None
            for v in (self.gt, self.ge, self.lt, self.le, self.min_length, self.max_length)
        ) or bool(self.pattern)

    def check(self, value: Any, loc: list[Any]) -> list[dict[str, Any]]:
        """The constraint errors of ``value``, in pydantic's shape."""
        errors = []
        if isinstance(value, str | list | tuple | dict | bytes):
            what = "String" if isinstance(value, str) else "List"
            unit = "character" if isinstance(value, str) else "item"
            kind = "string" if isinstance(value, str) else ""
            size = len(value)
            if self.min_length is not None and size < self.min_length:
                n = self.min_length
                msg = f"{what} should have at least {n} {unit}{'s' if n != 1 else ''}"
                errors.append(_error(f"{kind}_too_short" if kind else "too_short", loc, msg, value,
                                     {"min_length": n}))  # fmt: skip
            if self.max_length is not None and size > self.max_length:
                n = self.max_length
                msg = f"{what} should have at most {n} {unit}{'s' if n != 1 else ''}"
                errors.append(_error(f"{kind}_too_long" if kind else "too_long", loc, msg, value,
                                     {"max_length": n}))  # fmt: skip
            if self._compiled is not None and isinstance(value, str):
                if not self._compiled.search(value):
                    msg = f"String should match pattern '{self.pattern}'"
                    errors.append(
                        _error(
                            "string_pattern_mismatch", loc, msg, value, {"pattern": self.pattern}
                        )
                    )
        elif isinstance(value, int | float) and not isinstance(value, bool):
            for bound, kind, words, ok in (
                (self.gt, "greater_than", "greater than", lambda v, b: v > b),
                (self.ge, "greater_than_equal", "greater than or equal to", lambda v, b: v >= b),
                (self.lt, "less_than", "less than", lambda v, b: v < b),
                (self.le, "less_than_equal", "less than or equal to", lambda v, b: v <= b),
            ):
                if bound is not None and not ok(value, bound):
                    key = {"greater_than": "gt", "greater_than_equal": "ge"}.get(kind)
                    key = key or {"less_than": "lt", "less_than_equal": "le"}[kind]
                    msg = f"Input should be {words} {bound}"
                    errors.append(_error(kind, loc, msg, value, {key: bound}))
        return errors

    def schema(self) -> dict[str, Any]:
        """The constraints as JSON Schema keywords (and a default, if any)."""
        out: dict[str, Any] = {}
        for key, value in (
            ("exclusiveMinimum", self.gt),
            ("minimum", self.ge),
            ("exclusiveMaximum", self.lt),
            ("maximum", self.le),
            ("minLength", self.min_length),
            ("maxLength", self.max_length),
            ("pattern", self.pattern),
            ("title", self.title),
            ("description", self.description),
            ("examples", self.examples),
        ):
            if value is not None:
                out[key] = value
        if self.default is not MISSING and _json_safe(self.default):
            out["default"] = self.default
        return out


class Path(Marker):
    """A ``{name}`` segment of the route's path."""

    source = "path"


class Query(Marker):
    """A query parameter (the default for plain parameters)."""

    source = "query"


class Header(Marker):
    """A request header: ``user_agent`` is read from ``user-agent``."""

    source = "header"

    def __init__(self, default: Any = MISSING, *, convert_underscores: bool = True, **options):
        super().__init__(default, **options)
        self.convert_underscores = convert_underscores


class Cookie(Marker):
    """A cookie of the request."""

    source = "cookie"


class Body(Marker):
    """The JSON body, or with ``embed=True`` (or beside other body
    parameters) the body's key of the parameter's name."""

    source = "body"

    def __init__(self, default: Any = MISSING, *, embed: bool = False, **options):
        options.pop("media_type", None)
        super().__init__(default, **options)
        self.embed = embed


class Json(Body):
    """Lauren's spelling of the JSON body: ``payload: Json[Item]``."""


def _error(kind: str, loc: list[Any], msg: str, value: Any, ctx: dict[str, Any]) -> dict:
    return {"type": kind, "loc": loc, "msg": msg, "input": value, "ctx": ctx}


def _json_safe(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)
