"""Thread and process pools where there are no threads.

WASI CPython has neither threads nor processes, so seed code such as
``await loop.run_in_executor(executor, fn, n)``, ``asyncio.to_thread(fn)``
or ``ProcessPoolExecutor()`` cannot hand work to another thread there.
Inside a component (``install()``, done by the build) each runs the
function inline on the instance instead, and the first time logs a warning
saying so: the result is the same, but the event loop waits for it. For
CPU-bound work, use a ``def`` route: the host runs those on instances of
their own, side by side, which is what a thread pool was for.

Run natively, nothing changes: threads are real there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cello")

_warned: set[str] = set()


def _warn_once(what: str) -> None:
    if what not in _warned:
        _warned.add(what)
        log.warning(
            "%s runs the function inline: a WebAssembly instance has no threads, so "
            "the event loop waits for it. For CPU-bound work use a `def` route, "
            "which the host runs on instances of its own.",
            what,
        )


class InlineExecutor(concurrent.futures.Executor):
    """An executor that runs each function at once, in the caller."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._name = type(self).__name__

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any):
        _warn_once(self._name)
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # noqa: BLE001 - handed to the caller
            future.set_exception(error)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None


class ThreadPoolExecutor(InlineExecutor):
    """``concurrent.futures.ThreadPoolExecutor``, inline."""


class ProcessPoolExecutor(InlineExecutor):
    """``concurrent.futures.ProcessPoolExecutor``, inline."""


def run_in_executor(loop: Any, executor: Any, func: Callable[..., Any], *args: Any):
    """``loop.run_in_executor``, inline: a future that is already done."""
    _warn_once("run_in_executor" if executor is None else type(executor).__name__)
    future = loop.create_future()
    try:
        future.set_result(func(*args))
    except Exception as error:  # noqa: BLE001 - raised where it is awaited
        future.set_exception(error)
    return future


async def run_in_threadpool(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Starlette's ``run_in_threadpool``: a thread natively, inline in a
    component (where ``install()`` made ``run_in_executor`` inline)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(func, *args, **kwargs))


def install(loop_type: type | None = None) -> None:
    """Makes the pools inline: ``concurrent.futures``' executors now, and
    ``loop_type``'s ``run_in_executor`` (which ``asyncio.to_thread`` uses)."""
    concurrent.futures.ThreadPoolExecutor = ThreadPoolExecutor
    concurrent.futures.ProcessPoolExecutor = ProcessPoolExecutor
    if loop_type is not None:
        loop_type.run_in_executor = run_in_executor
