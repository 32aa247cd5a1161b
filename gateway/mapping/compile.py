"""Turn a machine's profile (native, or a vendor mapping file) into a plan.

A plan is what the runtime needs for one device: the adapter points to read,
and per point key the spec targets that a reading feeds, with every transform
folded into a handful of numbers so the hot path does no lookups. Native and
mapped equipment end up in the same shape; only commands and events differ.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from gateway.adapters import declared_model, model_problems
from gateway.adapters.base import Point
from interface_spec import Spec, SpecError, VarDef, split_path
from interface_spec.loader import format_loc, line_of, load_model, yaml_node
from interface_spec.modbus_codec import DTYPES, register_count
from interface_spec.model import Tier
from interface_spec.ucum import ucum_problem
from interface_spec.vendor import CONVERSIONS, CommandMap, EventTrigger, Mapping, Source, enum_problems


def unit_problem(given: str, target: str) -> str:
    """Why a vendor unit cannot feed a spec variable: not a UCUM code at all (with the nearest it may have meant),
    or a unit the gateway converts no further (with those it does)."""
    known = sorted({a for a, b in CONVERSIONS if b == target} | {target})
    near = difflib.get_close_matches(given, known + sorted({a for a, _ in CONVERSIONS}), n=1, cutoff=0.5)
    hint = f"; did you mean '{near[0]}'?" if near else ""
    problem = ucum_problem(given)
    if problem:
        return f"unknown unit '{given}': not a UCUM code ({problem}){hint} Units that convert to '{target}': " \
               f"{', '.join(known)}"
    return f"no conversion from '{given}' to '{target}' (units that convert to it: {', '.join(known)})"


KIND = {"float": "num", "int": "num", "uint": "num", "enum": "enum", "bool": "bool", "string": "str", "timestamp": "num"}


@dataclass(slots=True)
class Target:
    """One spec path fed by a reading, with its transform and checks."""

    path: str
    unit: str
    kind: str  # num | enum | bool | str
    lo: float = -math.inf
    hi: float = math.inf
    scale: float = 1.0
    offset: float = 0.0
    bit: int | None = None  # lowest bit of a bit field
    bit_mask: int = 1  # the field's width as a mask
    enum_map: dict[int, int] | None = None  # vendor code -> spec code
    enum_codes: frozenset[int] | None = None  # valid spec codes
    keeps_raw: bool = False  # the mapping changes the value: its samples carry what the machine sent


@dataclass(slots=True)
class AlarmSource:
    alarm_code: int
    bit: int | None
    active_value: Any = True


@dataclass(slots=True)
class Trigger:
    """An event trigger for one instance: "[*]" in its payload paths is `index`."""

    event: EventTrigger
    index: int | None = None

    def path(self, template: str) -> str:
        return template if self.index is None else template.replace("[*]", f"[{self.index}]")


@dataclass
class Plan:
    equipment: str
    cls: str
    protocol: str
    native: bool
    points: list[Point]
    targets: dict[str, list[Target]]
    alarm_words: list[str] = field(default_factory=list)  # native Modbus: keys of the alarm bit words
    alarm_codes_key: str | None = None  # native OPC UA: key of the ActiveCodes array
    alarm_sources: dict[str, list[AlarmSource]] = field(default_factory=dict)  # mapped alarms
    commands: dict[str, CommandMap] = field(default_factory=dict)  # mapped commands
    triggers: dict[str, list[Trigger]] = field(default_factory=dict)  # spec path -> events its change emits
    nameplate: dict[str, str] = field(default_factory=dict)  # identification path -> value from the mapping
    counts: dict[str, int] = field(default_factory=dict)
    opcua_machine: list[str] = field(default_factory=list)  # browse path of the native machine object
    namespace: str = ""
    modbus_areas: dict[str, Point] = field(default_factory=dict)  # native Modbus handshake/mailbox points


def target(spec: Spec, cls: str, path: str) -> Target:
    d = spec.variable(cls, path)
    v = d.var
    lo, hi = v.range if v.range else (-math.inf, math.inf)
    codes = frozenset(spec.enum(v.enum).values()) if v.enum else None
    return Target(path, v.unit, KIND[v.type], lo, hi, enum_codes=codes)


def equipment_variables(spec: Spec, cls: str, counts: dict[str, int]) -> dict[str, VarDef]:
    """The variables a machine of the class serves itself (not those the gateway derives), by path."""
    return {p: d for p, d in spec.instances(cls, counts) if d.var.origin == "equipment"}


def unmapped_mandatory(spec: Spec, mapping: Mapping) -> list[str]:
    """Mandatory variables of the class (core included) that the mapping neither maps nor gives as a nameplate
    value, as path templates ("lane[*].areal_weight"). Recipe and job count only for a machine claiming those
    profiles, which the integration conformance run judges; they are left out here."""
    mapped = {split_path(vm.path.replace("[*]", "[1]"))[0] for vm in mapping.variables}
    mapped |= {f"identification.{k}" for k in mapping.identification}
    return [d.template.replace("[]", "[*]") for d in spec.variables(mapping.cls)
            if d.var.origin == "equipment" and d.var.tier == Tier.mandatory and d.sub_unit.tier == Tier.mandatory
            and d.template not in mapped]


def load_mapping(path: str | Path, spec: Spec) -> Mapping:
    """Load a mapping file and check every path, enum member, alarm and command against the spec."""
    path = Path(path)
    m = load_model(path, Mapping)
    node = yaml_node(path)
    errors = []

    def err(loc: tuple[Any, ...], msg: str) -> None:
        errors.append(f"{path}:{line_of(node, loc)}: {format_loc(loc)}: {msg}")  # the notation line files use

    for i, vm in enumerate(m.variables):
        template = vm.path.replace("[*]", "[1]")
        try:
            d = spec.variable(m.cls, template)
        except KeyError as exc:
            err(("variables", i, "path"), str(exc.args[0]))
            continue
        if "[*]" in vm.path and d.sub_unit.array is None:
            err(("variables", i, "path"), f"'{d.sub_unit.id}' is not an array sub-unit")
        if vm.enum is not None:
            if not d.var.enum:
                err(("variables", i, "enum"), f"'{vm.path}' is not an enum variable")
            else:
                for code, msg in enum_problems(d.var.enum, spec.enum(d.var.enum), vm.members()):
                    err(("variables", i, "enum", int(code)), msg)
        if vm.writable and d.var.access != "rw":
            err(("variables", i, "writable"), f"'{vm.path}' is read-only in the spec")
        if vm.from_unit and (vm.from_unit, d.var.unit) not in CONVERSIONS and vm.from_unit != d.var.unit:
            err(("variables", i, "from_unit"), unit_problem(vm.from_unit, d.var.unit))
    for loc, msg in modbus_problems(m, spec) + point_problems(m):
        err(loc, msg)
    alarm_ids = {a.id for a in spec.alarms(m.cls)}
    for i, am in enumerate(m.alarms):
        if am.alarm != "*" and am.alarm not in alarm_ids:
            err(("alarms", i, "alarm"), f"'{am.alarm}' is not an alarm of {m.cls}")
    if m.alarm_code is not None:
        for key in m.alarm_code.codes:
            if key not in alarm_ids:
                err(("alarm_code", "codes", key), f"'{key}' is not an alarm of {m.cls}")
        if m.alarm_code.source.is_bit:
            err(("alarm_code", "source"), "the alarm code is a number register or node, not a bit")
        if len(set(m.alarm_code.codes.values())) != len(m.alarm_code.codes) or 0 in m.alarm_code.codes.values():
            err(("alarm_code", "codes"), "alarm codes are unique and not 0 (0 is no alarm)")
    for name in m.commands:
        if name not in spec.commands:
            err(("commands", name), f"'{name}' is not a spec command ({', '.join(spec.commands)})")
    ident = {v.id for su in spec.core.sub_units if su.id == "identification" for v in su.variables}
    served = {vm.path for vm in m.variables}
    for key in m.identification:
        if key not in ident:
            err(("identification", key), f"'{key}' is not an identification variable ({', '.join(sorted(ident))})")
        elif f"identification.{key}" in served:
            err(("identification", key), f"identification.{key} is read from the machine (variables); give it once")
    for i, ev in enumerate(m.events):
        if ev.type not in spec.events:
            err(("events", i, "type"), f"'{ev.type}' is not a spec event type")
        for loc, ref in [(("events", i, "on_change"), ev.on_change)] + _payload_refs(ev.payload, ("events", i, "payload")):
            problem = _ref_problem(spec, m.cls, ref, "[*]" in ev.on_change)
            if problem:
                err(loc, problem)
        for key in ev.map:
            if key not in ev.payload:
                err(("events", i, "map", key), f"'{key}' is not a key of the payload ({', '.join(ev.payload)})")
    if errors:
        raise SpecError("\n".join(errors))
    return m


def point_problems(m: Mapping) -> list[tuple[tuple[Any, ...], str]]:
    """Typed point addresses against the `Address` model their plug-in adapter declares."""
    places: list[tuple[tuple[Any, ...], Source]] = [(("variables", i, "source"), vm.source) for i, vm in enumerate(m.variables)]
    places += [(("alarms", i, "source"), am.source) for i, am in enumerate(m.alarms)]
    if m.alarm_code is not None:
        places.append((("alarm_code", "source"), m.alarm_code.source))
    places = [(loc, src) for loc, src in places if src.point is not None]
    if not places:
        return []
    if m.protocol in ("modbus", "opcua"):
        return [(loc + ("point",), f"'point' is a plug-in adapter's address; {m.protocol} takes "
                                   f"{'address' if m.protocol == 'modbus' else 'node'}") for loc, _ in places]
    model = declared_model(m.protocol, "Address")
    if model is None:
        return [(loc + ("point",), f"the {m.protocol} adapter declares no typed address (an Address model): give "
                                   "its address as one string in 'node'") for loc, _ in places]
    return [problem for loc, src in places
            for problem in model_problems(model, src.point or {}, f"an address field of the {m.protocol} adapter",
                                          loc + ("point",))]


class _Span(NamedTuple):
    table: str
    device: int | None
    start: int
    end: int  # exclusive
    bits: tuple[int, int] | None  # a bit field's [lo, hi) within the registers, None for the whole value
    var: int  # variables[var]
    instance: int


def modbus_problems(m: Mapping, spec: Spec) -> list[tuple[tuple[Any, ...], str]]:
    """(location, what is wrong) for Modbus sources that would read wrongly at run time: an unknown dtype,
    a bit table for a value it cannot hold, and registers that two variables both claim (array instances
    1 and 2 included, so a stride that is too short shows). Bit fields of one register may share it."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    spans: list[_Span] = []
    for i, vm in enumerate(m.variables):
        src = vm.source
        if src.address is None:
            continue
        loc = ("variables", i, "source")
        if src.dtype is not None and src.dtype not in DTYPES:
            near = difflib.get_close_matches(src.dtype, sorted(DTYPES), n=1)
            problems.append((loc + ("dtype",), f"unknown dtype '{src.dtype}'"
                             + (f"; did you mean '{near[0]}'?" if near else f" (one of {', '.join(sorted(DTYPES))})")))
            continue
        if src.table in ("coil", "discrete"):
            if src.dtype not in (None, "bit"):
                problems.append((loc + ("dtype",), f"a {src.table} holds one bit, not a {src.dtype}: read it from a "
                                                   "holding or input register"))
                continue
            try:
                kind = spec.variable(m.cls, vm.path.replace("[*]", "[1]")).var.type
            except KeyError:
                continue  # reported with the path
            if kind in ("float", "string", "timestamp"):
                problems.append((loc + ("table",), f"'{vm.path}' is a {kind}; a {src.table} holds one bit"))
                continue
            width = 1
        else:
            width = register_count(src.dtype or "uint16", src.count)
        bits = (src.bit, src.bit + src.bits) if src.bit is not None else None
        for n in ([1, 2] if "[*]" in vm.path and src.stride else [1]):
            start = src.address + (n - 1) * (src.stride or 0)
            spans.append(_Span(src.table, src.device_id, start, start + width, bits, i, n))
    spans.sort(key=lambda s: (s.table, s.device if s.device is not None else -1, s.start))
    reported: set[int] = set()
    for k, b in enumerate(spans):
        for a in spans[:k]:
            if (a.table, a.device) != (b.table, b.device) or a.end <= b.start or b.var in reported:
                continue
            if a.var == b.var and a.instance == b.instance:
                continue
            shared_bits = (a.bits is not None and b.bits is not None and (a.start, a.end) == (b.start, b.end)
                           and (a.bits[1] <= b.bits[0] or b.bits[1] <= a.bits[0]))
            if shared_bits:
                continue
            what = (f"instances 1 and 2 of '{m.variables[b.var].path}' overlap: stride "
                    f"{m.variables[b.var].source.stride} is shorter than the value's registers") \
                if a.var == b.var else \
                (f"{b.table} registers {b.start}..{b.end - 1} overlap those of variables[{a.var}] "
                 f"('{m.variables[a.var].path}', {a.start}..{a.end - 1}); each register feeds one variable "
                 "(bit fields of one register excepted)")
            problems.append((("variables", b.var, "source", "address"), what))
            reported.add(b.var)
    return problems


def _payload_refs(template: Any, loc: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], str]]:
    """Every spec path a payload template reads, with its location."""
    if isinstance(template, str) and template.startswith("$"):
        return [(loc, template[1:].removeprefix("before:"))]
    if isinstance(template, list):
        return [r for j, t in enumerate(template) for r in _payload_refs(t, loc + (j,))]
    if isinstance(template, dict):
        return [r for k, t in template.items() for r in _payload_refs(t, loc + (k,))]
    return []


def _ref_problem(spec: Spec, cls: str, path: str, per_instance: bool) -> str | None:
    if "[*]" in path:
        if not per_instance:
            return f"'{path}': '[*]' needs an on_change path with '[*]' (the instance is the one that changed)"
        sub_unit = path.split("[", 1)[0]
        if sub_unit not in {su.id for su in spec.array_sub_units(cls)}:
            return f"'{sub_unit}' is not an array sub-unit"
    try:
        spec.variable(cls, path.replace("[*]", "[1]"))
    except KeyError as exc:
        return str(exc.args[0])
    return None


_INDEX = re.compile(r"\{i(?::(\d+)d)?\}")


def _node_for(node: str, index: int | None) -> str:
    if index is None:
        return node
    return _INDEX.sub(lambda mo: f"{index:0{int(mo.group(1) or 0)}d}", node)


def _source_point(key: str, src: Source, m: Mapping, index: int | None) -> Point:
    if src.address is not None:
        address = src.address + ((index - 1) * (src.stride or 0) if index else 0)
        order = src.order or (m.modbus.order if m.modbus else "ABCD")
        opts: dict[str, Any] = {"table": src.table, "address": address, "order": order}
        if src.dtype:
            opts["dtype"] = src.dtype
        if src.count:
            opts["count"] = src.count
        device = src.device_id if src.device_id is not None else (m.modbus.device_id if m.modbus else None)
        if device is not None:
            opts["device_id"] = device
        return Point(key, opts)
    if src.point is not None:  # a plug-in adapter's typed address, checked against its model at load
        return Point(key, {**src.point, **src.options()})
    assert src.node is not None
    if m.opcua is None:  # a plug-in adapter: the node is its own address syntax
        return Point(key, {"node": _node_for(src.node, index), **src.options()})
    return Point(
        key,
        {
            "browse_path": f"{m.opcua.root}/{_node_for(src.node, index)}",
            "namespace": m.opcua.namespace_uri,
            **m.opcua.options(),
            **src.options(),
        },
    )


def _source_key(src: Source, point: Point) -> str:
    """One key per place read: sources that read the same place share a point."""
    o = point.options
    if src.point is not None:  # a plug-in's typed address: its fields may have any names
        return "point:" + ",".join(f"{k}={o[k]!r}" for k in sorted(o))
    if src.address is not None:
        return f"{o['table']}:{o.get('device_id', '')}:{o['address']}:{o.get('dtype') or 'bit'}:{o.get('order', '')}"
    return f"node:{o.get('browse_path') or o['node']}"


def _instances(spec: Spec, cls: str, path: str, counts: dict[str, int]) -> list[tuple[str, int | None]]:
    """Concrete paths of a "[*]" template (with their index), or the path itself."""
    if "[*]" not in path:
        return [(path, None)]
    sub_unit = path.split("[", 1)[0]
    arr = next(su.array for su in spec.array_sub_units(cls) if su.id == sub_unit)
    assert arr is not None  # array_sub_units holds only sub-units with an array
    return [(path.replace("[*]", f"[{i}]"), i) for i in range(1, counts.get(sub_unit, arr.max) + 1)]


def alarm_reads(m: Mapping) -> list[tuple[str, Source, Any]]:
    """(alarm, source, value when active) for every alarm the gateway reads: its own entry, else its code."""
    own = [(am.alarm, am.source, am.active_value) for am in m.alarms if am.alarm != "*"]
    listed = {alarm for alarm, _, _ in own}
    if m.alarm_code is not None:
        own += [(alarm, m.alarm_code.source, code) for alarm, code in m.alarm_code.codes.items() if alarm not in listed]
    return own


def mapped_plan(spec: Spec, equipment: str, mapping: Mapping, counts: dict[str, int], only: set[str] | None = None) -> Plan:
    """The plan of a mapped machine; with `only`, just those (non-array) variables, e.g. to read array sizes."""
    cls = mapping.cls
    counts = {**mapping.counts, **counts}
    points: dict[str, Point] = {}
    targets: dict[str, list[Target]] = {}
    for vm in mapping.variables:
        if only is not None and vm.path not in only:
            continue
        for path, index in _instances(spec, cls, vm.path, counts):
            pt = _source_point("", vm.source, mapping, index)
            key = _source_key(vm.source, pt)
            sampling = spec.variable(cls, path).var.sampling_ms
            if sampling and "browse_path" in pt.options:
                pt.options.setdefault("sampling_ms", sampling)  # the spec's rate, as for native machines
            points.setdefault(key, Point(key, pt.options))
            t = target(spec, cls, path)
            (t.scale, t.offset), t.bit, t.bit_mask = vm.transform(t.unit), vm.source.bit, (1 << vm.source.bits) - 1
            if vm.enum is not None:
                members = spec.enum(spec.variable(cls, path).var.enum or "")  # load_mapping refused enum maps on non-enums
                t.enum_map = {code: members[names[0]] for code, names in vm.members().items()}
            t.keeps_raw = t.enum_map is not None or t.bit is not None or t.scale != 1.0 or t.offset != 0.0
            targets.setdefault(key, []).append(t)
    plan = Plan(equipment, cls, mapping.protocol, False, list(points.values()), targets, counts=counts)
    if only is not None:
        return plan
    plan.nameplate = {f"identification.{k}": v for k, v in mapping.identification.items()}
    codes = {a.id: a.code for a in spec.alarms(cls)}
    for alarm, src, active in alarm_reads(mapping):
        pt = _source_point("", src, mapping, None)
        key = _source_key(src, pt)
        if key not in points:
            points[key] = Point(key, pt.options)
            plan.points.append(points[key])
        plan.alarm_sources.setdefault(key, []).append(AlarmSource(codes[alarm], src.bit, active))
    for name, cm in mapping.commands.items():
        plan.commands[name] = cm
        if cm.call is not None and mapping.opcua is not None:
            plan.points.append(
                Point(
                    f"cmd:{name}",
                    {
                        "object": f"{mapping.opcua.root}/{cm.call.object}",
                        "method": f"{mapping.opcua.root}/{cm.call.method}",
                        "namespace": mapping.opcua.namespace_uri,
                    },
                )
            )
        elif cm.write is not None:
            src = Source(address=cm.write.address, dtype=cm.write.dtype) if cm.write.address is not None else Source(node=cm.write.node)
            pt = _source_point(f"cmdw:{name}", src, mapping, None)
            plan.points.append(Point(f"cmdw:{name}", {**pt.options, "scan": False}))
    for ev in mapping.events:
        for path, index in _instances(spec, cls, ev.on_change, counts):
            plan.triggers.setdefault(path, []).append(Trigger(ev, index))
    if mapping.opcua:
        plan.namespace = mapping.opcua.namespace_uri
    return plan
