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
    cancelling it would make componentize-py trap when it completes."""
    task = asyncio.ensure_future(coroutine)
    _calls.add(task)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


def is_host_call(task: asyncio.Task) -> bool:
    """Whether ``task`` runs a host call (and so must not be cancelled)."""
    return task in _calls
