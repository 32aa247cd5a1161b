"""Integration mode: each vendor dialect with its shipped mapping passes; a broken mapping fails and says where.

A dialect simulator serves a machine the vendor's way; the kit reads it
through the gateway's Device with deploy/mappings/<dialect>.yaml and checks
the common model that comes out. What a vendor machine does not have at all
(its dialect serves it nowhere) is declared absent, as an integrator would
(`--absent`); everything else mandatory must be mapped. Then the same
machines are read with a mapping that leaves out a variable the machine has,
and with one that scales a variable wrongly.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from gateway.conformance.runner import Run
from interface_spec.model import Tier
from interface_spec.vendor import VENDOR_DIR
from simulators.dialects import dialect_names, load_dialect
from simulators.line import SimConfig, SimLine

from .conftest import COUNTS, OPTIONS, PARALLEL, SPEC, TIME_SCALE, at_most, failures, run_kit, start

pytestmark = pytest.mark.asyncio(loop_scope="module")
MAPPINGS = VENDOR_DIR
DIALECTS = dialect_names()

# (dialect, what is done to its mapping, the case that must fail, what its message must name)
BROKEN = [
    ("tobu-winder-modbus", "omit status.heartbeat", "CORE-MAPPING-002", "status.heartbeat is not mapped"),
    ("sztp-winder-opcua", "omit state.packml_state", "CORE-MAPPING-002", "state.packml_state is not mapped"),
    ("tobu-winder-modbus", "omit tension.cathode", "WINDER-TENSION-001", "tension.cathode is mandatory and not mapped"),
    ("sztp-winder-opcua", "omit winding.speed", "WINDER-WINDING-001", "winding.speed is mandatory and not mapped"),
    ("tobu-winder-modbus", "scale tension.cathode 1.0", "WINDER-TENSION-002", "tension.cathode"),
    ("sztp-winder-opcua", "scale winding.cycle_time 1.0", "WINDER-WINDING-002", "winding.cycle_time"),
]


def _config(name: str) -> SimConfig:
    d = load_dialect(name, SPEC)
    return SimConfig("vendor", d.cls, d.protocol, dialect=name, counts=COUNTS[d.cls], time_scale=TIME_SCALE[d.cls],
                     options=dict(OPTIONS[d.cls]), acting_s=1.0)


def absent_from(name: str) -> list[str]:
    """What the vendor machine does not have: the mandatory variables its dialect serves nowhere."""
    d = load_dialect(name, SPEC)
    served = {v.path.replace("[*]", "[]") for v in d.variables}
    return sorted({v.template.replace("[]", "[*]") for v in SPEC.variables(d.cls)
                   if v.var.origin == "equipment" and v.var.tier == Tier.mandatory and v.template not in served})


def broken_mapping(name: str, change: str, folder: Path) -> Path:
    """The shipped mapping with one variable left out or given another scale."""
    doc = yaml.safe_load((MAPPINGS / f"{name}.yaml").read_text(encoding="utf-8"))
    verb, path, *rest = change.split()
    entry = next(v for v in doc["variables"] if v["path"] == path)
    if verb == "omit":
        doc["variables"].remove(entry)
    else:
        entry["scale"] = float(rest[0])
        entry.pop("from_unit", None)
    out = folder / f"{name}-{verb}-{path}.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runs(tmp_path_factory) -> Any:
    folder = tmp_path_factory.mktemp("mappings")
    lines: list[SimLine] = await asyncio.gather(*(start(_config(name)) for name in DIALECTS))
    by_name = dict(zip(DIALECTS, lines))

    async def good(name: str) -> Run:
        return await run_kit(by_name[name], mapping=str(MAPPINGS / f"{name}.yaml"), absent=absent_from(name))

    async def bad(name: str, change: str) -> Run:
        return await run_kit(by_name[name], mapping=str(broken_mapping(name, change, folder)), absent=absent_from(name))

    async def one_after_another(name: str) -> tuple[Run, dict[int, Run]]:
        # One run per simulator at a time: each run starts its own gateway Device on the machine.
        shipped = await good(name)
        return shipped, {i: await bad(name, change) for i, (n, change, _, _) in enumerate(BROKEN) if n == name}

    try:
        chains = dict(zip(DIALECTS, await at_most(PARALLEL, [one_after_another(n) for n in DIALECTS])))
        broken = {i: run for _, runs in chains.values() for i, run in runs.items()}
        undeclared = await run_kit(by_name["sztp-winder-opcua"], mapping=str(MAPPINGS / "sztp-winder-opcua.yaml"),
                                   only=["WINDER-REJECTS"], observe_s=0.5)
        yield {"shipped": {n: shipped for n, (shipped, _) in chains.items()},
               "broken": [broken[i] for i in range(len(BROKEN))], "undeclared": undeclared}
    finally:
        for line in lines:
            await line.stop()


async def test_every_shipped_dialect_has_a_mapping():
    assert len(DIALECTS) == 6 and all((MAPPINGS / f"{n}.yaml").exists() for n in DIALECTS)


@pytest.mark.parametrize("name", DIALECTS)
async def test_each_dialect_passes_through_its_mapping(runs, name):
    run = runs["shipped"][name]
    assert run.passed, failures(run)
    assert run.options.mapping and run.options.mapping.endswith(f"{name}.yaml")
    for case in ("CORE-MAPPING-001", "CORE-MAPPING-002", "CORE-STATUS-003", "DC-SAMPLING-001"):
        assert run.result(case).status == "pass", f"{case}: {run.result(case).message}"
    # The common model came out with units made and every mapped value valid.
    assert run.result("TRACE-UNIT-001").status in ("pass", "warning"), run.result("TRACE-UNIT-001").message
    values = [r for r in run.results if r.case.sub_unit and r.case.id.endswith("-002") and r.status != "not_applicable"]
    assert values and all(r.status == "pass" for r in values), failures(run)
    # What the machine cannot give is reported, never hidden: the nameplate came from the mapping.
    assert run.identity["manufacturer"] and run.identity["model"]
    # Native-only cases (self-description, events ring, PackML tour) do not apply to a mapped machine.
    assert run.result("CORE-SELF-001").status == "not_applicable"
    # What the machine does not have is a gap, named, never hidden.
    gaps = run.result("CORE-COUNTERS-001")
    assert gaps.status == "warning" and "declared absent" in gaps.message and "counters.time_" in gaps.message


async def test_a_mandatory_variable_the_machine_lacks_fails_unless_declared_absent(runs):
    run = runs["undeclared"]
    assert not run.passed
    r = run.result("WINDER-REJECTS-001")
    assert r.status == "fail" and r.mandatory and r.case.clause == "winder.yaml § sub_units[rejects]"
    assert "rejects.alignment is mandatory and not mapped" in r.message


@pytest.mark.parametrize("name,change,case,says", BROKEN, ids=[f"{n}:{c}" for n, c, _, _ in BROKEN])
async def test_a_broken_mapping_fails_and_names_the_variable(runs, name, change, case, says):
    run = runs["broken"][BROKEN.index((name, change, case, says))]
    assert not run.passed
    r = run.result(case)
    assert r.status == "fail" and r.mandatory, f"{case}: {r.status} {r.message}"
    assert says in r.message
    if change.startswith("omit") and case.endswith("-001"):  # the presence case of the variable's sub-unit
        sub_unit = change.split()[1].split(".")[0]
        assert r.case.clause == f"winder.yaml § sub_units[{sub_unit}]"
        assert [e for e in r.evidence if e.get("target") == change.split()[1] and e["kind"] == "mapping"]
    if change.startswith("scale"):
        assert "outside its range" in r.message
        assert [e for e in r.evidence if e.get("target") == change.split()[1]]
