"""Vendor dialects: a simulated machine served as a vendor describes it.

A dialect is a vendor file (`interface_spec/vendors/<name>.yaml`, the format
in `interface_spec/vendor.py`): the same file the gateway reads the machine
by. `load_dialect(name_or_path)` reads it, turns it into the serving model
(`model.py`) and checks what serving needs on top of reading: a code for
every enum member (or a `default`), the OPC UA type of each node, one
register or node for command codes. Every problem is reported as
`file:line: field: message`, at the place in the vendor file.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from interface_spec import Spec, SpecError, load_spec, split_path
from interface_spec.loader import format_loc, line_of, load_model, yaml_node
from interface_spec.opcua_map import opcua_type
from interface_spec.vendor import Mapping, enum_problems, vendor_names, vendor_path

from .model import AlarmCode, AlarmField, Commands, Dialect, ModbusDefaults, OpcUaDefaults, Source, VariableField

_INDEX = re.compile(r"\{i(?::[^}]*)?\}")
Loc = tuple[str | int, ...]


def dialect_names() -> list[str]:
    """The dialects the simulators can serve: the shipped vendor files."""
    return vendor_names()


def load_dialect(name_or_path: str | Path, spec: Spec | None = None) -> Dialect:
    """A checked dialect from a vendor file; raises SpecError naming file, line and field."""
    path = vendor_path(name_or_path)
    if not path.exists():
        raise SpecError(f"{path}: no such vendor file (shipped: {', '.join(dialect_names())})")
    return _load(str(path.resolve()), spec or load_spec())


@functools.lru_cache(maxsize=64)
def _load(path: str, spec: Spec) -> Dialect:
    vendor = load_model(path, Mapping)
    errors: list[tuple[Loc, str]] = []
    dialect = from_vendor(vendor, spec, errors)
    if dialect is not None and not errors:
        errors = [(_in_vendor_file(loc, vendor), msg) for loc, msg in check_dialect(dialect, spec)]
    if errors or dialect is None:
        node = yaml_node(path)
        raise SpecError("\n".join(f"{path}:{line_of(node, loc) or 1}: {format_loc(loc)}: {msg}" for loc, msg in errors))
    return dialect


def _source(src: Any, var_type: str | None, **extra: Any) -> dict[str, Any]:
    """The serving source of a vendor source: the same place, with the OPC UA type filled in."""
    out: dict[str, Any] = {k: getattr(src, k) for k in ("address", "dtype", "order", "count", "bit", "stride", "node")
                           if getattr(src, k, None) is not None}
    if src.address is not None:
        out["table"] = src.table
    else:
        out["type"] = src.type or var_type or "Int32"
    return {**out, **extra}


def from_vendor(v: Mapping, spec: Spec, errors: list[tuple[Loc, str]]) -> Dialect | None:
    """The serving model of a vendor file; what cannot be served goes to `errors` (vendor-file locations)."""
    if v.cls not in spec.classes:
        errors.append((("class",), f"unknown equipment class '{v.cls}' (known: {', '.join(spec.classes)})"))
        return None

    def build(loc: Loc, model: Any, **fields: Any) -> Any:
        try:
            return model.model_validate(fields)
        except ValidationError as exc:
            for e in exc.errors(include_url=False):
                errors.append((loc, e["msg"].removeprefix("Value error, ")))
            return None

    variables = []
    for i, vm in enumerate(v.variables):
        loc: Loc = ("variables", i)
        try:
            var = spec.variable(v.cls, vm.path.replace("[*]", "[1]")).var
        except KeyError as exc:
            errors.append((loc + ("path",), str(exc.args[0])))
            continue
        if vm.source.bits != 1 or vm.source.device_id is not None:
            errors.append((loc + ("source",), "the simulators serve one-bit fields and the machine's own unit id only"))
            continue
        scale, offset = vm.transform(var.unit) if var.type in ("float", "int", "uint") else (1.0, 0.0)
        f = build(loc, VariableField, path=vm.path, scale=scale, offset=offset, enum=vm.enum, default=vm.default,
                  wrap=vm.wrap, writable=var.access == "rw" if vm.writable is None else vm.writable,
                  **_source(vm.source, opcua_type(var)))
        if f is not None:
            variables.append(f)
    alarms = []
    for i, am in enumerate(v.alarms):
        if am.active_value is not True:
            errors.append((("alarms", i, "active_value"), "the simulators serve alarm codes from 'alarm_code'"))
            continue
        a = build(("alarms", i), AlarmField, alarm=am.alarm, **_source(am.source, "Boolean"))
        if a is not None:
            alarms.append(a)
    alarm_code = None
    if v.alarm_code is not None:
        alarm_code = build(("alarm_code",), AlarmCode, codes=v.alarm_code.codes, **_source(v.alarm_code.source, "Int32"))
    writes = {name: cm.write for name, cm in v.commands.items() if cm.write is not None}
    register = None
    places = {(w.address, w.node) for w in writes.values()}
    if len(places) > 1:
        errors.append((("commands",), "the simulators serve command codes on one register or node: "
                                     f"these writes go to {len(places)}"))
        writes = {}
    elif writes:
        w = next(iter(writes.values()))
        register = {"address": w.address, "dtype": w.dtype} if w.address is not None else {"node": w.node, "type": w.type}
    commands = build(("commands",), Commands, register=register, codes={n: int(w.value) for n, w in writes.items()},
                     methods={n: cm.call.method for n, cm in v.commands.items() if cm.call is not None})
    modbus = ModbusDefaults(order=v.modbus.order, device_id=v.modbus.device_id) if v.modbus else None
    opcua = None
    if v.opcua is not None:
        opcua = OpcUaDefaults(namespace_uri=v.opcua.namespace_uri, root=v.opcua.root.strip("/").removeprefix("Objects/"),
                              node_ids=v.opcua.node_ids)
    if v.protocol == "modbus" and modbus is None:
        modbus = ModbusDefaults()
    if errors or commands is None:
        return None
    return build((), Dialect, dialect=v.mapping, cls=v.cls, protocol=v.protocol, doc=v.doc,
                 identification=v.identification, modbus=modbus, opcua=opcua, variables=variables, alarms=alarms,
                 alarm_code=alarm_code, commands=commands)


def _in_vendor_file(loc: Loc, v: Mapping) -> Loc:
    """Where a problem of the serving model sits in the vendor file."""
    if loc[:1] == ("variables",) and len(loc) > 2 and loc[2] in ("stride", "node", "count", "address", "dtype"):
        return loc[:2] + ("source",) + loc[2:]
    if loc[:1] == ("commands",):
        return ("commands",) + loc[2:3]
    if loc[:1] == ("alarm_code",) and loc[1:2] != ("codes",):
        return ("alarm_code", "source")
    return loc


def _dotted(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(top level)"


def register_count(src: Source) -> int:
    if src.table in ("coil", "discrete") or src.bit is not None:
        return 1
    if src.dtype == "string":
        return src.count or 1
    assert src.dtype is not None
    return {"16": 1, "32": 2, "64": 4}[src.dtype[-2:]]


def check_dialect(d: Dialect, spec: Spec) -> list[tuple[tuple[str | int, ...], str]]:
    """Rules that need the spec; [(location in the file, message)]."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    if d.cls not in spec.classes:
        return [(("class",), f"unknown equipment class '{d.cls}' (known: {', '.join(spec.classes)})")]
    modbus = d.protocol == "modbus"
    for loc, src in d.sources():
        if modbus and src.address is None:
            errors.append((loc, "a Modbus dialect serves registers: give 'address', not 'node'"))
        if not modbus and src.node is None:
            errors.append((loc, "an OPC UA dialect serves nodes: give 'node', not 'address'"))
    ident = {v.id for su in spec.core.sub_units if su.id == "identification" for v in su.variables}
    for key in d.identification:
        if key not in ident:
            errors.append((("identification", key), f"'{key}' is not an identification variable ({', '.join(sorted(ident))})"))
    arrays = {su.id: su for su in spec.array_sub_units(d.cls)}
    for i, f in enumerate(d.variables):
        loc = ("variables", i)
        template = f.path.replace("[*]", "[1]")
        try:
            vd = spec.variable(d.cls, template)
            split_path(template)
        except KeyError as exc:
            errors.append((loc + ("path",), str(exc.args[0])))
            continue
        var = vd.var
        if var.origin != "equipment":
            errors.append((loc + ("path",), f"'{f.path}' is set by the gateway, not served by equipment"))
        is_array = "[*]" in f.path
        if is_array and vd.sub_unit.id not in arrays:
            errors.append((loc + ("path",), f"'{vd.sub_unit.id}' is not an array sub-unit"))
        if is_array and modbus and f.stride is None:
            errors.append((loc + ("stride",), "an array needs 'stride' (registers between instances)"))
        if is_array and not modbus and not _INDEX.search(f.node or ""):
            errors.append((loc + ("node",), "an array needs '{i}' (or '{i:03d}') in its node path"))
        if f.enum is not None:
            if var.type != "enum":
                errors.append((loc + ("enum",), f"'{f.path}' is a {var.type}, not an enum"))
            else:
                members = spec.enum(var.enum or "")
                errors += [(loc + ("enum", code), msg) for code, msg in enum_problems(var.enum or "", members, f.enum)]
                seen = {n for names in f.enum.values() for n in ([names] if isinstance(names, str) else names)}
                if set(members) - seen and f.default is None:
                    errors.append((loc + ("enum",), f"members {sorted(set(members) - seen)} have no vendor code: list them or give 'default'"))
        textual = f.dtype == "string" or f.type == "String"
        if var.type == "string" and not textual:
            errors.append((loc, f"'{f.path}' is a string: serve it as dtype string / type String"))
        if var.type != "string" and textual:
            errors.append((loc, f"'{f.path}' is a {var.type}; a string register or node cannot hold it"))
        if var.type == "string" and f.dtype == "string" and (f.count or 0) * 2 < (var.length or 0):
            errors.append((loc + ("count",), f"{f.count} registers hold {2 * (f.count or 0)} characters; '{f.path}' has up to {var.length}"))
        if f.is_bit and var.type not in ("enum", "bool"):
            errors.append((loc, f"'{f.path}' is a {var.type}; a bit can only serve enum or bool variables"))
        if f.writable and var.access != "rw":
            errors.append((loc + ("writable",), f"'{f.path}' is read-only in the spec"))
    alarm_ids = {a.id for a in spec.alarms(d.cls)}
    for i, a in enumerate(d.alarms):
        if a.alarm != "*" and a.alarm not in alarm_ids:
            errors.append((("alarms", i, "alarm"), f"'{a.alarm}' is not an alarm of {d.cls}"))
        if not a.is_bit:
            errors.append((("alarms", i), "an alarm is a bit (bit, coil, discrete input) or a Boolean node"))
    if d.alarm_code is not None:
        for key in d.alarm_code.codes:
            if key not in alarm_ids:
                errors.append((("alarm_code", "codes", key), f"'{key}' is not an alarm of {d.cls}"))
        if d.alarm_code.is_bit:
            errors.append((("alarm_code",), "the alarm code is a number register or node, not a bit"))
    for name in list(d.commands.codes) + list(d.commands.methods):
        if name not in spec.commands:
            errors.append((("commands", "codes" if name in d.commands.codes else "methods", name),
                           f"'{name}' is not a spec command ({', '.join(spec.commands)})"))
    if len(set(d.commands.codes.values())) != len(d.commands.codes):
        errors.append((("commands", "codes"), "vendor command codes must be unique"))
    errors += _overlaps(d, spec) if modbus else _node_clashes(d, spec)
    return errors


def _instances(d: Dialect, spec: Spec, path: str) -> int:
    if "[*]" not in path:
        return 1
    su = path.split("[", 1)[0]
    arr = next((s.array for s in spec.array_sub_units(d.cls) if s.id == su), None)
    return arr.max if arr else 1


def _overlaps(d: Dialect, spec: Spec) -> list[tuple[tuple[str | int, ...], str]]:
    """No register claimed twice (bits of one register may be shared, each bit once)."""
    words: dict[tuple[str, int], tuple[str | int, ...]] = {}
    bits: dict[tuple[str, int, int], tuple[str | int, ...]] = {}
    bit_regs: dict[tuple[str, int], tuple[str | int, ...]] = {}
    errors: list[tuple[tuple[str | int, ...], str]] = []
    for loc, src in d.sources():
        if src.address is None:
            continue
        path = getattr(src, "path", "")
        for k in range(_instances(d, spec, path)):
            base = src.address + k * (src.stride or 0)
            if src.bit is not None:
                key = (src.table, base, src.bit)
                if key in bits:
                    errors.append((loc, f"{src.table} register {base} bit {src.bit} is also used by {_dotted(bits[key])}"))
                bits[key] = loc
                bit_regs[(src.table, base)] = loc
                if (src.table, base) in words:
                    errors.append((loc, f"{src.table} register {base} is also a value of {_dotted(words[(src.table, base)])}"))
                continue
            for a in range(base, base + register_count(src)):
                if a > 65535:
                    errors.append((loc, f"register {a} is beyond 65535"))
                    break
                key2 = (src.table, a)
                other = words.get(key2) or bit_regs.get(key2)
                if other is not None and other != loc:
                    errors.append((loc, f"{src.table} register {a} is also used by {_dotted(other)}"))
                    break
                words[key2] = loc
    return errors


def _node_clashes(d: Dialect, spec: Spec) -> list[tuple[tuple[str | int, ...], str]]:
    seen: dict[str, tuple[str | int, ...]] = {}
    errors: list[tuple[tuple[str | int, ...], str]] = []
    nodes: list[tuple[tuple[str | int, ...], str]] = []
    for loc, src in d.sources():
        if src.node is None:
            continue
        path = getattr(src, "path", "")
        for k in range(1, _instances(d, spec, path) + 1):
            nodes.append((loc, format_node(src.node, k if "[*]" in path else None)))
    nodes += [(("commands", "methods", name), node) for name, node in d.commands.methods.items()]
    for loc, node in nodes:
        if node in seen and seen[node] != loc:
            errors.append((loc, f"node '{node}' is also used by {_dotted(seen[node])}"))
        seen[node] = loc
    leaves = set(seen)
    for loc, node in nodes:
        parts = node.split("/")
        for j in range(1, len(parts)):
            if "/".join(parts[:j]) in leaves:
                errors.append((loc, f"'{'/'.join(parts[:j])}' is a variable or method; it cannot hold '{node}'"))
                break
    return errors


def format_node(node: str, index: int | None) -> str:
    """A node path with its array index filled in: "Slot{i:03d}/U" -> "Slot007/U"."""
    if index is None:
        return node
    return _INDEX.sub(lambda mo: format(index, mo.group(0)[3:-1] if ":" in mo.group(0) else ""), node)


__all__ = ["Dialect", "check_dialect", "dialect_names", "format_node", "from_vendor", "load_dialect"]
