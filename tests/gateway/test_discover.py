"""`linegw discover` against every shipped dialect simulator: the draft loads as a vendor file, and for
OPC UA it maps most mandatory variables to the very nodes the shipped vendor file names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from typer.testing import CliRunner

from gateway.cli import app
from gateway.mapping.compile import load_mapping
from gateway.mapping.discover import Node, discover_modbus, discover_opcua, draft_from_nodes, parse_ranges
from interface_spec import load_spec
from interface_spec.model import Tier
from interface_spec.vendor import Mapping, vendor_names, vendor_path
from simulators.line import SimConfig, SimLine

SPEC = load_spec()
COUNTS = {"coater": {"dryer_zone": 3, "lane": 2}, "winder": {}, "formation": {"channel": 4}}
# What the drafts reach on the shipped OPC UA dialects (the README's figures): the share of the
# mandatory variables the shipped file maps that the draft maps to the same node.
AT_LEAST = {"cellforge-formation-opcua": 0.85, "kawa-coater-opcua": 0.9, "sztp-winder-opcua": 0.8}
ON_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")


def shipped(name: str) -> Mapping:
    return load_mapping(vendor_path(name), SPEC)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def machines() -> AsyncIterator[dict[str, str]]:
    line = SimLine(SPEC)
    await line.start([SimConfig(name, shipped(name).cls, shipped(name).protocol, dialect=name,
                                counts=COUNTS[shipped(name).cls]) for name in vendor_names()])
    try:
        yield line.endpoints()
    finally:
        await line.stop()


def draft_file(tmp_path, draft, source: str) -> Mapping:
    path = tmp_path / "draft.yaml"
    path.write_text(draft.text(source))
    return load_mapping(path, SPEC)  # the draft is a vendor file the gateway reads


@ON_MODULE_LOOP
@pytest.mark.parametrize("name", [n for n in vendor_names() if n.endswith("-opcua")])
async def test_an_opcua_draft_maps_most_mandatory_variables_to_the_right_nodes(machines, tmp_path, name):
    truth = shipped(name)
    draft = await discover_opcua(SPEC, truth.cls, machines[name])
    mapped = draft_file(tmp_path, draft, machines[name])
    assert (mapped.opcua.namespace_uri, mapped.opcua.root) == (truth.opcua.namespace_uri, truth.opcua.root)
    nodes = {vm.path: vm.source.node for vm in truth.variables}
    mandatory = [p for p in (d.template.replace("[]", "[*]") for d in SPEC.variables(truth.cls)
                             if d.var.origin == "equipment" and d.var.tier == Tier.mandatory
                             and d.sub_unit.tier == Tier.mandatory) if p in nodes]
    got = {vm.path: vm.source.node for vm in mapped.variables}
    right = [p for p in mandatory if got.get(p) == nodes[p]]
    wrong = [p for p in got if got[p] != nodes.get(p)]
    share = len(right) / len(mandatory)
    print(f"{name}: {len(right)} of {len(mandatory)} mandatory variables on the right node ({share:.0%}), "
          f"{len(wrong)} drafted wrongly: {wrong}")
    assert share >= AT_LEAST[name], f"{name}: {share:.0%}; missed {sorted(set(mandatory) - set(right))}"
    assert len(wrong) <= 1, wrong
    # Units read off the names become conversions the gateway makes: CycleTimeMs, EPC/CathodeUm, Rack/PowerW.
    units = {vm.path: (vm.scale, vm.from_unit) for vm in mapped.variables}
    expected = {"sztp-winder-opcua": ("winding.cycle_time", (0.001, None)),
                "cellforge-formation-opcua": ("rack.power", (1.0, "W")),
                "kawa-coater-opcua": ("coating_head.die_gap", (1.0, None))}[name]
    assert units[expected[0]] == expected[1]
    assert draft.todo and all(p not in got for p in draft.todo)


@ON_MODULE_LOOP
@pytest.mark.parametrize("name", [n for n in vendor_names() if n.endswith("-modbus")])
async def test_a_modbus_draft_finds_the_heartbeat_and_the_text_from_values_alone(machines, tmp_path, name):
    truth = shipped(name)
    heartbeat = next(vm.source for vm in truth.variables if vm.path == "status.heartbeat")
    texts = [vm.source for vm in truth.variables if vm.source.dtype == "string"]
    tables = sorted({s.table for s in [heartbeat, *texts]})
    first = min(s.address for s in [heartbeat, *texts])
    last = max(s.address + (s.count or 2) for s in [heartbeat, *texts])
    host, port = machines[name].removeprefix("modbus://").rsplit(":", 1)
    ranges = parse_ranges(",".join(f"{t}:{first}-{last}" for t in tables))
    draft = await discover_modbus(SPEC, truth.cls, host, int(port), truth.modbus.device_id, ranges)
    mapped = draft_file(tmp_path, draft, machines[name])
    [hb] = [vm.source for vm in mapped.variables if vm.path == "status.heartbeat"]
    assert (hb.table, hb.address) == (heartbeat.table, heartbeat.address)
    listed = "\n".join(draft.unmatched)
    served_text = [s for s in texts if f"{s.table} {s.address}-" in listed]
    assert served_text, f"{name}: no text block found among {texts}"


def test_names_that_mean_nothing_are_matched_to_nothing():
    nodes = [Node(["Block", "Xq7"], "variable", "Double", 1.0), Node(["Zzz"], "variable", "String", "abc"),
             Node(["Foo", "Bar"], "method")]
    draft = draft_from_nodes(SPEC, "winder", "urn:x", "/Objects/M", nodes)
    assert draft.variables == [] and draft.alarms == [] and draft.commands == {}
    assert len(draft.unmatched) == 3


@ON_MODULE_LOOP
async def test_linegw_discover_writes_a_draft_that_validates(machines, tmp_path):
    out = tmp_path / "winder.yaml"
    runner = CliRunner()
    result = await asyncio.to_thread(runner.invoke, app, ["discover", "--class", "winder", "--opcua",
                                                          machines["sztp-winder-opcua"], "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "mandatory variables to do; written to" in result.output
    checked = runner.invoke(app, ["mapping", "validate", str(out)])
    assert checked.exit_code == 0 and checked.output.startswith(f"OK {out}: a winder over opcua"), checked.output
    refused = runner.invoke(app, ["discover", "--class", "winder"])
    assert refused.exit_code == 1 and "give one of --opcua URL or --modbus HOST:PORT" in refused.output
    refused = runner.invoke(app, ["discover", "--class", "dryer", "--modbus", "127.0.0.1:1"])
    assert refused.exit_code == 1 and "unknown equipment class 'dryer'" in refused.output
