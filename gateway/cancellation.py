"""Stops that libraries built on Python 3.11's asyncio.wait_for can lose.

In Python 3.11, asyncio.wait_for returns the awaited result instead of raising
when a cancellation lands just as that result arrives (3.12 rebuilt it on
asyncio.timeout). pymodbus waits for each reply that way and aiomqtt for each
PUBACK: a task stopped at that moment would scan or publish on as if never
asked, and the gateway's stop, which waits for every task to end, would wait
for ever. The request is not lost everywhere: the task still counts it
(`Task.cancelling()`), so the loops that call such libraries look at the count.
The gateway's own code uses asyncio.timeout, which keeps every cancellation
(ruff bans asyncio.wait_for in this tree).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def stop_requests() -> int:
    """How many cancellations of the current task are pending (0 outside a task)."""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def raise_if_stopped(before: int) -> None:
    """Raise CancelledError when the current task was cancelled since `stop_requests()` said `before`."""
    if stop_requests() > before:
        raise asyncio.CancelledError()


async def keep_cancellation(aw: Awaitable[T]) -> T:
    """Await a library call without losing a cancellation on the way."""
    before = stop_requests()
    result = await aw
    raise_if_stopped(before)
    return result


def where_tasks_wait() -> list[str]:
    """Each unfinished task but the current one, with its chain of awaits down to where it waits: what a stop
    waits for ("forward-mqtt: forward/service.py:73 _keep_running > forward/mqtt.py:107 _forward > ...")."""
    out = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        chain = []
        aw: Any = task.get_coro()  # walked by duck typing: coroutines, async generators, futures (the end)
        while aw is not None:
            frame = getattr(aw, "cr_frame", None) or getattr(aw, "ag_frame", None)
            if frame is not None:
                where = "/".join(Path(frame.f_code.co_filename).parts[-2:])
                chain.append(f"{where}:{frame.f_lineno} {frame.f_code.co_name}")
            aw = getattr(aw, "cr_await", None) or getattr(aw, "ag_await", None)
        out.append(f"{task.get_name()}: {' > '.join(chain) or 'not started'}")
    return sorted(out)
