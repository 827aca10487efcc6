"""FastAPI's spellings, so a port changes only its imports."""

from typing import Annotated

from cello import (
    APIRouter,
    App,
    BaseModel,
    Body,
    Cookie,
    Depends,
    FastAPI,
    Field,
    Header,
    HTTPException,
    Path,
    Query,
    Response,
    status,
)
from cello.models import ValidationError
from cello.testing import TestClient


def test_fastapi_keywords_name_the_app():
    app = FastAPI(title="Shop", version="2.0", description="Things to buy", redoc_url=None)
    info = TestClient(app).get("/openapi.json").json()["info"]
    assert info == {"title": "Shop", "version": "2.0", "description": "Things to buy"}


def test_query_constraints_answer_422_in_pydantics_shape():
    app = App()

    @app.get("/search")
    def search(q: str = Query(..., min_length=2, max_length=5), n: int = Query(1, gt=0, lt=10)):
        return {"q": q, "n": n}

    client = TestClient(app)
    assert client.get("/search?q=abc").json() == {"q": "abc", "n": 1}
    short = client.get("/search?q=a&n=10").json()["detail"]
    assert [e["type"] for e in short] == ["string_too_short", "less_than"]
    assert short[0]["msg"] == "String should have at least 2 characters"
    assert short[0]["ctx"] == {"min_length": 2}
    assert short[1]["loc"] == ["query", "n"]


def test_alias_and_list_queries():
    app = App()

    @app.get("/")
    def read(
        item_query: Annotated[str | None, Query(alias="item-query")] = None,
        tag: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI's spelling
    ):
        return {"q": item_query, "tags": tag}

    client = TestClient(app)
    assert client.get("/?item-query=x&tag=a&tag=b").json() == {"q": "x", "tags": ["a", "b"]}


def test_path_constraints():
    app = App()

    @app.get("/items/{item_id}")
    def read(item_id: int = Path(ge=1, le=1000)):
        return item_id

    client = TestClient(app)
    assert client.get("/items/5").json() == 5
    assert client.get("/items/0").json()["detail"][0]["type"] == "greater_than_equal"


def test_annotated_header_is_read_from_the_header_not_the_query():
    app = App()

    @app.get("/")
    def read(user_agent: Annotated[str, Header()], x_tokens: Annotated[list[str], Header()] = []):  # noqa: B006
        return {"ua": user_agent, "tokens": x_tokens}

    client = TestClient(app)
    headers = [("user-agent", "t"), ("x-tokens", "a")]
    reply = client.get("/", headers=dict(headers))
    assert reply.json() == {"ua": "t", "tokens": ["a"]}
    assert client.get("/?user_agent=t").status_code == 422


def test_cookie_marker_reads_a_cookie():
    app = App()

    @app.get("/")
    def read(session: Annotated[str | None, Cookie()] = None):
        return {"session": session}

    assert TestClient(app).get("/", cookies={"session": "s1"}).json() == {"session": "s1"}


def test_body_parameters_beside_a_model_are_embedded_by_name():
    class Item(BaseModel):
        name: str

    app = App()

    @app.put("/items/{item_id}")
    def update(item_id: int, item: Item, importance: int = Body(gt=0)):
        return {"id": item_id, "name": item.name, "importance": importance}

    client = TestClient(app)
    reply = client.put("/items/1", json={"item": {"name": "a"}, "importance": 3})
    assert reply.json() == {"id": 1, "name": "a", "importance": 3}
    bad = client.put("/items/1", json={"item": {"name": "a"}, "importance": 0})
    assert bad.json()["detail"][0]["loc"] == ["body", "importance"]


def test_a_single_model_with_embed_is_read_under_its_name():
    class Item(BaseModel):
        name: str

    app = App()

    @app.post("/")
    def make(item: Annotated[Item, Body(embed=True)]):
        return item

    assert TestClient(app).post("/", json={"item": {"name": "a"}}).json() == {"name": "a"}


def test_base_model_validates_dumps_and_reports_like_pydantic():
    class Image(BaseModel):
        url: str

    class Item(BaseModel):
        name: str = Field(max_length=3)
        price: float
        images: list[Image] = []
        note: str | None = None

    item = Item.model_validate({"name": "abc", "price": 1, "images": [{"url": "u"}]})
    assert item.images[0].url == "u" and item.price == 1.0
    assert item.model_dump() == {
        "name": "abc",
        "price": 1.0,
        "images": [{"url": "u"}],
        "note": None,
    }
    assert item.model_dump(exclude_unset=True) == {
        "name": "abc",
        "price": 1.0,
        "images": [{"url": "u"}],
    }
    assert Item(name="a", price=2) == Item.model_validate({"name": "a", "price": 2})
    try:
        Item.model_validate({"name": "abcd", "images": [{}]})
    except ValidationError as error:
        assert [(e["type"], e["loc"]) for e in error.errors()] == [
            ("string_too_long", ["name"]),
            ("missing", ["price"]),
            ("missing", ["images", 0, "url"]),
        ]
    else:
        raise AssertionError("expected a ValidationError")
    schema = Item.model_json_schema()
    assert schema["required"] == ["name", "price"]
    assert schema["properties"]["images"]["items"] == {"$ref": "#/$defs/Image"}


def test_status_names():
    assert status.HTTP_201_CREATED == 201
    assert status.HTTP_404_NOT_FOUND == 404
    assert status.HTTP_422_UNPROCESSABLE_ENTITY == 422


def test_router_dependencies_run_before_every_route_and_can_refuse():
    seen = []

    def verify(x_token: Annotated[str, Header()]):
        seen.append(x_token)
        if x_token != "ok":
            raise HTTPException(status_code=400, detail="bad token")

    router = APIRouter(prefix="/things", dependencies=[Depends(verify)])

    @router.get("/")
    def things():
        return ["a"]

    app = App()
    app.include_router(router)
    client = TestClient(app)
    assert client.get("/things", headers={"x-token": "ok"}).json() == ["a"]
    assert client.get("/things", headers={"x-token": "no"}).status_code == 400
    assert seen == ["ok", "no"]


def test_a_trailing_slash_redirects_with_307_as_in_fastapi():
    router = APIRouter(prefix="/things")

    @router.get("/")
    def things():
        return ["a"]

    @router.get("/{name}")
    def thing(name: str):
        return name

    app = App()
    app.include_router(router)
    client = TestClient(app, follow_redirects=False)
    slash = client.get("/things/?x=1")
    assert slash.status_code == 307
    assert slash.headers["location"] == "../things?x=1"
    assert client.get("/things/a/").headers["location"] == "../a"
    followed = TestClient(app).get("/things/")
    assert followed.status_code == 200 and followed.json() == ["a"]
    assert [r.status_code for r in followed.history] == [307]


def test_app_return_values_keep_cellos_coercion_unless_fastapi_compat():
    for cls, expected in (
        (App, ("text/plain; charset=utf-8", 204)),
        (FastAPI, ("application/json", 200)),
    ):
        app = cls()
        app.get("/s")(lambda: "hi")
        app.get("/none")(lambda: None)
        client = TestClient(app)
        assert (
            client.get("/s").headers["content-type"],
            client.get("/none").status_code,
        ) == expected
    compat = App(fastapi_compat=True)
    compat.get("/t")(lambda: (1, 2))
    compat.get("/r")(lambda: Response.text("as is"))
    assert TestClient(compat).get("/t").json() == [1, 2]
    assert TestClient(compat).get("/r").text == "as is"
