"""Broken spec folders are rejected with a precise `file:line: path: reason`.

Each test copies the real spec into its own tmp folder (load_spec caches by
folder), breaks one thing, and asserts the whole error message, or every one
of its lines when a fault is reported at several places.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from interface_spec import SpecError, load_spec
from interface_spec.cli import spec_app

from .conftest import SpecCopy


def errors(copy: SpecCopy) -> list[str]:
    """The error lines of loading a broken copy; fails the test if it loads."""
    with pytest.raises(SpecError) as info:
        load_spec(copy.folder)
    return str(info.value).splitlines()


def at(copy: SpecCopy, file: str, line: int, rest: str) -> str:
    return f"{copy.path(file)}:{line}: {rest}"


def test_unknown_unit(spec_copy: SpecCopy) -> None:
    spec_copy.replace("coater.yaml", "unit: mPa.s", "unit: furlong")
    line = spec_copy.line("coater.yaml", "{id: slurry_viscosity")
    assert errors(spec_copy) == [
        at(spec_copy, "coater.yaml", line,
           "sub_units[4].variables[4].unit: unknown unit code 'furlong' (not in common.yaml units)"),
    ]


def test_duplicate_alarm_code(spec_copy: SpecCopy) -> None:
    spec_copy.replace("coater.yaml", "{code: 1002, id: dryer_overtemperature", "{code: 1001, id: dryer_overtemperature")
    first, second = spec_copy.line("coater.yaml", "id: web_break"), spec_copy.line("coater.yaml", "id: dryer_overtemperature")
    assert errors(spec_copy) == [
        at(spec_copy, "coater.yaml", first, "alarms[0].code: alarm code 1001 is used 2 times (core included)"),
        at(spec_copy, "coater.yaml", second, "alarms[1].code: alarm code 1001 is used 2 times (core included)"),
    ]


def test_class_alarm_code_clashing_with_a_core_alarm(spec_copy: SpecCopy) -> None:
    spec_copy.replace("winder.yaml", "{code: 2005, id: dew_point_high", "{code: 2, id: dew_point_high")
    line = spec_copy.line("winder.yaml", "id: dew_point_high")
    assert errors(spec_copy) == [
        at(spec_copy, "winder.yaml", line, "alarms[4].code: alarm code 2 is used 2 times (core included)"),
    ]


def test_enum_variable_without_enum(spec_copy: SpecCopy) -> None:
    spec_copy.replace("winder.yaml", "{id: hipot_result, type: enum, enum: hipot_result,", "{id: hipot_result, type: enum,")
    line = spec_copy.line("winder.yaml", "{id: hipot_result")
    assert errors(spec_copy) == [
        at(spec_copy, "winder.yaml", line,
           "sub_units[3].variables[4]: variable 'hipot_result': type enum needs 'enum: <name>'"),
    ]


def test_string_without_length(spec_copy: SpecCopy) -> None:
    spec_copy.replace("winder.yaml", "{id: roll_id, type: string, length: 24,", "{id: roll_id, type: string,")
    line = spec_copy.line("winder.yaml", "{id: roll_id")
    assert errors(spec_copy) == [
        at(spec_copy, "winder.yaml", line,
           "sub_units[3].variables[0]: variable 'roll_id': type string needs 'length' (characters)"),
    ]


def test_range_low_not_below_high(spec_copy: SpecCopy) -> None:
    spec_copy.replace("formation.yaml", "{id: voltage, type: float, unit: V, range: [0, 5],",
                      "{id: voltage, type: float, unit: V, range: [5, 5],")
    line = spec_copy.line("formation.yaml", "{id: voltage")
    assert errors(spec_copy) == [
        at(spec_copy, "formation.yaml", line,
           "sub_units[2].variables[5]: variable 'voltage': range [5, 5] is empty (low must be < high)"),
    ]


def test_range_on_a_string(spec_copy: SpecCopy) -> None:
    spec_copy.replace("formation.yaml", "{id: tray_id, type: string, length: 24, category: event}",
                      "{id: tray_id, type: string, length: 24, range: [0, 10], category: event}")
    line = spec_copy.line("formation.yaml", "{id: tray_id")
    assert errors(spec_copy) == [
        at(spec_copy, "formation.yaml", line,
           "sub_units[1].variables[3]: variable 'tray_id': a range needs a numeric type, not string"),
    ]


def test_range_that_does_not_fit_its_encoding(spec_copy: SpecCopy) -> None:
    spec_copy.replace("coater.yaml", "{id: lane_count, type: uint, bits: 16, range: [1, 8]",
                      "{id: lane_count, type: uint, bits: 16, range: [1, 70000]")
    line = spec_copy.line("coater.yaml", "{id: lane_count")
    assert errors(spec_copy) == [
        at(spec_copy, "coater.yaml", line,
           "sub_units[0].variables[1]: variable 'lane_count': range [1, 70000] does not fit uint16 (0..65535)"),
    ]


@pytest.mark.parametrize("given, problem", [
    ("range: [0, 5], resolution: 0.0005", "resolution 0.0005 is not a power of ten (0.001, 0.1, 1, 10, ...)"),
    ("range: [0, 5], resolution: 0.0000001", "resolution 1e-07 over range [0, 5] is finer than float32 can carry "
                                             "(bits: 64 would)"),
    ("range: [0, 5], resolution: 0", "resolution: Input should be greater than 0"),
])
def test_a_resolution_the_encoding_or_the_rule_refuses(spec_copy: SpecCopy, given: str, problem: str) -> None:
    spec_copy.replace("formation.yaml", "{id: voltage, type: float, unit: V, range: [0, 5], resolution: 0.0001}",
                      f"{{id: voltage, type: float, unit: V, {given}}}")
    line = spec_copy.line("formation.yaml", "{id: voltage")
    found = errors(spec_copy)
    assert len(found) == 1 and found[0].startswith(at(spec_copy, "formation.yaml", line, "")[:-1]), found
    assert problem in found[0], found


def test_a_resolution_on_an_integer(spec_copy: SpecCopy) -> None:
    spec_copy.replace("coater.yaml", "{id: lane_count, type: uint, bits: 16, range: [1, 8]",
                      "{id: lane_count, type: uint, bits: 16, range: [1, 8], resolution: 1")
    line = spec_copy.line("coater.yaml", "{id: lane_count")
    assert errors(spec_copy) == [
        at(spec_copy, "coater.yaml", line,
           "sub_units[0].variables[1]: variable 'lane_count': a resolution is for type float (integers are exact)"),
    ]


def test_unknown_enum_name(spec_copy: SpecCopy) -> None:
    spec_copy.replace("formation.yaml", "enum: cell_grade", "enum: cell_grades")
    line = spec_copy.line("formation.yaml", "{id: result_grade")
    assert errors(spec_copy) == [
        at(spec_copy, "formation.yaml", line, "sub_units[2].variables[16].enum: unknown enum 'cell_grades'"),
    ]


def test_packml_transition_to_an_unknown_state(spec_copy: SpecCopy) -> None:
    spec_copy.replace("common.yaml", "{command: Clear, source: [Aborted], acting: Clearing, target: Stopped}",
                      "{command: Clear, source: [Aborted], acting: Clearing, target: Stoped}")
    line = spec_copy.line("common.yaml", "{command: Clear,")
    assert errors(spec_copy) == [at(spec_copy, "common.yaml", line, "packml.transitions[8]: unknown state 'Stoped'")]


def test_unreachable_packml_state(spec_copy: SpecCopy) -> None:
    # Suspend straight to Suspended: nothing passes through Suspending any more.
    spec_copy.replace("common.yaml", "{command: Suspend, source: [Execute], acting: Suspending, target: Suspended}",
                      "{command: Suspend, source: [Execute], target: Suspended}")
    line = spec_copy.line("common.yaml", "  states: {Undefined: 0")
    assert errors(spec_copy) == [
        at(spec_copy, "common.yaml", line, "packml.states: state 'Suspending' cannot be reached from Stopped"),
    ]


def test_class_sub_unit_redefining_a_core_sub_unit(spec_copy: SpecCopy) -> None:
    spec_copy.replace("winder.yaml", "  - id: environment\n",
                      "  - id: status\n    variables:\n      - {id: lamp, type: bool}\n  - id: environment\n")
    line = spec_copy.line("winder.yaml", "  - id: status")
    assert errors(spec_copy) == [
        at(spec_copy, "winder.yaml", line, "sub_units[6].id: sub-unit 'status' is a core sub-unit; classes may not redefine it"),
    ]


def test_class_block_too_small_for_its_variables(spec_copy: SpecCopy) -> None:
    spec_copy.replace("coater.yaml", "modbus_length: 600", "modbus_length: 100")
    line = spec_copy.line("coater.yaml", "modbus_length:")
    found = errors(spec_copy)
    assert found[0] == at(spec_copy, "coater.yaml", line,
                          "modbus_length: class block needs 184 registers but modbus_length is 100")
    # The end header now lands on class variables; that is reported too, at the same place.
    assert all(e.startswith(at(spec_copy, "coater.yaml", line, "modbus_length: ")) for e in found)
    assert any("registers overlap" in e and "end.header" in e for e in found[1:])


def test_map_beyond_65536_registers(spec_copy: SpecCopy) -> None:
    spec_copy.replace("formation.yaml", "modbus_length: 22000", "modbus_length: 25000")
    line = spec_copy.line("formation.yaml", "modbus_length:")
    assert errors(spec_copy) == [
        at(spec_copy, "formation.yaml", line,
           "modbus_length: register map ends at 65608, beyond the 65536 holding registers"),
    ]


def test_duplicate_command_code(spec_copy: SpecCopy) -> None:
    spec_copy.replace("common.yaml", "{id: Clear, code: 9}", "{id: Clear, code: 8}")
    abort, clear = spec_copy.line("common.yaml", "{id: Abort, code: 8}"), spec_copy.line("common.yaml", "{id: Clear, code: 8}")
    assert errors(spec_copy) == [
        at(spec_copy, "common.yaml", abort, "commands[7].code: code 8 is used 2 times"),
        at(spec_copy, "common.yaml", clear, "commands[8].code: code 8 is used 2 times"),
    ]


def test_command_with_two_text_parameters(spec_copy: SpecCopy) -> None:
    spec_copy.replace("common.yaml", "params: [{name: recipe_id, type: string}]",
                      "params: [{name: recipe_id, type: string}, {name: note, type: string}]")
    line = spec_copy.line("common.yaml", "{id: SelectRecipe")
    assert errors(spec_copy) == [
        at(spec_copy, "common.yaml", line, "commands[10].params: command 'SelectRecipe' has more than one number or "
           "text parameter; the Modbus handshake carries one of each"),
    ]


def test_malformed_ucum_unit_code(spec_copy: SpecCopy) -> None:
    spec_copy.replace("common.yaml", "{code: mV/d, name: millivolt per day", "{code: mV per d, name: millivolt per day")
    spec_copy.replace("formation.yaml", "unit: mV/d", "unit: mV per d")
    spec_copy.replace("formation.yaml", "k_value: mV/d", "k_value: mV per d")
    line = spec_copy.line("common.yaml", "{code: mV per d")
    assert errors(spec_copy) == [
        at(spec_copy, "common.yaml", line,
           "units[26].code: 'mV per d' is not a well-formed UCUM code: UCUM codes are printable ASCII without spaces"),
    ]


def test_malformed_yaml_reports_the_line(spec_copy: SpecCopy) -> None:
    spec_copy.replace("winder.yaml", "alarms:\n  - {code: 2001", "alarms:\n  - {code: 2001,, x")
    line = spec_copy.line("winder.yaml", "  - {code: 2001,,")
    assert errors(spec_copy) == [at(spec_copy, "winder.yaml", line, "not valid YAML: expected the node content, but found ','")]


def test_unknown_top_level_field(spec_copy: SpecCopy) -> None:
    spec_copy.replace("winder.yaml", "title: Jelly-roll winder\n", "title: Jelly-roll winder\ncolour: blue\n")
    line = spec_copy.line("winder.yaml", "colour:")
    assert errors(spec_copy) == [at(spec_copy, "winder.yaml", line, "colour: Extra inputs are not permitted")]


def test_wrong_spec_kind(spec_copy: SpecCopy) -> None:
    spec_copy.replace("formation.yaml", "spec: linegw-line-interface/class", "spec: linegw-line-interface/core")
    line = spec_copy.line("formation.yaml", "spec:")
    assert errors(spec_copy) == [
        at(spec_copy, "formation.yaml", line, "spec: Input should be 'linegw-line-interface/class'"),
    ]


def test_core_file_with_the_class_kind(spec_copy: SpecCopy) -> None:
    spec_copy.replace("common.yaml", "spec: linegw-line-interface/core", "spec: linegw-line-interface/class")
    line = spec_copy.line("common.yaml", "spec:")
    assert errors(spec_copy) == [
        at(spec_copy, "common.yaml", line, "spec: Input should be 'linegw-line-interface/core'"),
    ]


# --- the `linegw spec` sub-app ------------------------------------------------------------------

runner = CliRunner()


def test_cli_validate_accepts_the_shipped_spec() -> None:
    result = runner.invoke(spec_app, ["validate"])
    assert result.exit_code == 0, result.output
    assert f"OK: line interface spec {load_spec().version}" in result.stdout
    for cls in ("coater", "winder", "formation"):
        assert f"  {cls}: " in result.stdout


def test_cli_validate_rejects_a_broken_folder(spec_copy: SpecCopy) -> None:
    spec_copy.replace("coater.yaml", "unit: mPa.s", "unit: furlong")
    line = spec_copy.line("coater.yaml", "{id: slurry_viscosity")
    result = runner.invoke(spec_app, ["validate", str(spec_copy.folder)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"1 problem in the spec at {spec_copy.folder}:",
        at(spec_copy, "coater.yaml", line, "sub_units[4].variables[4].unit: unknown unit code 'furlong' (not in common.yaml units)"),
    ]


def test_cli_validate_sees_a_folder_edited_after_loading(spec_copy: SpecCopy) -> None:
    assert runner.invoke(spec_app, ["validate", str(spec_copy.folder)]).exit_code == 0
    spec_copy.replace("common.yaml", "{id: Clear, code: 9}", "{id: Clear, code: 8}")
    assert runner.invoke(spec_app, ["validate", str(spec_copy.folder)]).exit_code == 1


def test_cli_show(spec_copy: SpecCopy) -> None:
    result = runner.invoke(spec_app, ["show", "coater"])
    assert result.exit_code == 0, result.output
    assert "web.line_speed" in result.stdout and "m/min" in result.stdout
    result = runner.invoke(spec_app, ["show", "coater", "--binding", "opcua"])
    assert result.exit_code == 0 and "Web/LineSpeed" in result.stdout
    result = runner.invoke(spec_app, ["show", "formation", "--binding", "modbus"])
    assert result.exit_code == 0 and "channel[1].voltage" in result.stdout and "40000" in result.stdout
    result = runner.invoke(spec_app, ["show", "mixer"])
    assert result.exit_code == 1 and "unknown equipment class 'mixer'" in result.stderr
    result = runner.invoke(spec_app, ["show", "coater", "--binding", "profibus"])
    assert result.exit_code == 2


def test_cli_docs_check_passes_on_the_committed_docs() -> None:
    result = runner.invoke(spec_app, ["docs", "--check"])
    assert result.exit_code == 0, result.output


def test_docs_check_fails_on_a_stale_page(tmp_path) -> None:
    from interface_spec import tooling

    docs_dir, schema_dir = tmp_path / "docs", tmp_path / "schema"
    tooling.write_generated(docs_dir, schema_dir)
    assert tooling.docs(check=True, docs_dir=docs_dir, schema_dir=schema_dir)[0] == 0
    page = docs_dir / "modbus.md"
    page.write_text(page.read_text(encoding="utf-8").replace("40000", "40001"), encoding="utf-8")
    (schema_dir / "old.schema.json").write_text("{}", encoding="utf-8")
    status, text = tooling.docs(check=True, docs_dir=docs_dir, schema_dir=schema_dir)
    assert status == 1
    assert f"{page}: out of date" in text and "old.schema.json: not generated any more" in text
    assert "make docs" in text


def test_cli_schema_writes_the_committed_schemas(tmp_path) -> None:
    from interface_spec.tooling import SCHEMA_DIR

    result = runner.invoke(spec_app, ["schema", str(tmp_path)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert names == ["class.schema.json", "core.schema.json", "self-description.schema.json"]
    for name in names:
        assert (tmp_path / name).read_text(encoding="utf-8") == (SCHEMA_DIR / name).read_text(encoding="utf-8")
