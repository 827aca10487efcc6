"""Tasks a handler leaves behind, inside a component.

In componentize-py each call of an async export is one component-model
task, and every host call it starts (a sleep, an outbound request) is a
subtask joined to it. If the export ends while one of them is still
pending, the instance traps ("resource has children"), taking every other
request on it down too. Three guest patterns did that:

- a fire-and-forget ``asyncio.create_task`` that outlives its handler;
- ``asyncio.wait_for`` (or ``asyncio.timeout``) around a host call that is
  slower than the timeout: the call itself cannot be cancelled;
- an exception in a task nobody awaited, which the event loop re-raised.

So, for each export call: every task made during it is recorded
(``record``); host calls are awaited through ``_hostcalls.call``, so cancelling
the wait never cancels the call; and when the handler has its response,
``finish`` keeps the export alive, after the response is on its way, until
those tasks are done. A task still running ``LEFTOVER_SECONDS`` after the
response is cancelled, with a log line, and the host calls it left are
waited out. Exceptions in such tasks are logged, never re-raised.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time

from ._hostcalls import is_host_call
from .sleeps import pause

log = logging.getLogger("cello")

#: How long tasks a handler left running may go on after its response.
LEFTOVER_SECONDS = 30.0
#: How often ``finish`` looks at them, in milliseconds.
POLL_MS = 20

#: The tasks made during the current export call, and by its tasks.
_spawned: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "cello_spawned", default=None
)

_patched: set = set()


def install(loop_type: type) -> None:
    """Records every task made on ``loop_type``'s loops in the current
    export call's list, and logs what the loop would re-raise as a trap."""
    if loop_type in _patched:
        return
    _patched.add(loop_type)
    create_task = loop_type.create_task

    def recording_create_task(self, coroutine, *args, **kwargs):
        spawned = _spawned.get()
        if spawned is None and kwargs.get("context") is None:
            # Only componentize-py's own tasks come with a context of theirs.
            coroutine.close()
            raise RuntimeError(
                "a task was started outside an async call (in a `def` route, say), "
                "where there is no event loop; declare the route `async def`"
            )
        task = create_task(self, coroutine, *args, **kwargs)
        if spawned is not None:
            spawned.append(task)
        return task

    def log_exception(self, context: dict) -> None:
        error = context.get("exception")
        log.error("%s", context.get("message", "an asyncio task failed"), exc_info=error)

    loop_type.create_task = recording_create_task
    loop_type.call_exception_handler = log_exception


def record() -> list:
    """Starts recording the tasks of the current export call."""
    spawned: list = []
    _spawned.set(spawned)
    return spawned


def leftover(spawned: list) -> bool:
    """Whether any recorded task is still running."""
    return any(not task.done() for task in spawned)


async def finish(spawned: list, what: str, limit: float = LEFTOVER_SECONDS) -> None:
    """Waits until every recorded task is done, cancelling (with a log
    line) those still running after ``limit`` seconds; never raises."""
    try:
        me = asyncio.current_task()
        deadline = time.monotonic() + limit
        cancelled = False
        while True:
            _report(spawned)
            pending = [t for t in spawned if t is not me and not t.done()]
            if not pending:
                return
            if not cancelled and time.monotonic() >= deadline:
                cancelled = True
                users = [t for t in pending if not is_host_call(t)]
                log.warning(
                    "%s left %d task(s) running %.0f s after it ended; cancelling them",
                    what,
                    len(users),
                    limit,
                )
                for task in users:
                    task.cancel()
            await pause(POLL_MS)
    except BaseException:  # noqa: BLE001 - an exception here would trap the instance
        log.exception("waiting for the tasks of %s failed", what)


def _report(spawned: list) -> None:
    """Logs the failures of finished tasks, and forgets them."""
    keep = []
    for task in spawned:
        if not task.done():
            keep.append(task)
        elif not task.cancelled() and task.exception() is not None:
            error = task.exception()
            if not is_host_call(task):
                log.error("a task failed", exc_info=error)
    spawned[:] = keep
