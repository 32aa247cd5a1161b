"""The mapping file format: a vendor's addresses onto spec paths, as data.

Equipment that implements the spec's native profile needs no file. For the
rest, an integrator writes one file per machine model:

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
        enum: {1: Stopped, 2: Idle, 3: Execute}   # vendor code -> spec enum member
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
`dtype`. An alarm source without `bit` is active when it reads `active_value`:
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
`adapter:` settings decide.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_DTYPE_BITS = {"int16": 16, "uint16": 16, "int32": 32, "uint32": 32, "int64": 64, "uint64": 64}


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

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        if (self.address is None) == (self.node is None):
            raise ValueError("give either 'address' (Modbus) or 'node' (OPC UA)")
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
        return self


class VariableMap(_Strict):
    path: str  # spec path; "sub_unit[*].var" maps every array instance
    source: Source
    scale: float = 1.0
    offset: float = 0.0
    from_unit: str | None = None  # vendor unit, converted to the spec's unit
    enum: dict[int, str] | None = None  # vendor code -> spec enum member name


class AlarmMap(_Strict):
    alarm: str  # spec alarm id
    source: Source  # a bit (Modbus) or a Boolean node (OPC UA)
    active_value: int | bool = True

    @model_validator(mode="after")
    def _one_bit(self) -> AlarmMap:
        if self.source.bits != 1:
            raise ValueError("source.bits: an alarm is one bit, or a whole alarm-code register")
        return self


class CommandWrite(_Strict):
    address: int | None = Field(default=None, ge=0, le=65535)
    dtype: str = "uint16"
    node: str | None = None
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
    commands: dict[str, CommandMap] = {}
    events: list[EventTrigger] = []

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _binding(self) -> Mapping:
        if self.protocol == "opcua" and self.opcua is None:
            raise ValueError("an OPC UA mapping needs an 'opcua' section (namespace_uri, root)")
        return self
