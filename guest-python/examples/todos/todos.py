"""A todo list over the SQL capability: CRUD, migrations, a transaction.

    python -m cello build todos.py -o todos.wasm    # needs `sql = true` (sidecar.toml)

The tables come from ``migrations/*.sql``, applied in order, once, before
the first request of each new version; ``NAME.postgres.sql`` replaces
``NAME.sql`` when the host keeps the database in PostgreSQL. Inserts say
``RETURNING id``: PostgreSQL has no last insert id otherwise. Every route
takes the database as a dependency; ``def`` routes use its blocking twin,
``db.sync``. The same app runs natively under ``TestClient`` against an
in-memory SQLite.
"""

from dataclasses import dataclass, field

from cello import App, Depends, HTTPException, Response, sql

app = App("todos", version="1.0.0")
sql.migrate(app, "migrations")


@dataclass
class TodoIn:
    title: str
    done: bool = False
    tags: list[str] = field(default_factory=list)


def todo(row: sql.Row) -> dict:
    return {"id": row["id"], "title": row["title"], "done": bool(row["done"]), "tags": row["tags"]}


async def existing(todo_id: int, db: sql.Connection = Depends(sql.connection)) -> dict:
    """The todo ``todo_id``, or 404."""
    row = await db.fetch_one("SELECT * FROM todos WHERE id = $1", todo_id)
    if row is None:
        raise HTTPException(404, f"todo {todo_id} not found")
    return todo(row)


@app.exception_handler(sql.IntegrityError)
def conflict(request, error):
    return Response.json({"detail": str(error)}, status=409)


@app.get("/")
async def list_todos(done: bool | None = None, db: sql.Connection = Depends(sql.connection)):
    if done is None:
        rows = await db.fetch_all("SELECT * FROM todos ORDER BY id")
    else:
        rows = await db.fetch_all("SELECT * FROM todos WHERE done = ? ORDER BY id", [done])
    return [todo(row) for row in rows]


@app.post("/", status_code=201)
async def create(item: TodoIn, db: sql.Connection = Depends(sql.connection)):
    added = await db.execute(
        "INSERT INTO todos (title, done, tags) VALUES (?, ?, ?) RETURNING id",
        [item.title, item.done, item.tags],
    )
    return {"id": added.last_insert_id, "title": item.title, "done": item.done, "tags": item.tags}


@app.post("/batch", status_code=201)
async def create_many(items: list[TodoIn], db: sql.Connection = Depends(sql.connection)):
    """All or none: one blank title rolls the whole batch back."""
    ids = []
    async with db.transaction():
        for item in items:
            added = await db.execute(
                "INSERT INTO todos (title, done, tags) VALUES (?, ?, ?) RETURNING id",
                [item.title, item.done, item.tags],
            )
            ids.append(added.last_insert_id)
    return {"ids": ids}


@app.get("/{todo_id}")
async def read(found: dict = Depends(existing)):
    return found


@app.put("/{todo_id}")
async def replace(
    item: TodoIn, found: dict = Depends(existing), db: sql.Connection = Depends(sql.connection)
):
    await db.execute(
        "UPDATE todos SET title = ?, done = ?, tags = ? WHERE id = ?",
        [item.title, item.done, item.tags, found["id"]],
    )
    return {"id": found["id"], "title": item.title, "done": item.done, "tags": item.tags}


@app.delete("/{todo_id}", status_code=204)
async def delete(found: dict = Depends(existing), db: sql.Connection = Depends(sql.connection)):
    await db.execute("DELETE FROM todos WHERE id = ?", [found["id"]])


@app.get("/stats/counts")
def counts(db: sql.Connection = Depends(sql.connection)):
    """A sync route: the blocking twin, ``db.sync``."""
    total = db.sync.fetch_val("SELECT count(*) FROM todos")
    done = db.sync.fetch_val("SELECT count(*) FROM todos WHERE done")
    return {"total": total, "done": done, "open": total - done}
