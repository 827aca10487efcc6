"""Host functions an app may call. Inside a component they reach the Cello
host; run natively (tests), they fall back to plain Python."""

import asyncio
import functools
import weakref

#: A host sleep is awaited in slices of at most this many milliseconds.
#: componentize-py 0.25 cannot cancel a pending host call: the call must run
#: to its end. So a cancelled sleep (an ``asyncio.wait_for`` that timed
#: out, a cancelled timer) stops waiting at once but leaves its current
#: slice running, and the export waits that out (see ``_tasks``).
SLICE_MS = 10

#: The tasks that run host calls, which are never to be cancelled.
_calls: "weakref.WeakSet[asyncio.Task]" = weakref.WeakSet()


@functools.cache
def _host():
    try:
        from wit_world.imports import host
    except ImportError:
        return None
    return host


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()  # seen: a failure nobody awaits is not re-raised


async def call(coroutine):
    """Awaits a host call's ``coroutine`` in a task of its own. Cancelling
    the wait (a timeout) leaves the call running to its end, as it must:
    cancelling it would make componentize-py trap when it completes."""
    task = asyncio.ensure_future(coroutine)
    _calls.add(task)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


def is_host_call(task: asyncio.Task) -> bool:
    """Whether ``task`` runs a host call (and so must not be cancelled)."""
    return task in _calls


async def pause(ms: int) -> None:
    """Waits ``ms`` milliseconds on the host, not cancellable."""
    host = _host()
    if host is None:
        await asyncio.sleep(ms / 1000)
    else:
        await call(host.sleep(ms))


async def _slept(host, ms: int) -> None:
    while ms > 0:
        step = min(ms, SLICE_MS)
        await call(host.sleep(step))
        ms -= step


async def sleep(seconds: float) -> None:
    """Waits without blocking the instance: other async requests run meanwhile."""
    host = _host()
    if host is None:
        await asyncio.sleep(seconds)
    else:
        await _slept(host, max(0, round(seconds * 1000)))
