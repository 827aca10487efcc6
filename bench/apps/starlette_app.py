"""The same hello handlers on bare Starlette, for `make bench`."""

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello_async(request):
    return PlainTextResponse("Hello, world!")


def hello_sync(request):
    return PlainTextResponse("Hello, world!")


app = Starlette(routes=[Route("/sync", hello_sync), Route("/async", hello_async)])
