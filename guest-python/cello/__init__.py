"""Cello: write HTTP handlers for the Cello host in Python, the FastAPI way.

    from cello import App

    app = App("hello")

    @app.get("/hello/{name}")
    def hello(name: str):
        return {"message": f"Hello, {name}!"}

Build it into a component with ``python -m cello build app.py -o app.wasm``.

The package, bottom layer first; a module imports only from layers below
its own (``tests/test_layers.py`` holds it to that):

- ``messages``, ``status``, ``security``, ``background``: requests,
  responses (streams among them), route policies, background tasks;
  ``sse``: server-sent events;
- ``markers``: what a signature says (``Path()``, ..., ``Depends()``, ``Source``);
- ``analysis``: a handler's signature, and its dependencies', read into a plan;
- ``validation``: a plan and a request turned into arguments, or a 422;
- ``deps`` (dependencies solved per request), ``models`` (``BaseModel``);
- ``routing``: routes, routers and the path matcher; ``openapi``: the document;
- ``app``: the ``App``; ``controllers``, ``testing`` (``TestClient``), and
  ``_guest``, the glue to the component's WIT exports;
- ``sleeps``, ``http``, ``kv``, ``config``, ``log``: the host's capabilities
  (with native fallbacks); ``build``: the build command.
"""

from . import status
from .app import App, Router, cache
from .background import BackgroundTasks
from .controllers import controller
from .markers import Body, Cookie, Depends, Header, Json, Path, Query, Scope, injectable, singleton
from .messages import HTTPException, Request, Response, StreamingResponse
from .models import BaseModel, Field
from .security import RateLimitConfig, RoleGuard, ScopeGuard
from .sse import EventSourceResponse, ServerSentEvent

#: FastAPI's name for a Router, so a port changes only its imports.
APIRouter = Router


class FastAPI(App):
    """An App that coerces return values as FastAPI does (``str`` and
    ``None`` are JSON, a tuple is a JSON array): ``from cello import
    FastAPI`` ports an app without changing what it answers."""

    def __init__(self, *args, fastapi_compat: bool = True, **kwargs):
        super().__init__(*args, fastapi_compat=fastapi_compat, **kwargs)


__all__ = [
    "APIRouter",
    "App",
    "BackgroundTasks",
    "BaseModel",
    "Body",
    "Cookie",
    "Depends",
    "EventSourceResponse",
    "FastAPI",
    "Field",
    "HTTPException",
    "Header",
    "Json",
    "Path",
    "Query",
    "RateLimitConfig",
    "Request",
    "Response",
    "RoleGuard",
    "Router",
    "Scope",
    "ScopeGuard",
    "ServerSentEvent",
    "StreamingResponse",
    "cache",
    "controller",
    "injectable",
    "singleton",
    "status",
]
