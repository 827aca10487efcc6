"""The glue between an App and the component's WIT exports.

Imported only inside a component, where componentize-py provides
``wit_world``. Everything at module level here, and in the app module,
runs once at build time and is captured in the component's snapshot; the
WIT bindings must be imported here, at build time, because only modules in
the snapshot exist at run time.
"""

import logging

import wit_world
from wit_world.imports import cache, host, types

from .app import App
from .http import Request, Response

_LEVELS = {
    logging.DEBUG: host.Level.DEBUG,
    logging.INFO: host.Level.INFO,
    logging.WARNING: host.Level.WARN,
    logging.ERROR: host.Level.ERROR,
    logging.CRITICAL: host.Level.ERROR,
}


class _HostLog(logging.Handler):
    """Sends Python log records to the host's structured log."""

    def emit(self, record: logging.LogRecord) -> None:
        level = _LEVELS.get(record.levelno, host.Level.INFO)
        host.log(level, self.format(record))


def _install_logging() -> None:
    root = logging.getLogger()
    root.handlers[:] = [_HostLog()]
    root.setLevel(logging.INFO)


def _request(req: types.Request) -> Request:
    return Request(
        method=req.method,
        path=req.path,
        query=req.query,
        headers=req.headers,
        body=bytes(req.body),
        params=dict(req.params),
        request_id=req.context.request_id,
        client=req.context.client_addr,
    )


def _response(response: Response) -> types.Response:
    return types.Response(status=response.status, headers=response.headers, body=response.body)


def _policy(route) -> types.RoutePolicy:
    cache = route.cache
    if cache is not None:
        cache = types.CachePolicy(
            ttl_seconds=cache.ttl, tags=list(cache.tags), vary=list(cache.vary)
        )
    return types.RoutePolicy(cache=cache, roles=[], scopes=[], rate_limit=None)


def make_world(app: App) -> type:
    """The ``WitWorld`` class componentize-py exports for ``app``."""
    _install_logging()
    app.finalize()
    app._invalidate = cache.invalidate

    class WitWorld(wit_world.WitWorld):
        def describe(self) -> types.Manifest:
            return types.Manifest(
                name=app.name,
                routes=[
                    types.Route(
                        methods=route.methods,
                        path=route.path,
                        is_async=route.is_async,
                        policy=_policy(route),
                    )
                    for route in app.routes
                ],
            )

        def handle(self, req: types.Request) -> types.Response:
            return _response(app.dispatch(req.route, _request(req)))

        async def handle_async(self, req: types.Request) -> types.Response:
            return _response(await app.dispatch_async(req.route, _request(req)))

        async def on_start(self) -> None:
            return None

        async def on_stop(self) -> None:
            return None

    return WitWorld
