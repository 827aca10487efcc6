"""Variables and secrets (the host's ``config`` capability).

    from cello import config

    greeting = config.get("greeting", "hello")
    token = config.secret("api-token")      # a Secret; .reveal() to use it

Values come from the sidecar's ``[variables]`` and ``[secrets]``, literal or
from the host's environment, and need ``config = true`` under ``[grants]``.
Read them in a handler or a startup hook, not at module level: module code
runs at build time. Run natively, ``config.get("api-url")`` reads the
environment variable ``API_URL``.
"""

from __future__ import annotations

import os

try:
    from wit_world.imports import config as _wit
except ImportError:  # run natively
    _wit = None


class Secret:
    """A secret value that does not print itself: ``str()``, ``repr()`` and
    logs show ``***``; ``reveal()`` returns the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _native(name: str) -> str | None:
    return os.environ.get(name.upper().replace("-", "_"))


def get(name: str, default: str | None = None) -> str | None:
    """The variable ``name``, or ``default`` when it is not set."""
    value = _wit.get(name) if _wit is not None else _native(name)
    return default if value is None else value


def secret(name: str) -> Secret | None:
    """The secret ``name``, or None when it is not set."""
    value = _wit.get_secret(name) if _wit is not None else _native(name)
    return None if value is None else Secret(value)
