"""Server-sent events, spelled as sse-starlette spells them:
``EventSourceResponse`` over a generator of events, each a dict, a
``ServerSentEvent`` or a string of data.

    @app.get("/ticks")
    async def ticks():
        async def events():
            for n in range(10):
                yield {"event": "tick", "id": n, "data": n}
                await sleep(1)
        return EventSourceResponse(events(), ping=15)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from . import sleeps
from .messages import StreamingResponse

#: Seconds between keep-alive comments when the generator is quiet.
DEFAULT_PING_INTERVAL = 15

#: Line separator, sse-starlette's default.
DEFAULT_SEPARATOR = "\r\n"


class ServerSentEvent:
    """One event: ``data`` (split into one ``data:`` line per line),
    ``event``, ``id``, ``retry`` (ms) and a ``comment``."""

    def __init__(
        self,
        data: Any = None,
        *,
        event: str | None = None,
        id: int | str | None = None,
        retry: int | None = None,
        comment: str | None = None,
        sep: str | None = None,
    ):
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry
        self.comment = comment
        self.sep = sep or DEFAULT_SEPARATOR

    def encode(self) -> bytes:
        """The event in the wire format, ending with a blank line."""
        sep = self.sep
        lines = []
        if self.comment is not None:
            lines += [f": {line}" for line in str(self.comment).splitlines()]
        if self.id is not None:
            lines.append(f"id: {self.id}")
        if self.event is not None:
            lines.append(f"event: {self.event}")
        if self.data is not None:
            lines += [f"data: {line}" for line in str(self.data).splitlines() or [""]]
        if self.retry is not None:
            if not isinstance(self.retry, int):
                raise TypeError("retry is a number of milliseconds (an int)")
            lines.append(f"retry: {self.retry}")
        return (sep.join(lines) + sep + sep).encode()


def _event(item: Any, sep: str) -> bytes:
    if isinstance(item, ServerSentEvent):
        return item.encode()
    if isinstance(item, Mapping):
        return ServerSentEvent(**item, sep=sep).encode()
    if isinstance(item, bytes):
        return item
    return ServerSentEvent(item, sep=sep).encode()


class EventSourceResponse(StreamingResponse):
    """A ``text/event-stream`` of the events ``content`` yields, with a
    ``: ping`` comment every ``ping`` seconds while it yields none, so
    proxies and the host's idle limit keep the stream open. The client
    leaving closes the generator (its ``finally`` runs)."""

    DEFAULT_PING_INTERVAL = DEFAULT_PING_INTERVAL

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str = "text/event-stream",
        background: Any = None,
        ping: float | None = None,
        sep: str | None = None,
    ):
        pairs = {"cache-control": "no-store", "x-accel-buffering": "no", **(headers or {})}
        super().__init__(content, status_code, pairs, media_type, background)
        self.ping_interval = DEFAULT_PING_INTERVAL if ping is None else ping
        self.sep = sep or DEFAULT_SEPARATOR

    def ping_message(self) -> bytes:
        return f": ping{self.sep}{self.sep}".encode()

    async def chunks(self):
        """Each event encoded, with pings between when the generator is
        quiet. The generator runs in a task of its own, feeding a queue the
        pinger also feeds: a ping is one host sleep per interval, never a
        timer per event."""
        content = self.body_iterator
        if not hasattr(content, "__aiter__"):
            for item in content:
                yield _event(item, self.sep)
            return
        queue: asyncio.Queue = asyncio.Queue(maxsize=1)
        done = object()

        async def produce() -> None:
            try:
                async for item in content:
                    await queue.put(_event(item, self.sep))
            finally:
                await queue.put(done)

        async def ping() -> None:
            while True:
                await sleeps.pause(round(self.ping_interval * 1000))
                if queue.empty():
                    await queue.put(self.ping_message())

        tasks = [asyncio.ensure_future(produce())]
        if self.ping_interval and self.ping_interval > 0:
            tasks.append(asyncio.ensure_future(ping()))
        try:
            while (chunk := await queue.get()) is not done:
                yield chunk
        finally:
            # The client left mid-wait: the generator stops where it waits.
            for task in tasks:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*tasks, return_exceptions=True)

    def whole_now(self) -> list[bytes]:
        return [_event(item, self.sep) for item in self.body_iterator]

    async def whole(self) -> list[bytes]:
        """A ``def`` route's events, encoded, without pings: they are sent
        whole, so no client waits between them."""
        content = self.body_iterator
        try:
            if hasattr(content, "__aiter__"):
                return [_event(item, self.sep) async for item in content]
            return [_event(item, self.sep) for item in content]
        finally:
            await self.aclose()
