"""A route's plan, its dependencies' included, is read when the route is
registered: a dependency that cannot be served fails at the decorator,
naming the function and the route."""

import pytest
from cello import App, Depends, Header, Scope, injectable
from cello.analysis import SignatureError
from cello.markers import Source
from cello.testing import TestClient


def test_every_dependency_in_the_tree_is_planned_at_registration():
    app = App()

    def get_db():
        return {}

    def get_user(x_token: str = Header(), db: dict = Depends(get_db)):
        return x_token

    @app.get("/items/{item_id}")
    def read(item_id: int, user: str = Depends(get_user)):
        return {"id": item_id, "user": user}

    item_id, user = app.routes[0].arguments
    assert (item_id.source, user.source) == (Source.PATH, Source.DEPENDS)
    token, db = user.plan
    assert (token.source, token.key) == (Source.HEADER, "x-token")
    assert db.source is Source.DEPENDS and db.plan == ()


def test_a_dependency_with_an_undefined_name_in_its_annotations_fails_at_registration():
    app = App()

    def get_db(session: "Sesion"):  # noqa: F821 - the mistake under test
        return session

    def get_user(db=Depends(get_db)):
        return db

    with pytest.raises(SignatureError) as raised:

        @app.get("/me")
        def me(user=Depends(get_user)):
            return user

    message = str(raised.value)
    assert message.startswith("GET /me: get_db (test_analysis.py, line ")
    assert "needed by get_user (test_analysis.py" in message
    assert "needed by me (test_analysis.py" in message
    assert "the annotation of parameter 'session'" in message
    assert "name 'Sesion' is not defined" in message
    assert app.routes == []


def test_a_name_only_a_type_checker_sees_is_fine_where_the_annotation_is_unused():
    app = App()

    def get_db() -> "Session":  # noqa: F821 - imported under TYPE_CHECKING, say
        return {"users": 1}

    def count(db: "Session" = Depends(get_db), limit: int = 10):  # noqa: F821
        return min(db["users"], limit)

    @app.get("/count")
    def read(n: int = Depends(count)):
        return {"n": n}

    client = TestClient(app)
    assert client.get("/count").json() == {"n": 1}
    assert client.get("/count?limit=0").json() == {"n": 0}  # still read as an int


def test_depending_on_something_not_callable_fails_at_registration():
    app = App()

    def get_user(db=Depends("get_db")):
        return db

    with pytest.raises(SignatureError, match=r"get_user .*'db' depends on 'get_db', which is not"):
        app.get("/me")(lambda user=Depends(get_user): user)


def test_depends_without_a_function_needs_a_class_in_the_annotation():
    app = App()
    with pytest.raises(SignatureError, match="'db' is Depends\\(\\) without a class"):
        app.get("/me")(lambda db=Depends(): db)


@injectable(scope=Scope.REQUEST)
class Orders:
    def __init__(self, customers: "Customers"):
        self.customers = customers


@injectable(scope=Scope.REQUEST)
class Customers:
    def __init__(self, orders: Orders):
        self.orders = orders


def test_services_that_inject_each_other_fail_at_registration():
    app = App()
    with pytest.raises(SignatureError, match="Orders .*needed by Customers .*depends on itself"):
        app.get("/orders")(lambda orders=Depends(Orders): "never")


def test_a_route_dependency_is_planned_at_registration_too():
    app = App()

    def verify(x_key: "Kee" = Header()):  # noqa: F821
        return x_key

    with pytest.raises(SignatureError, match="^GET /secret: verify"):
        app.get("/secret", dependencies=[Depends(verify)])(lambda: "secret")


def test_an_override_is_planned_on_first_use_with_the_routes_path_params():
    app = App()

    def get_owner():
        return "real"

    @app.get("/users/{user_id}/owner")
    def owner(name: str = Depends(get_owner)):
        return name

    app.dependency_overrides[get_owner] = lambda user_id: f"fake-{user_id}"
    assert TestClient(app).get("/users/7/owner").text == "fake-7"
