"""The FastAPI original of main.py, kept to show the port changed only its
imports (test_port.py compares the two). It is never run here."""

from typing import Annotated

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Body,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Path,
    Query,
    status,
)
from pydantic import BaseModel, Field

app = FastAPI(
    title="Tutorial",
    version="1.0.0",
    description="Items and users, as in the FastAPI tutorial.",
)


class Item(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    description: str | None = Field(default=None, max_length=300)
    price: float = Field(gt=0, description="The price must be greater than zero")
    tax: float | None = None
    tags: list[str] = []


class FakeDB:
    """A stand-in for a database session."""

    def __init__(self):
        self.items: dict[int, dict] = {
            1: {"id": 1, "name": "Foo", "description": None, "price": 50.2, "tax": None, "tags": []}
        }
        self.open_sessions = 0


fake_db = FakeDB()
log_lines: list[str] = []


def get_db():
    fake_db.open_sessions += 1
    try:
        yield fake_db
    finally:
        fake_db.open_sessions -= 1


async def verify_token(x_token: Annotated[str, Header()]):
    if x_token != "fake-super-secret-token":
        raise HTTPException(status_code=400, detail="X-Token header invalid")


def write_log(message: str):
    log_lines.append(message)


router = APIRouter(
    prefix="/items",
    tags=["items"],
    dependencies=[Depends(verify_token)],
    responses={404: {"description": "Not found"}},
)


@router.get("/")
async def read_items(
    db: Annotated[FakeDB, Depends(get_db)],
    skip: int = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
):
    return list(db.items.values())[skip : skip + limit]


@router.get("/{item_id}")
async def read_item(
    item_id: Annotated[int, Path(title="The ID of the item to get", ge=1)],
    db: Annotated[FakeDB, Depends(get_db)],
):
    if item_id not in db.items:
        raise HTTPException(status_code=404, detail="Item not found")
    return db.items[item_id]


@router.post("/", status_code=status.HTTP_201_CREATED)
async def create_item(
    item: Item, background_tasks: BackgroundTasks, db: Annotated[FakeDB, Depends(get_db)]
):
    item_id = max(db.items, default=0) + 1
    db.items[item_id] = {"id": item_id, **item.model_dump()}
    background_tasks.add_task(write_log, f"created item {item_id}")
    return db.items[item_id]


@router.put(
    "/{item_id}",
    tags=["custom"],
    responses={403: {"description": "Operation forbidden"}},
)
async def update_item(
    item_id: int,
    item: Item,
    importance: Annotated[int, Body(gt=0)],
    db: Annotated[FakeDB, Depends(get_db)],
):
    if item_id not in db.items:
        raise HTTPException(status_code=404, detail="Item not found")
    db.items[item_id] = {"id": item_id, **item.model_dump()}
    return {"item": db.items[item_id], "importance": importance}


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_item(item_id: int, db: Annotated[FakeDB, Depends(get_db)]):
    if db.items.pop(item_id, None) is None:
        raise HTTPException(status_code=404, detail="Item not found")


app.include_router(router)


@app.get("/")
async def root():
    return {"message": "Hello Bigger Applications!"}


@app.get("/users/{user_id}")
def read_user(
    user_id: int,
    q: Annotated[str | None, Query(max_length=10, pattern="^[a-z]+$")] = None,
    user_agent: Annotated[str | None, Header()] = None,
):
    return {"user_id": user_id, "q": q, "user_agent": user_agent}


@app.get("/hello")
def hello(name: str = "world"):
    return f"Hello {name}"
