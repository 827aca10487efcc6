"""The component's key-value store (the host's ``kv`` capability).

    from cello import kv

    @app.post("/visits")
    async def visit():
        return {"visits": await kv.incr("visits")}

Values are bytes; ``str`` values are stored as UTF-8, and ``get_json`` /
``set_json`` keep JSON. Keys are private to the component. Every function
has a blocking twin on ``kv.sync`` for ``def`` handlers, and ``kv.client``
is a dependency to inject (and override in tests):
``store: kv.KV = Depends(kv.client)``.

Inside a component this needs ``kv = true`` under ``[grants]`` in the
sidecar; importing this module is what makes the build ask for it. Run
natively (``TestClient``), values live in memory.
"""

from __future__ import annotations

import json as _json
import time
from typing import Any

try:
    from wit_world.imports import kv as _wit
except ImportError:  # run natively
    _wit = None


class KVError(Exception):
    """The store refused the call (a bad key, a value too large, ...)."""


class _Memory:
    """The store for native runs: a dict with expiries."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[bytes, float | None]] = {}

    def _live(self, key: str) -> bytes | None:
        item = self.items.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.monotonic():
            del self.items[key]
            return None
        return value

    def get(self, key: str) -> bytes | None:
        return self._live(key)

    def set(self, key: str, value: bytes, ttl_seconds: int | None) -> None:
        expires = time.monotonic() + ttl_seconds if ttl_seconds else None
        self.items[key] = (value, expires)

    def delete(self, key: str) -> bool:
        present = self._live(key) is not None
        self.items.pop(key, None)
        return present

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(k for k in list(self.items) if k.startswith(prefix) and self._live(k))

    def increment(self, key: str, delta: int) -> int:
        current = self._live(key)
        try:
            value = int(current or b"0") + delta
        except ValueError:
            raise KVError(f"{key!r} does not hold an integer") from None
        expires = self.items.get(key, (b"", None))[1]
        self.items[key] = (str(value).encode(), expires)
        return value


def _call(method: str, *args: Any) -> Any:
    backend = _wit if _wit is not None else _MEMORY
    try:
        return getattr(backend, method)(*args)
    except KVError:
        raise
    except Exception as error:  # componentize-py's Err carries the host's sentence
        if type(error).__name__ == "Err":
            raise KVError(str(getattr(error, "value", error))) from None
        raise


def _encode(value: bytes | str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


_MEMORY = _Memory()


class SyncKV:
    """Blocking access to the store, for ``def`` handlers."""

    def get(self, key: str) -> bytes | None:
        value = _call("get", key)
        return None if value is None else bytes(value)

    def get_text(self, key: str) -> str | None:
        value = self.get(key)
        return None if value is None else value.decode()

    def get_json(self, key: str) -> Any:
        value = self.get(key)
        return None if value is None else _json.loads(value)

    def set(self, key: str, value: bytes | str, ttl: int | None = None) -> None:
        _call("set", key, _encode(value), ttl)

    def set_json(self, key: str, value: Any, ttl: int | None = None) -> None:
        self.set(key, _json.dumps(value, separators=(",", ":")), ttl)

    def delete(self, key: str) -> bool:
        return _call("delete", key)

    def keys(self, prefix: str = "") -> list[str]:
        return list(_call("list_keys", prefix))

    def incr(self, key: str, by: int = 1) -> int:
        return _call("increment", key, by)


class KV:
    """The store, awaitable: ``await store.get("k")``. The host answers at
    once (the store is local), so these also work in ``def`` routes'
    dependencies."""

    def __init__(self) -> None:
        self.sync = SyncKV()

    async def get(self, key: str) -> bytes | None:
        return self.sync.get(key)

    async def get_text(self, key: str) -> str | None:
        return self.sync.get_text(key)

    async def get_json(self, key: str) -> Any:
        return self.sync.get_json(key)

    async def set(self, key: str, value: bytes | str, ttl: int | None = None) -> None:
        self.sync.set(key, value, ttl)

    async def set_json(self, key: str, value: Any, ttl: int | None = None) -> None:
        self.sync.set_json(key, value, ttl)

    async def delete(self, key: str) -> bool:
        return self.sync.delete(key)

    async def keys(self, prefix: str = "") -> list[str]:
        return self.sync.keys(prefix)

    async def incr(self, key: str, by: int = 1) -> int:
        return self.sync.incr(key, by)


_DEFAULT = KV()
sync = _DEFAULT.sync
get = _DEFAULT.get
get_text = _DEFAULT.get_text
get_json = _DEFAULT.get_json
set = _DEFAULT.set  # noqa: A001 - the store's verb
set_json = _DEFAULT.set_json
delete = _DEFAULT.delete
keys = _DEFAULT.keys
incr = _DEFAULT.incr


def client() -> KV:
    """The store, as a dependency: ``store: KV = Depends(kv.client)``."""
    return _DEFAULT
