"""A stop that Python 3.11's asyncio.wait_for loses, kept; and what a slow stop waits for."""

from __future__ import annotations

import asyncio
import sys

import pytest

from gateway.cancellation import keep_cancellation, raise_if_stopped, stop_requests, where_tasks_wait


async def _reply_and_stop_in_one_turn(guarded: bool) -> asyncio.Task[int]:
    """A library call waiting with asyncio.wait_for (as pymodbus for a reply, aiomqtt for a PUBACK), whose
    result arrives in the same turn of the loop as the task's cancellation."""
    reply: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def library_call() -> int:
        return await asyncio.wait_for(reply, 10)

    async def caller() -> int:
        return await (keep_cancellation(library_call()) if guarded else library_call())

    task = asyncio.create_task(caller())
    await asyncio.sleep(0)  # the call is waiting
    reply.set_result(1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return task


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 rebuilt wait_for on asyncio.timeout")
async def test_python_3_11_wait_for_loses_a_stop_that_lands_with_the_result() -> None:
    task = await _reply_and_stop_in_one_turn(guarded=False)
    assert not task.cancelled() and task.result() == 1  # the stop is gone: the task would go on
    assert task.cancelling() == 1  # but counted


async def test_keep_cancellation_raises_the_stop_the_library_lost() -> None:
    task = await _reply_and_stop_in_one_turn(guarded=True)
    assert task.cancelled()


async def test_raise_if_stopped_looks_only_at_stops_since_it_was_asked() -> None:
    async def loop_body() -> str:
        before = stop_requests()
        raise_if_stopped(before)  # nothing new
        me = asyncio.current_task()
        assert me is not None
        me.cancel()  # a stop a library took and dropped
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass  # dropped, as the library would
        raise_if_stopped(before)
        return "went on"

    task = asyncio.create_task(loop_body())
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_where_tasks_wait_names_each_task_and_the_line_it_waits_at() -> None:
    never = asyncio.Event()

    async def inner_wait() -> None:
        await never.wait()

    async def outer() -> None:
        await inner_wait()

    task = asyncio.create_task(outer(), name="forward-mqtt")
    await asyncio.sleep(0)
    try:
        (line,) = [w for w in where_tasks_wait() if w.startswith("forward-mqtt: ")]
        chain = line.removeprefix("forward-mqtt: ").split(" > ")
        assert [c.split()[-1] for c in chain] == ["outer", "inner_wait", "wait"]  # down to asyncio's Event.wait
        assert chain[0].startswith("unit/test_cancellation.py:") and chain[-1].startswith("asyncio/locks.py:")
        assert not any("test_where_tasks_wait" in w for w in where_tasks_wait())  # not the task asking
    finally:
        task.cancel()
