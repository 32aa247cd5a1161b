"""The OPC UA binding: where every spec variable lives in the address space.

Machinery-style layout, every node in the spec's namespace:

    Objects/Machines/<machine>/                    the machine object
        <SubUnit>/<Variable>                       e.g. Web/LineSpeed
        <SubUnit>_<NN>/<Variable>                  array instances, 1-based, zero-padded
        Commands/<Command>(args) -> Int32          result code
        Alarms/ActiveCodes                         UInt32[] of active alarm codes
        Events/LastSequence, Events/Read(from, max) -> String[] of JSON envelopes
        Recipes/List() -> String, Get(id) -> String, Put(json) -> Int32
        SelfDescription                            String, JSON

Browse names are the spec ids in PascalCase. Numeric variables carry the
EngineeringUnits (EUInformation, UN/CEFACT unit id) and EURange properties.
"""

from __future__ import annotations

from .model import SubUnit, Variable

OPCUA_TYPES = {
    ("float", None): "Double",
    ("float", 32): "Double",
    ("float", 64): "Double",
    ("int", None): "Int32",
    ("int", 16): "Int16",
    ("int", 32): "Int32",
    ("int", 64): "Int64",
    ("uint", None): "UInt32",
    ("uint", 16): "UInt16",
    ("uint", 32): "UInt32",
    ("uint", 64): "UInt64",
    ("enum", None): "Int32",
    ("bool", None): "Boolean",
    ("string", None): "String",
    ("timestamp", None): "DateTime",
}


def pascal(ident: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in ident.split("_"))


def opcua_type(var: Variable) -> str:
    return OPCUA_TYPES[(var.type, var.bits if var.type in ("int", "uint", "float") else None)]


def instance_name(sub_unit: SubUnit, index: int) -> str:
    width = max(2, len(str(sub_unit.array.max))) if sub_unit.array else 2
    return f"{pascal(sub_unit.id)}_{index:0{width}d}"


def relative_path(sub_unit: SubUnit, var_id: str, index: int | None = None) -> list[str]:
    """Browse names below the machine object."""
    folder = instance_name(sub_unit, index) if sub_unit.array and index else pascal(sub_unit.id)
    return [folder, pascal(var_id)]


def unece_unit_id(common_code: str) -> int:
    """OPC UA EUInformation.UnitId from a UN/CEFACT common code (OPC 10000-8 §5.6.3)."""
    value = 0
    for ch in common_code.upper():
        value = (value << 8) | ord(ch)
    return value if common_code else -1


COMMANDS_FOLDER = "Commands"
ALARMS_FOLDER = "Alarms"
ACTIVE_ALARMS = "ActiveCodes"
EVENTS_FOLDER = "Events"
EVENTS_LAST_SEQ = "LastSequence"
EVENTS_READ = "Read"
RECIPES_FOLDER = "Recipes"
SELF_DESCRIPTION = "SelfDescription"
