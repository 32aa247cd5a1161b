"""How the simulators serve a vendor's dialect: the serving model of a vendor file.

`load_dialect` builds it from a vendor file (`interface_spec/vendors/`, the
format in `interface_spec/vendor.py`). Per spec path it says where the
machine serves the value — the Modbus register (address, table, dtype, word
order, bit, stride for arrays) or the OPC UA node (browse path, builtin
type) — and `spec value = raw * scale + offset` with the unit conversion
folded in, with vendor enum codes (`enum: {vendor code: member or
[members]}`). Alarms are bits, Boolean nodes or one alarm-code register;
commands are a register (or node) written with a vendor code, or methods.

The grammar is checked here; what needs the spec (paths, enum members,
alarm ids, commands, overlapping registers) is checked by `load_dialect`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from interface_spec.vendor import OPCUA_TYPES

MODBUS_DTYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float16", "float32", "float64", "string")
Order = Literal["ABCD", "DCBA", "BADC", "CDAB"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Source(_Strict):
    """Where a vendor serves something: a Modbus register or an OPC UA node."""

    # Modbus
    address: int | None = Field(default=None, ge=0, le=65535)  # 0-based
    table: Literal["holding", "input", "coil", "discrete"] = "holding"
    dtype: str | None = None  # int16 ... float64, string; bits of a register take uint16
    order: Order | None = None  # word/byte order of multi-register values; default: modbus.order
    count: int | None = Field(default=None, ge=1, le=125)  # registers of a string
    bit: int | None = Field(default=None, ge=0, le=15)  # one bit of a 16-bit register
    stride: int | None = Field(default=None, ge=1)  # registers between array instances
    # OPC UA
    node: str | None = None  # browse path below the root, "/"-separated; "{i}" / "{i:03d}" is the array index
    type: str | None = None  # OPC UA builtin type of the node

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        if (self.address is None) == (self.node is None):
            raise ValueError("give either 'address' (Modbus) or 'node' (OPC UA)")
        if self.address is not None:
            if self.type is not None:
                raise ValueError("'type' is for OPC UA nodes; Modbus registers take 'dtype'")
            bits = self.table in ("coil", "discrete")
            if self.dtype is None and not bits and self.bit is None:
                raise ValueError("a Modbus register needs 'dtype'")
            if self.dtype is not None and self.dtype not in MODBUS_DTYPES:
                raise ValueError(f"dtype '{self.dtype}' is not one of {', '.join(MODBUS_DTYPES)}")
            if bits and (self.dtype is not None or self.bit is not None):
                raise ValueError(f"a {self.table} is one bit: no 'dtype' or 'bit'")
            if self.bit is not None and self.dtype not in (None, "uint16", "int16"):
                raise ValueError("a bit lives in a 16-bit register (dtype uint16)")
            if self.dtype == "string" and self.count is None:
                raise ValueError("a string needs 'count' (registers, two characters each)")
        else:
            if self.dtype is not None or self.bit is not None or self.stride is not None or self.order is not None:
                raise ValueError("'dtype', 'bit', 'stride' and 'order' are for Modbus registers; OPC UA nodes take 'type'")
            if self.type is None:
                raise ValueError("an OPC UA node needs 'type' (e.g. Double, Int32, String, Boolean)")
            if self.type not in OPCUA_TYPES:
                raise ValueError(f"type '{self.type}' is not one of {', '.join(OPCUA_TYPES)}")
        return self

    @property
    def is_bit(self) -> bool:
        return self.bit is not None or self.table in ("coil", "discrete") or self.type == "Boolean"


class VariableField(Source):
    """One spec path served by the vendor."""

    path: str  # spec path; "sub_unit[*].var" for every array instance
    scale: float = 1.0  # spec value = raw * scale + offset
    offset: float = 0.0
    enum: dict[int, str | list[str]] | None = None  # vendor code -> spec member(s)
    default: int | None = None  # vendor code for spec members the enum does not list
    wrap: bool = False  # integers wrap around instead of saturating (e.g. a 16-bit watchdog counter)
    writable: bool = False  # clients may write it (set points: the spec variable must be rw)

    @model_validator(mode="after")
    def _transform(self) -> VariableField:
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.default is not None and self.enum is None:
            raise ValueError("'default' is the vendor code for unlisted enum members; it needs 'enum'")
        return self


class AlarmField(Source):
    """An alarm as a bit or a Boolean node; alarm "*" is a summary: any alarm active."""

    alarm: str


class AlarmCode(Source):
    """One register or node with the vendor code of the most severe active alarm (0: none)."""

    codes: dict[str, int]  # spec alarm id -> vendor code


class Commands(_Strict):
    """Vendor commands: a command register written with a code, and/or methods. No result code."""

    register_: Source | None = Field(default=None, alias="register")
    codes: dict[str, int] = {}  # spec command -> vendor code written to the register
    methods: dict[str, str] = {}  # spec command -> method node (browse path below the root)

    @model_validator(mode="after")
    def _register(self) -> Commands:
        if self.codes and self.register_ is None:
            raise ValueError("command 'codes' need a 'register'")
        if self.register_ is not None and not self.codes:
            raise ValueError("a command 'register' needs 'codes' (spec command -> vendor code)")
        return self


class ModbusDefaults(_Strict):
    order: Order = "ABCD"
    device_id: int = Field(default=1, ge=0, le=255)


class OpcUaDefaults(_Strict):
    namespace_uri: str
    root: str  # browse path of the machine object below Objects, e.g. "KawaCoater" or "Line/Winder01"
    node_ids: Literal["string", "numeric"] = "string"
    path: str | None = None  # endpoint path; default "<dialect>/<equipment id>"


class Dialect(_Strict):
    dialect: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    cls: str = Field(alias="class")
    protocol: Literal["opcua", "modbus"]
    doc: str = ""
    identification: dict[str, str] = {}  # served identification values (manufacturer, model, ...)
    modbus: ModbusDefaults | None = None
    opcua: OpcUaDefaults | None = None
    variables: list[VariableField]
    alarms: list[AlarmField] = []
    alarm_code: AlarmCode | None = None
    commands: Commands = Commands()

    @model_validator(mode="after")
    def _protocol(self) -> Dialect:
        if self.protocol == "opcua":
            if self.opcua is None:
                raise ValueError("an OPC UA dialect needs an 'opcua' section (namespace_uri, root)")
            if self.modbus is not None:
                raise ValueError("an OPC UA dialect takes no 'modbus' section")
        else:
            if self.opcua is not None:
                raise ValueError("a Modbus dialect takes no 'opcua' section")
            if self.commands.methods:
                raise ValueError("Modbus has no methods: give commands as a 'register' with 'codes'")
        return self

    def sources(self) -> list[tuple[tuple[str | int, ...], Source]]:
        """Every source with its location in the file (for error messages)."""
        out: list[tuple[tuple[str | int, ...], Source]] = [(("variables", i), v) for i, v in enumerate(self.variables)]
        out += [(("alarms", i), a) for i, a in enumerate(self.alarms)]
        if self.alarm_code is not None:
            out.append((("alarm_code",), self.alarm_code))
        if self.commands.register_ is not None:
            out.append((("commands", "register"), self.commands.register_))
        return out
