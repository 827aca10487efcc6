"""Host functions an app may call. Inside a component they reach the Cello
host; run natively (tests), they fall back to plain Python."""

import asyncio
import contextvars
import functools
import math
import time

#: A host sleep is awaited in slices of at most this many milliseconds.
#: componentize-py 0.25 cannot cancel a pending host call: the call must run
#: to its end, and a handler that returns while one is pending traps. So a
#: cancelled sleep (an ``asyncio.wait_for`` that timed out, a cancelled
#: timer) stops waiting at once but leaves its current slice running, and
#: the handler waits out that slice, at most this long, before it returns.
SLICE_MS = 10

#: The latest moment a host sleep started by the current handler ends.
_settles_at: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
    "cello_settles_at", default=None
)


@functools.cache
def _host():
    try:
        from wit_world.imports import host
    except ImportError:
        return None
    return host


async def _slept(host, ms: int) -> None:
    settles = _settles_at.get()
    while ms > 0:
        step = min(ms, SLICE_MS)
        if settles is not None:
            settles[0] = max(settles[0], time.monotonic() + step / 1000)
        # Shielded: cancelling the wait must leave the host call's own
        # future alone, or componentize-py fails when the call completes.
        await asyncio.shield(host.sleep(step))
        ms -= step


async def sleep(seconds: float) -> None:
    """Waits without blocking the instance: other async requests run meanwhile."""
    host = _host()
    if host is None:
        await asyncio.sleep(seconds)
    else:
        await _slept(host, max(0, round(seconds * 1000)))


def track() -> list[float]:
    """Starts tracking the host sleeps of the calling handler (and the tasks
    it spawns); ``settle`` then waits out any it abandoned."""
    settles = [0.0]
    _settles_at.set(settles)
    return settles


async def settle(settles: list[float]) -> None:
    """Waits until every host sleep the handler started has ended, so none
    is pending when it returns."""
    host = _host()
    if host is not None and settles[0]:
        # Past the last slice's end by a tick, so its completion is in.
        remaining = max(0.0, settles[0] - time.monotonic())
        await host.sleep(math.ceil(remaining * 1000) + 1)
