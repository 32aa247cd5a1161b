"""A third-party adapter package, installed for real, runs a machine through the gateway."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from gateway.config import load_line
from gateway.runtime.line import LineRuntime
from gateway.samples import Quality
from gateway.store.sqlite import SqliteStore
from interface_spec import SpecError, load_spec

PACKAGE = Path(__file__).parent / "example_adapter"

MAPPING = """\
mapping: example-jsonfile-winder
class: winder
protocol: jsonfile
variables:
  - path: winding.speed
    source: {node: speed_dmm_s}
    scale: 0.1
  - path: state.packml_state
    source: {node: state}
    enum: {0: Stopped, 1: Idle, 2: Execute}
  - path: state.control_authority
    source: {node: remote}
    enum: {0: Local, 1: Remote}
  - path: tension.cathode
    source: {point: {key: tensions_n, index: 0}}
  - path: tension.anode
    source: {point: {key: tensions_n, index: 1}}
commands:
  Start: {write: {node: command, value: start}}
"""


@pytest.fixture(scope="module")
def installed_adapter():
    """pip-install the example package into this environment, as an integrator would: every run, so
    the test runs the code in the tree, not what an earlier run installed."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall",
                    str(PACKAGE)], check=True)
    sys.modules.pop("linegw_example_adapter", None)
    [ep] = [ep for ep in entry_points(group="linegw.adapters") if ep.name == "jsonfile"]
    module = sys.modules[ep.load().__module__]
    tree = PACKAGE / "linegw_example_adapter" / "__init__.py"
    assert Path(module.__file__).read_text() == tree.read_text(), f"{module.__file__} is not the tree's {tree}"


async def wait_for(predicate, what: str, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_machine_runs_through_a_plugin_adapter(installed_adapter, tmp_path):
    machine = tmp_path / "winder.json"
    machine.write_text(json.dumps({"speed_dmm_s": 1234, "state": 1, "remote": 1, "tensions_n": [11.5, 12.25]}))
    (tmp_path / "mapping.yaml").write_text(MAPPING)
    (tmp_path / "line.yaml").write_text(
        f"line: plugin\nequipment:\n  - id: w9\n    class: winder\n    protocol: jsonfile\n"
        f"    endpoint: file://{machine}\n    mapping: mapping.yaml\n    adapter: {{scan_interval_ms: 50}}\n"
        f"    command_timeout_s: 5\n"
    )
    cfg = load_line(tmp_path / "line.yaml")
    store = SqliteStore(tmp_path / "store.sqlite")
    await store.start()
    runtime = LineRuntime(cfg, load_spec(), store)
    task = asyncio.create_task(runtime.run())
    try:
        dev = runtime.devices["w9"]
        await wait_for(lambda: "winding.speed" in dev.latest, "the first scan")
        speed = dev.latest["winding.speed"]
        assert (speed.value, speed.unit, speed.quality) == (pytest.approx(123.4), "mm/s", Quality.GOOD)
        assert runtime.get("w9").state["packml_state"] == "Idle"
        # Typed addresses: the plug-in's own fields, elements of one list value.
        await wait_for(lambda: "tension.anode" in dev.latest, "the typed points")
        assert (dev.latest["tension.cathode"].value, dev.latest["tension.anode"].value) == (11.5, 12.25)

        # A command goes through the same interlocks and is written by the plug-in.
        async def machine_follows() -> None:
            await wait_for(lambda: json.loads(machine.read_text()).get("command") == "start", "the command write")
            data = json.loads(machine.read_text())
            data["state"] = 2
            machine.write_text(json.dumps(data))

        follower = asyncio.create_task(machine_follows())
        result = await runtime.command("w9", "Start", {}, "tester", "operator")
        await follower
        assert (result.result, result.confirmed, result.state_after) == ("accepted_completes_later", True, "Execute")

        refused = await runtime.command("w9", "Start", {}, "tester", "operator")
        assert refused.result == "already_in_state"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


async def test_a_third_party_protocol_serves_the_spec_natively(installed_adapter, tmp_path):
    """The plug-in registers a binding beside its adapter: a machine on its protocol runs with no mapping
    file, its values, alarms and events read where the binding says they live."""
    spec = load_spec()
    [binding] = [ep for ep in entry_points(group="linegw.bindings") if ep.name == "jsonfile"]
    assert binding.value == "linegw_example_adapter.binding:JsonFileBinding"
    alarm = spec.alarms("winder")[0]
    unit = {"type": "UnitProcessed", "seq": 1, "source_ts": 1_700_000_000.0,
            "payload": {"unit_type": "jelly_roll", "unit_id": "JR-1", "result": "good", "made_from": ["EA-1", "EC-1"],
                        "measurements": {}}}
    machine = tmp_path / "winder.json"
    machine.write_text(json.dumps({"winding.speed": 123.4, "state.packml_state": spec.enum("packml_state")["Idle"],
                                   "state.control_authority": spec.enum("control_authority")["Remote"],
                                   "alarms.active": [alarm.code], "events.last_seq": 1, "events": [unit]}))
    (tmp_path / "line.yaml").write_text(
        f"line: plugin\nequipment:\n  - id: w8\n    class: winder\n    protocol: jsonfile\n"
        f"    endpoint: file://{machine}\n    adapter: {{scan_interval_ms: 50}}\n"
    )
    cfg = load_line(tmp_path / "line.yaml")
    store = SqliteStore(tmp_path / "store.sqlite")
    await store.start()
    runtime = LineRuntime(cfg, spec, store)
    task = asyncio.create_task(runtime.run())
    try:
        dev = runtime.devices["w8"]
        await wait_for(lambda: "winding.speed" in dev.latest, "the first scan")
        assert dev.plan is not None and dev.plan.native
        speed = dev.latest["winding.speed"]
        assert (speed.value, speed.unit, speed.quality) == (pytest.approx(123.4), "mm/s", Quality.GOOD)
        assert runtime.get("w8").state["packml_state"] == "Idle"
        # A spec variable the file does not carry is there, marked bad with the reason: nothing silently missing.
        missing = next(s for p, s in dev.latest.items() if p.startswith("winding.") and p != "winding.speed")
        assert missing.quality == Quality.BAD and "no key" in missing.reason
        await wait_for(lambda: alarm.code in dev.alarms.active, "the active alarm")

        async def stored_events() -> list[dict]:
            await store.flush()
            return await store.events(equipment="w8")

        deadline = asyncio.get_running_loop().time() + 10
        events: list[dict] = []
        while not any(e.get("type") == "UnitProcessed" for e in events):
            assert asyncio.get_running_loop().time() < deadline, f"the machine's event never reached the store: {events}"
            await asyncio.sleep(0.1)
            events = await stored_events()
        [stored] = [e for e in events if e["type"] == "UnitProcessed"]
        assert stored["seq"] == 1 and stored["payload"]["unit_id"] == "JR-1"

        # A command goes through the binding: written where the binding puts it.
        async def machine_follows() -> None:
            await wait_for(lambda: (json.loads(machine.read_text()).get("command") or {}).get("name") == "Start",
                           "the command write")
            data = json.loads(machine.read_text())
            data["state.packml_state"] = spec.enum("packml_state")["Execute"]
            machine.write_text(json.dumps(data))

        follower = asyncio.create_task(machine_follows())
        result = await runtime.command("w8", "Start", {"job_id": "J-1"}, "tester", "operator")
        await follower
        assert (result.confirmed, result.state_after) == (True, "Execute")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


@pytest.mark.parametrize("settings, message", [
    ("{scan_intervall_ms: 50}", "line.yaml:6: equipment[0].adapter.scan_intervall_ms: not a setting of the jsonfile "
                                "adapter; did you mean scan_interval_ms?"),
    ("{scan_interval_ms: 1}", "line.yaml:6: equipment[0].adapter.scan_interval_ms: "
                              "Input should be greater than or equal to 10"),
])
def test_a_plugins_declared_settings_are_checked_at_their_line(installed_adapter, tmp_path, settings, message):
    """The plug-in declares its settings (a pydantic model, `JsonFileAdapter.Settings`): the line file is checked
    against it, as the built-in adapters' settings are, and a good one passes."""
    (tmp_path / "line.yaml").write_text(
        f"line: plugin\nequipment:\n  - id: w7\n    class: winder\n    protocol: jsonfile\n"
        f"    adapter: {settings}\n    endpoint: file://{tmp_path / 'w.json'}\n")
    with pytest.raises(SpecError) as exc:
        load_line(tmp_path / "line.yaml")
    assert message in str(exc.value)
    (tmp_path / "line.yaml").write_text((tmp_path / "line.yaml").read_text().replace(settings, "{scan_interval_ms: 50}"))
    assert load_line(tmp_path / "line.yaml").equipment[0].adapter == {"scan_interval_ms": 50}


@pytest.mark.parametrize("point, message", [
    ("{keey: tensions_n}", "mapping.yaml:5: variables[0].source.point.keey: not an address field of the jsonfile "
                           "adapter; did you mean key?"),
    ("{key: tensions_n, index: -1}", "mapping.yaml:5: variables[0].source.point.index: "
                                     "Input should be greater than or equal to 0"),
    ("{index: 1}", "mapping.yaml:5: variables[0].source.point.key: Field required"),
])
def test_a_plugins_typed_addresses_are_checked_at_their_line(installed_adapter, tmp_path, point, message):
    """The plug-in declares its point address (`JsonFileAdapter.Address`): a vendor file's points are checked
    against it when the file loads (check-config, `linegw mapping validate`, a machine starting), and a good
    one passes."""
    from gateway.mapping.compile import load_mapping, mapped_plan

    path = tmp_path / "mapping.yaml"
    path.write_text(f"mapping: m\nclass: winder\nprotocol: jsonfile\nvariables:\n"
                    f"  - {{path: tension.cathode, source: {{point: {point}}}}}\n")
    with pytest.raises(SpecError) as exc:
        load_mapping(path, load_spec())
    assert message in str(exc.value)
    path.write_text(path.read_text().replace(point, "{key: tensions_n, index: 1}"))
    plan = mapped_plan(load_spec(), "w7", load_mapping(path, load_spec()), {})
    assert [p.options for p in plan.points] == [{"key": "tensions_n", "index": 1}]


def test_a_typed_address_is_refused_where_the_adapter_declares_none(tmp_path):
    """Modbus and OPC UA take their own addresses; 'point' is for plug-ins that declare one."""
    from gateway.mapping.compile import load_mapping

    (tmp_path / "m.yaml").write_text("mapping: m\nclass: winder\nprotocol: modbus\nvariables:\n"
                                     "  - {path: tension.cathode, source: {point: {key: x}}}\n")
    with pytest.raises(SpecError, match=r"m.yaml:5: variables\[0\].source.point: 'point' is a plug-in adapter's "
                                        r"address; modbus takes address"):
        load_mapping(tmp_path / "m.yaml", load_spec())
