"""``_hostcalls.call`` on a plain event loop, with a coroutine shaped like
componentize-py's host calls: it awaits the future of the host's answer,
which must never be cancelled, then reads the answer."""

import asyncio

from cello import _hostcalls


class Host:
    """The host's side of one call: the answer's future, and what the
    call's coroutine did with it."""

    def __init__(self) -> None:
        self.answer = asyncio.get_running_loop().create_future()
        self.read: list = []

    async def call(self):
        value = await self.answer  # the future componentize-py completes
        self.read.append(value)
        return value


def run(main):
    return asyncio.run(main())


def test_an_answer_given_at_once_is_returned_without_a_task():
    async def answered_at_once():
        return "row"

    async def main():
        before = len(asyncio.all_tasks())
        assert await _hostcalls.call(answered_at_once()) == "row"
        assert len(asyncio.all_tasks()) == before

    run(main)


def test_a_pending_call_is_awaited_in_the_callers_task():
    async def main():
        host = Host()
        asyncio.get_running_loop().call_later(0.01, host.answer.set_result, "row")
        before = len(asyncio.all_tasks())
        waiter = asyncio.ensure_future(_hostcalls.call(host.call()))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) == before + 1  # the waiter's alone
        assert await waiter == "row"
        assert host.read == ["row"]

    run(main)


def test_a_call_whose_answer_is_pending_twice_is_followed_to_its_end():
    async def main():
        first, second = asyncio.Future(), asyncio.Future()

        async def two_steps():
            return await first + await second

        loop = asyncio.get_running_loop()
        loop.call_later(0.01, first.set_result, 1)
        loop.call_later(0.02, second.set_result, 2)
        assert await _hostcalls.call(two_steps()) == 3

    run(main)


def test_a_cancelled_wait_leaves_the_call_running_to_its_end():
    async def main():
        host = Host()
        try:
            await asyncio.wait_for(_hostcalls.call(host.call()), 0.01)
        except TimeoutError:
            pass
        else:
            raise AssertionError("the wait was not cut")
        assert not host.answer.cancelled()
        calls = [t for t in asyncio.all_tasks() if _hostcalls.is_host_call(t)]
        assert len(calls) == 1
        host.answer.set_result("row")
        assert await calls[0] == "row"
        assert host.read == ["row"]

    run(main)


def test_a_wait_cancelled_after_the_answer_came_still_reads_it():
    async def main():
        host = Host()
        waiter = asyncio.ensure_future(_hostcalls.call(host.call()))
        await asyncio.sleep(0)  # the waiter is now on the pending call
        host.answer.set_result("row")
        waiter.cancel()  # before the waiter resumes
        try:
            await waiter
        except asyncio.CancelledError:
            pass
        calls = [t for t in asyncio.all_tasks() if _hostcalls.is_host_call(t)]
        for call in calls:
            await call
        assert host.read == ["row"]

    run(main)
