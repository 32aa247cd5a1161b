"""Serving a machine in a vendor's dialect: spec values projected onto vendor fields.

A dialect file says where and how a vendor serves each spec path; this
module turns its fields into `Projection`s (one per served array instance)
that compute the vendor's raw value from the spec value and back. The
protocol servers (`dialect_modbus.py`, `dialect_opcua.py`) only place raw
values; a new dialect is a file, not code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from interface_spec import Spec
from simulators.dialects import format_node
from simulators.dialects.model import Dialect, Source, VariableField
from simulators.machine import Machine

# Integer range of each integer type, Modbus dtypes and OPC UA builtin types alike.
INT_RANGES: dict[str, tuple[int, int]] = {
    "int16": (-(1 << 15), (1 << 15) - 1), "uint16": (0, (1 << 16) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1), "uint32": (0, (1 << 32) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1), "uint64": (0, (1 << 64) - 1),
    "SByte": (-128, 127), "Byte": (0, 255),
    "Int16": (-(1 << 15), (1 << 15) - 1), "UInt16": (0, (1 << 16) - 1),
    "Int32": (-(1 << 31), (1 << 31) - 1), "UInt32": (0, (1 << 32) - 1),
    "Int64": (-(1 << 63), (1 << 63) - 1), "UInt64": (0, (1 << 64) - 1),
}


@dataclass
class Projection:
    """One spec path as one vendor field instance."""

    path: str
    field: VariableField
    address: int | None  # Modbus, this instance
    node: str | None  # OPC UA, this instance
    to_raw: Callable[[Any], Any]
    from_raw: Callable[[Any], Any]


def _kind(src: Source) -> str:
    """The raw kind a source holds: "bit", "float", "string" or an integer type name."""
    if src.is_bit:
        return "bit"
    t = src.dtype or src.type or ""
    if t.startswith("float") or t in ("Float", "Double"):
        return "float"
    if t in ("string", "String"):
        return "string"
    return t


def _converters(spec: Spec, machine: Machine, path: str, f: VariableField) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    var = spec.variable(machine.cls, path).var
    kind = _kind(f)
    if f.enum is not None:
        members = spec.enum(var.enum or "")
        to_vendor: dict[int, int] = {}
        from_vendor: dict[int, int] = {}
        for code, names in f.enum.items():
            for i, name in enumerate([names] if isinstance(names, str) else names):
                to_vendor[members[name]] = code
                if i == 0:
                    from_vendor[code] = members[name]
        default = f.default if f.default is not None else 0

        def enum_to(value: Any) -> Any:
            raw = to_vendor.get(value, default)
            return bool(raw) if kind == "bit" else raw

        def enum_from(raw: Any) -> Any:
            return from_vendor.get(int(raw))

        return enum_to, enum_from
    if kind == "string":
        return (lambda v: "" if v is None else str(v)), (lambda raw: str(raw))
    if kind == "bit":
        return (lambda v: bool(v)), (lambda raw: bool(raw))
    scale, offset = f.scale, f.offset
    spec_int = var.type in ("int", "uint")
    if kind == "float":
        return (lambda v: (float(v) - offset) / scale), \
            (lambda raw: int(round(raw * scale + offset)) if spec_int else raw * scale + offset)
    lo, hi = INT_RANGES[kind]
    span = hi - lo + 1

    def int_to(value: Any) -> int:
        x = (float(value) - offset) / scale
        if x != x:  # NaN: integer registers show their out-of-range marker
            return hi
        if math.isinf(x):
            return hi if x > 0 else lo
        raw = int(round(x))
        if f.wrap:
            return (raw - lo) % span + lo
        return min(max(raw, lo), hi)

    def int_from(raw: Any) -> Any:
        value = raw * scale + offset
        return int(round(value)) if spec_int else float(value)

    return int_to, int_from


def compile_projections(dialect: Dialect, machine: Machine) -> dict[str, list[Projection]]:
    """Spec path -> the vendor fields that serve it, for the instances this machine has."""
    spec = machine.spec
    out: dict[str, list[Projection]] = {}
    for f in dialect.variables:
        if "[*]" in f.path:
            sub_unit = f.path.split("[", 1)[0]
            instances: list[tuple[str, int | None]] = [(f.path.replace("[*]", f"[{i}]"), i)
                                                         for i in range(1, machine.counts[sub_unit] + 1)]
        else:
            instances = [(f.path, None)]
        for path, index in instances:
            if path not in machine.values:
                continue
            to_raw, from_raw = _converters(spec, machine, path, f)
            address = None if f.address is None else f.address + ((index - 1) * (f.stride or 0) if index else 0)
            node = None if f.node is None else format_node(f.node, index)
            out.setdefault(path, []).append(Projection(path, f, address, node, to_raw, from_raw))
    return out


def most_severe(machine: Machine, codes: dict[str, int]) -> int:
    """Vendor code of the most severe active alarm that has one; 0 when none."""
    best: tuple[int, int] | None = None
    for code in machine.active_alarm_codes():
        alarm = machine.alarm_by_code[code]
        vendor = codes.get(alarm.id)
        if vendor is not None and (best is None or alarm.severity > best[0]):
            best = (alarm.severity, vendor)
    return best[1] if best else 0


def alarm_active(machine: Machine, alarm_id: str) -> bool:
    """Whether an alarm (by spec id) is active; "*" is any alarm."""
    active = machine.active_alarm_codes()
    if alarm_id == "*":
        return bool(active)
    return any(machine.alarm_by_code[c].id == alarm_id for c in active)
