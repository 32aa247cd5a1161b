"""A rack's tick publishes thousands of values: the simulator's event loop turns meanwhile, and every value lands."""

from __future__ import annotations

import asyncio

from simulators.line import SimConfig, SimLine
from simulators.servers.modbus_binding import PUBLISH_SLICE


async def test_a_large_publish_lets_requests_in_and_stores_every_value(spec):
    sims = SimLine(spec)
    await sims.start([SimConfig("rack0", "formation", "modbus", port=0, seed=1, counts={"channel": 512})])
    try:
        (sim,) = sims.simulators.values()
        binding = sim.binding
        changes = {p: round(v + 0.0123, 4) for p, v in sim.machine.values.items() if isinstance(v, float)}
        assert len(changes) > PUBLISH_SLICE
        seen_during: list[bool] = []

        async def another_request() -> None:
            seen_during.append(publishing.done())

        publishing = asyncio.create_task(binding.publish(changes))
        await asyncio.gather(publishing, another_request())
        assert seen_during == [False]  # it ran while the publish was under way
        for path, value in changes.items():
            slot = binding.slots.get(path)
            if slot is not None:
                p = slot.point
                assert binding.server.get_registers(p.address, p.count) == slot.encode(value), path
    finally:
        await sims.stop()
