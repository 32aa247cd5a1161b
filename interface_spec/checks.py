"""Rules across spec files that a single file's grammar cannot express.

Each violation is reported as `file:line: path: what is wrong`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from .loader import line_of, yaml_node
from .modbus_map import check_layout
from .model import Core, EquipmentClass, SubUnit
from .ucum import ucum_problem

# Parameter types the bindings can carry: the Modbus handshake has one int32
# and one text field, OPC UA methods take Int32 and String arguments.
PARAM_TYPES = ("int", "enum", "string")


class _Report:
    def __init__(self, path: Path):
        self.path = path
        self.node = yaml_node(path) if path.exists() else None
        self.errors: list[str] = []

    def add(self, loc: tuple[Any, ...], msg: str) -> None:
        line = line_of(self.node, loc)
        where = f"{self.path}:{line}" if line else str(self.path)
        dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        self.errors.append(f"{where}: {dotted or '(top level)'}: {msg}")


def _check_sub_units(r: _Report, sub_units: list[SubUnit], core: Core, known_paths: set[str], key: str) -> None:
    seen = Counter(su.id for su in sub_units)
    for i, su in enumerate(sub_units):
        if seen[su.id] > 1:
            r.add((key, i, "id"), f"sub-unit '{su.id}' is declared {seen[su.id]} times")
        var_ids = Counter(v.id for v in su.variables)
        for j, v in enumerate(su.variables):
            loc = (key, i, "variables", j)
            if var_ids[v.id] > 1:
                r.add(loc + ("id",), f"variable '{su.id}.{v.id}' is declared {var_ids[v.id]} times")
            if v.unit not in {u.code for u in core.units}:
                r.add(loc + ("unit",), f"unknown unit code '{v.unit}' (not in common.yaml units)")
            if v.enum and v.enum not in core.enums:
                r.add(loc + ("enum",), f"unknown enum '{v.enum}'")
        if su.array and su.array.count_variable not in known_paths:
            r.add((key, i, "array", "count_variable"), f"'{su.array.count_variable}' is not a variable of this class")


def _check_packml(r: _Report, core: Core) -> None:
    pm = core.packml
    states = set(pm.states)
    if pm.states != core.enums.get("packml_state"):
        r.add(("packml", "states"), "must equal enums.packml_state")
    for i, t in enumerate(pm.transitions):
        for s in [*t.source, t.target] + ([t.acting] if t.acting else []):
            if s not in states:
                r.add(("packml", "transitions", i), f"unknown state '{s}'")
        if t.command not in pm.commands:
            r.add(("packml", "transitions", i, "command"), f"'{t.command}' is not in packml.commands")
        if t.acting and t.acting not in pm.acting_states:
            r.add(("packml", "transitions", i, "acting"), f"'{t.acting}' is not an acting state")
    counts = Counter(t.command for t in pm.transitions)
    for c in pm.commands:
        if counts[c] != 1:
            r.add(("packml", "commands"), f"command '{c}' needs exactly one transition, has {counts[c]}")
    # Every state reachable from Stopped (the power-on state) through the table.
    reach, frontier = {"Stopped"}, ["Stopped"]
    while frontier:
        s = frontier.pop()
        for t in pm.transitions:
            if s in t.source:
                for n in filter(None, (t.acting, t.target)):
                    if n not in reach:
                        reach.add(n)
                        frontier.append(n)
    for s in sorted(states - reach - {"Undefined", "Completing", "Complete"}):
        r.add(("packml", "states"), f"state '{s}' cannot be reached from Stopped")
    command_ids = {c.id for c in core.commands}
    for c in pm.commands:
        if c not in command_ids:
            r.add(("commands",), f"PackML command '{c}' has no entry in commands")


def _check_derivation(r: _Report, core: Core) -> None:
    d = core.state_derivation
    items, e10 = core.enums.get("item_state", {}), {*core.enums.get("e10_state", {}), "DOWN"}
    for state in sorted(set(core.packml.states) - set(d.packml)):
        r.add(("state_derivation", "packml"), f"PackML state '{state}' has no derived item_state/e10_state")
    for key, table, names in (("packml", d.packml, core.packml.states), ("operation_mode", d.operation_mode,
                                                                          core.enums.get("operation_mode", {}))):
        for name, derived in table.items():
            if name not in names:
                r.add(("state_derivation", key, name), f"'{name}' is not a member of {key}")
            if key == "packml" and (derived.item_state is None or derived.e10_state is None):
                r.add(("state_derivation", key, name), "a PackML state must give both item_state and e10_state")
            if derived.item_state is not None and derived.item_state not in items:
                r.add(("state_derivation", key, name, "item_state"), f"'{derived.item_state}' is not an item_state")
            if derived.e10_state is not None and derived.e10_state not in e10:
                r.add(("state_derivation", key, name, "e10_state"), f"'{derived.e10_state}' is not an e10_state (or DOWN)")
    for mode, unit_mode in d.unit_mode.items():
        if mode not in core.enums.get("operation_mode", {}) or unit_mode not in core.packml.unit_modes:
            r.add(("state_derivation", "unit_mode", mode), f"'{mode}: {unit_mode}' is not an operation mode and a unit mode")
    if not core.changelog or core.changelog[0].version != core.version:
        r.add(("changelog",), f"the newest changelog entry must be this version, {core.version}")


def _unique(r: _Report, items: list[Any], attr: str, key: str) -> None:
    counts = Counter(getattr(x, attr) for x in items)
    for i, x in enumerate(items):
        if counts[getattr(x, attr)] > 1:
            r.add((key, i, attr), f"{attr} {getattr(x, attr)!r} is used {counts[getattr(x, attr)]} times")


def check_spec(core: Core, classes: dict[str, EquipmentClass], folder: Path) -> list[str]:
    cr = _Report(folder / "common.yaml")
    core_paths = {f"{su.id}.{v.id}" for su in core.sub_units for v in su.variables}
    _check_sub_units(cr, core.sub_units, core, core_paths, "sub_units")
    _check_packml(cr, core)
    _check_derivation(cr, core)
    _unique(cr, core.rules, "id", "rules")
    _unique(cr, core.commands, "code", "commands")
    _unique(cr, core.commands, "id", "commands")
    _unique(cr, core.events, "code", "events")
    _unique(cr, core.events, "id", "events")
    _unique(cr, core.alarms, "code", "alarms")
    _unique(cr, core.units, "code", "units")
    for i, u in enumerate(core.units):
        problem = ucum_problem(u.code)
        if problem:
            cr.add(("units", i, "code"), f"'{u.code}' is not a well-formed UCUM code: {problem}")
    if core.packml.unit_modes != core.enums.get("unit_mode"):
        cr.add(("packml", "unit_modes"), "must equal enums.unit_mode")
    if len(set(core.result_codes.values())) != len(core.result_codes):
        cr.add(("result_codes",), "result codes must be unique")
    for i, c in enumerate(core.commands):
        for j, p in enumerate(c.params):
            if p.enum and p.enum not in core.enums:
                cr.add(("commands", i, "params", j, "enum"), f"unknown enum '{p.enum}'")
            if p.type == "enum" and not p.enum:
                cr.add(("commands", i, "params", j), f"parameter '{p.name}' of type enum needs 'enum: <name>'")
            if p.type not in PARAM_TYPES:
                cr.add(("commands", i, "params", j, "type"),
                       f"parameter type {p.type} cannot be carried by the bindings (one of {', '.join(PARAM_TYPES)})")
        numbers = [p.name for p in c.params if p.type in ("int", "enum")]
        texts = [p.name for p in c.params if p.type == "string"]
        if len(numbers) > 1 or len(texts) > 1:
            cr.add(("commands", i, "params"),
                   f"command '{c.id}' has more than one number or text parameter; the Modbus handshake carries one of each")
    errors = list(cr.errors)
    units = {u.code for u in core.units}
    block_ids = {core.modbus.common_block: "common.yaml"}
    for cid, cls in classes.items():
        r = _Report(folder / f"{cid}.yaml")
        paths = core_paths | {f"{su.id}.{v.id}" for su in cls.sub_units for v in su.variables}
        core_ids = {su.id for su in core.sub_units}
        for i, su in enumerate(cls.sub_units):
            if su.id in core_ids:
                r.add(("sub_units", i, "id"), f"sub-unit '{su.id}' is a core sub-unit; classes may not redefine it")
        _check_sub_units(r, cls.sub_units, core, paths, "sub_units")
        all_alarms = list(core.alarms) + list(cls.alarms)
        codes = Counter(a.code for a in all_alarms)
        sources = {su.id for su in cls.sub_units} | {"machine"}
        for i, a in enumerate(cls.alarms):
            if codes[a.code] > 1:
                r.add(("alarms", i, "code"), f"alarm code {a.code} is used {codes[a.code]} times (core included)")
            if a.source not in sources:
                r.add(("alarms", i, "source"), f"'{a.source}' is not a sub-unit of {cid}")
        if len(all_alarms) > core.modbus.alarm_words * 16:
            r.add(("alarms",), f"{len(all_alarms)} alarms do not fit {core.modbus.alarm_words * 16} alarm bits")
        for i, e in enumerate(cls.events):
            if e not in {ev.id for ev in core.events}:
                r.add(("events", i), f"unknown event type '{e}'")
        for name, unit in cls.unit_processed.items():
            if unit not in units:
                r.add(("unit_processed", name), f"unknown unit code '{unit}'")
        for i, rp in enumerate(cls.recipe):
            if rp.unit not in units:
                r.add(("recipe", i, "unit"), f"unknown unit code '{rp.unit}'")
        if cls.modbus_block in block_ids:
            r.add(("modbus_block",), f"block id {cls.modbus_block} is already used by {block_ids[cls.modbus_block]}")
        block_ids[cls.modbus_block] = f"{cid}.yaml"
        for msg in check_layout(core, cls):
            r.add(("modbus_length",), msg)
        errors += r.errors
    return errors
