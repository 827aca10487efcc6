"""A wasi:http 0.3 service written to componentize-py's own bindings, built
with componentize-py alone, as its `http-p3` example is: a streamed hello,
an echo that streams the request body back, and `/hash-all`, which fetches
the URLs in its `url` headers at once and streams each one's SHA-256."""

import asyncio
import hashlib
from urllib import parse

import componentize_py_async_support
import wit_world
from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports import client
from wit_world.imports.wasi_http_types import (
    Fields,
    Method_Get,
    Method_Post,
    Request,
    Response,
    Scheme_Http,
    Scheme_Https,
)


class Handler(exports.Handler):
    async def handle(self, request: Request) -> Response:
        method = request.get_method()
        path = request.get_path_with_query()
        headers = request.get_headers().copy_all()
        if isinstance(method, Method_Get) and path == "/hello":
            return streamed(b"text/plain", [b"hello ", b"from ", b"python p3"])
        if isinstance(method, Method_Post) and path == "/echo":
            body, trailers = Request.consume_body(request, unit_future())
            kept = [(name, value) for name, value in headers if name == "content-type"]
            return Response.new(Fields.from_list(kept), body, trailers)[0]
        if isinstance(method, Method_Get) and path == "/hash-all":
            urls = [str(value, "utf-8") for name, value in headers if name == "url"]
            tx, rx = wit_world.byte_stream()
            componentize_py_async_support.spawn(hash_all(urls, tx))
            return Response.new(
                Fields.from_list([("content-type", b"text/plain")]), rx, trailers_future()
            )[0]
        response = Response.new(Fields(), None, trailers_future())[0]
        response.set_status_code(400)
        return response


def streamed(content_type: bytes, chunks: list[bytes]) -> Response:
    """A response whose body a task writes after the handler has returned."""
    tx, rx = wit_world.byte_stream()

    async def write() -> None:
        with tx:
            for chunk in chunks:
                await tx.write_all(chunk)

    componentize_py_async_support.spawn(write())
    return Response.new(Fields.from_list([("content-type", content_type)]), rx, trailers_future())[
        0
    ]


async def hash_all(urls: list[str], tx) -> None:
    with tx:
        for done in asyncio.as_completed([sha256(url) for url in urls]):
            url, digest = await done
            await tx.write_all(f"{url}: {digest}\n".encode())


async def sha256(url: str) -> tuple[str, str]:
    """The SHA-256 of what `url` answers, hashed as its body arrives."""
    parts = parse.urlparse(url)
    request = Request.new(Fields(), None, trailers_future(), None)[0]
    request.set_scheme(Scheme_Https() if parts.scheme == "https" else Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path or "/")
    try:
        response = await client.send(request)
    except Exception as error:  # noqa: BLE001 - the host's refusal is the answer
        return url, f"failed: {getattr(error, 'value', error)}"
    status = response.get_status_code()
    if not 200 <= status < 300:
        return url, f"status {status}"
    body = Response.consume_body(response, unit_future())[0]
    hasher = hashlib.sha256()
    with body:
        while not body.writer_dropped:
            hasher.update(await body.read(16 * 1024))
    return url, hasher.hexdigest()


def trailers_future():
    return wit_world.result_option_wasi_http_types_fields_wasi_http_types_error_code_future(
        lambda: Ok(None)
    )[1]


def unit_future():
    return wit_world.result_unit_wasi_http_types_error_code_future(lambda: Ok(None))[1]
