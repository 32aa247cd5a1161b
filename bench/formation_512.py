"""Benchmark: the formation simulator with 512 channels at 1 Hz, over Modbus and OPC UA.

Two measurements per protocol:

* stepped: the simulator is stepped by hand, one simulated second of wall
  clock per step at several time scales; reports the cost of the physics
  step and of publishing the changed values (encode + store, or OPC UA
  writes with a client subscribed to every channel voltage);
* live: the simulator runs on its own clock for a while with a client
  reading every channel once a second; reports the tick statistics and the
  process CPU time per wall second.

Run: .venv/bin/python bench/formation_512.py [--seconds 10] [--protocol modbus|opcua|both]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from asyncua import Client
from pymodbus.client import AsyncModbusTcpClient

from interface_spec import load_spec
from interface_spec.modbus_map import layout
from simulators.line import SimConfig, SimLine
from simulators.simulator import Simulator

CHANNELS = 512
SCALES = (1.0, 60.0, 600.0)


def ms(values: list[float]) -> str:
    return f"mean {statistics.mean(values):7.2f} ms  p95 {sorted(values)[int(len(values) * 0.95) - 1]:7.2f} ms  max {max(values):7.2f} ms"


async def stepped(protocol: str, steps: int) -> None:
    spec = load_spec()
    for scale in SCALES:
        sim = Simulator(SimConfig("rack", "formation", protocol, time_scale=scale, counts={"channel": CHANNELS},
                                  auto_start=False, options={"first_tray": "fresh"}), spec)
        await sim.start()
        client: Any = None
        try:
            m = sim.machine
            m.execute("Reset")
            m.tick(5.0)
            m.execute("Start")
            m.tick(5.0)
            if protocol == "opcua":
                client = Client(sim.url)
                await client.connect()
                ns = await client.get_namespace_index(spec.core.opcua.namespace_uri)
                nodes = [await client.nodes.objects.get_child([f"{ns}:Machines", f"{ns}:rack",
                                                               f"{ns}:Channel_{i:03d}", f"{ns}:Voltage"])
                         for i in range(1, CHANNELS + 1)]
                sub = await client.create_subscription(1000, None)
                for k in range(0, len(nodes), 500):
                    await sub.subscribe_data_change(nodes[k:k + 500])
            physics, publish, values = [], [], []
            for _ in range(steps):
                t0 = time.perf_counter()
                m.tick(scale, 1.0)
                sim.model.step(scale)
                t1 = time.perf_counter()
                changes = m.take_changes()
                await sim.binding.publish(changes)
                t2 = time.perf_counter()
                physics.append((t1 - t0) * 1000)
                publish.append((t2 - t1) * 1000)
                values.append(len(changes))
            print(f"  {protocol:6} stepped, time scale {scale:5g}: physics {ms(physics)}")
            print(f"  {'':6}                            publish {ms(publish)}  ({statistics.mean(values):.0f} values/step)")
        finally:
            if client is not None:
                await client.disconnect()
            await sim.stop()


async def live(protocol: str, seconds: float) -> None:
    spec = load_spec()
    line = SimLine(spec)
    await line.start([SimConfig("rack", "formation", protocol, time_scale=60.0, counts={"channel": CHANNELS})])
    sim = line.simulators["rack"]
    reads = 0
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        stats0 = (sim.stats.ticks, sim.stats.total_ms, sim.stats.physics_ms, sim.stats.publish_ms, sim.stats.physics_steps)
        deadline = wall0 + seconds
        if protocol == "modbus":
            lay = layout(spec.core, spec.get_class("formation"))
            first, last = lay.point("channel[1].cell_id"), lay.point(f"channel[{CHANNELS}].result_grade")
            client = AsyncModbusTcpClient("127.0.0.1", port=sim.binding.port, timeout=5.0)
            await client.connect()
            try:
                while time.perf_counter() < deadline:
                    start = time.perf_counter()
                    for address in range(first.address, last.end, 125):
                        rr = await client.read_holding_registers(address, count=min(125, last.end - address))
                        assert not rr.isError()
                        reads += 1
                    await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - start)))
            finally:
                client.close()
        else:
            async with Client(sim.url) as client:
                ns = await client.get_namespace_index(spec.core.opcua.namespace_uri)
                nodes = [await client.nodes.objects.get_child([f"{ns}:Machines", f"{ns}:rack", f"{ns}:Channel_{i:03d}",
                                                               f"{ns}:{v}"])
                         for i in range(1, CHANNELS + 1) for v in ("Voltage", "Current", "Temperature")]
                while time.perf_counter() < deadline:
                    start = time.perf_counter()
                    for k in range(0, len(nodes), 1000):
                        await client.read_values(nodes[k:k + 1000])
                        reads += 1
                    await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - start)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        st = sim.stats
        ticks = st.ticks - stats0[0]
        steps = st.physics_steps - stats0[4]
        print(f"  {protocol:6} live {wall:4.1f} s at time scale 60: {ticks} ticks, {steps} physics steps, "
              f"{reads} client requests")
        print(f"  {'':6} tick mean {(st.total_ms - stats0[1]) / max(ticks, 1):6.2f} ms, max {st.max_ms:6.2f} ms; "
              f"physics {(st.physics_ms - stats0[2]) / max(steps, 1):6.2f} ms/step; "
              f"publish {(st.publish_ms - stats0[3]) / max(ticks, 1):6.2f} ms/tick; "
              f"process CPU {100 * cpu / wall:5.1f} % of one core (client included)")
    finally:
        await line.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each live run")
    parser.add_argument("--steps", type=int, default=30, help="hand steps per time scale")
    parser.add_argument("--protocol", choices=("modbus", "opcua", "both"), default="both")
    args = parser.parse_args()
    protocols = ("modbus", "opcua") if args.protocol == "both" else (args.protocol,)
    print(f"formation rack, {CHANNELS} channels, physics at 1 Hz")
    for protocol in protocols:
        await stepped(protocol, args.steps)
        await live(protocol, args.seconds)


if __name__ == "__main__":
    asyncio.run(main())
