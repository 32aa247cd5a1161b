"""The Modbus binding: where every spec variable lives in the register map.

A self-describing map in the style of SunSpec: at `base_address` (0-based
holding registers) a 2-register marker, then blocks, each a header
(block id, length in registers) followed by its data: first the common block,
then the class block, then the end header (0xFFFF, 0). Inside a block,
variables take registers in the order the spec declares them (in the common
block, sub-units a minor version added follow the binding areas); array
sub-units come last, `stride` registers per instance, space reserved for the
maximum count so that addresses never depend on how many a machine has.

Encodings are fixed: float is float32, integers are (u)int16/32/64 as the
variable declares (32 when it does not), enums and bools are uint16,
timestamps are uint64 milliseconds since the Unix epoch, all multi-register
values big-endian with the high word first ("ABCD"); strings are ASCII, two
characters per register (first character in the high byte), NUL-padded.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import modbus_codec
from .model import Core, EquipmentClass, SubUnit, Variable


@dataclass(frozen=True)
class ModbusPoint:
    name: str  # spec path, or a binding area name such as "command.seq"
    address: int  # 0-based holding register
    dtype: str  # codec dtype: float32, uint16, uint32, int32, uint64, string, ...
    count: int  # registers
    access: str = "r"

    @property
    def end(self) -> int:
        return self.address + self.count


@dataclass(frozen=True)
class ModbusLayout:
    points: list[ModbusPoint]  # spec variables (every array instance, up to max)
    areas: dict[str, ModbusPoint]  # binding registers: marker, headers, alarms, command, events, dictionary
    common_start: int
    class_start: int
    class_end: int

    def point(self, name: str) -> ModbusPoint:
        for p in self.points:
            if p.name == name:
                return p
        return self.areas[name]


def dtype_of(var: Variable) -> str:
    if var.type == "float":
        return "float64" if var.bits == 64 else "float32"
    if var.type in ("uint", "int"):
        return f"{var.type}{var.bits or 32}"
    if var.type in ("enum", "bool"):
        return "uint16"
    if var.type == "timestamp":
        return "uint64"
    return "string"


def register_count(var: Variable) -> int:
    dtype = dtype_of(var)
    return modbus_codec.register_count(dtype, ((var.length or 2) + 1) // 2 if dtype == "string" else None)


def stride(sub_unit: SubUnit) -> int:
    """Registers per array instance, rounded up to even so float32s stay aligned."""
    n = sum(register_count(v) for v in sub_unit.variables if v.origin == "equipment")
    return n + (n % 2)


def _place(sub_units: list[SubUnit], start: int, points: list[ModbusPoint]) -> int:
    addr = start
    for su in (s for s in sub_units if not s.array):
        for v in su.variables:
            if v.origin != "equipment":
                continue
            n = register_count(v)
            points.append(ModbusPoint(f"{su.id}.{v.id}", addr, dtype_of(v), n, v.access))
            addr += n
    for su in sub_units:
        if su.array is None:
            continue
        size = stride(su)
        for i in range(1, su.array.max + 1):
            inst = addr + (i - 1) * size
            for v in su.variables:
                if v.origin != "equipment":
                    continue
                n = register_count(v)
                points.append(ModbusPoint(f"{su.id}[{i}].{v.id}", inst, dtype_of(v), n, v.access))
                inst += n
        addr += size * su.array.max
    return addr


def _areas(core: Core, start: int) -> tuple[dict[str, ModbusPoint], int]:
    mb = core.modbus
    payload_regs = (mb.event_payload_chars + 1) // 2
    spec = [
        ("alarms.active", "uint16", mb.alarm_words, "r"),
        ("command.code", "uint16", 1, "rw"),
        ("command.seq", "uint16", 1, "rw"),
        ("command.param_int", "int32", 2, "rw"),
        ("command.param_text", "string", 16, "rw"),
        ("command.result_seq", "uint16", 1, "r"),
        ("command.result_code", "uint16", 1, "r"),
        ("events.last_seq", "uint32", 2, "r"),
        ("events.request_seq", "uint32", 2, "rw"),
        ("events.seq", "uint32", 2, "r"),
        ("events.type", "uint16", 1, "r"),
        ("events.source_ts", "uint64", 4, "r"),
        ("events.payload_len", "uint16", 1, "r"),
        ("events.payload", "string", payload_regs, "r"),
        # 1.1: the seq again, at the end of the window, so a client sees another client's selection in between
        # (the rule modbus.mailbox.check). Appended: every 1.0 register keeps its address.
        ("events.seq_check", "uint32", 2, "r"),
    ]
    areas: dict[str, ModbusPoint] = {}
    addr = start
    for name, dtype, count, access in spec:
        areas[name] = ModbusPoint(name, addr, dtype, count, access)
        addr += count
    return areas, addr


def layout(core: Core, cls: EquipmentClass) -> ModbusLayout:
    """The register map of a class. Overflows are reported by `check_layout`, not here."""
    mb = core.modbus
    base = mb.base_address
    areas: dict[str, ModbusPoint] = {
        "marker": ModbusPoint("marker", base, "string", 2),
        "common.header": ModbusPoint("common.header", base + 2, "uint16", 2),
        "dictionary.length": ModbusPoint("dictionary.length", mb.dictionary_address, "uint16", 1),
        "dictionary.text": ModbusPoint(
            "dictionary.text", mb.dictionary_address + 1, "string", (mb.dictionary_max_chars + 1) // 2
        ),
    }
    points: list[ModbusPoint] = []
    common_start = base + 4
    used = _place([su for su in core.sub_units if not su.since], common_start, points)
    binding, used = _areas(core, used)
    areas.update(binding)
    # Sub-units a minor version added come after the binding areas: no earlier register moves.
    used = _place([su for su in core.sub_units if su.since], used, points)
    areas["common.used_end"] = ModbusPoint("common.used_end", used, "uint16", 0)
    class_header = common_start + mb.common_length
    areas["class.header"] = ModbusPoint("class.header", class_header, "uint16", 2)
    class_start = class_header + 2
    class_used = _place(cls.sub_units, class_start, points)
    areas["class.used_end"] = ModbusPoint("class.used_end", class_used, "uint16", 0)
    class_end = class_start + cls.modbus_length
    areas["end.header"] = ModbusPoint("end.header", class_end, "uint16", 2)
    return ModbusLayout(points, areas, common_start, class_start, class_end)


def check_layout(core: Core, cls: EquipmentClass) -> list[str]:
    """Rule violations of one class's map, as sentences (no file positions)."""
    lay = layout(core, cls)
    errors = []
    common_used = lay.areas["common.used_end"].address - lay.common_start
    if common_used > core.modbus.common_length:
        errors.append(f"common block needs {common_used} registers but common_length is {core.modbus.common_length}")
    class_used = lay.areas["class.used_end"].address - lay.class_start
    if class_used > cls.modbus_length:
        errors.append(f"class block needs {class_used} registers but modbus_length is {cls.modbus_length}")
    if lay.areas["end.header"].end > 65536:
        errors.append(f"register map ends at {lay.areas['end.header'].end}, beyond the 65536 holding registers")
    # No two registers claimed twice, the self-description included.
    claimed = sorted(
        [p for p in lay.points] + [a for n, a in lay.areas.items() if a.count and not n.endswith("used_end")],
        key=lambda p: p.address,
    )
    for a, b in zip(claimed, claimed[1:]):
        if b.address < a.end:
            errors.append(f"registers overlap: {a.name} ({a.address}..{a.end - 1}) and {b.name} ({b.address}..)")
    return errors
