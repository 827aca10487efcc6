"""Cello: write HTTP handlers for the Cello host in Python, the FastAPI way.

    from cello import App

    app = App("hello")

    @app.get("/hello/{name}")
    def hello(name: str):
        return {"message": f"Hello, {name}!"}

Build it into a component with ``python -m cello build app.py -o app.wasm``.
"""

from . import status
from .app import App, Router, cache
from .controllers import controller
from .deps import BackgroundTasks, Depends, Scope, injectable, singleton
from .markers import Body, Cookie, Header, Json, Path, Query
from .messages import HTTPException, Request, Response
from .security import RateLimitConfig, RoleGuard, ScopeGuard

#: FastAPI's names for the same things, so a port changes only its imports.
FastAPI = App
APIRouter = Router

__all__ = [
    "APIRouter",
    "App",
    "BackgroundTasks",
    "Body",
    "Cookie",
    "Depends",
    "FastAPI",
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
    "cache",
    "controller",
    "injectable",
    "singleton",
    "status",
]
