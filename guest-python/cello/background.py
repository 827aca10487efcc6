"""Background tasks: work to do after the response has been sent.

A handler declares a ``BackgroundTasks`` parameter, or makes one anywhere
during the request (``tasks = BackgroundTasks()``); every one made is
collected, and the response carries them all. The host calls back to run
them once the response is on its way.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cello")

#: The background tasks made during the current request, wherever made.
_request_tasks: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "cello_request_tasks", default=None
)


class BackgroundTasks:
    """Work to do after the response has been sent: declare a parameter of
    this type, or make one in the handler (``tasks = BackgroundTasks()``),
    and ``add_task(fn, *args, **kwargs)``; ``fn`` may be async. A failing
    task is logged and never changes the response."""

    def __init__(self, tasks: list | None = None) -> None:
        self.tasks: list[tuple[Callable[..., Any], tuple, dict]] = list(tasks or [])
        made = _request_tasks.get()
        if made is not None:
            made.append(self)

    def add_task(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.tasks.append((fn, args, kwargs))

    async def run(self) -> None:
        """Runs every task in order; one that fails does not stop the rest."""
        for fn, args, kwargs in self.tasks:
            try:
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - a task's failure is only logged
                log.exception("background task %s failed", getattr(fn, "__name__", fn))


def collect_tasks() -> tuple[list, contextvars.Token]:
    """Starts collecting every ``BackgroundTasks()`` the request makes."""
    made: list = []
    return made, _request_tasks.set(made)


def merged_tasks(made: list, token: contextvars.Token, current: Any) -> Any:
    """Stops collecting; the response's tasks, with every collected one."""
    _request_tasks.reset(token)
    extra = [t for t in made if t is not current and t.tasks]
    if not extra:
        return current
    merged = BackgroundTasks.__new__(BackgroundTasks)
    merged.tasks = [
        task for group in ([current] if current else []) + extra for task in group.tasks
    ]
    return merged
