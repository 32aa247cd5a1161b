"""Vendor dialects: every file loads, broken files are refused with file and line, and each
dialect simulator serves its vendor view to a plain client."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from interface_spec import SpecError
from interface_spec import modbus_codec as codec
from simulators.dialects import dialect_names, format_node, load_dialect
from simulators.dialects.model import Dialect, Source, VariableField
from simulators.line import SimConfig
from simulators.simulator import Simulator

from .harness import run_until, serving

ON_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")  # the dialect simulators live for the module
COUNTS = {"coater": {"dryer_zone": 3, "lane": 2}, "winder": {}, "formation": {"channel": 4}}
REGS = {"16": 1, "32": 2, "64": 4}


def test_every_dialect_file_loads_and_each_class_has_both_protocols(spec):
    names = dialect_names()
    assert len(names) >= 6
    dialects = [load_dialect(n, spec) for n in names]
    assert all(d.dialect == n for d, n in zip(dialects, names))
    by_class = Counter((d.cls, d.protocol) for d in dialects)
    for cls in spec.classes:
        assert by_class[(cls, "opcua")] >= 1 and by_class[(cls, "modbus")] >= 1, cls


BROKEN = {
    "unknown path": ("""mapping: broken
class: coater
protocol: modbus
variables:
  - {path: web.line_speed, source: {address: 10, dtype: float32}}
  - {path: web.speed, source: {address: 12, dtype: float32}}
""", 6, "variables[1].path", "web.speed"),
    "missing dtype": ("""mapping: broken
class: winder
protocol: modbus
variables:
  - {path: winding.speed, source: {address: 10, dtype: float32}}
  - {path: winding.cycle_time,
     source: {address: 12}}
""", 7, "variables[1].source", "dtype"),
    "enum member": ("""mapping: broken
class: winder
protocol: modbus
variables:
  - path: state.packml_state
    source: {address: 1, dtype: uint16}
    enum: {0: Undefined, 1: Stopped, 2: Running}
    default: 0
""", 7, "variables[0].enum.2", "Running"),
    # Reading needs a code only for what the machine shows; serving needs one for every member.
    "member without a code": ("""mapping: broken
class: winder
protocol: modbus
variables:
  - path: state.packml_state
    source: {address: 1, dtype: uint16}
    enum: {1: Stopped, 2: [Idle, Resetting]}
""", 7, "variables[0].enum", "list them or give 'default'"),
    "overlap": ("""mapping: broken
class: formation
protocol: modbus
variables:
  - {path: "channel[*].voltage", source: {address: 100, stride: 2, dtype: float32}}
  - {path: rack.temperature, source: {address: 101, dtype: int16}}
""", 6, "variables[1]", "register 101"),
    "array without index": ("""mapping: broken
class: formation
protocol: opcua
opcua: {namespace_uri: "urn:x", root: /Objects/Rack}
variables:
  - {path: "channel[*].voltage", source: {node: Channels/U}}
""", 6, "variables[0].source.node", "{i}"),
    "two command registers": ("""mapping: broken
class: winder
protocol: modbus
variables:
  - {path: winding.speed, source: {address: 10, dtype: float32}}
commands:
  Start: {write: {address: 100, value: 1}}
  Stop: {write: {address: 101, value: 2}}
""", 7, "commands", "one register or node"),
    "an alarm code outside alarm_code": ("""mapping: broken
class: winder
protocol: modbus
variables:
  - {path: winding.speed, source: {address: 10, dtype: float32}}
alarms:
  - {alarm: door_open, source: {address: 20, dtype: uint16}, active_value: 7}
""", 7, "alarms[0].active_value", "alarm_code"),
    "not yaml": ("""mapping: broken
class: coater
variables: [
""", 4, "", "not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_vendor_file_is_refused_naming_file_and_line(spec, tmp_path, case):
    text, line, field, words = BROKEN[case]
    path = tmp_path / f"{case.replace(' ', '-')}.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as exc:
        load_dialect(path, spec)
    message = str(exc.value)
    assert f"{path}:{line}: " in message, message
    assert field in message and words in message, message


def test_config_and_dialect_must_agree(spec):
    with pytest.raises(ValueError, match="not a winder over opcua"):
        Simulator(SimConfig("x", "winder", "opcua", dialect="tobu-winder-modbus"), spec)
    with pytest.raises(SpecError, match="no such vendor file"):
        Simulator(SimConfig("x", "winder", "modbus", dialect="no-such-vendor"), spec)


# --- serving ---------------------------------------------------------------------------------------

def expected_raw(spec, cls: str, f: VariableField, value, kind: str):
    """The vendor's raw value for a spec value, worked out here independently of the simulator."""
    if f.enum is not None:
        enum = spec.variable(cls, f.path.replace("[*]", "[1]")).var.enum
        member = spec.enum_name(enum, value)
        for code, names in f.enum.items():
            if member == names or (isinstance(names, list) and member in names):
                return code
        return f.default
    if kind in ("string", "bit"):
        return value
    raw = (value - f.offset) / f.scale
    return raw if kind == "float" else int(round(raw))


def kind_of(src: Source) -> str:
    t = src.dtype or src.type or "uint16"
    if src.bit is not None or t == "Boolean":
        return "bit"
    if t in ("string", "String"):
        return "string"
    return "float" if t.startswith("float") or t in ("Float", "Double") else "int"


class VendorClient:
    """Reads a dialect's fields the way an integrator's tool would: from the file, not the simulator."""

    def __init__(self, dialect: Dialect):
        self.d = dialect

    async def __aenter__(self) -> VendorClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None: ...


class ModbusVendor(VendorClient):
    def __init__(self, dialect: Dialect, port: int):
        super().__init__(dialect)
        self.client = AsyncModbusTcpClient("127.0.0.1", port=port)

    async def __aenter__(self) -> ModbusVendor:
        await self.client.connect()
        return self

    async def close(self) -> None:
        self.client.close()

    async def read(self, src: Source):
        assert src.address is not None and self.d.modbus is not None
        device = self.d.modbus.device_id
        if src.table in ("coil", "discrete"):
            fn = self.client.read_coils if src.table == "coil" else self.client.read_discrete_inputs
            rr = await fn(src.address, count=1, device_id=device)
            assert not rr.isError(), rr
            return bool(rr.bits[0])
        count = src.count if src.dtype == "string" else 1 if src.bit is not None else REGS[(src.dtype or "uint16")[-2:]]
        fn = self.client.read_input_registers if src.table == "input" else self.client.read_holding_registers
        rr = await fn(src.address, count=count, device_id=device)
        assert not rr.isError(), rr
        if src.bit is not None:
            return bool((rr.registers[0] >> src.bit) & 1)
        return codec.decode(rr.registers, src.dtype or "uint16", src.order or self.d.modbus.order)

    async def write(self, src: Source, raw) -> None:
        assert src.address is not None and self.d.modbus is not None
        regs = codec.encode(raw, src.dtype or "uint16", src.order or self.d.modbus.order)
        rr = await self.client.write_registers(src.address, regs, device_id=self.d.modbus.device_id)
        assert not rr.isError(), rr


class OpcUaVendor(VendorClient):
    def __init__(self, dialect: Dialect, url: str):
        super().__init__(dialect)
        self.client = Client(url)

    async def __aenter__(self) -> OpcUaVendor:
        await self.client.connect()
        assert self.d.opcua is not None
        self.ns = await self.client.get_namespace_index(self.d.opcua.namespace_uri)
        return self

    async def close(self) -> None:
        await self.client.disconnect()

    async def node(self, rel: str):
        assert self.d.opcua is not None
        parts = [p for p in self.d.opcua.root.split("/") if p] + rel.split("/")
        return await self.client.nodes.objects.get_child([f"{self.ns}:{p}" for p in parts])

    async def read(self, src: Source):
        assert src.node is not None
        return await (await self.node(format_node(src.node, 1))).read_value()

    async def write(self, src: Source, raw) -> None:
        assert src.node is not None and src.type is not None
        node = await self.node(format_node(src.node, 1))
        await node.write_value(ua.DataValue(ua.Variant(raw, ua.VariantType[src.type])))


def vendor(d: Dialect, sim: Simulator) -> VendorClient:
    return ModbusVendor(d, sim.binding.port) if d.protocol == "modbus" else OpcUaVendor(d, sim.url)


@pytest_asyncio.fixture(params=dialect_names(), scope="module", loop_scope="module")
async def dialect_sim(request, spec) -> AsyncIterator[tuple[Dialect, Simulator]]:
    d = load_dialect(request.param, spec)
    config = SimConfig(f"{d.cls}9", d.cls, d.protocol, dialect=d.dialect, seed=9, counts=COUNTS[d.cls],
                       auto_start=False, options={"first_tray": "fresh"} if d.cls == "formation" else {})
    async with serving(config, spec) as sim:
        m = sim.machine
        m.execute("Reset")
        await run_until(sim, lambda: m.state() == "Idle", "Idle")
        m.execute("Start")
        await run_until(sim, lambda: m.state() == "Execute", "Execute")
        await run_until(sim, lambda: m.get("counters.processed_count") > 0 or m.cls == "formation", "production",
                        dt=10.0)
        for _ in range(30):
            await sim.advance(10.0, 1.0)
        yield d, sim


@ON_MODULE_LOOP
async def test_each_dialect_serves_its_vendor_view(dialect_sim, spec):
    d, sim = dialect_sim
    m = sim.machine
    async with vendor(d, sim) as client:
        for f in d.variables:
            path = f.path.replace("[*]", "[1]")
            value = m.values[path]
            kind = kind_of(f)
            raw = await client.read(f)
            want = expected_raw(spec, d.cls, f, value, kind)
            if kind == "float":
                assert raw == pytest.approx(want, rel=1e-5, abs=1e-6), (d.dialect, path, raw, value)
            elif kind == "int" and f.wrap:
                assert raw % 65536 == want % 65536, (d.dialect, path)
            elif kind == "bit":
                assert bool(raw) == bool(want), (d.dialect, path, raw, value)
            else:
                assert raw == want, (d.dialect, path, raw, value)
            if kind == "int" and f.enum is None and not f.wrap:
                # A scaled integer reads back as the spec value within half a step of the scale.
                assert abs(raw * f.scale + f.offset - value) <= abs(f.scale) / 2 + 1e-9, (d.dialect, path)
        # Somewhere a scaled or enum-coded value differs from what the spec would serve: a real dialect.
        assert any(f.scale != 1 or f.enum for f in d.variables)


@ON_MODULE_LOOP
async def test_each_dialect_shows_alarms_its_own_way(dialect_sim, spec):
    d, sim = dialect_sim
    m = sim.machine
    catalogue = {a.id: a for a in spec.alarms(d.cls)}
    async with vendor(d, sim) as client:
        for a in d.alarms:
            assert await client.read(a) is False or await client.read(a) == 0
        served = next(a for a in d.alarms if a.alarm != "*" and not catalogue[a.alarm].stop_reason)
        m.raise_alarm(catalogue[served.alarm].code)
        await sim.publish()
        for a in d.alarms:
            assert bool(await client.read(a)) == (a.alarm in (served.alarm, "*")), (d.dialect, a.alarm)
        if d.alarm_code is not None:
            assert await client.read(d.alarm_code) == d.alarm_code.codes.get(served.alarm, 0)
        m.clear_alarm(catalogue[served.alarm].code)
        await sim.publish()
        assert not any([bool(await client.read(a)) for a in d.alarms])


@ON_MODULE_LOOP
async def test_vendor_commands_reach_the_machine(dialect_sim, spec):
    d, sim = dialect_sim
    m = sim.machine
    async with vendor(d, sim) as client:
        if "Stop" in d.commands.methods:
            assert isinstance(client, OpcUaVendor)
            parent_path, _, name = d.commands.methods["Stop"].rpartition("/")
            parent = await client.node(parent_path)
            assert await parent.call_method(f"{client.ns}:{name}") is None  # no result code
        else:
            reg = d.commands.register_
            assert reg is not None and "Stop" in d.commands.codes
            await client.write(reg, d.commands.codes["Stop"])
            assert await client.read(reg) == 0  # the command register clears itself
        assert m.state() == "Stopping"
        await run_until(sim, lambda: m.state() == "Stopped", "Stopped")
        state_field = next(f for f in d.variables if f.path == "state.packml_state")
        assert await client.read(state_field) == expected_raw(spec, d.cls, state_field, m.get(state_field.path), "int")


@ON_MODULE_LOOP
async def test_set_points_are_written_in_vendor_units(dialect_sim, spec):
    d, sim = dialect_sim
    writable = [f for f in d.variables if f.writable]
    if d.cls == "formation":
        assert not writable  # a rack takes its set points from the recipe
        return
    f = writable[0]
    path = f.path.replace("[*]", "[1]")
    lo, hi = spec.variable(d.cls, path).var.range
    target = lo + (hi - lo) * 0.25
    raw = (target - f.offset) / f.scale
    raw = raw if kind_of(f) == "float" else int(round(raw))
    async with vendor(d, sim) as client:
        await client.write(f, raw)
        assert sim.machine.get(path) == pytest.approx(raw * f.scale + f.offset, rel=1e-6)
        assert not math.isnan(sim.machine.get(path))
