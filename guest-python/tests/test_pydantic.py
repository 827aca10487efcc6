"""pydantic v2's own models as request bodies and response models, treated
as FastAPI treats them: the app tests/pydantic.rs serves in a component,
run natively."""

import importlib.util
import json
from pathlib import Path

from cello.testing import TestClient
from cello.wasi_packages import PYDANTIC, PYDANTIC_CORE, pydantic_core_extension

APP = Path(__file__).parents[2] / "tests" / "guests" / "python-pydantic" / "app.py"


def client() -> TestClient:
    """The component's app, loaded afresh: its store starts empty."""
    spec = importlib.util.spec_from_file_location("pydantic_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return TestClient(module.app)


def test_a_body_model_is_validated_and_the_response_model_shapes_the_reply():
    http = client()
    body = {"name": "pen", "price": "2.5", "released": "2024-05-01", "tags": [{"name": "x"}]}
    response = http.post("/items", json=body)
    assert response.status_code == 201
    # pydantic's coercion ("2.5" to 2.5), and the date as ISO text, as FastAPI encodes it.
    item = {"id": 1, "name": "pen", "price": 2.5, "released": "2024-05-01", "tags": [{"name": "x"}]}
    assert response.json() == item
    # The handler returns a dict with a `secret` the response model drops.
    assert http.get("/items/1").json() == item


def test_validation_errors_have_fastapis_422_shape():
    http = client()
    response = http.post("/items", json={"name": "LOUD", "price": -1, "tags": [{"name": ""}]})
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
    missing = http.post("/items", json={"name": "pen"}).json()["detail"]
    assert missing == [
        {
            "type": "missing",
            "loc": ["body", "price"],
            "msg": "Field required",
            "input": {"name": "pen"},
        }
    ]


def test_a_result_that_does_not_fit_the_response_model_is_a_500():
    response = client().get("/broken")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error"}


def test_openapi_puts_models_under_components_as_fastapi_does():
    document = client().get("/openapi.json").json()
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
