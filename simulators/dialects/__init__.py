"""Vendor dialects as data: one YAML file per vendor view of an equipment class.

`load_dialect(name_or_path)` reads `simulators/dialects/<name>.yaml` (or a
path), checks its grammar (`model.py`) and then everything that needs the
spec, and reports every problem as `file:line: field: message`.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from interface_spec import Spec, SpecError, load_spec, split_path
from interface_spec.loader import line_of, load_model, yaml_node

from .model import Dialect, Source

DIALECT_DIR = Path(__file__).parent
_INDEX = re.compile(r"\{i(?::[^}]*)?\}")


def dialect_names() -> list[str]:
    """The dialects shipped with the simulators."""
    return sorted(p.stem for p in DIALECT_DIR.glob("*.yaml"))


def dialect_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.parent != Path("."):
        return p
    return DIALECT_DIR / f"{name_or_path}.yaml"


def load_dialect(name_or_path: str | Path, spec: Spec | None = None) -> Dialect:
    """A checked dialect; raises SpecError naming file, line and field."""
    path = dialect_path(name_or_path)
    if not path.exists():
        raise SpecError(f"{path}: no such dialect (shipped: {', '.join(dialect_names())})")
    return _load(str(path.resolve()), spec or load_spec())


@functools.lru_cache(maxsize=64)
def _load(path: str, spec: Spec) -> Dialect:
    dialect = load_model(path, Dialect)
    errors = check_dialect(dialect, spec)
    if errors:
        node = yaml_node(path)
        raise SpecError("\n".join(f"{path}:{line_of(node, loc) or 1}: {_dotted(loc)}: {msg}" for loc, msg in errors))
    return dialect


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
                seen: set[str] = set()
                for code, names in f.enum.items():
                    for name in [names] if isinstance(names, str) else names:
                        if name not in members:
                            errors.append((loc + ("enum", str(code)), f"'{name}' is not a member of {var.enum} ({', '.join(members)})"))
                        elif name in seen:
                            errors.append((loc + ("enum", str(code)), f"'{name}' is mapped twice"))
                        seen.add(name)
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


__all__ = ["DIALECT_DIR", "Dialect", "check_dialect", "dialect_names", "dialect_path", "format_node", "load_dialect"]
