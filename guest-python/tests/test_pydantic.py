"""pydantic v2's own models as request bodies and response models, treated
as FastAPI treats them. (The same app runs in a component in the
integration tests: tests/pydantic.rs.)"""

import json
from datetime import date
from pathlib import Path

from cello import FastAPI
from cello.testing import TestClient
from cello.wasi_packages import PYDANTIC, PYDANTIC_CORE, pydantic_core_extension
from pydantic import BaseModel, Field, field_validator


class Tag(BaseModel):
    name: str = Field(min_length=1)


class ItemIn(BaseModel):
    name: str = Field(max_length=20)
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
    released: date | None = None
    tags: list[Tag] = []


def make_app() -> FastAPI:
    app = FastAPI()

    @app.post("/items", status_code=201)
    def create(item: ItemIn) -> ItemOut:
        return ItemOut(id=1, **item.model_dump())

    @app.get("/items/{item_id}", response_model=ItemOut)
    def read(item_id: int):
        return {"id": item_id, "name": "a", "price": 2.0, "secret": "s"}

    @app.get("/broken", response_model=ItemOut)
    def broken():
        return {"name": "no id"}

    return app


def test_a_body_model_is_validated_and_the_return_annotation_shapes_the_response():
    client = TestClient(make_app())
    body = {"name": "pen", "price": 2, "released": "2024-05-01", "tags": [{"name": "x"}]}
    response = client.post("/items", json=body)
    assert response.status_code == 201
    # `price` is not ItemOut's; the date is ISO text, as FastAPI encodes it.
    assert response.json() == {
        "id": 1,
        "name": "pen",
        "released": "2024-05-01",
        "tags": [{"name": "x"}],
    }


def test_validation_errors_have_fastapis_422_shape():
    client = TestClient(make_app())
    response = client.post("/items", json={"name": "LOUD", "price": -1, "tags": [{"name": ""}]})
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "value_error",
                "loc": ["body", "name"],
                "msg": "Value error, name must not be all capitals",
                "input": "LOUD",
                "ctx": {"error": {}},
            },
            {
                "type": "greater_than",
                "loc": ["body", "price"],
                "msg": "Input should be greater than 0",
                "input": -1,
                "ctx": {"gt": 0.0},
            },
            {
                "type": "string_too_short",
                "loc": ["body", "tags", 0, "name"],
                "msg": "String should have at least 1 character",
                "input": "",
                "ctx": {"min_length": 1},
            },
        ]
    }
    missing = client.post("/items", json={"name": "pen"}).json()["detail"]
    assert missing == [
        {
            "type": "missing",
            "loc": ["body", "price"],
            "msg": "Field required",
            "input": {"name": "pen"},
        }
    ]


def test_response_model_drops_undeclared_fields():
    response = TestClient(make_app()).get("/items/7")
    assert response.json() == {"id": 7, "name": "a", "released": None, "tags": []}


def test_a_result_that_does_not_fit_the_response_model_is_a_500():
    response = TestClient(make_app()).get("/broken")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error"}


def test_openapi_puts_models_under_components_as_fastapi_does():
    document = TestClient(make_app()).get("/openapi.json").json()
    text = json.dumps(document)
    assert "$defs" not in text
    schemas = document["components"]["schemas"]
    assert {"ItemIn", "ItemOut", "Tag"} <= set(schemas)
    assert schemas["ItemIn"]["properties"]["tags"]["items"] == {"$ref": "#/components/schemas/Tag"}
    assert schemas["ItemIn"]["properties"]["price"]["exclusiveMinimum"] == 0
    create = document["paths"]["/items"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ItemIn"
    }
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ItemOut"
    }
    assert "422" in create["responses"]


def test_the_shipped_wasi_pydantic_core_matches_the_pinned_pydantic():
    import pydantic
    import pydantic_core

    # The build takes pydantic's Python from this environment: pinned alike.
    assert (pydantic.VERSION, pydantic_core.__version__) == (PYDANTIC, PYDANTIC_CORE)
    assert pydantic_core_extension()[:4] == b"\0asm"
    sdk = Path(__file__).parent.parent
    for pins in (sdk / "pyproject.toml", sdk / "requirements.txt"):
        assert f"pydantic=={PYDANTIC}" in pins.read_text(), pins
