"""Faults appear when switched on, at start-up or while clients are connected."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from interface_spec import modbus_codec as codec
from interface_spec.modbus_map import layout
from simulators.faults import EXCEPTION_CODES, parse_faults
from simulators.line import SimConfig, SimLine
from simulators.simulator import Simulator

from .harness import serving, wait_for


@pytest_asyncio.fixture
async def winder(spec) -> AsyncIterator[Simulator]:
    async with serving(SimConfig("winder5", "winder", "modbus", seed=5), spec) as sim:
        await sim.advance(10.0, 1.0)
        yield sim


@pytest_asyncio.fixture
async def modbus(winder) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient("127.0.0.1", port=winder.binding.port, timeout=0.5, retries=0)
    await client.connect()
    try:
        yield client
    finally:
        client.close()


async def read(client: AsyncModbusTcpClient, spec, path: str):
    p = layout(spec.core, spec.get_class("winder")).point(path)
    rr = await client.read_holding_registers(p.address, count=p.count)
    if rr.isError():
        return rr
    return codec.decode(rr.registers, p.dtype, count=p.count if p.dtype == "string" else None)


@pytest.mark.parametrize("name", ["illegal_address", "device_busy", "gateway_target_failed"])
async def test_modbus_exceptions_on_chosen_registers(winder, modbus, spec, name):
    assert isinstance(await read(modbus, spec, "counters.processed_count"), int)
    winder.faults.exception("counters.processed_count", name)
    rr = await read(modbus, spec, "counters.processed_count")
    assert rr.isError() and rr.exception_code == EXCEPTION_CODES[name]
    assert isinstance(await read(modbus, spec, "status.heartbeat"), int)  # elsewhere all is well
    await winder.faults.clear()
    assert isinstance(await read(modbus, spec, "counters.processed_count"), int)


@pytest.mark.parametrize("name", ["device_busy", "gateway_target_failed"])
async def test_modbus_exceptions_on_every_register(winder, modbus, spec, name):
    span = winder.faults.exception("*", name)
    assert span == range(0, winder.binding.server.size)
    for path in ("counters.processed_count", "status.heartbeat"):
        rr = await read(modbus, spec, path)
        assert rr.isError() and rr.exception_code == EXCEPTION_CODES[name]
    await winder.faults.clear()
    assert isinstance(await read(modbus, spec, "status.heartbeat"), int)
    await winder.faults.switch_on("exception", path="*", code=name)  # as a start-up fault names it
    rr = await read(modbus, spec, "status.heartbeat")
    assert rr.isError() and rr.exception_code == EXCEPTION_CODES[name]


async def test_frozen_values_stop_changing_until_thawed(winder, modbus, spec):
    winder.faults.freeze("status.heartbeat")
    beat = await read(modbus, spec, "status.heartbeat")
    await winder.advance(30.0, 3.0)
    assert winder.machine.get("status.heartbeat") == beat + 3
    assert await read(modbus, spec, "status.heartbeat") == beat
    winder.faults.unfreeze()
    await winder.publish()
    assert await read(modbus, spec, "status.heartbeat") == beat + 3

    winder.faults.freeze()  # everything: a hung controller that still answers
    frozen = [await read(modbus, spec, p) for p in ("status.heartbeat", "counters.processed_count", "winding.speed")]
    await winder.advance(60.0, 5.0)
    assert [await read(modbus, spec, p) for p in ("status.heartbeat", "counters.processed_count", "winding.speed")] == frozen
    winder.faults.unfreeze()
    await winder.publish()
    assert await read(modbus, spec, "counters.processed_count") == winder.machine.get("counters.processed_count")


async def test_nan_and_out_of_range_values(winder, modbus, spec):
    winder.faults.nan("tension.cathode")
    await winder.publish()
    assert math.isnan(await read(modbus, spec, "tension.cathode"))
    served = winder.faults.out_of_range("jelly_roll.diameter")
    await winder.publish()
    lo, hi = spec.variable("winder", "jelly_roll.diameter").var.range
    assert await read(modbus, spec, "jelly_roll.diameter") == pytest.approx(served) and served > hi
    winder.faults.restore()
    await winder.publish()
    assert await read(modbus, spec, "tension.cathode") == pytest.approx(winder.machine.get("tension.cathode"), rel=1e-6)
    assert lo <= await read(modbus, spec, "jelly_roll.diameter") <= hi
    with pytest.raises(ValueError, match="not a float"):
        winder.faults.nan("jelly_roll.roll_id")


async def test_slow_replies_outlast_a_client_timeout(winder, modbus, spec):
    winder.faults.slow(2.0)
    with pytest.raises(ModbusException):
        await read(modbus, spec, "status.heartbeat")
    await winder.faults.clear()
    fresh = AsyncModbusTcpClient("127.0.0.1", port=winder.binding.port, timeout=2.0, retries=0)
    await fresh.connect()
    try:
        assert isinstance(await read(fresh, spec, "status.heartbeat"), int)
    finally:
        fresh.close()


async def test_dropped_connections_and_a_closed_port(winder, modbus):
    server = winder.binding.server
    await wait_for(lambda: server.connections == 1, "the client connected")
    winder.faults.drop_connections()
    await wait_for(lambda: server.connections == 0, "the connection dropped")
    winder.faults.refuse()
    refused = AsyncModbusTcpClient("127.0.0.1", port=winder.binding.port, timeout=0.5, retries=0)
    assert not await refused.connect()
    refused.close()
    winder.faults.refuse(False)

    async def connects() -> bool:
        again = AsyncModbusTcpClient("127.0.0.1", port=winder.binding.port, timeout=2.0, retries=0)
        try:
            return await again.connect()
        finally:
            again.close()

    await wait_for(connects, "the port listening again")


async def test_modbus_restart_keeps_the_port_and_the_map(winder, spec):
    port = winder.binding.port
    await winder.faults.restart()
    assert winder.binding.port == port
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2.0)
    await client.connect()
    try:
        assert await read(client, spec, "identification.equipment_class") == "winder"
    finally:
        client.close()


async def test_start_up_faults_are_parsed_and_applied(spec):
    faults = ["nan:path=winding.speed", "exception:path=counters.good_count,code=gateway_target_failed"]
    async with serving(SimConfig("winder6", "winder", "modbus", faults=faults), spec) as sim:
        client = AsyncModbusTcpClient("127.0.0.1", port=sim.binding.port, timeout=2.0)
        await client.connect()
        try:
            assert math.isnan(await read(client, spec, "winding.speed"))
            rr = await read(client, spec, "counters.good_count")
            assert rr.isError() and rr.exception_code == 11
        finally:
            client.close()
    assert parse_faults({"slow": {"delay_s": 1}, "freeze": None}) == [("slow", {"delay_s": 1}), ("freeze", {})]
    assert parse_faults([{"name": "restart", "period_s": 60}]) == [("restart", {"period_s": 60})]
    with pytest.raises(ValueError, match="unknown fault 'meltdown'"):
        parse_faults(["meltdown"])
    with pytest.raises(ValueError, match="key=value"):
        parse_faults(["slow:fast"])


async def test_periodic_connection_drops_on_a_running_line(spec):
    line = SimLine(spec)
    await line.start([SimConfig("winder8", "winder", "modbus", faults=["drop_connections:period_s=0.5"])])
    try:
        sim = line.simulators["winder8"]
        client = AsyncModbusTcpClient("127.0.0.1", port=sim.binding.port, timeout=2.0, retries=0, reconnect_delay=0)
        await client.connect()
        await wait_for(lambda: sim.binding.server.connections == 1, "connected")
        await wait_for(lambda: sim.binding.server.connections == 0, "a periodic drop")
        client.close()
    finally:
        await line.stop()


# --- OPC UA ------------------------------------------------------------------------------------------

@pytest_asyncio.fixture
async def opcua_sim(spec) -> AsyncIterator[Simulator]:
    async with serving(SimConfig("form5", "formation", "opcua", counts={"channel": 4}, auto_start=False), spec) as sim:
        yield sim


async def node_of(client: Client, spec, *names: str):
    ns = await client.get_namespace_index(spec.core.opcua.namespace_uri)
    return await client.nodes.objects.get_child([f"{ns}:{n}" for n in ("Machines", "form5", *names)])


async def test_opcua_restart_changes_the_namespace_index(opcua_sim, spec):
    uri = spec.core.opcua.namespace_uri
    async with Client(opcua_sim.url) as client:
        before = await client.get_namespace_index(uri)
        node = await node_of(client, spec, "Identification", "EquipmentClass")
        old_id = node.nodeid
    await opcua_sim.faults.restart()
    async with Client(opcua_sim.url) as client:
        after = await client.get_namespace_index(uri)
        assert after == before + 1
        node = await node_of(client, spec, "Identification", "EquipmentClass")
        assert node.nodeid.NamespaceIndex == after and node.nodeid.Identifier == old_id.Identifier
        assert await node.read_value() == "formation"
        with pytest.raises(ua.UaStatusCodeError):
            await client.get_node(old_id).read_value()  # the old index now names another namespace


async def test_opcua_operation_limits_are_announced_and_enforced(opcua_sim, spec):
    await opcua_sim.faults.limits(max_nodes_per_read=4, max_monitored_items_per_call=2)
    async with Client(opcua_sim.url) as client:
        limits = await client.nodes.server.get_child(["0:ServerCapabilities", "0:OperationLimits"])
        per_read = await (await limits.get_child("0:MaxNodesPerRead")).read_value()
        per_call = await (await limits.get_child("0:MaxMonitoredItemsPerCall")).read_value()
        assert (per_read, per_call) == (4, 2)
        nodes = [await node_of(client, spec, "Channel_001", v) for v in ("Voltage", "Current", "Capacity", "Energy",
                                                                        "Temperature", "Status")]
        assert len(await client.read_values(nodes[:4])) == 4
        with pytest.raises(ua.UaStatusCodeError) as exc:
            await client.read_values(nodes)
        assert exc.value.code == ua.StatusCodes.BadTooManyOperations
        sub = await client.create_subscription(100, None)
        await sub.subscribe_data_change(nodes[:2])
        with pytest.raises(ua.UaStatusCodeError) as exc:
            await sub.subscribe_data_change(nodes[2:])
        assert exc.value.code == ua.StatusCodes.BadTooManyOperations
        await sub.delete()


async def test_opcua_nan_frozen_and_dropped(opcua_sim, spec):
    opcua_sim.faults.nan("channel[2].voltage")
    opcua_sim.faults.freeze("status.heartbeat")
    await opcua_sim.advance(5.0, 5.0)
    client = Client(opcua_sim.url)
    await client.connect()
    try:
        assert math.isnan(await (await node_of(client, spec, "Channel_002", "Voltage")).read_value())
        assert await (await node_of(client, spec, "Status", "Heartbeat")).read_value() == 0
        assert opcua_sim.machine.get("status.heartbeat") == 5
        node = await node_of(client, spec, "Status", "Heartbeat")
        opcua_sim.faults.drop_connections()
        with pytest.raises((ConnectionError, ua.UaError, TimeoutError)):
            await node.read_value()
    finally:
        await client.disconnect()
