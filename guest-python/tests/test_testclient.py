"""Routers, status codes, exception handlers and Response helpers, through
the TestClient as a user's own tests would use them."""

import pytest
from cello import App, HTTPException, Request, Response, Router
from cello.testing import TestClient


def items_app() -> App:
    app = App("items")
    items = Router(prefix="/items", tags=["items"])

    @items.get("/")
    def list_items(limit: int = 10):
        return [{"id": i} for i in range(min(limit, 3))]

    @items.get("/{item_id}")
    def get_item(item_id: int):
        if item_id > 100:
            raise HTTPException(404, "Item not found")
        return {"id": item_id}

    @items.get("/special")
    def special():
        return {"special": True}

    @items.post("/", status_code=201)
    def create(request: Request):
        return request.json()

    api = Router(prefix="/api")
    api.include_router(items)
    app.include_router(api)
    return app


def test_nested_routers_mount_under_both_prefixes():
    client = TestClient(items_app())
    assert client.get("/api/items/7").json() == {"id": 7}
    assert client.get("/api/items").json() == [{"id": 0}, {"id": 1}, {"id": 2}]
    assert [r.path for r in items_app().routes][:2] == ["/api/items", "/api/items/{item_id}"]


def test_router_tags_are_kept_on_the_mounted_routes():
    assert items_app().routes[0].tags == ("items",)


def test_a_static_segment_wins_over_a_path_parameter():
    assert TestClient(items_app()).get("/api/items/special").json() == {"special": True}


def test_query_params_reach_the_handler():
    client = TestClient(items_app())
    assert len(client.get("/api/items", params={"limit": 2}).json()) == 2
    assert len(client.get("/api/items?limit=1").json()) == 1


def test_status_code_on_the_decorator_applies_to_plain_return_values():
    response = TestClient(items_app()).post("/api/items", json={"name": "bow"})
    assert response.status_code == 201
    assert response.json() == {"name": "bow"}


def test_unknown_path_is_404_and_wrong_method_is_405_with_allow():
    client = TestClient(items_app())
    assert client.get("/nowhere").status_code == 404
    wrong = client.delete("/api/items/1")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET"


def test_head_is_answered_by_the_get_route_without_a_body():
    response = TestClient(items_app()).head("/api/items/1")
    assert response.status_code == 200
    assert response.content == b""


def test_http_exception_through_the_client():
    response = TestClient(items_app()).get("/api/items/101")
    assert response.status_code == 404
    assert response.json() == {"detail": "Item not found"}


def test_an_exception_handler_shapes_the_response():
    app = App()

    class OutOfStock(Exception):
        pass

    @app.exception_handler(OutOfStock)
    def out_of_stock(request, exc):
        return {"detail": f"{request.path} is out of stock"}, 409

    @app.get("/buy/{sku}")
    async def buy(sku: str):
        raise OutOfStock(sku)

    response = TestClient(app).get("/buy/bow")
    assert response.status_code == 409
    assert response.json() == {"detail": "/buy/bow is out of stock"}


def test_an_exception_handler_matches_subclasses():
    app = App()

    @app.exception_handler(LookupError)
    def missing(request, exc):
        return Response.json({"detail": "missing"}, 404)

    @app.get("/x")
    def x():
        raise KeyError("x")

    assert TestClient(app).get("/x").status_code == 404


@pytest.mark.parametrize(
    ("response", "status", "content_type"),
    [
        (Response.html("<p>hi</p>"), 200, "text/html; charset=utf-8"),
        (Response.binary(b"\x89PNG", "image/png"), 200, "image/png"),
        (Response.created({"id": 1}, location="/items/1"), 201, "application/json"),
        (Response.no_content(), 204, None),
        (Response.redirect("/elsewhere"), 307, None),
    ],
)
def test_response_helpers(response, status, content_type):
    assert response.status == status
    assert response.header("content-type") == content_type


def test_redirect_and_created_set_location():
    assert Response.redirect("/a").header("location") == "/a"
    assert Response.created({}, location="/items/1").header("location") == "/items/1"


def test_a_router_prefix_must_start_with_a_slash():
    with pytest.raises(ValueError, match="must start with '/'"):
        Router(prefix="items")


def echo_app() -> App:
    from cello import Request

    app = App()

    @app.post("/echo")
    def echo(request: Request):
        return {
            "type": request.headers.get("content-type"),
            "cookie": request.headers.get("cookie"),
            "body": request.text(),
        }

    @app.options("/echo")
    def options():
        return Response(b"", 204, {"allow": "POST, OPTIONS"})

    return app


def test_data_sends_a_urlencoded_form_or_raw_text():
    client = TestClient(echo_app())
    form = client.post("/echo", data={"name": "Ada Lovelace", "tag": ["a", "b"]}).json()
    assert form["type"] == "application/x-www-form-urlencoded"
    assert form["body"] == "name=Ada+Lovelace&tag=a&tag=b"
    assert client.post("/echo", data="raw").json()["body"] == "raw"


def test_files_send_multipart_with_the_form_fields():
    client = TestClient(echo_app())
    sent = client.post(
        "/echo",
        data={"kind": "report"},
        files={"upload": ("notes.txt", b"hello", "text/plain")},
    ).json()
    assert sent["type"].startswith("multipart/form-data; boundary=")
    assert 'name="kind"\r\n\r\nreport' in sent["body"]
    assert 'filename="notes.txt"\r\ncontent-type: text/plain\r\n\r\nhello' in sent["body"]


def test_cookies_go_with_the_client_and_the_request():
    client = TestClient(echo_app(), cookies={"session": "s1"})
    assert client.post("/echo").json()["cookie"] == "session=s1"
    assert client.post("/echo", cookies={"theme": "dark"}).json()["cookie"] == (
        "session=s1; theme=dark"
    )


def test_options_requests():
    reply = TestClient(echo_app()).options("/echo")
    assert reply.status_code == 204
    assert reply.headers["allow"] == "POST, OPTIONS"


def test_a_test_client_can_stand_in_for_a_tenant():
    from cello import App, Request
    from cello.testing import TestClient

    app = App()

    @app.get("/whose")
    def whose(request: Request):
        return {"tenant": request.tenant}

    assert TestClient(app).get("/whose").json() == {"tenant": None}
    assert TestClient(app, tenant="acme").get("/whose").json() == {"tenant": "acme"}
