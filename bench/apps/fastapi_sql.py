"""The todos example's read route on FastAPI with aiosqlite, for `make bench`:
one SELECT by primary key, the connection injected with `Depends`, as the
cello todos component does it. The database is a file in a temporary
directory, in WAL mode, seeded with the same rows."""

import json
import os
import tempfile
from contextlib import asynccontextmanager

import aiosqlite
from fastapi import Depends, FastAPI, HTTPException

DATABASE = os.path.join(tempfile.mkdtemp(prefix="fastapi-sql-"), "todos.sqlite")
ROWS = 1000
_db: aiosqlite.Connection | None = None


@asynccontextmanager
async def lifespan(_app):
    global _db
    _db = await aiosqlite.connect(DATABASE)
    _db.row_factory = aiosqlite.Row
    await _db.execute("PRAGMA journal_mode = WAL")
    await _db.execute(
        "CREATE TABLE IF NOT EXISTS todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL, "
        "done INTEGER NOT NULL DEFAULT 0, tags TEXT NOT NULL DEFAULT '[]')"
    )
    await _db.executemany(
        "INSERT OR IGNORE INTO todos (id, title) VALUES (?, ?)",
        [(i, f"todo {i}") for i in range(1, ROWS + 1)],
    )
    await _db.commit()
    yield
    await _db.close()


app = FastAPI(lifespan=lifespan)


async def connection() -> aiosqlite.Connection:
    return _db


@app.get("/todos/{todo_id}")
async def read(todo_id: int, db: aiosqlite.Connection = Depends(connection)):  # noqa: B008
    async with db.execute("SELECT * FROM todos WHERE id = ?", (todo_id,)) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise HTTPException(404, f"todo {todo_id} not found")
    tags = json.loads(row["tags"])
    return {"id": row["id"], "title": row["title"], "done": bool(row["done"]), "tags": tags}
