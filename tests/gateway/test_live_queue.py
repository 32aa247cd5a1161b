"""A live subscriber that does not keep up loses the oldest messages, counted, and its owner is told (the API then
drops the WebSocket client with close code 1013); one that keeps up loses nothing. A real simulated winder over
Modbus feeds a real runtime."""

from __future__ import annotations

import asyncio

from gateway.config import LineConfig
from gateway.runtime.line import LineRuntime
from gateway.runtime.view import LiveMessage
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from simulators.line import SimConfig, SimLine
from tests.waiting import wait_for

EQ = "w1"


async def test_a_subscriber_that_lets_messages_pile_up_is_told_and_one_that_reads_loses_nothing(tmp_path):
    spec = load_spec()
    sims = SimLine(spec)
    await sims.start([SimConfig(EQ, "winder", "modbus", port=0, seed=3, time_scale=30)])
    cfg = LineConfig.model_validate({"line": "live", "equipment": [{
        "id": EQ, "class": "winder", "protocol": "modbus", "endpoint": sims.endpoints()[EQ],
        "adapter": {"scan_interval_ms": 100}}]})
    task = None
    try:
        async with SqliteStore(tmp_path / "store.sqlite") as store:
            runtime = LineRuntime(cfg, spec, store)
            task = asyncio.create_task(runtime.run())
            stuck, reading = asyncio.Event(), asyncio.Event()
            never_read = runtime.live(max_queue=10, overflow=stuck)
            read = runtime.live(max_queue=10, overflow=reading)
            got: list[LiveMessage] = []

            async def reader() -> None:
                async for msg in read:
                    got.append(msg)

            pending = asyncio.ensure_future(anext(never_read))  # subscribed, then never asks for more
            consumer = asyncio.create_task(reader())
            await wait_for(lambda: runtime.health()["live_subscribers"] == 2, "two subscribers")
            await wait_for(stuck.is_set, "the stuck subscriber told it overflowed", timeout=30)
            assert runtime.health()["live_dropped"] > 0
            await wait_for(lambda: len(got) > 30, "the reading subscriber's messages", timeout=30)
            assert not reading.is_set(), "a subscriber that keeps up lost messages"
            consumer.cancel()
            pending.cancel()
            await asyncio.gather(consumer, pending, return_exceptions=True)
            await read.aclose()
            await never_read.aclose()
            await wait_for(lambda: runtime.health()["live_subscribers"] == 0, "both unsubscribed")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            task = None
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await sims.stop()
