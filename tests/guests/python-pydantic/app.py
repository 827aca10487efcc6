"""A FastAPI-style app whose models are pydantic v2's own, validated inside
the component by pydantic-core built for WASI."""

from datetime import date

from cello import FastAPI, HTTPException
from pydantic import BaseModel, Field, field_validator

app = FastAPI(title="pydantic")


class Tag(BaseModel):
    name: str = Field(min_length=1)


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=20)
    price: float = Field(gt=0)
    released: date | None = None
    tags: list[Tag] = []

    @field_validator("name")
    @classmethod
    def no_shouting(cls, value: str) -> str:
        if value.isupper():
            raise ValueError("name must not be all capitals")
        return value


class ItemOut(BaseModel):
    id: int
    name: str
    price: float
    released: date | None = None
    tags: list[Tag] = []


_items: dict[int, ItemOut] = {}


@app.post("/items", status_code=201)
def create_item(item: ItemIn) -> ItemOut:
    stored = ItemOut(id=len(_items) + 1, **item.model_dump())
    _items[stored.id] = stored
    return stored


@app.get("/items/{item_id}", response_model=ItemOut)
def read_item(item_id: int):
    if item_id not in _items:
        raise HTTPException(404, "Item not found")
    # A dict with a field the response model does not declare: it is dropped.
    return {**_items[item_id].model_dump(), "secret": "hidden"}


@app.get("/versions")
def versions() -> dict:
    import pydantic
    import pydantic_core

    return {"pydantic": pydantic.VERSION, "pydantic_core": pydantic_core.__version__}


@app.get("/broken", response_model=ItemOut)
def broken():
    return {"name": "no id"}
