"""Class-based controllers with injected constructors."""

from cello import App, Depends, Header, controller
from cello.controllers import get, post
from cello.testing import TestClient

made = []


def get_store() -> dict:
    return {"greeting": "hello"}


@controller("/items", tags=["items"])
class Items:
    def __init__(self, store: dict = Depends(get_store), x_user: str = Header("anon")):
        made.append(1)
        self.store = store
        self.user = x_user

    @get("/{item_id}")
    def read(self, item_id: int, verbose: bool = False):
        return {"id": item_id, "verbose": verbose, "user": self.user}

    @post("/", status_code=201)
    async def create(self, name: str):
        return {"created": name, "greeting": self.store["greeting"]}

    @staticmethod
    @get("/static")
    def static_route():
        return "static"

    @classmethod
    @get("/class")
    async def class_route(cls, q: str = "none"):
        return {"cls": cls.__name__, "q": q}


def client() -> TestClient:
    app = App()
    app.include_router(Items)
    return TestClient(app)


def test_instance_methods_get_an_injected_instance_per_request():
    made.clear()
    c = client()
    assert c.get("/items/3?verbose=true", headers={"x-user": "ada"}).json() == {
        "id": 3,
        "verbose": True,
        "user": "ada",
    }
    reply = c.post("/items?name=bow")
    assert reply.status_code == 201
    assert reply.json() == {"created": "bow", "greeting": "hello"}
    assert len(made) == 2


def test_static_and_class_methods_need_no_instance():
    made.clear()
    c = client()
    assert c.get("/items/static").text == "static"
    assert c.get("/items/class?q=x").json() == {"cls": "Items", "q": "x"}
    assert made == []


def test_controller_parameters_are_validated_and_documented():
    c = client()
    reply = c.get("/items/nope")
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["path", "item_id"]
    app = App()
    app.include_router(Items)
    params = app.openapi()["paths"]["/items/{item_id}"]["get"]["parameters"]
    names = [p["name"] for p in params]
    assert names == ["item_id", "verbose", "x-user"] or set(names) == {
        "item_id",
        "verbose",
        "x-user",
    }


def test_dependency_overrides_reach_controller_constructors():
    app = App()
    app.include_router(Items)
    app.dependency_overrides[get_store] = lambda: {"greeting": "overridden"}
    assert TestClient(app).post("/items?name=x").json()["greeting"] == "overridden"
