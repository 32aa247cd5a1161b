"""The spec format: pydantic models of the line interface spec files.

The YAML files beside this module are the standard; these models are its
grammar. The JSON Schema in `schema/` is exported from them, so vendors can
validate their own files without running our code.
"""

from __future__ import annotations

import math
import re
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IDENT = r"^[a-z][a-z0-9_]*$"
# Vendor extensions live in their own namespace: "<vendor>:<id>".
VENDOR_IDENT = r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$"


def _num(x: float) -> str:
    """A range bound as written: 65535, not 65535.0 or 6.5535e+04."""
    return str(int(x)) if float(x).is_integer() else repr(x)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Category(str, Enum):
    """MTConnect categories: a measured value, a discrete event, a condition."""

    sample = "sample"
    event = "event"
    condition = "condition"


class Tier(str, Enum):
    mandatory = "M"
    recommended = "R"
    optional = "O"


DataType = Literal["float", "int", "uint", "bool", "string", "enum", "timestamp"]


class Unit(Strict):
    code: str  # UCUM case-sensitive code
    name: str
    symbol: str
    unece: str = ""  # UN/CEFACT common code, for OPC UA EUInformation.UnitId


class Variable(Strict):
    id: str = Field(pattern=IDENT)
    type: DataType
    unit: str = "1"
    range: tuple[float, float] | None = None
    # Floats: the step the value is meaningful to (a power of ten); readings are shown rounded to it.
    resolution: float | None = Field(default=None, gt=0)
    enum: str | None = None  # name of an enumeration in common.yaml
    category: Category = Category.sample
    access: Literal["r", "rw"] = "r"
    sampling_ms: int | None = Field(default=1000, ge=1)  # None: on change
    tier: Tier = Tier.mandatory
    length: int | None = Field(default=None, ge=2, le=256)  # characters, strings only
    # Modbus encoding width for numbers: 16, 32 or 64 bits.
    bits: Literal[16, 32, 64] | None = None
    # "gateway": derived by the gateway (e.g. availability), not served by equipment.
    origin: Literal["equipment", "gateway"] = "equipment"
    doc: str = ""

    @property
    def decimals(self) -> int | None:
        """Decimal places of the resolution (0.0001 V: 4); None without one."""
        return None if self.resolution is None else max(0, -round(math.log10(self.resolution)))

    @model_validator(mode="after")
    def _consistent(self) -> Variable:
        if self.type == "enum" and not self.enum:
            raise ValueError(f"variable '{self.id}': type enum needs 'enum: <name>'")
        if self.type != "enum" and self.enum:
            raise ValueError(f"variable '{self.id}': 'enum' is only for type enum")
        if self.type == "string" and not self.length:
            raise ValueError(f"variable '{self.id}': type string needs 'length' (characters)")
        if self.type != "string" and self.length:
            raise ValueError(f"variable '{self.id}': 'length' is only for type string")
        if self.resolution is not None:
            if self.type != "float":
                raise ValueError(f"variable '{self.id}': a resolution is for type float (integers are exact)")
            if not math.isclose(10 ** round(math.log10(self.resolution)), self.resolution):
                raise ValueError(f"variable '{self.id}': resolution {self.resolution:g} is not a power of ten "
                                 "(0.001, 0.1, 1, 10, ...)")
        if self.range is not None:
            lo, hi = self.range
            if self.type not in ("float", "int", "uint"):
                raise ValueError(f"variable '{self.id}': a range needs a numeric type, not {self.type}")
            if lo >= hi:
                raise ValueError(f"variable '{self.id}': range [{_num(lo)}, {_num(hi)}] is empty (low must be < high)")
            if self.type == "uint" and lo < 0:
                raise ValueError(f"variable '{self.id}': range low {_num(lo)} is negative for type uint")
            if self.resolution is not None:
                # Every step of the range must survive the encoding: a float32 holds 24 bits of mantissa.
                bits = self.bits or 32
                steps = max(abs(lo), abs(hi)) / self.resolution
                if steps > 2 ** (24 if bits == 32 else 53):
                    raise ValueError(f"variable '{self.id}': resolution {_num(self.resolution)} over range "
                                     f"[{_num(lo)}, {_num(hi)}] is finer than float{bits} can carry"
                                     + (" (bits: 64 would)" if bits == 32 and steps <= 2**53 else ""))
            if self.type in ("int", "uint"):
                # The range must be representable in the encoding both bindings use.
                bits = self.bits or 32
                low, high = (0, 2**bits - 1) if self.type == "uint" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
                if lo < low or hi > high:
                    raise ValueError(
                        f"variable '{self.id}': range [{_num(lo)}, {_num(hi)}] does not fit {self.type}{bits} ({low}..{high})"
                    )
        if self.bits is not None and self.type not in ("float", "int", "uint"):
            raise ValueError(f"variable '{self.id}': 'bits' is only for numeric types, not {self.type}")
        if self.type == "float" and self.bits == 16:
            raise ValueError(f"variable '{self.id}': a float is 32 or 64 bits")
        if self.type in ("float", "int", "uint") and self.range is None:
            raise ValueError(f"variable '{self.id}': numeric variables need a plausibility 'range'")
        if self.type in ("string", "bool", "enum", "timestamp") and self.unit != "1":
            raise ValueError(f"variable '{self.id}': type {self.type} has no unit (got '{self.unit}')")
        return self


class ArraySpec(Strict):
    max: int = Field(ge=1, le=4096)
    count_variable: str  # path of the variable that says how many instances exist


class SubUnit(Strict):
    id: str = Field(pattern=IDENT)
    doc: str = ""
    array: ArraySpec | None = None
    tier: Tier = Tier.mandatory
    # The minor version that added this sub-unit: its Modbus registers follow the binding areas, so that every
    # register of an earlier version keeps its address, and a machine declaring an earlier version need not serve it.
    since: str | None = Field(default=None, pattern=r"^\d+\.\d+$")
    variables: list[Variable]


class Alarm(Strict):
    code: int = Field(ge=1, le=65535)
    id: str = Field(pattern=IDENT)
    text: str
    severity: int = Field(ge=1, le=1000)  # OPC UA severity band
    category: Literal["process", "equipment", "safety", "quality", "utility", "communication"]
    source: str  # sub-unit id, or "machine"
    stop_reason: bool = False
    kind: Literal["alarm", "warning"] = "alarm"


class Param(Strict):
    name: str = Field(pattern=IDENT)
    type: DataType
    enum: str | None = None
    required: bool = True
    doc: str = ""


class Command(Strict):
    id: str = Field(pattern=r"^[A-Z][A-Za-z]*$")
    code: int = Field(ge=1, le=255)
    params: list[Param] = []
    doc: str = ""


class Transition(Strict):
    command: str
    source: list[str]
    acting: str | None = None  # the acting state passed through, if any
    target: str


class EventField(Strict):
    name: str = Field(pattern=IDENT)
    type: Literal["string", "int", "float", "bool", "string_list", "object", "enum"]
    required: bool = True
    doc: str = ""


class EventType(Strict):
    id: str = Field(pattern=r"^[A-Z][A-Za-z]*$")
    code: int = Field(ge=1, le=65535)
    doc: str = ""
    payload: list[EventField] = []


class RecipeParameter(Strict):
    name: str = Field(pattern=IDENT)
    type: Literal["float", "int", "string"]
    unit: str = "1"
    range: tuple[float, float] | None = None
    doc: str = ""


class EquipmentClass(Strict):
    """A class profile: coater, winder, formation."""

    spec: Literal["linegw-line-interface/class"]
    id: str = Field(pattern=IDENT)
    title: str
    doc: str = ""
    modbus_block: int = Field(ge=2, le=65534)
    modbus_length: int = Field(ge=1, le=60000)
    processed_unit: str  # what counters count: electrode_roll, jelly_roll, cell
    sub_units: list[SubUnit]
    alarms: list[Alarm]
    events: list[str]  # event type ids (from common.yaml) this class emits
    unit_processed: dict[str, str] = {}  # measurement name -> unit, carried in UnitProcessed
    recipe: list[RecipeParameter] = []


class PackML(Strict):
    states: dict[str, int]
    acting_states: list[str]
    commands: list[str]
    transitions: list[Transition]
    unit_modes: dict[str, int]


class DerivedState(Strict):
    item_state: str | None = None
    e10_state: str | None = None  # an e10_state member, or "DOWN": UDT after a stop-reason alarm, SDT otherwise


class StateDerivation(Strict):
    """item_state and e10_state as a function of the PackML state and the operation mode."""

    packml: dict[str, DerivedState]
    operation_mode: dict[str, DerivedState]
    unit_mode: dict[str, str]
    authority: str


class RecipeVector(Strict):
    equipment_class: str
    id: str
    version: int = Field(ge=0, le=65535)
    parameters: dict[str, float | int | str | bool]


class RecipeHash(Strict):
    method: str
    vectors: list[RecipeVector]


class Rule(Strict):
    """A normative answer the tables do not carry; the kit's coverage matrix names what checks it."""

    id: str = Field(pattern=r"^[a-z0-9-]+(\.[a-z0-9-]+)+$")
    section: str
    text: str


class ChangelogEntry(Strict):
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    changes: list[str]


class ModbusBinding(Strict):
    base_address: int = Field(ge=0, le=65535)  # 0-based holding-register address of the marker
    marker: str = Field(min_length=4, max_length=4)
    word_order: Literal["ABCD"] = "ABCD"
    common_block: int
    common_length: int
    end_block: int = 0xFFFF
    # Binding-only registers that are not common-model variables.
    command_length: int  # registers in the command handshake area
    event_payload_chars: int
    alarm_words: int  # 16 alarms per register
    dictionary_address: int = Field(ge=0, le=65535)  # the self-description JSON
    dictionary_max_chars: int = Field(ge=2, le=16000)


class OpcUaBinding(Strict):
    namespace_uri: str
    machines_folder: str = "Machines"


class Core(Strict):
    """common.yaml: the frozen core every class carries."""

    spec: Literal["linegw-line-interface/core"]
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    title: str
    heartbeat_period_s: float = Field(gt=0)
    heartbeat_timeout_s: float = Field(gt=0)
    units: list[Unit]
    enums: dict[str, dict[str, int]]
    sub_units: list[SubUnit]
    alarms: list[Alarm]
    packml: PackML
    state_derivation: StateDerivation
    recipe_hash: RecipeHash
    rules: list[Rule]
    changelog: list[ChangelogEntry]
    commands: list[Command]
    result_codes: dict[str, int]
    events: list[EventType]
    opcua: OpcUaBinding
    modbus: ModbusBinding

    @field_validator("enums")
    @classmethod
    def _enum_names(cls, enums: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        for name, members in enums.items():
            if not re.match(IDENT, name):
                raise ValueError(f"enum name '{name}' must match {IDENT}")
            if len(set(members.values())) != len(members):
                raise ValueError(f"enum '{name}': codes must be unique")
        return enums


class VendorVariable(Strict):
    """A vendor extension: a namespaced variable outside the common model."""

    id: str = Field(pattern=VENDOR_IDENT)
    type: DataType
    unit: str = "1"
    doc: str = ""


class SelfDescription(Strict):
    """The equipment's own data dictionary (after SEMI E172 SEDD), served by the machine."""

    spec_version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    equipment_class: str
    profiles: list[str]
    counts: dict[str, int] = {}  # array sub-unit id -> instances present
    optional_variables: list[str] = []  # paths of R/O variables this machine serves
    vendor_variables: list[VendorVariable] = []
    vendor_substates: dict[str, list[str]] = {}  # top-level state -> vendor sub-states
    native_status_map: dict[str, str] = {}  # vendor status code -> spec state name
