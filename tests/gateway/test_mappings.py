"""Every shipped vendor file, served and read: the same common view as a conforming machine.

For each shipped vendor file (interface_spec/vendors/) one simulator serves a
machine in that vendor's dialect, and a twin of the same class, protocol and
seed serves the spec's native profile. One gateway reads both: the first
through the same vendor file, the twin natively. The tests compare what the
gateway makes of the two: paths, units, quality, identity, array sizes and
state; values pushed through every transform and enum code; alarms; commands;
and the units made, which the gateway derives from value changes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from gateway.config import LineConfig
from gateway.mapping.compile import alarm_reads, load_mapping, mapped_plan
from gateway.runtime.device import Device
from gateway.runtime.line import LineRuntime
from gateway.samples import Quality
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from interface_spec.vendor import VENDOR_DIR, Mapping
from simulators.dialects import dialect_names, load_dialect
from simulators.dialects.model import Dialect, VariableField
from simulators.line import SimConfig, SimLine
from simulators.servers.dialect import Projection, compile_projections
from simulators.simulator import Simulator
from tests.waiting import wait_for

MAPPINGS = VENDOR_DIR
DIALECTS = dialect_names()
SPEC = load_spec()
SEED = 7
COUNTS = {"coater": {"dryer_zone": 3, "lane": 2}, "winder": {}, "formation": {"channel": 4}}
# Simulated seconds per wall second: a coater roll every few seconds, a formed tray in about four.
TIME_SCALE = {"coater": 60.0, "winder": 60.0, "formation": 3000.0}
# No occasional faults (alarms are raised by the tests), one coating recipe (set points stay put).
OPTIONS = {"coater": {"alarm_interval_s": 0, "electrode": "cathode", "roll_length_m": 60.0},
           "winder": {"alarm_interval_s": 0}, "formation": {"alarm_interval_s": 0}}
ADAPTER = {"scan_interval_ms": 200, "publishing_interval_ms": 200, "sampling_ms": 100}
FLOAT_KINDS = ("float16", "float32", "float64", "Float", "Double")

ON_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")


def mapping_of(name: str) -> Mapping:
    return load_mapping(MAPPINGS / f"{name}.yaml", SPEC)


# --- one vendor file: what the gateway reads is what the simulator serves ------------------------


@pytest.mark.parametrize("name", DIALECTS)
def test_each_vendor_file_serves_what_the_gateway_reads_from_it(name):
    d, m = load_dialect(name, SPEC), mapping_of(name)
    assert (m.cls, m.protocol) == (d.cls, d.protocol)
    assert {f.path for f in d.variables} == {vm.path for vm in m.variables}
    served_alarms = {a.alarm for a in d.alarms} | set(d.alarm_code.codes if d.alarm_code else {})
    assert {alarm for alarm, _, _ in alarm_reads(m)} <= served_alarms
    assert set(m.commands) == set(d.commands.codes) | set(d.commands.methods)
    # The gateway knows who made the machine: read from it, or from the nameplate in the file.
    ident = {vm.path.split(".", 1)[1] for vm in m.variables if vm.path.startswith("identification.")} | set(m.identification)
    assert {"manufacturer", "model"} <= ident
    # The file's transforms are the simulator's and the gateway's alike.
    targets = {t.path: t for ts in mapped_plan(SPEC, "x", m, {}).targets.values() for t in ts}
    for f in d.variables:
        t = targets[f.path.replace("[*]", "[1]")]
        if f.enum is None and t.kind == "num":
            assert (t.scale, t.offset) == pytest.approx((f.scale, f.offset), rel=1e-12, abs=1e-12), f.path


# --- the same machine twice: in its dialect and natively ------------------------------------------


@dataclass
class Pair:
    dialect: Dialect
    mapping: Mapping
    mapped: Device  # the dialect machine, read through its mapping
    native: Device  # its conforming twin
    dsim: Simulator
    nsim: Simulator
    projections: dict[str, list[Projection]]  # how the dialect serves each path, for expected values

    def served_paths(self) -> set[str]:
        return set(self.projections) | {f"identification.{k}" for k in self.mapping.identification}


@dataclass
class Line:
    pairs: dict[str, Pair]
    runtime: LineRuntime
    store: SqliteStore
    started: float


def _sim_config(d: Dialect, dialect: str) -> SimConfig:
    # One equipment id for both: the simulators name their units after it, so twins make the same IDs.
    return SimConfig(equipment_id="twin", cls=d.cls, protocol=d.protocol, dialect=dialect, seed=SEED,
                     time_scale=TIME_SCALE[d.cls], counts=COUNTS[d.cls], options=dict(OPTIONS[d.cls]),
                     machine_name="Twin", acting_s=1.0)


async def _start(config: SimConfig) -> SimLine:
    line = SimLine(SPEC)  # a line each: twins must not share material
    await line.start([config])
    return line


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def line(tmp_path_factory):
    dialects = {name: load_dialect(name, SPEC) for name in DIALECTS}
    configs = [(name, kind, _sim_config(d, name if kind == "mapped" else "conforming"))
               for name, d in dialects.items() for kind in ("mapped", "native")]
    started = await asyncio.gather(*(_start(c) for _, _, c in configs), return_exceptions=True)
    sims = [s for s in started if isinstance(s, SimLine)]
    try:
        failed = [s for s in started if not isinstance(s, SimLine)]
        if failed:
            raise failed[0]
        equipment = []
        for (name, kind, _), sim_line in zip(configs, sims):
            d = dialects[name]
            eq: dict[str, Any] = {"id": name if kind == "mapped" else f"ref-{name}", "class": d.cls,
                                  "protocol": d.protocol, "endpoint": sim_line.endpoints()["twin"],
                                  "adapter": ADAPTER, "command_timeout_s": 15}
            if kind == "mapped":
                eq["mapping"] = str(MAPPINGS / f"{name}.yaml")
            elif d.protocol == "opcua":
                eq["machine"] = "Twin"
            equipment.append(eq)
        cfg = LineConfig.model_validate({"line": "mappings", "equipment": equipment})
        store = SqliteStore(tmp_path_factory.mktemp("mappings") / "store.sqlite")
        await store.start()
        runtime = LineRuntime(cfg, SPEC, store)
        task = asyncio.create_task(runtime.run())
        try:
            await wait_for(lambda: all(e.available and e.state.get("packml_state") for e in runtime.equipment()),
                           "every machine available with a state")
            by_sim = dict(zip([(n, k) for n, k, _ in configs], sims))
            pairs = {}
            for name, d in dialects.items():
                dsim, nsim = by_sim[(name, "mapped")].simulators["twin"], by_sim[(name, "native")].simulators["twin"]
                pairs[name] = Pair(d, mapping_of(name), runtime.devices[name], runtime.devices[f"ref-{name}"], dsim,
                                   nsim, compile_projections(d, dsim.machine))
            yield Line(pairs, runtime, store, time.time())
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await store.close()
    finally:
        for s in sims:
            await s.stop()


def _good(dev: Device) -> set[str]:
    return {p for p, s in dev.latest.items() if s.quality == Quality.GOOD}


def _quantum(field: VariableField, value: float) -> float:
    """How finely the dialect serves a value: one step of its integer, or float32 precision."""
    if (field.dtype or field.type) in FLOAT_KINDS:
        return 1e-6 * abs(value) + 1e-9
    return abs(field.scale)


async def _until_none(problems: Callable[[], list[str]], what: str, timeout: float = 20) -> None:
    """Wait until a check finds no problems; a timeout names those left."""
    try:
        await wait_for(lambda: not problems(), what, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{what}: {problems()[:5]}") from None


def _equivalent(p: Pair, path: str, a: Any, b: Any) -> bool:
    """Whether two spec values look the same in the dialect (vendor codes that stand for several members)."""
    proj = p.projections[path][0]
    return proj.to_raw(a) == proj.to_raw(b)


@ON_MODULE_LOOP
@pytest.mark.parametrize("name", DIALECTS)
async def test_the_mapped_machine_shows_what_its_conforming_twin_shows(line, name):
    p = line.pairs[name]
    expected = p.served_paths()
    await wait_for(lambda: expected <= _good(p.mapped), f"{name}: every served path good",
                   timeout=20)
    assert set(p.mapped.latest) - {"status.availability"} == expected
    await wait_for(lambda: expected <= _good(p.native), f"{name}: the twin serves them all", timeout=20)
    for path in expected:
        assert p.mapped.latest[path].unit == p.native.latest[path].unit, path
    machine = p.dsim.machine
    assert p.mapped.view.counts == p.native.view.counts == {su: machine.counts[su] for su in COUNTS[p.dialect.cls]}
    identity = p.mapped.view.identity
    assert identity["manufacturer"] and identity["model"]
    assert identity == {k: machine.values[f"identification.{k}"] for k in identity}
    assert p.native.view.identity["manufacturer"] == "linegw simulators"  # the twin is a different make

    async def running() -> bool:
        return all(d.view.state.get("packml_state") == "Execute" and d.view.state.get("control_authority") == "Remote"
                   for d in (p.mapped, p.native))

    await wait_for(running, f"{name}: both machines running in Remote", timeout=20)
    for var, member in p.mapped.view.state.items():
        path = f"state.{var}"
        assert _equivalent(p, path, SPEC.enum(SPEC.variable(p.dialect.cls, path).var.enum or "")[member],
                           SPEC.enum(SPEC.variable(p.dialect.cls, path).var.enum or "")[machine.state(var)]), path

    # Set points, configuration and recipe are the same on twins: the views must agree.
    steady = sorted(path for path in expected if path.startswith(("configuration.", "recipe."))
                    or SPEC.variable(p.dialect.cls, path).var.access == "rw")
    assert steady

    def disagreeing() -> list[str]:
        out = []
        for path in steady:
            a, b = p.mapped.latest[path].value, p.native.latest[path].value
            same = a == b if isinstance(a, str) else math.isclose(a, b, abs_tol=_quantum(p.projections[path][0].field, b))
            if not same:
                out.append(f"{path}: mapped {a!r}, twin {b!r}")
        return out

    await _until_none(disagreeing, f"{name}: set points agree")


@ON_MODULE_LOOP
@pytest.mark.parametrize("name", DIALECTS)
async def test_units_made_are_derived_from_value_changes(line, name):
    p, store = line.pairs[name], line.store
    cls = p.dialect.cls
    unit_type = SPEC.get_class(cls).processed_unit

    async def derived() -> list[dict[str, Any]] | None:
        await store.flush()
        rows = await store.events(equipment=name, event_type="UnitProcessed", limit=1000)
        return rows if len(rows) >= 2 else None

    rows = await wait_for(derived, f"{name}: two units made", timeout=30)
    truth = {e["payload"]["unit_id"]: e["payload"] for e in p.dsim.machine.events if e["type"] == "UnitProcessed"}
    twin = {e["payload"]["unit_id"]: e["payload"] for e in p.nsim.machine.events if e["type"] == "UnitProcessed"}
    measured = {key: ref.removeprefix("$").removeprefix("before:") for ev in p.mapping.events
                for key, ref in ev.payload.get("measurements", {}).items()}
    for row in rows:
        got = row["payload"]
        assert got["unit_type"] == unit_type
        want = truth.get(got["unit_id"])
        assert want is not None, f"{name}: {got['unit_id']} was never made (made: {sorted(truth)[-5:]})"
        if cls == "coater":
            # Foil and the slurry batch in use when the roll was finished; the machine judges no roll.
            assert got["made_from"] and set(got["made_from"]) <= set(want["made_from"])
            assert "result" not in got
            assert 0 < got["measurements"]["length"] <= want["measurements"]["length"] + 0.1
            continue
        assert (got["result"], got.get("reason") is None) == (want["result"], want.get("reason") is None), got
        if cls == "winder":
            assert got["made_from"] == want["made_from"] and got.get("reason") == want.get("reason")
            if got["unit_id"] in twin:  # same seed, same inputs
                assert got["made_from"] == twin[got["unit_id"]]["made_from"]
        else:
            assert got["made_from"] == []  # a rack does not say which jelly roll went into a slot
        assert set(got["measurements"]) == set(measured)
        for key, value in got["measurements"].items():
            # The machine shows a value rounded for its display (to 0.01 at most), its event to 0.0001.
            field = p.projections[measured[key].replace("[*]", "[1]")][0].field
            assert value == pytest.approx(want["measurements"][key], abs=_quantum(field, value) + 0.005), key
    consumed = {(e["payload"]["material_type"], e["payload"]["material_id"]) for e in p.dsim.machine.events
                if e["type"] == "MaterialConsumed"}
    for row in await store.events(equipment=name, event_type="MaterialConsumed", limit=1000):
        assert (row["payload"]["material_type"], row["payload"]["material_id"]) in consumed, row["payload"]


# --- values pushed through every transform --------------------------------------------------------


def _probe_number(p: Pair, path: str, salt: int) -> tuple[float, float] | None:
    """A value inside the spec range that the dialect can serve unclipped: (value, as the dialect serves it)."""
    var = SPEC.variable(p.dialect.cls, path).var
    proj = p.projections[path][0]
    lo, hi = var.range or (-1000.0, 1000.0)
    for share in ((0.137 * salt) % 0.7 + 0.15, 0.05, 0.01, 0.002):
        value = lo + (hi - lo) * share
        if var.type != "float":
            value = round(value)
        served = proj.from_raw(proj.to_raw(value))
        if abs(served - value) <= _quantum(proj.field, value):
            return value, served
    return None


def _probes(p: Pair, enum_round: int | None) -> dict[str, tuple[Any, Any]]:
    """Path -> (value put on both machines, value expected through the mapping).

    Without a round: numbers and strings. With one: every enum at member `round` (modulo its size;
    array instances staggered). Paths the mapping triggers events on, the heartbeat and the array
    sizes keep their own values."""
    triggers = {ev.on_change.replace("[*]", f"[{i}]") for ev in p.mapping.events for i in range(1, 9)}
    triggers |= {ev.on_change for ev in p.mapping.events}
    out: dict[str, tuple[Any, Any]] = {}
    for salt, path in enumerate(sorted(p.projections)):
        var = SPEC.variable(p.dialect.cls, path).var
        if path in triggers or path == "status.heartbeat" or path.startswith("configuration."):
            continue
        if enum_round is None and var.type == "string":
            text = f"T{salt:03d}"
            out[path] = (text, text)
        elif enum_round is None and var.type in ("float", "int", "uint"):
            probe = _probe_number(p, path, salt + 1)
            assert probe is not None, f"{path}: no value the dialect can serve"
            out[path] = probe
        elif enum_round is not None and var.type == "enum":
            codes = list(SPEC.enum(var.enum or "").values())
            index = int(path.split("[", 1)[1].split("]")[0]) if "[" in path else 0
            code = codes[(enum_round + index) % len(codes)]
            out[path] = (code, code)
    return out


def _misread(p: Pair, probes: dict[str, tuple[Any, Any]]) -> list[str]:
    out = []
    for path, (put, expect) in probes.items():
        m, n = p.mapped.latest.get(path), p.native.latest.get(path)
        if m is None or n is None or m.value is None or n.value is None:
            out.append(f"{path}: no value")
        elif m.quality != Quality.GOOD or n.quality != Quality.GOOD:
            out.append(f"{path}: put {put!r}, mapped {m.value!r} {m.quality.name} {m.reason}, twin {n.value!r} {n.quality.name}")
        elif isinstance(put, str):
            if (m.value, n.value) != (expect, put):
                out.append(f"{path}: put {put!r}, mapped {m.value!r}, twin {n.value!r}")
        elif SPEC.variable(p.dialect.cls, path).var.type == "enum":
            if n.value != put or not _equivalent(p, path, m.value, put):
                out.append(f"{path}: put {put}, mapped {m.value}, twin {n.value}")
        else:
            tolerance = _quantum(p.projections[path][0].field, put) + 1e-9
            if not (math.isclose(m.value, expect, rel_tol=1e-6, abs_tol=1e-9) and math.isclose(n.value, put, rel_tol=1e-6, abs_tol=1e-9)
                    and abs(m.value - n.value) <= tolerance + 1e-6 * abs(put)):
                out.append(f"{path}: put {put}, dialect serves {expect}, mapped {m.value}, twin {n.value}")
    return out


async def _put_everywhere(line: Line, probes: dict[str, dict[str, tuple[Any, Any]]], what: str) -> None:
    for name, values in probes.items():
        p = line.pairs[name]
        for sim in (p.dsim, p.nsim):
            sim.faults.values.overrides.update({path: put for path, (put, _) in values.items()})

    def wrong() -> list[str]:
        return [f"{name}: {m}" for name, values in probes.items() for m in _misread(line.pairs[name], values)]

    await _until_none(wrong, f"{what} read back the same")


@ON_MODULE_LOOP
async def test_values_served_in_the_dialect_read_back_as_the_twin_serves_them(line):
    """Numbers, strings and every enum member, put on both machines at once: through each
    mapping's scale, offset, unit conversion, word order and enum codes the gateway must read
    what it reads from the conforming twin (enum members modulo codes that stand for several)."""
    try:
        probes = {name: _probes(p, None) for name, p in line.pairs.items()}
        assert all(probes.values())
        await _put_everywhere(line, probes, "numbers and strings")
        rounds = max(len(SPEC.enum(SPEC.variable(p.dialect.cls, path).var.enum or ""))
                     for p in line.pairs.values() for path in _probes(p, 0))
        for r in range(rounds):
            await _put_everywhere(line, {name: _probes(p, r) for name, p in line.pairs.items()}, f"enum round {r}")
    finally:
        for p in line.pairs.values():
            p.dsim.faults.restore()
            p.nsim.faults.restore()


# --- commands and alarms --------------------------------------------------------------------------


async def _command(line: Line, dev: Device, command: str):
    return await line.runtime.command(dev.eq.id, command, {}, "test", "engineer")


ACCEPTED = ("ok", "accepted_completes_later")  # how a conforming machine takes a command depends on its timing


async def _drive(line: Line, dev: Device, sim: Simulator) -> list[tuple[str, str | None]]:
    """Start while running, Stop, Reset, Start in Remote; then Stop in Local.
    Returns (result, state after) per command, "accepted" for either way of taking it."""
    await wait_for(lambda: dev.view.state.get("packml_state") == "Execute"
                   and dev.view.state.get("control_authority") == "Remote", f"{dev.eq.id} running in Remote")
    out = []
    for command, target in (("Start", None), ("Stop", "Stopped"), ("Reset", "Idle"), ("Start", "Execute")):
        r = await _command(line, dev, command)
        if dev.plan is not None and not dev.plan.native and r.result in ACCEPTED:
            assert r.result == "accepted_completes_later", r  # a vendor has no result code: taken, read back
        out.append(("accepted" if r.result in ACCEPTED else r.result, r.state_after))
        if target is not None:
            assert r.confirmed and r.state_after == target, f"{dev.eq.id} {command}: {r}"
            await wait_for(lambda target=target: sim.machine.state() == target, f"{dev.eq.id} machine {target}")
    sim.machine.set_control_authority("Local")
    await wait_for(lambda: dev.view.state.get("control_authority") == "Local", f"{dev.eq.id} Local seen")
    r = await _command(line, dev, "Stop")
    assert "Remote" in r.detail and sim.machine.state() == "Execute", r
    out.append((r.result, r.state_after))
    sim.machine.set_control_authority("Remote")
    await wait_for(lambda: dev.view.state.get("control_authority") == "Remote", f"{dev.eq.id} Remote seen")
    return out


@ON_MODULE_LOOP
@pytest.mark.parametrize("name", DIALECTS)
async def test_commands_through_the_mapping_drive_the_machine_as_on_its_twin(line, name):
    p = line.pairs[name]
    mapped, native = await asyncio.gather(_drive(line, p.mapped, p.dsim), _drive(line, p.native, p.nsim))
    assert mapped == native
    assert mapped[0][0] != "accepted"  # Start while executing: the interlock


@ON_MODULE_LOOP
@pytest.mark.parametrize("name", DIALECTS)
async def test_alarms_raised_on_the_machine_are_seen_and_cleared_through_the_mapping(line, name):
    p = line.pairs[name]
    codes = {a.id: a.code for a in SPEC.alarms(p.dialect.cls)}
    # Alarms with a bit or Boolean node of their own, all at once: a bit read wrongly shows the wrong alarm.
    reads = alarm_reads(p.mapping)
    own = {codes[alarm] for alarm, src, active in reads if active is True}
    for sim in (p.dsim, p.nsim):
        for code in own:
            sim.machine.raise_alarm(code)
    await wait_for(lambda: set(p.mapped.alarms.active) == own, f"{name}: every raised alarm active")
    await wait_for(lambda: own <= set(p.native.alarms.active), f"{name}: the twin's alarms active")
    for sim in (p.dsim, p.nsim):
        for code in own:
            sim.machine.clear_alarm(code)
    await wait_for(lambda: not p.mapped.alarms.active, f"{name}: every alarm cleared")
    # Alarms known only as a vendor alarm code, one at a time (the code shows the most severe).
    for alarm, _, active in reads:
        if active is True:
            continue
        code = codes[alarm]
        p.dsim.machine.raise_alarm(code)
        await wait_for(lambda code=code: set(p.mapped.alarms.active) == {code}, f"{name}: {alarm} seen through its code")
        p.dsim.machine.clear_alarm(code)
        await wait_for(lambda: not p.mapped.alarms.active, f"{name}: {alarm} cleared")
