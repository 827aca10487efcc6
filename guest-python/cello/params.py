"""FastAPI's ``fastapi.params`` spelling of the parameter markers:
``from cello.params import Depends, Header``. They live in ``cello.markers``."""

from .markers import Body, Cookie, Depends, Header, Json, Path, Query

__all__ = ["Body", "Cookie", "Depends", "Header", "Json", "Path", "Query"]
