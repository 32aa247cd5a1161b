"""The vendor file format: how one vendor's machine model serves the spec, as data.

Equipment that implements the spec's native profile needs no file. For the
rest, one file per machine model says where the machine keeps each spec
path and how its values differ. The same file has two uses: the gateway
reads a machine through it (`mapping:` of a line file entry), and the
simulators serve the vendor's dialect from it (`linegw simulate`), so the
description a simulator is tested against is the one the gateway reads by.

    mapping: acme-winder-modbus
    class: winder
    protocol: modbus
    modbus: {order: CDAB}                 # defaults for every register source
    counts: {}                            # array sizes, when the machine cannot say
    identification: {manufacturer: Acme}  # nameplate values the machine does not serve
    variables:
      - path: winding.speed
        source: {address: 120, dtype: int16}
        scale: 0.1                        # spec = raw * scale + offset
      - path: state.packml_state
        source: {address: 100, dtype: uint16}
        # vendor code -> spec enum member; a list when one code stands for several
        # members: a reader takes the first, the machine shows the code for any of them
        enum: {0: Undefined, 1: [Stopped, Stopping], 2: [Idle, Resetting], 3: [Execute, Starting]}
        default: 0                        # the code the machine shows for members not listed
      - path: state.control_authority
        source: {address: 101, dtype: uint16, bit: 2}
        enum: {0: Local, 1: Remote}
      - path: state.operation_mode         # a bit field: bits 4-6 of the same word
        source: {address: 101, dtype: uint16, bit: 4, bits: 3}
        enum: {0: Setup, 1: Processing, 2: Maintenance}
      - path: dryer_zone[*].air_temperature # one entry for every instance
        source: {address: 300, dtype: int16, stride: 4}
    alarms:
      - {alarm: web_break, source: {address: 110, dtype: uint16, bit: 0}}
      - {alarm: door_open, source: {address: 111, dtype: uint16}, active_value: 101}  # alarm-code register
      - {alarm: "*", source: {address: 101, dtype: uint16, bit: 7}}  # any alarm: served, not needed to read
    alarm_code:                           # the code of the most severe active alarm (0: none); read
      source: {address: 112, dtype: uint16}   # for the alarms listed here that have no entry of their own
      codes: {emergency_stop: 1, air_pressure_low: 2}
    commands:
      Start: {write: {address: 200, dtype: uint16, value: 1}}
    events:
      - on_change: jelly_roll.roll_id
        type: UnitProcessed
        payload: {unit_id: $jelly_roll.roll_id, made_from: [$before:material.cathode_roll_id]}
    # a formation rack: one trigger for every slot, "[*]" in the payload is the slot that changed
    #   - on_change: "channel[*].result_grade"
    #     ignore: [none]                        # new values that are no event
    #     type: UnitProcessed
    #     payload: {unit_id: "$channel[*].cell_id", result: "$channel[*].result_grade"}
    #     map: {result: {A: good, NG: reject}}  # payload key -> {value: payload value}; null drops the key

Modbus sources in coils and discrete inputs are one bit each and take no
`dtype`. A variable is writable (a set point) when the spec says `rw`;
`writable: false` says the machine refuses writes all the same. `wrap: true`
says an integer counts round instead of stopping at its top (a watchdog). An alarm source without `bit` is active when it reads `active_value`:
a Boolean node (true), or a vendor alarm-code register showing that alarm's code.

Events are for machines that cannot send their own: the gateway emits one
when a value it reads changes from the last good value it saw (never for the
first value after start). "$<path>" in a payload is that path's value now
(enum members by name), "$before:<path>" its value before the change that
fired the event (inputs a machine swaps in the same instant it finishes a unit).

OPC UA sources name a node relative to `opcua.root` ("Drive/Speed"), in
`opcua.namespace_uri`; `{i}` / `{i:02d}` in a node name is the array index.
How a node is read can be set for the whole machine model in `opcua:` and for
one variable (all its instances, with "[*]") in its source:

    opcua: {namespace_uri: "urn:acme", root: /Objects/Acme, publishing_ms: 250}
    variables:
      - path: web.line_speed
        source: {node: Drive/Speed, sampling_ms: 100, publishing_ms: 100}
      - path: identification.model
        source: {node: Info/Model, mode: poll, sampling_ms: 10000}

`mode` is subscribe (a monitored item) or poll (read every `sampling_ms`;
`mode: poll` in `opcua:` for a server without subscriptions); `sampling_ms`
defaults to the spec's sampling interval of the variable; points with the
same `publishing_ms` share one subscription. Unset, the line file's
`adapter:` settings decide. A machine read by a plug-in adapter is addressed
by `node` (one string in the adapter's own syntax) or by `point`, the fields
of the `Address` model the adapter declares (`source: {point: {tag: N7:0,
type: INT}}`), checked when the file loads. `type` in a node source is the OPC UA builtin
type the machine serves (default: the native profile's type for the
variable); the gateway reads any numeric type, the simulators serve this
one. `opcua.node_ids: numeric` says the machine numbers its nodes (the
gateway finds them by browse path either way).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

VENDOR_DIR = Path(__file__).parent / "vendors"  # the shipped vendor files
_DTYPE_BITS = {"int16": 16, "uint16": 16, "int32": 32, "uint32": 32, "int64": 64, "uint64": 64}
# The OPC UA builtin types a vendor may serve a value as.
OPCUA_TYPES = ("Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double",
               "String")

# Linear unit conversions: (vendor unit, spec unit) -> (factor, offset).
CONVERSIONS: dict[tuple[str, str], tuple[float, float]] = {
    ("K", "Cel"): (1.0, -273.15),
    ("[degF]", "Cel"): (5 / 9, -32 * 5 / 9),
    ("m/s", "m/min"): (60.0, 0.0),
    ("mm/s", "m/min"): (0.06, 0.0),
    ("m/min", "mm/s"): (1000 / 60, 0.0),
    ("mm", "um"): (1000.0, 0.0),
    ("um", "mm"): (0.001, 0.0),
    ("g/m2", "mg/cm2"): (0.1, 0.0),
    ("W", "kW"): (0.001, 0.0),
    ("W.h", "kW.h"): (0.001, 0.0),
    ("mV", "V"): (0.001, 0.0),
    ("mA", "A"): (0.001, 0.0),
    ("mA.h", "A.h"): (0.001, 0.0),
    ("mW.h", "W.h"): (0.001, 0.0),
    ("Ohm", "mOhm"): (1000.0, 0.0),
    ("uOhm", "mOhm"): (0.001, 0.0),
    ("L/h", "mL/min"): (1000 / 60, 0.0),
    ("kN", "N"): (1000.0, 0.0),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpcUaReading(_Strict):
    """How an OPC UA node is read; unset fields fall back to the machine model, then the adapter."""

    mode: Literal["subscribe", "poll"] | None = None
    sampling_ms: float | None = Field(default=None, ge=0)
    publishing_ms: float | None = Field(default=None, gt=0)

    def options(self) -> dict[str, Any]:
        return self.model_dump(include={"mode", "sampling_ms", "publishing_ms"}, exclude_none=True)


class Source(OpcUaReading):
    # Modbus
    address: int | None = Field(default=None, ge=0, le=65535)
    table: Literal["holding", "input", "coil", "discrete"] = "holding"
    dtype: str | None = None
    count: int | None = Field(default=None, ge=1, le=125)  # registers, strings
    order: Literal["ABCD", "DCBA", "BADC", "CDAB"] | None = None
    bit: int | None = Field(default=None, ge=0, le=63)  # lowest bit of a bit field in the register value
    bits: int = Field(default=1, ge=1, le=32)  # width of that field: a vendor code packed with others
    stride: int | None = Field(default=None, ge=1)  # array instance spacing in registers
    device_id: int | None = Field(default=None, ge=0, le=255)
    # OPC UA
    node: str | None = None
    type: str | None = None  # the builtin type the machine serves the node as
    # A plug-in adapter's own address fields, checked against the `Address` model it declares
    point: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        if sum(x is not None for x in (self.address, self.node, self.point)) != 1:
            raise ValueError("give one of 'address' (Modbus), 'node' (OPC UA, or a plug-in's address as one string) "
                             "or 'point' (a plug-in's address fields)")
        if self.address is not None and self.dtype is None and self.table not in ("coil", "discrete"):
            raise ValueError("a Modbus source needs 'dtype'")
        if self.bits > 1 and self.bit is None:
            raise ValueError(f"bits: {self.bits} needs 'bit', the field's lowest bit")
        if self.bit is not None and self.dtype is not None:
            width = _DTYPE_BITS.get(self.dtype)
            if width is None:
                raise ValueError(f"bit: only for integer sources, not dtype {self.dtype}")
            if self.bit + self.bits > width:
                raise ValueError(f"bit {self.bit} + bits {self.bits} do not fit in a {self.dtype} ({width} bits)")
        if self.address is not None and self.options():
            raise ValueError(f"{', '.join(self.options())}: only for OPC UA sources ('node'); Modbus is read every scan")
        if self.type is not None:
            if self.node is None:
                raise ValueError("'type' is for OPC UA nodes; Modbus registers take 'dtype'")
            if self.type not in OPCUA_TYPES:
                raise ValueError(f"type '{self.type}' is not one of {', '.join(OPCUA_TYPES)}")
        return self

    @property
    def is_bit(self) -> bool:
        """One bit: a bit of a register, a coil or discrete input, or a Boolean node."""
        return (self.bit is not None and self.bits == 1) or self.table in ("coil", "discrete") or self.type == "Boolean"


class VariableMap(_Strict):
    path: str  # spec path; "sub_unit[*].var" maps every array instance
    source: Source
    scale: float = 1.0
    offset: float = 0.0
    from_unit: str | None = None  # vendor unit, converted to the spec's unit
    enum: dict[int, str | list[str]] | None = None  # vendor code -> spec member(s); a reader takes the first
    default: int | None = None  # the code the machine shows for members the enum does not list
    writable: bool | None = None  # None: as the spec's access (rw set points are written)
    wrap: bool = False  # an integer that counts round instead of stopping at its top

    @model_validator(mode="after")
    def _enum(self) -> VariableMap:
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.default is not None and (self.enum is None or self.default not in self.enum):
            raise ValueError("'default' is the code shown for members not listed: it must be one of the enum's codes")
        if self.enum is not None and any(isinstance(v, list) and not v for v in self.enum.values()):
            raise ValueError("enum: a code needs at least one member")
        return self

    def members(self) -> dict[int, list[str]]:
        """Vendor code -> the spec members it stands for (the first is what a reader takes)."""
        return {code: [names] if isinstance(names, str) else list(names) for code, names in (self.enum or {}).items()}

    def transform(self, unit: str) -> tuple[float, float]:
        """(scale, offset) from the machine's number to the spec's unit: spec = raw * scale + offset."""
        scale, offset = self.scale, self.offset
        if self.from_unit and self.from_unit != unit:
            f, o = CONVERSIONS[(self.from_unit, unit)]
            scale, offset = scale * f, offset * f + o
        return scale, offset


class AlarmMap(_Strict):
    alarm: str  # spec alarm id; "*" is the machine's any-alarm summary (served, nothing to read)
    source: Source  # a bit (Modbus) or a Boolean node (OPC UA)
    active_value: int | bool = True

    @model_validator(mode="after")
    def _one_bit(self) -> AlarmMap:
        if self.source.bits != 1:
            raise ValueError("source.bits: an alarm is one bit, or a whole alarm-code register")
        return self


class AlarmCode(_Strict):
    """One register or node with the vendor code of the most severe active alarm (0: none)."""

    source: Source
    codes: dict[str, int]  # spec alarm id -> vendor code


class CommandWrite(_Strict):
    address: int | None = Field(default=None, ge=0, le=65535)
    dtype: str = "uint16"
    node: str | None = None
    type: Literal["Int16", "UInt16", "Int32", "UInt32"] = "Int32"  # of the command node, as the machine serves it
    value: Any

    @model_validator(mode="after")
    def _one_kind(self) -> CommandWrite:
        if (self.address is None) == (self.node is None):
            raise ValueError("give either 'address' (Modbus) or 'node' (OPC UA) to write the command to")
        return self


class CommandCall(_Strict):
    object: str
    method: str
    args: list[Any] = []


class CommandMap(_Strict):
    write: CommandWrite | None = None
    call: CommandCall | None = None

    @model_validator(mode="after")
    def _one(self) -> CommandMap:
        if (self.write is None) == (self.call is None):
            raise ValueError("give either 'write' or 'call'")
        return self


class EventTrigger(_Strict):
    on_change: str  # spec path whose change emits the event; "sub_unit[*].var" for every instance
    type: str  # spec event type id
    payload: dict[str, Any] = {}  # "$<path>": its value now; "$before:<path>": before the change
    ignore: list[Any] = []  # new values of on_change that are no event (enum members by name)
    map: dict[str, dict[str, Any]] = {}  # payload key -> {filled value: payload value}; null drops the key


class ModbusDefaults(_Strict):
    order: Literal["ABCD", "DCBA", "BADC", "CDAB"] = "ABCD"
    device_id: int = Field(default=1, ge=0, le=255)


class OpcUaDefaults(OpcUaReading):
    namespace_uri: str
    root: str  # browse path of the vendor's machine object, e.g. "/Objects/KawaCoater"
    node_ids: Literal["string", "numeric"] = "string"  # how the machine names its nodes


class Mapping(_Strict):
    mapping: str
    cls: Literal["coater", "winder", "formation"] = Field(alias="class")
    protocol: str
    doc: str = ""
    modbus: ModbusDefaults | None = None
    opcua: OpcUaDefaults | None = None
    counts: dict[str, int] = {}
    identification: dict[str, str] = {}  # nameplate values the machine does not serve
    variables: list[VariableMap]
    alarms: list[AlarmMap] = []
    alarm_code: AlarmCode | None = None
    commands: dict[str, CommandMap] = {}
    events: list[EventTrigger] = []

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _binding(self) -> Mapping:
        if self.protocol == "opcua" and self.opcua is None:
            raise ValueError("an OPC UA mapping needs an 'opcua' section (namespace_uri, root)")
        return self


def enum_problems(enum: str, members: Iterable[str], codes: dict[Any, Any]) -> list[tuple[str, str]]:
    """(vendor code, what is wrong) for a vendor file's table of codes for the spec enum `enum`: a name that is not
    one of its members, or a member given two codes (a machine shows one). The gateway's mappings and the
    simulators' dialects check their tables with it."""
    known = list(members)
    seen: set[str] = set()
    out = []
    for code, names in codes.items():
        for name in [names] if isinstance(names, str) else names:
            if name not in known:
                out.append((str(code), f"'{name}' is not a member of {enum} ({', '.join(known)})"))
            elif name in seen:
                out.append((str(code), f"'{name}' has two codes: a machine shows one"))
            seen.add(name)
    return out


def vendor_names() -> list[str]:
    """The shipped vendor files, by name."""
    return sorted(p.stem for p in VENDOR_DIR.glob("*.yaml"))


def vendor_path(name_or_path: str | Path) -> Path:
    """A shipped vendor file by name (`tobu-winder-modbus`), or any file by its path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.parent != Path("."):
        return p
    return VENDOR_DIR / f"{name_or_path}.yaml"
