"""A Modbus machine's event mailbox is one window for every client. A client that keeps selecting other
events tears many of the gateway's reads; the gateway reads each torn event again and never skips one.
(Found by the fault matrix's second-gateway row: after five torn reads in a row the event was taken as
gone from the machine's ring and skipped.)"""

from __future__ import annotations

import asyncio
import random
import time

from pymodbus.client import AsyncModbusTcpClient

from gateway.config import LineConfig
from gateway.runtime.line import LineRuntime
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from interface_spec import modbus_codec as codec
from interface_spec.modbus_map import layout
from simulators.line import SimConfig, SimLine
from tests.reliability.matrix import count_events
from tests.waiting import wait_for

EQ = "w1"


async def test_events_torn_by_another_client_are_read_again_never_skipped(tmp_path):
    spec = load_spec()
    sims = SimLine(spec)
    await sims.start([SimConfig(EQ, "winder", "modbus", port=0, seed=3, time_scale=30)])
    sim = sims.simulators[EQ]
    store = SqliteStore(tmp_path / "store.sqlite")
    await store.start()
    cfg = LineConfig.model_validate({"line": "mailbox", "equipment": [{
        "id": EQ, "class": "winder", "protocol": "modbus", "endpoint": sims.endpoints()[EQ],
        "adapter": {"scan_interval_ms": 100}}]})
    runtime = LineRuntime(cfg, spec, store)
    task = asyncio.create_task(runtime.run())
    noisy = AsyncModbusTcpClient("127.0.0.1", port=sim.binding.port)
    request = layout(spec.core, spec.get_class("winder")).areas["events.request_seq"].address
    rng = random.Random(1)
    try:
        await wait_for(lambda: runtime.get(EQ) is not None and runtime.get(EQ).available, "the winder available")
        start, first = time.time(), sim.machine.last_seq + 1
        assert await noisy.connect()
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:  # select some other held event, as fast as the machine answers
            await noisy.write_registers(request, codec.encode(rng.randint(1, max(1, sim.machine.last_seq)), "uint32"))
        noisy.close()
        last = sim.machine.last_seq
        assert last - first >= 20, "the winder made too few events to tell"

        async def stored() -> list[int]:
            await store.flush()
            return [e["seq"] for e in await store.events(EQ, start=start - 60, limit=100_000)]

        async def caught_up() -> bool:
            return max(await stored(), default=0) >= last

        await wait_for(caught_up, "the gateway to read up to the machine's last event", timeout=30)
        assert count_events(first, last, await stored()) == (0, 0)
    finally:
        noisy.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
        await sims.stop()
