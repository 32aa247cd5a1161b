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

from dataclasses import dataclass

from .model import Param, SubUnit, Variable

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
RECIPES_LIST = "List"
RECIPES_GET = "Get"
RECIPES_PUT = "Put"

# EngineeringUnits (EUInformation) namespace for UN/CEFACT unit ids (OPC 10000-8).
EU_NAMESPACE_URI = "http://www.opcfoundation.org/UA/units/un/cefact"

# OPC UA argument types of command parameters, by spec parameter type.
PARAM_TYPES = {"string": "String", "int": "Int32", "enum": "Int32"}


@dataclass(frozen=True)
class MethodArg:
    name: str
    data_type: str  # OPC UA built-in type name
    array: bool = False


@dataclass(frozen=True)
class BindingMethod:
    """A method of the binding outside Commands: its folder, inputs and outputs."""

    folder: str
    name: str
    inputs: tuple[MethodArg, ...]
    outputs: tuple[MethodArg, ...]
    doc: str


BINDING_METHODS: tuple[BindingMethod, ...] = (
    BindingMethod(EVENTS_FOLDER, EVENTS_READ,
                  (MethodArg("FromSequence", "UInt32"), MethodArg("MaxCount", "UInt32")),
                  (MethodArg("Events", "String", array=True),),
                  "events with seq >= FromSequence, oldest first, at most MaxCount; each a JSON envelope"),
    BindingMethod(RECIPES_FOLDER, RECIPES_LIST, (), (MethodArg("Recipes", "String"),),
                  'JSON array of the stored recipes: [{"id", "version", "hash"}, ...]'),
    BindingMethod(RECIPES_FOLDER, RECIPES_GET, (MethodArg("RecipeId", "String"),), (MethodArg("Recipe", "String"),),
                  'JSON recipe document {"id", "version", "hash", "parameters"}; "" when there is no such recipe'),
    BindingMethod(RECIPES_FOLDER, RECIPES_PUT, (MethodArg("Recipe", "String"),), (MethodArg("ResultCode", "Int32"),),
                  'store a recipe from JSON {"id", "parameters", "version"?}; a result code'),
)
COMMAND_RESULT = MethodArg("ResultCode", "Int32")


def command_inputs(params: list[Param]) -> list[MethodArg]:
    """Input arguments of a command method: one per spec parameter, in order."""
    return [MethodArg(p.name, PARAM_TYPES[p.type]) for p in params]
