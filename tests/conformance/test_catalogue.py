"""The catalogue is generated from the spec: stable IDs, a clause and a docs page for every case."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from gateway.cli import app
from gateway.conformance.catalogue import LAYERS, SEVERITIES, build_catalogue
from gateway.conformance.checks import load
from gateway.conformance.checks.control import packml_edges, tour, wait_states
from interface_spec import load_spec
from interface_spec.loader import SpecError

SPEC = load_spec()
SPEC_DIR = Path(__file__).resolve().parents[2] / "interface_spec"
ID = re.compile(r"^[A-Z]+-[A-Z0-9]+-(ERR-)?\d{3}$")


def test_profiles_units_and_cases_are_generated_from_the_spec():
    cat = build_catalogue(SPEC)
    assert cat.profiles == ["Core", "Control", "Recipe", "Traceability", "DataCollection", "Coater", "Winder",
                            "Formation"]
    cases = cat.cases
    assert len(cases) == sum(len(u.cases) for u in cat.units.values())  # IDs are unique
    for cid, su in ((c, su) for c in SPEC.classes for su in SPEC.get_class(c).sub_units):
        uid = f"{cid.upper()}-{su.id.upper().replace('_', '')}"
        assert {f"{uid}-001", f"{uid}-002"} <= set(cases), uid
        assert cases[f"{uid}-001"].clause == f"{cid}.yaml § sub_units[{su.id}]"
        # Mandatory or not per class, from the spec's tiers.
        assert cases[f"{uid}-001"].tier == su.tier.value
    transitions = SPEC.core.packml.transitions
    for i, t in enumerate(transitions, start=1):
        assert cases[f"CTRL-PACKML-{i:03d}"].clause == f"common.yaml § packml.transitions[{t.command}]"
    assert f"CTRL-PACKML-{len(transitions) + 1:03d}" in cases and "CTRL-PACKML-ERR-001" in cases


def test_every_case_is_complete_and_some_check_decides_it():
    cat = build_catalogue(SPEC)
    checks = load()
    for c in cat.cases.values():
        assert ID.match(c.id), c.id
        assert c.id.startswith(c.unit + "-"), c.id
        assert c.layer in LAYERS and c.severity in SEVERITIES and c.tier in ("M", "R", "O")
        assert len(c.description) > 40 and c.title, c.id
        assert "§" in c.clause or "binding" in c.clause or "mapping" in c.clause, c.id
        page = c.doc.split("#")[0]
        assert (SPEC_DIR / "docs" / page).resolve().exists(), f"{c.id}: docs page {page}"
        assert sum(1 for chk in checks if chk.decides(c)) >= 1, f"{c.id} has no check"
    layers = {c.layer for c in cat.cases.values()}
    assert layers == set(LAYERS)


def test_a_new_sub_unit_in_the_spec_is_a_new_conformance_unit(tmp_path):
    for f in SPEC_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    winder = yaml.safe_load((tmp_path / "winder.yaml").read_text())
    winder["sub_units"].append({"id": "laser_marker", "tier": "R", "variables": [
        {"id": "power", "type": "float", "unit": "kW", "range": [0, 1]}]})
    (tmp_path / "winder.yaml").write_text(yaml.safe_dump(winder, sort_keys=False))
    try:
        spec = load_spec(tmp_path)
    except SpecError as exc:  # the Modbus map of the class must still fit
        raise AssertionError(exc) from None
    cases = build_catalogue(spec).for_class("winder").cases
    assert cases["WINDER-LASERMARKER-001"].tier == "R"
    assert "WINDER-LASERMARKER-002" in cases
    assert not [c for c in cases if c.startswith(("COATER-", "FORMATION-"))]


def test_the_tour_drives_every_command_edge_of_the_table_and_returns_to_stopped():
    steps = tour(SPEC)
    assert steps[0][0] == "Stopped" and steps[-1][2] == "Stopped"
    assert all(a[2] == b[0] for a, b in zip(steps, steps[1:]))  # each step starts where the last ended
    edges = packml_edges(SPEC)
    reachable = {s for s, _, _ in steps}
    assert {(s, c) for s, c, _ in steps} == {e for e in edges if e[0] in reachable}
    assert reachable == set(wait_states(SPEC)) - {"Complete"}  # Complete is entered by the machine itself


def test_linegw_conformance_list_prints_the_catalogue():
    result = CliRunner().invoke(app, ["conformance", "--list", "--class", "formation"])
    assert result.exit_code == 0, result.output
    assert "6 profiles" in result.output and "FORMATION-CHANNEL-001" in result.output
    assert "COATER-" not in result.output
    assert "CTRL-PACKML-ERR-001" in result.output and "common.yaml § packml.transitions" in result.output
