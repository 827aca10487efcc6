"""The same hello handlers on FastAPI, for `make bench`."""

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/sync", response_class=PlainTextResponse)
def hello_sync():
    return "Hello, world!"


@app.get("/async", response_class=PlainTextResponse)
async def hello_async():
    return "Hello, world!"
