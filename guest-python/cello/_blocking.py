"""Running a ``def`` route's async stream to its end inside the host's sync
``handle`` call, where nothing can suspend the component: a small event
loop of the SDK's own runs it, whose timers block the instance
(``asyncio.sleep`` and ``cello.host.sleep`` sleep through WASI), and the
whole body goes out at the end, as the stream of a ``def`` route does. SQL
and outbound HTTP run through the blocking imports; ``asyncio.to_thread``
runs inline; awaiting any other host call raises, saying so. The route's ``timeout-ms`` covers
the whole collection. The test client collects such a stream the same way.
"""

import asyncio
import contextlib
import logging
import time

from . import concurrency

#: True while a ``def`` route's stream runs here.
_running = False

_NOT_HERE = (
    "a `def` route's stream awaited a host call that cannot block the instance; "
    "make the route `async def`"
)


def running() -> bool:
    """True while a ``def`` route's stream is being collected."""
    return _running


def refuse():
    """The error for a host call awaited while :func:`running`."""
    return RuntimeError(_NOT_HERE)


class _Timers:
    """The loop's selector: there is nothing to select, only timers to wait
    for, and nothing else could end a wait without one."""

    def select(self, timeout):
        if timeout is None:
            raise RuntimeError(
                "a `def` route's stream waits for something nothing can complete "
                "in a sync call; make the route `async def`"
            )
        if timeout > 0:
            time.sleep(timeout)
        return []


class _BlockingLoop(asyncio.BaseEventLoop):
    def __init__(self):
        super().__init__()
        self._selector = _Timers()

    def _process_events(self, event_list):
        pass

    def _write_to_self(self):
        pass

    # No thread could wake this loop: executor work runs inline.
    run_in_executor = concurrency.run_in_executor


def run(coroutine):
    """Runs ``coroutine`` to its end on a loop of its own, blocking. If it
    fails midway (it waits for what cannot come), it is cancelled, and so
    is any task it left, so the generators they hold are closed here, their
    ``finally`` run."""
    global _running
    loop = _BlockingLoop()
    task = loop.create_task(coroutine)
    # Inside a component, componentize-py's loop counts as running even in
    # a sync call (where it cannot run): it steps aside meanwhile.
    outer = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    was_running, _running = _running, True
    try:
        return loop.run_until_complete(task)
    finally:
        _cancel_left(loop)
        _running = was_running
        loop.close()
        asyncio._set_running_loop(outer)


def _cancel_left(loop: asyncio.AbstractEventLoop) -> None:
    """Cancels what the run left on ``loop`` and lets it finish."""
    left = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not left:
        return
    logging.getLogger("cello").warning(
        "a `def` route's stream left %d task(s) unfinished; cancelled", len(left)
    )
    for task in left:
        task.cancel()
    with contextlib.suppress(BaseException):
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
