"""Cello: write HTTP handlers for the Cello host in Python, the FastAPI way.

    from cello import App

    app = App("hello")

    @app.get("/hello/{name}")
    def hello(name: str):
        return {"message": f"Hello, {name}!"}

Build it into a component with ``python -m cello build app.py -o app.wasm``.
"""

from .app import App, Router, cache
from .controllers import controller
from .deps import BackgroundTasks, Depends, singleton
from .messages import HTTPException, Request, Response
from .params import Cookie, Header
from .security import RateLimitConfig, RoleGuard, ScopeGuard

__all__ = [
    "App",
    "BackgroundTasks",
    "Cookie",
    "Depends",
    "HTTPException",
    "Header",
    "RateLimitConfig",
    "Request",
    "Response",
    "RoleGuard",
    "Router",
    "ScopeGuard",
    "cache",
    "controller",
    "singleton",
]
