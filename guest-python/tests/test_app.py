"""The App run natively: routing metadata, parameters, coercion, errors."""

import asyncio
import dataclasses
import logging

import pytest
from cello import App, HTTPException, Request, Response
from cello.messages import to_response


def call(app: App, index: int, **request) -> Response:
    route = app.routes[index]
    if route.is_async:
        return asyncio.run(app.dispatch_async(index, Request(**request)))
    return app.dispatch(index, Request(**request))


def test_def_and_async_def_set_the_async_flag():
    app = App()

    @app.get("/sync")
    def sync():
        return "s"

    @app.get("/async")
    async def not_sync():
        return "a"

    assert [r.is_async for r in app.routes] == [False, True]
    assert [r.methods for r in app.routes] == [["GET"], ["GET"]]


def test_route_registers_every_method_given():
    app = App()

    @app.route("/x", methods=["get", "post"])
    def handler():
        return None

    assert app.routes[0].methods == ["GET", "POST"]


def test_path_params_are_converted_by_annotation():
    app = App()

    @app.get("/items/{item_id}/{flag}")
    def item(item_id: int, flag: bool):
        return {"id": item_id, "flag": flag}

    response = call(app, 0, params={"item_id": "42", "flag": "true"})
    assert response.status == 200
    assert response.body == b'{"id":42,"flag":true}'


def test_a_path_param_that_does_not_convert_is_422_with_its_location():
    app = App()

    @app.get("/items/{item_id}")
    def item(item_id: int):
        return item_id

    response = call(app, 0, params={"item_id": "abc"})
    assert response.status == 422
    assert b'"loc":["path","item_id"]' in response.body


def test_query_params_use_defaults_and_a_missing_one_is_422():
    app = App()

    @app.get("/search")
    def search(q: str, limit: int = 5):
        return {"q": q, "limit": limit}

    assert call(app, 0, query="q=x&limit=2").body == b'{"q":"x","limit":2}'
    assert call(app, 0, query="q=x").body == b'{"q":"x","limit":5}'
    missing = call(app, 0, query="")
    assert missing.status == 422
    assert b'"loc":["query","q"]' in missing.body


def test_the_request_is_passed_when_asked_for():
    app = App()

    @app.post("/echo")
    def echo(request: Request):
        ua = request.headers["User-Agent"]
        return {"method": request.method, "body": request.json(), "ua": ua}

    response = call(app, 0, method="POST", body=b'{"a":1}', headers=[("user-agent", "t")])
    assert response.body == b'{"method":"POST","body":{"a":1},"ua":"t"}'


def test_malformed_json_is_422_not_500():
    app = App()

    @app.post("/echo")
    def echo(request: Request):
        return request.json()

    response = call(app, 0, method="POST", body=b"{")
    assert response.status == 422
    assert b"Invalid JSON body" in response.body


def test_request_json_refuses_non_finite_numbers_and_deep_nesting_with_422():
    app = App()

    @app.post("/echo")
    def echo(request: Request):
        return request.json()

    for body in (b'{"price": 1e999999}', b"[NaN]", b"[" * 100_000 + b"]" * 100_000):
        response = call(app, 0, method="POST", body=body)
        assert response.status == 422, body[:20]
        assert b"Invalid JSON body" in response.body


def test_a_non_finite_value_returned_is_not_sent_as_json():
    with pytest.raises(ValueError):
        Response.json({"price": float("inf")})


@pytest.mark.parametrize(
    ("value", "status", "content_type", "body"),
    [
        ({"a": 1}, 200, "application/json", b'{"a":1}'),
        ([1, 2], 200, "application/json", b"[1,2]"),
        ("hi", 200, "text/plain; charset=utf-8", b"hi"),
        (b"\x00\x01", 200, "application/octet-stream", b"\x00\x01"),
        (None, 204, None, b""),
        (({"a": 1}, 201), 201, "application/json", b'{"a":1}'),
        (("made", 202, {"X-Id": "7"}), 202, "text/plain; charset=utf-8", b"made"),
    ],
)
def test_return_values_are_coerced(value, status, content_type, body):
    response = to_response(value)
    assert response.status == status
    assert response.header("content-type") == content_type
    assert response.body == body


def test_tuple_headers_are_added():
    assert to_response(("made", 202, {"X-Id": "7"})).header("x-id") == "7"


def test_dataclasses_become_json():
    @dataclasses.dataclass
    class Item:
        name: str
        price: float

    assert to_response(Item("a", 1.5)).body == b'{"name":"a","price":1.5}'


def test_a_response_passes_through():
    response = Response.text("x", status=418)
    assert to_response(response) is response


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (None, [("content-type", "text/plain")]),
        ({"X-A": 1}, [("x-a", "1"), ("content-type", "text/plain")]),
        (
            [("X-A", "1"), ("X-A", "2")],
            [("x-a", "1"), ("x-a", "2"), ("content-type", "text/plain")],
        ),
        ({"Content-Type": "text/csv"}, [("content-type", "text/csv")]),
        ((), [("content-type", "text/plain")]),
    ],
)
def test_response_headers_are_lowercased_and_keep_their_own_content_type(headers, expected):
    assert Response("x", headers=headers, media_type="text/plain").headers == expected
    assert Response("x", headers=headers).headers == [h for h in expected if h[1] != "text/plain"]


def test_a_def_handler_returning_an_awaitable_is_a_500_naming_the_route(caplog):
    app = App()

    async def later():
        return "never"

    @app.get("/odd")
    def odd():
        return later()

    response = call(app, 0)
    assert response.status == 500
    assert "/odd: async handler called synchronously" in caplog.text


def test_http_exception_gives_its_status_and_detail():
    app = App()

    @app.get("/missing")
    def missing():
        raise HTTPException(404, "Item not found", headers={"X-Why": "gone"})

    response = call(app, 0)
    assert response.status == 404
    assert response.body == b'{"detail":"Item not found"}'
    assert response.header("x-why") == "gone"


def test_an_uncaught_exception_is_500_and_its_traceback_is_logged(caplog):
    app = App()

    @app.get("/boom")
    async def boom():
        raise ValueError("kaput")

    with caplog.at_level(logging.ERROR, logger="cello"):
        response = call(app, 0)
    assert response.status == 500
    assert response.body == b'{"detail":"Internal Server Error"}'
    assert "ValueError: kaput" in caplog.text
    assert "Traceback" in caplog.text


def test_cache_declares_a_policy_in_either_decorator_order():
    from cello import cache

    app = App()

    @app.get("/below")
    @cache(ttl=60, tags=["items"], vary=["Accept-Language"])
    def below():
        return "b"

    @cache(ttl=5)
    @app.get("/above")
    def above():
        return "a"

    assert app.routes[0].cache.ttl == 60
    assert app.routes[0].cache.tags == ("items",)
    assert app.routes[0].cache.vary == ("accept-language",)
    assert app.routes[1].cache.ttl == 5


def test_cache_needs_a_positive_ttl():
    from cello import cache

    with pytest.raises(ValueError, match="positive"):
        cache(ttl=0)


def test_invalidating_outside_the_host_drops_nothing():
    assert App().invalidate_cache(["items"]) == 0


@pytest.mark.parametrize(
    "traceparent, expected",
    [
        (
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "0af7651916cd43dd8448eb211c80319c",
        ),
        (None, None),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", None),
        ("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", None),
        ("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None),
        ("00-0af7651916cd43dd8448eb211c80319c", None),
        ("garbage", None),
    ],
)
def test_the_trace_id_is_read_from_a_valid_traceparent_only(traceparent, expected):
    headers = [] if traceparent is None else [("traceparent", traceparent)]
    assert Request(headers=headers).trace_id == expected
