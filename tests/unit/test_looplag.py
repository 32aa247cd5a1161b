"""The loop-lag monitor sees a blocked event loop, and forgets it after its window."""

from __future__ import annotations

import asyncio
import time

from gateway.runtime.looplag import LoopLag


async def test_a_blocking_call_shows_as_lag_and_ages_out_of_the_window():
    lag = LoopLag(interval_s=0.02, window_s=0.5)
    task = asyncio.create_task(lag.run())
    try:
        await asyncio.sleep(0.2)
        quiet = lag.max_s
        time.sleep(0.3)  # a callback that blocks the loop, as a synchronous disk or CPU burst would
        await asyncio.sleep(0.1)
        assert lag.max_s >= 0.25 > quiet, (quiet, lag.max_s)
        assert lag.summary()["max_1m_ms"] >= 250
        await asyncio.sleep(0.8)  # past the window: only the quiet wake-ups since remain
        assert lag.max_s < 0.25 and lag.last_s < 0.25
        assert lag.total_s >= 0.25  # the counter keeps what happened
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
