"""A simulated line: start, endpoints, shared material flow, clean stop."""

from __future__ import annotations

import asyncio

import pytest
from asyncua import Client
from pymodbus.client import AsyncModbusTcpClient

from interface_spec import modbus_codec as codec
from interface_spec.modbus_map import layout
from simulators.line import SimConfig, SimLine, serve

from .harness import wait_event, wait_for


async def test_a_line_serves_every_machine_and_links_their_material(spec):
    line = SimLine(spec)
    configs = [
        SimConfig("coater1", "coater", "opcua", seed=1, time_scale=300.0, counts={"dryer_zone": 2, "lane": 2},
                  options={"roll_length_m": 100.0}, machine_name="Coater1"),
        SimConfig("winder1", "winder", "modbus", seed=2, time_scale=300.0),
    ]
    await line.start(configs)
    try:
        urls = line.endpoints()
        assert urls["coater1"] == f"opc.tcp://127.0.0.1:{line.simulators['coater1'].binding.port}/linegw/coater1"
        assert urls["winder1"] == f"modbus://127.0.0.1:{line.simulators['winder1'].binding.port}"
        coater, winder = line.simulators["coater1"].machine, line.simulators["winder1"].machine
        await wait_for(lambda: coater.producing and winder.producing, "both machines started by their operators")
        roll = await wait_event(coater, lambda e: e["type"] == "UnitProcessed" and e["payload"]["result"] == "good")
        made = await wait_event(winder, lambda e: e["type"] == "UnitProcessed"
                                and roll["payload"]["unit_id"] in e["payload"]["made_from"])
        assert made["payload"]["unit_type"] == "jelly_roll"
        async with Client(urls["coater1"]) as client:
            ns = await client.get_namespace_index(spec.core.opcua.namespace_uri)
            node = await client.nodes.objects.get_child([f"{ns}:Machines", f"{ns}:Coater1", f"{ns}:Status",
                                                         f"{ns}:Heartbeat"])
            assert await node.read_value() >= 0
    finally:
        await line.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith(("sim:", "simline"))]


async def test_a_formation_rack_of_512_channels_serves_at_one_hertz_over_modbus(spec):
    line = SimLine(spec)
    await line.start([SimConfig("rack512", "formation", "modbus", seed=3, time_scale=60.0, counts={"channel": 512})])
    try:
        sim = line.simulators["rack512"]
        lay = layout(spec.core, spec.get_class("formation"))
        client = AsyncModbusTcpClient("127.0.0.1", port=sim.binding.port, timeout=5.0)
        await client.connect()
        try:
            p = lay.point("channel[512].voltage")

            async def last_channel_voltage() -> float:
                rr = await client.read_holding_registers(p.address, count=2)
                return codec.decode(rr.registers, "float32")

            first = await last_channel_voltage()
            await wait_for(lambda: sim.stats.physics_steps >= 3, "three physics steps")
            assert await last_channel_voltage() != first
            assert 2.0 < await last_channel_voltage() < 4.3
        finally:
            client.close()
        assert sim.model.period_s == 1.0
    finally:
        await line.stop()


async def test_serve_runs_until_cancelled_then_closes_its_ports(spec):
    started: asyncio.Future[SimLine] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve([SimConfig("w9", "winder", "modbus")], spec, on_start=started.set_result))
    line = await asyncio.wait_for(started, 30)
    port = line.simulators["w9"].binding.port
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2.0, retries=0)
    assert await client.connect()
    client.close()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    closed = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0)
    assert not await closed.connect()
    closed.close()


async def test_duplicate_ids_and_bad_configs_are_refused(spec):
    line = SimLine(spec)
    with pytest.raises(ValueError, match="used twice"):
        await line.start([SimConfig("a", "winder", "modbus"), SimConfig("a", "coater", "opcua")])
    with pytest.raises(ValueError, match="protocol"):
        SimConfig("b", "winder", "profibus")
    with pytest.raises(ValueError, match="time_scale"):
        SimConfig("c", "winder", "modbus", time_scale=0)
