"""One vendor file, two uses: `linegw mapping validate` checks a file as the gateway reads it and as
the simulators serve it, and a line entry's simulator serves the entry's own vendor file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import DEMO_LINE, _sim_configs, app
from gateway.config import load_line
from interface_spec.vendor import VENDOR_DIR, vendor_names

RUNNER = CliRunner()


def validate(*args: str) -> tuple[int, list[str]]:
    result = RUNNER.invoke(app, ["mapping", "validate", *args])
    return result.exit_code, result.output.splitlines()


@pytest.mark.parametrize("name", vendor_names())
def test_every_shipped_vendor_file_validates_for_both_uses(name):
    code, out = validate(name)
    assert code == 0, out
    assert out[0].startswith(f"OK {VENDOR_DIR / name}.yaml: ") and "served by the simulators alike" in out[0]


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "acme-winder-modbus.yaml"
    path.write_text("mapping: acme-winder-modbus\nclass: winder\nprotocol: modbus\n" + body)
    return path


def test_a_reading_problem_is_reported_once_at_its_line(tmp_path):
    path = write(tmp_path, """variables:
  - path: state.packml_state
    source: {address: 1, dtype: in16}
""")
    code, out = validate(str(path))
    assert code == 1
    assert out == [f"error: {path}:6: variables[0].source.dtype: unknown dtype 'in16'; did you mean 'int16'?"]


def test_a_file_the_gateway_reads_but_no_machine_could_serve_is_refused(tmp_path):
    """A reader needs codes only for what it sees; a machine shows a code for every state it is in."""
    path = write(tmp_path, """variables:
  - path: state.packml_state
    source: {address: 1, dtype: uint16}
    enum: {1: Stopped, 2: [Idle, Resetting]}
""")
    code, out = validate(str(path))
    assert code == 1
    assert len(out) == 1 and out[0].startswith(f"error: {path}:7: variables[0].enum: members [")
    assert out[0].endswith("have no vendor code: list them or give 'default'")
    path.write_text(path.read_text().replace("2: [Idle, Resetting]}", "2: [Idle, Resetting], 0: Undefined}\n    default: 0"))
    code, out = validate(str(path))
    assert code == 0, out
    assert "leaves" in out[-1] and "mandatory variables unmapped" in out[-1]  # a warning, not an error
    strict, out = validate(str(path), "--strict")
    assert strict == 1 and "mandatory variables unmapped: " in out[-1]


def test_a_line_entry_simulates_the_vendor_file_it_is_read_through(tmp_path):
    cfg = load_line(DEMO_LINE, secrets=False)
    dialects = {c.equipment_id: c.dialect for c in _sim_configs(cfg)}
    mapped = {eq.id: eq.mapping for eq in cfg.equipment if eq.mapping}
    assert mapped == {"winder1": str(VENDOR_DIR / "tobu-winder-modbus.yaml"),
                      "winder2": str(VENDOR_DIR / "sztp-winder-opcua.yaml")}
    assert {eid: dialects[eid] for eid in mapped} == mapped
    assert dialects["coater1"] == dialects["formation1"] == "conforming"
