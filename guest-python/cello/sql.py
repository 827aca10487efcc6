"""The component's SQL database (the host's ``sql`` capability).

    from cello import App, Depends, sql

    app = App()
    sql.migrate(app, "migrations")  # migrations/*.sql, in order, once

    @app.get("/notes/{id}")
    async def note(id: int, db: sql.Connection = Depends(sql.connection)):
        row = await db.fetch_one("SELECT id, body FROM notes WHERE id = ?", [id])
        if row is None:
            raise HTTPException(404, "no such note")
        return row

The database is the component's own: SQLite kept by the host (or a
PostgreSQL schema, when the host is configured so). Values go in as
parameters, ``?`` in order or ``$1``/``?1`` by number, never spliced into
the text. ``fetch_all``, ``fetch_one``, ``fetch_val`` and ``execute`` are
awaited without blocking the instance; ``db.sync`` has blocking twins for
``def`` routes. ``async with db.transaction():`` runs the statements inside
it (of this task and the tasks it starts) in one transaction, rolled back
if the block raises.

Inside a component this needs ``sql = true`` under ``[grants]`` in the
sidecar; importing this module is what makes the build ask for it. Run
natively (``TestClient``), the database is an in-memory SQLite;
``sql.reset()`` starts a fresh one.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import inspect
import json as _json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _blocking
from ._hostcalls import call as _hostcall

try:
    from wit_world.imports import sql as _wit
except ImportError:  # run natively
    _wit = None


class Error(Exception):
    """A statement failed; the message says why."""


class ProgrammingError(Error):
    """Not valid SQL, a missing table or column, the wrong number of
    parameters, or something a component may not do."""


class IntegrityError(Error):
    """A constraint (unique, not null, foreign key, check) refused it."""


class QuotaExceeded(Error):
    """The database is at its size quota."""


class QueryTimeout(Error, TimeoutError):
    """The statement ran past its time limit, or waited too long."""


class TransactionClosed(Error):
    """The transaction is finished, timed out, or was never begun."""


class OperationalError(Error):
    """The database failed or cannot be reached."""


_ERRORS = {
    "Invalid": ProgrammingError,
    "Constraint": IntegrityError,
    "Quota": QuotaExceeded,
    "Timeout": QueryTimeout,
    "NoTransaction": TransactionClosed,
    "Failed": OperationalError,
}


class Row(dict):
    """A row: a dict of column to value, which also takes a position,
    ``row["body"]`` or ``row[1]``. Returned from a route, it is a JSON
    object."""

    # Only a key that is not a column comes here: ``row["body"]`` stays
    # dict's own lookup, in C.
    def __missing__(self, key: Any) -> Any:
        if isinstance(key, int):
            return list(self.values())[key]
        raise KeyError(key)


@dataclass(frozen=True)
class Executed:
    """What ``execute`` changed."""

    rows_affected: int
    #: The id of the last row inserted, if the statement inserted one.
    last_insert_id: int | None


@dataclass(frozen=True)
class Migration:
    """Statements run once, in a transaction, named in the ledger."""

    name: str
    statements: str


# --- the host's values, as Python's ------------------------------------
#
# componentize-py lifts each case of the WIT ``value`` variant by calling the
# class its bindings module holds when the component is snapshotted, and
# lowers one by looking up the class of the object given. With these classes
# in the module, a lifted case is the Python value itself (``__new__`` returns
# it, ``rows`` lifts straight into a list of ``Row`` and ``executed`` into
# ``Executed``), so a row costs no object per value and no second pass; a
# parameter is an instance holding ``value``. Nothing here may raise: an
# exception while lifting traps. With ``_hostcalls.call``'s fast path, this
# took the todos read route from 180 to 122 us of server CPU per request.


class _Case:
    __slots__ = ("value",)

    def __new__(cls, value: Any = None) -> Any:
        return value


class _Null(_Case):
    pass


class _Integer(_Case):
    pass


class _Real(_Case):
    pass


class _Text(_Case):
    pass


class _Blob(_Case):
    pass


class _Json(_Case):
    def __new__(cls, value: str) -> Any:
        try:
            return _json.loads(value)
        except ValueError:  # a SQLite column declared JSON holds any text
            return value


def _lifted_rows(columns: list[str], rows: list[list]) -> list[Row]:
    """The WIT ``rows`` record, lifted as the rows themselves."""
    return [Row(zip(columns, row, strict=False)) for row in rows]


if _wit is not None:
    _wit.Value_Null, _wit.Value_Integer, _wit.Value_Real = _Null, _Integer, _Real
    _wit.Value_Text, _wit.Value_Blob, _wit.Value_Json = _Text, _Blob, _Json
    _wit.Rows, _wit.Executed = _lifted_rows, Executed


def _param(case: type, value: Any = None) -> _Case:
    param = object.__new__(case)
    param.value = value
    return param


# --- the backends: the host's functions, or SQLite in memory -------------


def _to_wit(value: Any) -> Any:
    if value is None:
        return _param(_Null)
    if isinstance(value, bool):
        return _param(_Integer, int(value))
    if isinstance(value, int):
        return _param(_Integer, value)
    if isinstance(value, float):
        return _param(_Real, value)
    if isinstance(value, str):
        return _param(_Text, value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _param(_Blob, bytes(value))
    if isinstance(value, (dict, list)):
        return _param(_Json, _json.dumps(value, separators=(",", ":")))
    return _param(_Text, _text(value))


def _text(value: Any) -> str:
    """A value SQLite has no type for, as text (dates as ISO 8601)."""
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if callable(isoformat) else str(value)


def _raise(error: Any) -> None:
    """Raises the SDK's exception for a host error (componentize-py's
    ``Err``), or re-raises anything else."""
    if type(error).__name__ != "Err":
        raise error
    variant = getattr(error, "value", error)
    kind = type(variant).__name__.removeprefix("Error_")
    message = getattr(variant, "value", None) or "the transaction is finished or timed out"
    raise _ERRORS.get(kind, Error)(message) from None


class _Host:
    """The host's ``sql`` interface, awaited or blocking: rows come lifted
    as ``Row``s (see ``_lifted_rows``)."""

    async def query(self, statement: str, params: list, tx: int | None) -> list[Row]:
        try:
            return await _hostcall(_wit.query(statement, [_to_wit(p) for p in params], tx))
        except Exception as error:  # noqa: BLE001 - mapped to the SDK's errors
            _raise(error)

    def query_blocking(self, statement: str, params: list, tx: int | None) -> list[Row]:
        try:
            return _wit.query_blocking(statement, [_to_wit(p) for p in params], tx)
        except Exception as error:  # noqa: BLE001
            _raise(error)

    async def execute(self, statement: str, params: list, tx: int | None) -> Executed:
        try:
            return await _hostcall(_wit.execute(statement, [_to_wit(p) for p in params], tx))
        except Exception as error:  # noqa: BLE001
            _raise(error)

    def execute_blocking(self, statement: str, params: list, tx: int | None) -> Executed:
        try:
            return _wit.execute_blocking(statement, [_to_wit(p) for p in params], tx)
        except Exception as error:  # noqa: BLE001
            _raise(error)

    async def call(self, name: str, *args: Any) -> Any:
        """``begin``, ``commit``, ``rollback`` or ``migrate``, awaited."""
        try:
            return await _hostcall(getattr(_wit, name)(*args))
        except Exception as error:  # noqa: BLE001
            _raise(error)

    def call_blocking(self, name: str, *args: Any) -> Any:
        try:
            return getattr(_wit, f"{name}_blocking")(*args)
        except Exception as error:  # noqa: BLE001
            _raise(error)


class _Memory:
    """SQLite in memory, for native runs: the host's rules on parameters,
    transactions and migrations, kept by Python's ``sqlite3``."""

    def __init__(self) -> None:
        self.db = sqlite3.connect(
            ":memory:",
            check_same_thread=False,
            isolation_level=None,
            detect_types=sqlite3.PARSE_DECLTYPES,
        )
        self.db.execute("PRAGMA foreign_keys = ON")
        self.transactions: set[int] = set()
        self.next_id = 1

    def _run(self, statement: str, params: list) -> sqlite3.Cursor:
        values = [_native_value(p) for p in params]
        try:
            try:
                return self.db.execute(statement, values)
            except sqlite3.ProgrammingError as error:
                if "named" not in str(error) and "supplied a sequence" not in str(error):
                    raise
                # `$1`, `?1`: numbered, which sqlite3 binds by name.
                return self.db.execute(statement, {str(i + 1): v for i, v in enumerate(values)})
        except sqlite3.IntegrityError as error:
            raise IntegrityError(str(error)) from None
        except (sqlite3.ProgrammingError, sqlite3.OperationalError) as error:
            raise ProgrammingError(str(error)) from None

    def query(self, statement: str, params: list, tx: int | None) -> list[Row]:
        self._check(tx)
        cursor = self._run(statement, params)
        columns = [d[0] for d in cursor.description or ()]
        return [Row(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def execute(self, statement: str, params: list, tx: int | None) -> Executed:
        self._check(tx)
        before = self.db.total_changes
        cursor = self._run(statement, params)
        cursor.fetchall()
        changed = self.db.total_changes - before
        inserted = cursor.lastrowid if changed and cursor.lastrowid else None
        return Executed(changed, inserted)

    def _check(self, tx: int | None) -> None:
        if tx is not None and tx not in self.transactions:
            raise TransactionClosed("the transaction is finished or timed out")

    def begin(self) -> int:
        self.db.execute("BEGIN IMMEDIATE")
        tx, self.next_id = self.next_id, self.next_id + 1
        self.transactions.add(tx)
        return tx

    def commit(self, tx: int) -> None:
        self._check(tx)
        self.transactions.discard(tx)
        self.db.execute("COMMIT")

    def rollback(self, tx: int) -> None:
        self._check(tx)
        self.transactions.discard(tx)
        self.db.execute("ROLLBACK")

    def migrate(self, migrations: list) -> int:
        migrations = for_dialect(migrations, "sqlite")
        ledger = "_cello_migrations"
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS {ledger} "
            "(name TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        )
        applied = dict(self.db.execute(f"SELECT name, checksum FROM {ledger}").fetchall())
        count = 0
        for migration in migrations:
            checksum = hashlib.sha256(migration.statements.encode()).hexdigest()
            if migration.name in applied:
                if applied[migration.name] != checksum:
                    raise ProgrammingError(
                        f"migration {migration.name!r} was changed after it was applied: "
                        "add a new migration instead"
                    )
                continue
            try:
                self.db.executescript(f"BEGIN IMMEDIATE;\n{migration.statements}\n;")
                self.db.execute(
                    f"INSERT INTO {ledger} VALUES (?, ?, unixepoch())", [migration.name, checksum]
                )
                self.db.execute("COMMIT")
            except sqlite3.Error as error:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise ProgrammingError(f"migration {migration.name!r}: {error}") from None
            count += 1
        return count


def _native_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return _json.dumps(value, separators=(",", ":"))
    if value is None or isinstance(value, (int, float, str, bytes)):
        return value
    return _text(value)


def _json_or_text(value: bytes) -> Any:
    """A JSON column's value, as the host gives it: decoded, or the text
    itself when it is not JSON."""
    try:
        return _json.loads(value)
    except ValueError:
        return value.decode(errors="replace")


sqlite3.register_converter("JSON", _json_or_text)
_native = _Memory()


def reset() -> None:
    """Natively, starts a fresh in-memory database (for tests). Inside a
    component it does nothing."""
    global _native
    _native = _Memory()


async def _query(statement: str, params: list, tx: int | None) -> list[Row]:
    if _wit is None:
        return _native.query(statement, params, tx)
    if _blocking.running():  # a `def` route's stream cannot suspend
        return _Host().query_blocking(statement, params, tx)
    return await _Host().query(statement, params, tx)


def _query_blocking(statement: str, params: list, tx: int | None) -> list[Row]:
    if _wit is None:
        return _native.query(statement, params, tx)
    return _Host().query_blocking(statement, params, tx)


async def _execute(statement: str, params: list, tx: int | None) -> Executed:
    if _wit is None:
        return _native.execute(statement, params, tx)
    if _blocking.running():  # a `def` route's stream cannot suspend
        return _Host().execute_blocking(statement, params, tx)
    return await _Host().execute(statement, params, tx)


def _execute_blocking(statement: str, params: list, tx: int | None) -> Executed:
    if _wit is None:
        return _native.execute(statement, params, tx)
    return _Host().execute_blocking(statement, params, tx)


async def _call(name: str, *args: Any) -> Any:
    if _wit is None:
        return getattr(_native, name)(*args)
    if _blocking.running():  # a `def` route's stream cannot suspend
        return _Host().call_blocking(name, *args)
    return await _Host().call(name, *args)


def _call_blocking(name: str, *args: Any) -> Any:
    if _wit is None:
        return getattr(_native, name)(*args)
    return _Host().call_blocking(name, *args)


# --- what handlers use ---------------------------------------------------


def _values(args: tuple, values: Sequence | None) -> list:
    """The parameters, given as ``fetch_one(q, a, b)``, ``fetch_one(q, [a,
    b])`` or ``fetch_one(q, values=[a, b])``."""
    if values is not None:
        if args:
            raise TypeError("give the parameters as arguments or as values=, not both")
        return list(values)
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return list(args[0])
    return list(args)


class _Transactions:
    """The transaction statements of the current task run in, per
    connection (a context variable, so tasks started inside a transaction
    block are in it too)."""

    def __init__(self) -> None:
        self.current: contextvars.ContextVar[int | None] = contextvars.ContextVar(
            "cello_sql_transaction", default=None
        )


class Connection:
    """The database, awaitable: ``await db.fetch_all(...)``. ``db.sync``
    has the same calls, blocking, for ``def`` routes."""

    def __init__(self) -> None:
        self._transactions = _Transactions()
        self.sync = SyncConnection(self._transactions)

    async def fetch_all(self, query: str, *args: Any, values: Sequence | None = None) -> list[Row]:
        """Every row the query returns."""
        return await _query(query, _values(args, values), self._transactions.current.get())

    async def fetch_one(self, query: str, *args: Any, values: Sequence | None = None) -> Row | None:
        """The first row, or ``None``."""
        rows = await self.fetch_all(query, *args, values=values)
        return rows[0] if rows else None

    async def fetch_val(
        self, query: str, *args: Any, values: Sequence | None = None, column: int | str = 0
    ) -> Any:
        """One value of the first row (its first column by default), or
        ``None`` when there is no row."""
        row = await self.fetch_one(query, *args, values=values)
        return None if row is None else row[column]

    async def execute(self, query: str, *args: Any, values: Sequence | None = None) -> Executed:
        """Runs a statement that changes rows; says how many and the id
        inserted."""
        return await _execute(query, _values(args, values), self._transactions.current.get())

    async def execute_many(self, query: str, values: Iterable[Sequence]) -> int:
        """Runs the statement once per parameter list, in one transaction;
        returns the rows affected."""
        total = 0
        async with self.transaction():
            for params in values:
                total += (await self.execute(query, list(params))).rows_affected
        return total

    @contextlib.asynccontextmanager
    async def transaction(self):
        """``async with db.transaction():`` commits the statements in the
        block, or rolls them back if it raises. Nested blocks join the
        outer transaction."""
        current = self._transactions.current
        if current.get() is not None:
            yield self
            return
        tx = await _call("begin")
        token = current.set(tx)
        try:
            yield self
        except BaseException:
            current.reset(token)
            with contextlib.suppress(TransactionClosed):
                await _call("rollback", tx)
            raise
        current.reset(token)
        await _call("commit", tx)


class SyncConnection:
    """The database, blocking: for ``def`` routes."""

    def __init__(self, transactions: _Transactions | None = None) -> None:
        self._transactions = transactions or _Transactions()

    def fetch_all(self, query: str, *args: Any, values: Sequence | None = None) -> list[Row]:
        return _query_blocking(query, _values(args, values), self._transactions.current.get())

    def fetch_one(self, query: str, *args: Any, values: Sequence | None = None) -> Row | None:
        rows = self.fetch_all(query, *args, values=values)
        return rows[0] if rows else None

    def fetch_val(
        self, query: str, *args: Any, values: Sequence | None = None, column: int | str = 0
    ) -> Any:
        row = self.fetch_one(query, *args, values=values)
        return None if row is None else row[column]

    def execute(self, query: str, *args: Any, values: Sequence | None = None) -> Executed:
        return _execute_blocking(query, _values(args, values), self._transactions.current.get())

    def execute_many(self, query: str, values: Iterable[Sequence]) -> int:
        total = 0
        with self.transaction():
            for params in values:
                total += self.execute(query, list(params)).rows_affected
        return total

    @contextlib.contextmanager
    def transaction(self):
        """``with db.sync.transaction():`` commits the block, or rolls it
        back if it raises."""
        current = self._transactions.current
        if current.get() is not None:
            yield self
            return
        tx = _call_blocking("begin")
        token = current.set(tx)
        try:
            yield self
        except BaseException:
            current.reset(token)
            with contextlib.suppress(TransactionClosed):
                _call_blocking("rollback", tx)
            raise
        current.reset(token)
        _call_blocking("commit", tx)


def connection() -> Connection:
    """The database, as a dependency: ``db: sql.Connection =
    Depends(sql.connection)``. Each request gets its own, so its
    transactions are its own."""
    return Connection()


# --- migrations ------------------------------------------------------------


def for_dialect(migrations: list, dialect: str) -> list:
    """The migrations for ``dialect``, as the host picks them: ``NAME.postgres``
    (or ``NAME.sqlite``) takes the place of ``NAME`` on that backend and is
    left out on the other."""
    dialects = ("sqlite", "postgres")

    def split(name: str) -> tuple[str, str | None]:
        base, _, suffix = name.rpartition(".")
        return (base, suffix) if base and suffix in dialects else (name, None)

    own = {split(m.name)[0]: m.statements for m in migrations if split(m.name)[1] == dialect}
    chosen, seen = [], set()
    for m in migrations:
        base, suffix = split(m.name)
        if (suffix is not None and suffix != dialect) or base in seen:
            continue
        seen.add(base)
        chosen.append(Migration(base, own.get(base, m.statements)))
    return chosen


def migrations_in(directory: str | Path) -> list[Migration]:
    """The ``*.sql`` files of ``directory``, in order of name, as
    migrations named by file name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no migrations directory at {directory}")
    return [Migration(path.stem, path.read_text()) for path in sorted(directory.glob("*.sql"))]


def migrate(
    app: Any, source: str | Path | Iterable[Migration | tuple[str, str]]
) -> list[Migration]:
    """Applies ``source`` before each instance's first request, ahead of
    the app's startup hooks: each migration not applied before runs once,
    in its own transaction, in order. A migration that fails refuses the
    new version (the old one keeps serving); one changed after it was
    applied is refused too.

    ``source`` is a directory of ``*.sql`` files (relative to the calling
    module's file; read now, so at build time, into the component), or a
    list of ``Migration`` or ``(name, statements)`` pairs."""
    if isinstance(source, (str, Path)):
        directory = Path(source)
        if not directory.is_absolute():
            caller = inspect.stack()[1].filename
            directory = Path(caller).resolve().parent / directory
        migrations = migrations_in(directory)
    else:
        migrations = [m if isinstance(m, Migration) else Migration(*m) for m in source]

    async def apply_migrations() -> None:
        if _wit is None:
            _native.migrate(migrations)
            return
        await _Host().call("migrate", [_wit.Migration(m.name, m.statements) for m in migrations])

    app.add_event_handler("startup", apply_migrations, first=True)
    return migrations
