"""What an app writes in a handler's signature to say where a parameter's
value comes from and the constraints it must meet: ``Path()``, ``Query()``,
``Header()``, ``Cookie()``, ``Body()``, ``Json``, ``Depends()``, and the
``@injectable()`` and ``@singleton`` marks on services. Markers are data:
``analysis`` reads them into a route's plan, ``validation`` applies them.

Each marker works in FastAPI's spellings and in Lauren's:

    def read(item_id: int = Path(ge=1), q: str | None = Query(None, max_length=50)): ...
    def read(item_id: Annotated[int, Path(ge=1)], ua: Annotated[str, Header()]): ...
    def read(item_id: Path[int], q: Query[str], payload: Json[Item]): ...

A constraint that fails is one entry in the route's 422, in pydantic's
shape (``string_too_long``, ``greater_than_equal``, ...).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Annotated, Any

#: No default: the parameter is required (FastAPI also spells it ``...``).
MISSING: Any = object()


class Source(enum.Enum):
    """Where a handler's parameter gets its value. The first four are also
    OpenAPI's ``in`` values."""

    PATH = "path"
    QUERY = "query"
    HEADER = "header"
    COOKIE = "cookie"
    #: The JSON body, or one key of it.
    BODY = "body"
    #: The ``Request`` itself.
    REQUEST = "request"
    #: What a dependency returns (``Depends``, an ``@injectable`` class).
    DEPENDS = "depends"
    #: The request's ``BackgroundTasks``.
    BACKGROUND = "background"


class Marker:
    """A parameter's source (the subclass) and constraints."""

    source = Source.QUERY

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
        self.compiled_pattern = re.compile(self.pattern) if self.pattern else None
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
        """Whether the value has constraints to meet (``validation.check``)."""
        return any(
            v is not None
            for v in (self.gt, self.ge, self.lt, self.le, self.min_length, self.max_length)
        ) or bool(self.pattern)


class Path(Marker):
    """A ``{name}`` segment of the route's path."""

    source = Source.PATH


class Query(Marker):
    """A query parameter (the default for plain parameters)."""

    source = Source.QUERY


class Header(Marker):
    """A request header: ``user_agent`` is read from ``user-agent``."""

    source = Source.HEADER

    def __init__(self, default: Any = MISSING, *, convert_underscores: bool = True, **options):
        super().__init__(default, **options)
        self.convert_underscores = convert_underscores


class Cookie(Marker):
    """A cookie of the request."""

    source = Source.COOKIE


class Body(Marker):
    """The JSON body, or with ``embed=True`` (or beside other body
    parameters) the body's key of the parameter's name."""

    source = Source.BODY

    def __init__(self, default: Any = MISSING, *, embed: bool = False, **options):
        options.pop("media_type", None)
        super().__init__(default, **options)
        self.embed = embed


class Json(Body):
    """Lauren's spelling of the JSON body: ``payload: Json[Item]``."""


class Depends:
    """Marks a parameter as filled by calling ``dependency``."""

    #: Set for ``@injectable()`` singletons: one value per instance.
    singleton = False

    def __init__(self, dependency: Callable[..., Any] | None = None, *, use_cache: bool = True):
        self.dependency = dependency
        self.use_cache = use_cache

    def __repr__(self) -> str:
        return f"Depends({getattr(self.dependency, '__name__', self.dependency)!r})"


def singleton(dependency: Callable[..., Any]) -> Callable[..., Any]:
    """Makes ``dependency`` run once per instance; every later request gets
    the same value. Use it for clients and other costly, shareable objects."""
    dependency.__cello_singleton__ = True
    return dependency


class Scope(enum.Enum):
    """How long an ``@injectable()`` service's instance lives."""

    #: One per component instance, made on first use.
    SINGLETON = "singleton"
    #: One per request, shared by everything that request injects.
    REQUEST = "request"
    #: A new one wherever it is injected.
    TRANSIENT = "transient"


def injectable(scope: Scope = Scope.SINGLETON):
    """Marks a class as a service injected by its type annotation."""

    def mark(cls: type) -> type:
        cls.__cello_injectable__ = scope
        return cls

    return mark
