"""A small FastAPI-style CRUD service over the key-value capability.

    python -m cello build app.py -o items.wasm     # needs `kv = true` (sidecar.toml)

Items are stored as JSON under ``item:{id}``; ids come from an atomic
counter. The same app runs natively under ``TestClient`` (with an in-memory
store) and as a component, and ``test_items.py`` checks both ways agree.
"""

from dataclasses import asdict, dataclass, field

from cello import App, Depends, HTTPException, Router, kv

app = App("items", version="1.0.0")
router = Router(prefix="/items", tags=["items"])


@dataclass
class ItemIn:
    name: str
    price: float
    tags: list[str] = field(default_factory=list)
    description: str | None = None


@dataclass
class Item(ItemIn):
    id: int = 0


def store() -> kv.KV:
    """The store, as a dependency (tests may override it)."""
    return kv.client()


async def existing(item_id: int, db: kv.KV = Depends(store)) -> Item:
    """The item ``item_id``, or 404."""
    data = await db.get_json(f"item:{item_id}")
    if data is None:
        raise HTTPException(404, f"item {item_id} not found")
    return Item(**data)


@router.get("/")
async def list_items(db: kv.KV = Depends(store), tag: str | None = None, limit: int = 100):
    """Items in id order, optionally only those with ``tag``."""
    keys = sorted(await db.keys("item:"), key=lambda k: int(k.split(":")[1]))
    items = [await db.get_json(key) for key in keys]
    return [i for i in items if tag is None or tag in i["tags"]][:limit]


@router.post("/", status_code=201)
async def create_item(body: ItemIn, db: kv.KV = Depends(store)):
    """Stores a new item and returns it with its id."""
    item = Item(**asdict(body), id=await db.incr("next-id"))
    await db.set_json(f"item:{item.id}", asdict(item))
    return item


@router.get("/{item_id}")
async def read_item(item: Item = Depends(existing)):
    return item


@router.put("/{item_id}")
async def replace_item(body: ItemIn, item: Item = Depends(existing), db: kv.KV = Depends(store)):
    updated = Item(**asdict(body), id=item.id)
    await db.set_json(f"item:{item.id}", asdict(updated))
    return updated


@router.delete("/{item_id}", status_code=204)
async def delete_item(item: Item = Depends(existing), db: kv.KV = Depends(store)):
    await db.delete(f"item:{item.id}")


app.include_router(router)
