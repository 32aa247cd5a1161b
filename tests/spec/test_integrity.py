"""Integrity of the shipped spec: codes, units, ranges, bindings, PackML, generated docs.

These go beyond what `load_spec` enforces: they state the properties the
gateway, the simulators and vendors rely on, so that an edit to the YAML that
breaks one of them fails here with a sentence saying what broke.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from interface_spec import Spec
from interface_spec.docs import self_description
from interface_spec.modbus_map import check_layout, dtype_of, layout, register_count, stride
from interface_spec.model import SelfDescription
from interface_spec.opcua_map import (
    ACTIVE_ALARMS,
    ALARMS_FOLDER,
    BINDING_METHODS,
    COMMANDS_FOLDER,
    EVENTS_FOLDER,
    EVENTS_LAST_SEQ,
    EVENTS_READ,
    PARAM_TYPES,
    RECIPES_FOLDER,
    SELF_DESCRIPTION,
    command_inputs,
    instance_name,
    opcua_type,
    pascal,
    relative_path,
    unece_unit_id,
)
from interface_spec.spec import SPEC_DIR
from interface_spec.tooling import DOCS_DIR, SCHEMA_DIR, write_generated
from interface_spec.ucum import ucum_problem

CLASSES = ("coater", "winder", "formation")

# UN/CEFACT Recommendation 20 common codes of the units the spec uses. A unit
# added to common.yaml must be added here too, after checking Rec 20: that
# review is the point. None: Rec 20 has no code for the unit.
REC20: dict[str, str | None] = {
    "1": "C62", "%": "P1", "[ppm]": "59", "s": "SEC", "h": "HUR", "/min": "C94", "m": "MTR", "mm": "MMT",
    "um": "4H", "m/min": "2X", "mm/s": "C16", "m/s": "MTS", "N": "NEW", "Cel": "CEL", "mL/min": "41",
    "mPa.s": "C24", "mg/cm2": "H63", "kW": "KWT", "kW.h": "KWH", "V": "VLT", "mV": "2Z", "A": "AMP",
    "A.h": "AMH", "W.h": "WHR", "mOhm": "E45", "MOhm": "B75", "mV/d": None,
}

# PackML state codes of OPC 30050 / ISA-TR88.00.02.
PACKML_CODES = {
    "Undefined": 0, "Clearing": 1, "Stopped": 2, "Starting": 3, "Idle": 4, "Suspended": 5, "Execute": 6,
    "Stopping": 7, "Aborting": 8, "Aborted": 9, "Holding": 10, "Held": 11, "Unholding": 12, "Suspending": 13,
    "Unsuspending": 14, "Resetting": 15, "Completing": 16, "Complete": 17,
}
# States no command leads to: before the state is known, and PackML's state-complete path of finite jobs.
MACHINE_ENTERED = {"Undefined", "Completing", "Complete"}

INT_LIMITS = {16: 2**16, 32: 2**32, 64: 2**64}
FLOAT32_MAX = 3.4028234663852886e38


def duplicates(values: list) -> list:
    return sorted(v for v, n in Counter(values).items() if n > 1)


# --- uniqueness --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES)
def test_paths_are_unique(spec: Spec, cls: str) -> None:
    c = spec.get_class(cls)
    sub_units = [su.id for su in spec.core.sub_units] + [su.id for su in c.sub_units]
    assert duplicates(sub_units) == [], f"{cls}: sub-unit ids declared twice"
    templates = [d.template for d in spec.variables(cls)]
    assert duplicates(templates) == [], f"{cls}: variable paths declared twice"
    paths = [p for p, _ in spec.instances(cls)]
    assert duplicates(paths) == []
    assert len(paths) == sum(d.sub_unit.array.max if d.sub_unit.array else 1 for d in spec.variables(cls))


@pytest.mark.parametrize("cls", CLASSES)
def test_alarm_codes_and_ids_are_unique_per_catalogue(spec: Spec, cls: str) -> None:
    catalogue = spec.alarms(cls)
    assert duplicates([a.code for a in catalogue]) == [], f"{cls}: alarm codes used twice"
    assert duplicates([a.id for a in catalogue]) == [], f"{cls}: alarm ids used twice"
    core_codes = {a.code for a in spec.core.alarms}
    assert all(1 <= code <= 999 for code in core_codes), "core alarm codes are 1..999"
    assert all(a.code >= 1000 for a in spec.get_class(cls).alarms), f"{cls}: class alarm codes are 1000 and up"


def test_class_alarm_codes_do_not_collide_across_classes(spec: Spec) -> None:
    codes = [a.code for c in spec.classes.values() for a in c.alarms]
    assert duplicates(codes) == [], "a class alarm code means two alarms on one line"


def test_command_codes_and_ids_are_unique(spec: Spec) -> None:
    commands = spec.core.commands
    assert duplicates([c.code for c in commands]) == []
    assert duplicates([c.id for c in commands]) == []
    assert all(1 <= c.code <= 255 for c in commands)


def test_event_codes_and_ids_are_unique(spec: Spec) -> None:
    events = spec.core.events
    assert duplicates([e.code for e in events]) == []
    assert duplicates([e.id for e in events]) == []
    for e in events:
        assert duplicates([f.name for f in e.payload]) == [], f"{e.id}: payload field named twice"


def test_enum_codes_are_unique_and_fit_the_bindings(spec: Spec) -> None:
    for name, members in spec.core.enums.items():
        assert duplicates(list(members.values())) == [], f"enum {name}: a code used twice"
        # Modbus serves enums as uint16, OPC UA as Int32.
        assert all(0 <= code < 2**16 for code in members.values()), f"enum {name}: codes must fit uint16"
        assert members, f"enum {name} is empty"


def test_result_codes_and_block_ids_are_unique(spec: Spec) -> None:
    assert duplicates(list(spec.result_codes.values())) == []
    assert spec.result_codes.get("ok") == 0, "result code 0 means ok (SEMI E30 HCACK)"
    blocks = [spec.core.modbus.common_block] + [c.modbus_block for c in spec.classes.values()]
    assert duplicates(blocks) == []
    assert spec.core.modbus.end_block not in blocks


def test_class_files_are_named_by_their_id(spec: Spec) -> None:
    for cid in spec.classes:
        assert (SPEC_DIR / f"{cid}.yaml").exists()
    assert set(spec.classes) == set(CLASSES)


# --- units --------------------------------------------------------------------------------


def used_units(spec: Spec) -> dict[str, str]:
    """Unit code -> where it is used first."""
    used: dict[str, str] = {}
    for su in spec.core.sub_units:
        for v in su.variables:
            used.setdefault(v.unit, f"common.yaml {su.id}.{v.id}")
    for cid, c in spec.classes.items():
        for su in c.sub_units:
            for v in su.variables:
                used.setdefault(v.unit, f"{cid}.yaml {su.id}.{v.id}")
        for name, unit in c.unit_processed.items():
            used.setdefault(unit, f"{cid}.yaml unit_processed.{name}")
        for p in c.recipe:
            used.setdefault(p.unit, f"{cid}.yaml recipe.{p.name}")
    return used


def test_every_unit_used_is_in_the_units_table(spec: Spec) -> None:
    missing = {u: where for u, where in used_units(spec).items() if u not in spec.units}
    assert missing == {}


def test_units_table_codes_are_unique(spec: Spec) -> None:
    assert duplicates([u.code for u in spec.core.units]) == []


@pytest.mark.parametrize("code", sorted(REC20))
def test_unit_code_is_well_formed_ucum(code: str) -> None:
    assert ucum_problem(code) is None


def test_units_table_is_well_formed_ucum(spec: Spec) -> None:
    bad = {u.code: ucum_problem(u.code) for u in spec.core.units if ucum_problem(u.code)}
    assert bad == {}


@pytest.mark.parametrize("code", ["kWh", "°C", "mm^2", "m/", "/", "(m", "m s", "", "deg C", "mmm", "(m/s)2", "m..s"])
def test_ucum_check_rejects_malformed_codes(code: str) -> None:
    assert ucum_problem(code) is not None


@pytest.mark.parametrize("code", ["m.s-1", "kg/m3", "10.L", "{cells}", "kg{wet}", "/s", "KiBy", "mbar", "[degF]"])
def test_ucum_check_accepts_other_valid_codes(code: str) -> None:
    assert ucum_problem(code) is None


def test_un_cefact_codes_match_rec20(spec: Spec) -> None:
    unknown = [u.code for u in spec.core.units if u.code not in REC20]
    assert unknown == [], f"add {unknown} to REC20 in this test after looking them up in UN/CEFACT Rec 20"
    for u in spec.core.units:
        expected = REC20[u.code]
        if expected is None:
            assert u.unece == "", f"{u.code}: Rec 20 has no code, so unece must be empty"
            assert unece_unit_id(u.unece) == -1
        else:
            assert u.unece == expected, f"{u.code} ({u.name}): UN/CEFACT code is {expected}, not {u.unece}"
            assert re.fullmatch(r"[A-Z0-9]{2,3}", u.unece)
            assert unece_unit_id(u.unece) > 0


def test_units_have_a_symbol_and_name(spec: Spec) -> None:
    for u in spec.core.units:
        assert u.name, u.code
        assert u.symbol or u.code == "1", f"{u.code}: needs a display symbol"


# --- ranges and types ------------------------------------------------------------------------


def all_variables(spec: Spec) -> list[tuple[str, object, object]]:
    out = [("core", su, v) for su in spec.core.sub_units for v in su.variables]
    out += [(cid, su, v) for cid, c in spec.classes.items() for su in c.sub_units for v in su.variables]
    return out


def test_ranges_are_consistent_with_types(spec: Spec) -> None:
    problems = []
    for owner, su, v in all_variables(spec):
        where = f"{owner} {su.id}.{v.id}"
        if v.type in ("float", "int", "uint"):
            if v.range is None:
                problems.append(f"{where}: numeric without range")
                continue
            lo, hi = v.range
            if not lo < hi:
                problems.append(f"{where}: empty range")
            if v.type == "float":
                limit = FLOAT32_MAX if v.bits in (None, 32) else math.inf
                if not (-limit < lo and hi < limit):
                    problems.append(f"{where}: range beyond float32")
            else:
                bits = v.bits or 32
                if not (float(lo).is_integer() and float(hi).is_integer()):
                    problems.append(f"{where}: integer range with fractions")
                low, high = (0, INT_LIMITS[bits] - 1) if v.type == "uint" else (-INT_LIMITS[bits] // 2, INT_LIMITS[bits] // 2 - 1)
                if lo < low or hi > high:
                    problems.append(f"{where}: range [{lo}, {hi}] does not fit {v.type}{bits}")
        else:
            if v.range is not None:
                problems.append(f"{where}: range on a {v.type}")
            if v.unit != "1":
                problems.append(f"{where}: unit on a {v.type}")
        if v.type == "string" and not (v.length and v.length >= 2):
            problems.append(f"{where}: string without length")
        if v.type == "enum" and v.enum not in spec.core.enums:
            problems.append(f"{where}: enum {v.enum!r} unknown")
    assert problems == []


def test_recipe_parameter_ranges(spec: Spec) -> None:
    for cid, c in spec.classes.items():
        for p in c.recipe:
            if p.type == "string":
                assert p.range is None, f"{cid} recipe {p.name}"
            else:
                assert p.range is not None and p.range[0] < p.range[1], f"{cid} recipe {p.name}"


@pytest.mark.parametrize("cls", CLASSES)
def test_array_counts_are_served_variables_with_matching_range(spec: Spec, cls: str) -> None:
    for su in spec.array_sub_units(cls):
        assert su.array is not None
        d = spec.variable(cls, su.array.count_variable)
        assert d.var.type == "uint" and d.sub_unit.array is None
        assert d.var.range is not None and d.var.range[1] == su.array.max, (
            f"{su.array.count_variable}: range must end at the array maximum {su.array.max}")


# --- bindings ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES)
def test_every_equipment_variable_has_a_modbus_point(spec: Spec, cls: str) -> None:
    lay = layout(spec.core, spec.get_class(cls))
    points = {p.name: p for p in lay.points}
    for path, d in spec.instances(cls):
        if d.var.origin == "gateway":
            assert path not in points, f"{path} is derived by the gateway and must not take registers"
            continue
        p = points.get(path)
        assert p is not None, f"{cls}: {path} has no Modbus register"
        assert p.dtype == dtype_of(d.var) and p.count == register_count(d.var)
        assert p.access == d.var.access
    served = {p for p, d in spec.instances(cls) if d.var.origin == "equipment"}
    assert set(points) == served, "every Modbus point is a spec variable"


@pytest.mark.parametrize("cls", CLASSES)
def test_every_equipment_variable_has_an_opcua_browse_path(spec: Spec, cls: str) -> None:
    seen: dict[tuple[str, ...], str] = {}
    for path, d in spec.instances(cls):
        if d.var.origin == "gateway":
            continue
        index = int(path.split("[")[1].split("]")[0]) if d.sub_unit.array else None
        rel = tuple(relative_path(d.sub_unit, d.var.id, index))
        assert len(rel) == 2 and all(re.fullmatch(r"[A-Z][A-Za-z0-9]*(_\d+)?", part) for part in rel), rel
        assert rel not in seen, f"{cls}: {path} and {seen.get(rel)} share the browse path {rel}"
        seen[rel] = path
        assert opcua_type(d.var)
    for su in spec.array_sub_units(cls):
        assert su.array is not None
        names = [instance_name(su, i) for i in range(1, su.array.max + 1)]
        assert names == sorted(names), "instance names sort in index order (zero-padded)"
    reserved = {COMMANDS_FOLDER, ALARMS_FOLDER, EVENTS_FOLDER, RECIPES_FOLDER, SELF_DESCRIPTION}
    folders = {rel[0] for rel in seen}
    assert not folders & reserved, "a sub-unit folder clashes with a binding folder"


def test_core_commands_exist_in_both_bindings(spec: Spec) -> None:
    mb_code = layout(spec.core, spec.get_class(CLASSES[0])).areas["command.code"]
    assert mb_code.dtype == "uint16"
    for c in spec.core.commands:
        # OPC UA: a method whose browse name is the command id.
        assert re.fullmatch(r"[A-Z][A-Za-z]*", c.id) and pascal(c.id) == c.id
        inputs = command_inputs(c.params)
        assert [a.name for a in inputs] == [p.name for p in c.params]
        assert all(a.data_type in PARAM_TYPES.values() for a in inputs)
        # Modbus: a handshake code, and parameters the handshake can carry.
        assert 1 <= c.code < 2**16
        assert sum(p.type in ("int", "enum") for p in c.params) <= 1, f"{c.id}: one number parameter at most"
        assert sum(p.type == "string" for p in c.params) <= 1, f"{c.id}: one text parameter at most"
    for name in spec.core.packml.commands:
        assert name in spec.commands, f"PackML command {name} is not a command"


def test_binding_areas_and_nodes_exist(spec: Spec) -> None:
    for cls in CLASSES:
        areas = layout(spec.core, spec.get_class(cls)).areas
        for name in ("marker", "common.header", "class.header", "end.header", "alarms.active", "command.code",
                     "command.seq", "command.param_int", "command.param_text", "command.result_seq",
                     "command.result_code", "events.last_seq", "events.request_seq", "events.seq", "events.type",
                     "events.source_ts", "events.payload_len", "events.payload", "dictionary.length",
                     "dictionary.text"):
            assert name in areas, f"{cls}: Modbus area {name} missing"
        assert areas["events.payload"].count * 2 >= spec.core.modbus.event_payload_chars
    names = [COMMANDS_FOLDER, ALARMS_FOLDER, ACTIVE_ALARMS, EVENTS_FOLDER, EVENTS_LAST_SEQ, EVENTS_READ,
             RECIPES_FOLDER, SELF_DESCRIPTION]
    assert all(re.fullmatch(r"[A-Z][A-Za-z]*", n) for n in names) and duplicates(names) == []
    methods = {(m.folder, m.name) for m in BINDING_METHODS}
    assert (EVENTS_FOLDER, EVENTS_READ) in methods
    assert {(RECIPES_FOLDER, n) for n in ("List", "Get", "Put")} <= methods


@pytest.mark.parametrize("cls", CLASSES)
def test_modbus_map_has_no_overlaps_and_fits(spec: Spec, cls: str) -> None:
    c = spec.get_class(cls)
    lay = layout(spec.core, c)
    mb = spec.core.modbus
    assert check_layout(spec.core, c) == []
    claimed = list(lay.points) + [a for a in lay.areas.values() if a.count]
    claimed.sort(key=lambda p: p.address)
    for a, b in zip(claimed, claimed[1:]):
        assert a.end <= b.address, f"{cls}: {a.name} ({a.address}..{a.end - 1}) overlaps {b.name} ({b.address})"
    assert all(0 <= p.address and p.end <= 65536 for p in claimed)
    assert lay.areas["marker"].address == mb.base_address
    assert lay.areas["end.header"].end <= 65536
    common_end = lay.common_start + mb.common_length
    class_names = {f"{su.id}" for su in c.sub_units}
    for p in lay.points:
        inside_class = p.name.split(".")[0].split("[")[0] in class_names
        lo, hi = (lay.class_start, lay.class_end) if inside_class else (lay.common_start, common_end)
        assert lo <= p.address and p.end <= hi, f"{cls}: {p.name} outside its block"
    assert lay.areas["common.used_end"].address <= common_end
    for su in c.sub_units:
        if su.array:
            first = lay.point(f"{su.id}[1].{su.variables[0].id}").address
            second = lay.point(f"{su.id}[2].{su.variables[0].id}").address if su.array.max > 1 else first + stride(su)
            assert second - first == stride(su) and stride(su) % 2 == 0


@pytest.mark.parametrize("cls", CLASSES)
def test_alarm_bits_and_self_description_fit(spec: Spec, cls: str) -> None:
    mb = spec.core.modbus
    assert len(spec.alarms(cls)) <= mb.alarm_words * 16
    desc = self_description(spec, cls)
    SelfDescription.model_validate(desc)
    text = json.dumps(desc, separators=(",", ":"), ensure_ascii=True)
    assert len(text) <= mb.dictionary_max_chars
    assert set(desc["counts"]) == {su.id for su in spec.array_sub_units(cls)}


def test_every_event_payload_fits_the_modbus_mailbox(spec: Spec) -> None:
    # The fixed fields at their longest plausible size; lists and texts are the machine's to keep short.
    limit = spec.core.modbus.event_payload_chars
    for e in spec.core.events:
        sample = {f.name: ("x" * 32 if f.type in ("string", "enum") else 2**31 - 1 if f.type == "int" else
                           ["x" * 32] * 2 if f.type == "string_list" else {} if f.type == "object" else True)
                  for f in e.payload}
        assert len(json.dumps(sample, separators=(",", ":"))) <= limit, e.id


# --- PackML -------------------------------------------------------------------------------


def test_packml_codes_follow_opc30050(spec: Spec) -> None:
    assert spec.core.packml.states == PACKML_CODES
    assert spec.core.enums["packml_state"] == PACKML_CODES
    assert spec.core.packml.unit_modes == spec.core.enums["unit_mode"]


def test_packml_transitions_name_valid_states(spec: Spec) -> None:
    pm = spec.core.packml
    states = set(pm.states)
    assert set(pm.acting_states) <= states
    for t in pm.transitions:
        assert t.source and set(t.source) <= states, f"{t.command}: unknown source state"
        assert t.target in states and t.target not in pm.acting_states, f"{t.command}: target must be a wait state"
        assert t.acting is None or t.acting in pm.acting_states, f"{t.command}: {t.acting} is not acting"
        assert t.acting not in t.source, f"{t.command}: source includes its own acting state"
    assert sorted(t.command for t in pm.transitions) == sorted(pm.commands)
    used_acting = {t.acting for t in pm.transitions if t.acting}
    assert set(pm.acting_states) - used_acting <= MACHINE_ENTERED, "an acting state no command passes through"


def successors(spec: Spec, state: str) -> set[str]:
    """States one step away: by a command, or by an acting state completing."""
    out = set()
    for t in spec.core.packml.transitions:
        if state in t.source:
            out.add(t.acting or t.target)
        if state == t.acting:
            out.add(t.target)
    return out


def reachable(spec: Spec, start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for n in successors(spec, todo.pop()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def test_every_state_is_reachable_from_power_on(spec: Spec) -> None:
    states = set(spec.core.packml.states)
    assert states - reachable(spec, "Stopped") == MACHINE_ENTERED


def test_every_state_leads_back_to_stopped(spec: Spec) -> None:
    for state in set(spec.core.packml.states) - {"Undefined"}:
        assert "Stopped" in reachable(spec, state), f"{state} is a dead end"


def test_packml_command_agrees_with_the_table_for_every_state_and_command(spec: Spec) -> None:
    pm = spec.core.packml
    table = {t.command: t for t in pm.transitions}
    for state in pm.states:
        for command in spec.commands:
            got = spec.packml_command(state, command)
            t = table.get(command)
            if t is None:
                assert got.result == "invalid_command", (state, command)
            elif state in t.source:
                assert got.result == ("accepted_completes_later" if t.acting else "ok"), (state, command)
                assert (got.acting, got.target) == (t.acting, t.target)
            elif state == t.target:
                assert got.result == "already_in_state", (state, command)
            else:
                assert got.result == "cannot_perform_now", (state, command)
            assert got.result in spec.result_codes


def test_abort_and_stop_cover_the_packml_superstates(spec: Spec) -> None:
    outcome = {s: spec.packml_command(s, "Abort").result for s in spec.core.packml.states}
    assert {s for s, r in outcome.items() if r == "cannot_perform_now"} == {"Undefined", "Aborting"}
    stop_ok = {s for s in spec.core.packml.states if spec.packml_command(s, "Stop").result == "accepted_completes_later"}
    assert "Execute" in stop_ok and "Held" in stop_ok and "Aborted" not in stop_ok


# --- generated files -----------------------------------------------------------------------------


def test_generated_docs_and_schemas_are_up_to_date(tmp_path: Path) -> None:
    docs_dir, schema_dir = tmp_path / "docs", tmp_path / "schema"
    write_generated(docs_dir, schema_dir)
    stale = []
    for fresh_dir, committed_dir, pattern in ((docs_dir, DOCS_DIR, "*.md"), (schema_dir, SCHEMA_DIR, "*.json")):
        fresh = {p.name: p.read_text(encoding="utf-8") for p in fresh_dir.glob(pattern)}
        committed = {p.name: p.read_text(encoding="utf-8") for p in committed_dir.glob(pattern)}
        for name in sorted(set(fresh) | set(committed)):
            if fresh.get(name) != committed.get(name):
                stale.append(str(committed_dir / name))
    assert not stale, "generated spec docs are stale: " + ", ".join(stale) + " — run `make docs` and commit them"


def test_committed_schemas_describe_the_committed_files() -> None:
    for schema_name, yaml_names in (("core.schema.json", ["common.yaml"]),
                                    ("class.schema.json", [f"{c}.yaml" for c in CLASSES])):
        schema = json.loads((SCHEMA_DIR / schema_name).read_text(encoding="utf-8"))
        assert schema["$schema"].startswith("https://json-schema.org/draft/2020-12")
        assert schema["additionalProperties"] is False
        for name in yaml_names:
            data = yaml.safe_load((SPEC_DIR / name).read_text(encoding="utf-8"))
            assert set(data) <= set(schema["properties"]), f"{name}: fields the schema does not know"
            assert set(schema["required"]) <= set(data), f"{name}: lacks required fields"
            kind = schema["properties"]["spec"]["const"]
            assert data["spec"] == kind
    desc = json.loads((SCHEMA_DIR / "self-description.schema.json").read_text(encoding="utf-8"))
    assert set(desc["required"]) == {"spec_version", "equipment_class", "profiles"}


def test_docs_show_every_variable_and_register(spec: Spec) -> None:
    modbus = (DOCS_DIR / "modbus.md").read_text(encoding="utf-8")
    opcua = (DOCS_DIR / "opcua.md").read_text(encoding="utf-8")
    for cls in CLASSES:
        page = (DOCS_DIR / f"{cls}.md").read_text(encoding="utf-8")
        lay = layout(spec.core, spec.get_class(cls))
        for d in spec.variables(cls):
            if d.owner == cls:
                shown = f"`{d.sub_unit.id}[i].{d.var.id}`" if d.sub_unit.array else f"`{d.template}`"
                assert shown in page, f"{cls}.md lacks {d.template}"
            if d.var.origin != "equipment":
                continue
            name = d.path(1) if d.sub_unit.array else d.path()
            p = lay.point(name)
            assert f"| {p.address} | {p.address + 1} | `{name}` |" in modbus, f"modbus.md lacks {cls} {name}"
            assert f"| `{d.template}` |" in opcua
        for i, a in enumerate(spec.alarms(cls)):
            assert f"| {i} | {i // 16} / {i % 16} |" in page and f"`{a.id}`" in page


@pytest.mark.parametrize("cls", CLASSES)
def test_a_minor_version_moves_no_register(spec: Spec, cls: str) -> None:
    """What 1.1 added (sub-units with `since`, events.seq_check) comes after every register 1.0 had: the map
    without the additions is the same map, address for address, as the one with them."""
    c = spec.get_class(cls)
    added = {su.id for su in spec.core.sub_units if su.since}
    assert added, "the spec has sub-units a minor version added"
    earlier = spec.core.model_copy(update={"sub_units": [su for su in spec.core.sub_units if not su.since]})
    before, now = layout(earlier, c), layout(spec.core, c)
    assert {p.name: p.address for p in before.points} == \
        {p.name: p.address for p in now.points if p.name.split(".")[0] not in added}
    assert all(now.areas[n].address == a.address for n, a in before.areas.items() if n != "common.used_end")
    # Addresses the 1.0 documents published (modbus.md): the events mailbox and the state.
    assert (now.areas["events.seq"].address, now.areas["events.payload"].address) == (40287, 40295)
    first_added = min(p.address for p in now.points if p.name.split(".")[0] in added)
    assert first_added >= now.areas["events.seq_check"].end > now.areas["events.payload"].end
