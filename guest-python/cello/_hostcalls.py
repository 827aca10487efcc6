"""Awaiting a call into the host, so that cancelling the wait never
cancels the call.

componentize-py 0.25 cannot cancel a pending host call: a cancelled one
makes the instance trap when it completes. So every host call an app may
time out (a sleep, an outbound request) runs in a task of its own, which a
timeout leaves running to its end, and which ``_tasks`` knows never to
cancel.
"""

import asyncio
import weakref

#: The tasks that run host calls, which are never to be cancelled.
_calls: "weakref.WeakSet[asyncio.Task]" = weakref.WeakSet()


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()  # seen: a failure nobody awaits is not re-raised


async def call(coroutine):
    """Awaits a host call's ``coroutine`` in a task of its own. Cancelling
    the wait (a timeout) leaves the call running to its end, as it must:
    cancelling it would make componentize-py trap when it completes.

    A call the host answers on the spot (a SQLite read) ends in its first
    step, taken here: there is nothing pending to protect, and no task,
    shield or trip through the event loop is made for it."""
    try:
        waiting = coroutine.send(None)
    except StopIteration as done:
        return done.value
    task = asyncio.ensure_future(_rest(coroutine, waiting))
    _calls.add(task)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


async def _rest(coroutine, waiting):
    return await _Rest(coroutine, waiting)


class _Rest:
    """The rest of a host call's ``coroutine``, whose first step yielded
    ``waiting`` (the future of the host's answer), driven step by step as
    a task drives one (``await`` will not take a coroutine already begun)."""

    __slots__ = ("coroutine", "waiting")

    def __init__(self, coroutine, waiting):
        self.coroutine = coroutine
        self.waiting = waiting

    def __await__(self):
        waiting = self.waiting
        while True:
            try:
                yield waiting
            except BaseException as error:  # noqa: BLE001 - passed on, as a task would
                step, value = self.coroutine.throw, error
            else:
                step, value = self.coroutine.send, None
            try:
                waiting = step(value)
            except StopIteration as done:
                return done.value


def is_host_call(task: asyncio.Task) -> bool:
    """Whether ``task`` runs a host call (and so must not be cancelled)."""
    return task in _calls
