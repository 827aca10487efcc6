"""Sleeping on the host: ``await sleep(seconds)`` waits without blocking
the instance, so other async requests run meanwhile. Inside a component it
is the host's ``sleep``; run natively (tests), ``asyncio.sleep``.

A host sleep is awaited in slices of at most ``SLICE_MS``: a sleep cannot
be cancelled mid-call (see ``_hostcalls``), so a cancelled one (an
``asyncio.wait_for`` that timed out, a cancelled timer) stops waiting at
once and leaves only its current slice running, which the export waits out
(see ``_tasks``). The event loop's timers inside a component are built on
these slices (see ``_guest``).
"""

import asyncio
import functools

from . import _blocking
from ._hostcalls import call

#: A host sleep is awaited in slices of at most this many milliseconds.
SLICE_MS = 10


@functools.cache
def _host():
    try:
        from wit_world.imports import host
    except ImportError:
        return None
    return host


async def pause(ms: int) -> None:
    """Waits ``ms`` milliseconds on the host in one call, not cancellable."""
    host = _host()
    if host is None or _blocking.running():  # the loop's own timers
        await asyncio.sleep(ms / 1000)
    else:
        await call(host.sleep(ms))


async def slept(host, ms: int) -> None:
    """Waits ``ms`` milliseconds on ``host``, a slice at a time."""
    while ms > 0:
        step = min(ms, SLICE_MS)
        await call(host.sleep(step))
        ms -= step


async def sleep(seconds: float) -> None:
    """Waits without blocking the instance: other async requests run
    meanwhile (in a ``def`` route's stream, which cannot suspend, it blocks)."""
    host = _host()
    if host is None or _blocking.running():  # the loop's own timers
        await asyncio.sleep(seconds)
    else:
        await slept(host, max(0, round(seconds * 1000)))
