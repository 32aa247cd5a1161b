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


async def test_a_subscriber_to_one_machine_gets_its_messages_only_and_a_machine_nobody_follows_builds_none(tmp_path):
    """Two winders; a subscriber follows w2 with a queue that it never reads: w1's messages neither reach it nor
    push w2's out, and w1 builds no live samples while only w2 is followed."""
    spec = load_spec()
    sims = SimLine(spec)
    await sims.start([SimConfig(eq, "winder", "modbus", port=0, seed=3, time_scale=30) for eq in ("w1", "w2")])
    cfg = LineConfig.model_validate({"line": "live", "equipment": [{
        "id": eq, "class": "winder", "protocol": "modbus", "endpoint": sims.endpoints()[eq],
        "adapter": {"scan_interval_ms": 100}} for eq in ("w1", "w2")]})
    task = None
    try:
        async with SqliteStore(tmp_path / "store.sqlite") as store:
            runtime = LineRuntime(cfg, spec, store)
            built: dict[str, int] = {"w1": 0, "w2": 0}
            for eq, dev in runtime.devices.items():
                def counting(samples, eq=eq, publish=dev._publish_samples):
                    built[eq] += 1
                    publish(samples)
                dev._publish_samples = counting  # counts the live messages each machine builds
            task = asyncio.create_task(runtime.run())
            overflow = asyncio.Event()
            follower = runtime.live(max_queue=10_000, overflow=overflow, equipment="w2")
            pending = asyncio.ensure_future(anext(follower))
            await wait_for(lambda: runtime.health()["live_subscribers"] == 1, "the subscriber")
            await wait_for(lambda: built["w2"] >= 20, "w2's live samples", timeout=30)
            await wait_for(lambda: runtime.devices["w1"].samples_read > 0, "w1 scanned")
            assert built["w1"] == 0
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
            queue = next(iter(runtime._subscribers))
            held = [queue.get_nowait() for _ in range(queue.qsize())]
            assert held and {m.equipment for m in held} == {"w2"}
            await follower.aclose()
            everyone = runtime.live(max_queue=10_000)
            pending = asyncio.ensure_future(anext(everyone))
            await wait_for(lambda: built["w1"] > 0, "w1's live samples once all machines are followed", timeout=30)
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
            await everyone.aclose()
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await sims.stop()
