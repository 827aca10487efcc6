"""The path matcher the TestClient shares with the app: a route for a
method and path, picked as the host picks it."""

from cello import App
from cello.messages import Response
from cello.routing import Found, PathPattern, find


def routes():
    app = App()
    app.get("/items/{item_id}")(lambda item_id: item_id)
    app.get("/items/special")(lambda: "special")
    app.post("/items")(lambda: "made")
    return app.routes


def test_a_pattern_matches_one_segment_per_parameter():
    pattern = PathPattern("/users/{user_id}/posts/{post_id}")
    assert pattern.params == {"user_id", "post_id"}
    assert pattern.match("/users/7/posts/x-1") == {"user_id": "7", "post_id": "x-1"}
    assert pattern.match("/users/7/8/posts/1") is None
    assert PathPattern("/a.b").match("/axb") is None


def test_a_static_segment_wins_over_a_parameter():
    assert find(routes(), "GET", "/items/special") == Found(1, {})
    assert find(routes(), "GET", "/items/7") == Found(0, {"item_id": "7"})


def test_head_is_answered_by_a_get_route():
    assert find(routes(), "HEAD", "/items/7") == Found(0, {"item_id": "7"})


def test_an_unknown_path_is_404_and_another_method_is_405_with_allow():
    missing = find(routes(), "GET", "/nothing")
    assert isinstance(missing, Response) and missing.status == 404
    refused = find(routes(), "DELETE", "/items")
    assert refused.status == 405
    assert dict(refused.headers)["allow"] == "POST"
