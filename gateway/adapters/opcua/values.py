"""OPC UA values in and out: status names, plain Python values, typed Variants.

Readings leave the adapter as plain Python (numbers, bools, strings, lists),
never asyncua objects, so nothing downstream depends on the OPC UA library.
Values going to the server are turned into Variants of the exact built-in type
the node or method argument declares: servers reject an Int64 where a UInt16
is expected, and Python has only one int.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any, TypeAlias

from asyncua import ua
from asyncua.ua import status_codes

from gateway.adapters.base import RawReading

_SEVERITY = 0xC0000000
_BAD = 0x80000000
_NAMES: dict[int, str] = {}
_NAMES_MAX = 4096  # status codes carry info bits; bound the cache all the same

PLAIN_TYPES = frozenset({int, float, bool, str, type(None)})


def status_name(code: int) -> str:
    """The symbolic name of a StatusCode ("BadSensorFailure"), info bits ignored."""
    name = _NAMES.get(code)
    if name is None:
        name, _ = status_codes.get_name_and_doc(code & 0xFFFF0000)
        if name in ("Bad", "Uncertain", "Good") and (code & 0xFFFF0000) not in status_codes.code_to_name_doc:
            name = f"{name}_0x{code:08X}"
        if len(_NAMES) < _NAMES_MAX:
            _NAMES[code] = name
    return name


def plain(value: Any) -> Any:
    """An asyncua value as plain Python: text, numbers, lists; timestamps as Unix seconds."""
    kind = type(value)
    if kind in PLAIN_TYPES:
        return value
    if kind is list:
        return [plain(v) for v in value]
    if kind is ua.LocalizedText:
        return value.Text
    if kind is datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if kind is ua.QualifiedName:
        return value.Name
    if isinstance(value, ua.NodeId):
        return value.to_string()
    if kind is ua.StatusCode:
        return status_name(value.value)
    if kind is uuid.UUID:
        return str(value)
    if kind is ua.Variant:
        return plain(value.Value)
    return value  # bytes, structures: as decoded


def timestamp(dv: ua.DataValue) -> float | None:
    ts = dv.SourceTimestamp or dv.ServerTimestamp
    return ts.timestamp() if ts is not None else None


def reading(key: str, dv: ua.DataValue) -> RawReading:
    """One DataValue as a reading: Bad drops the value, Uncertain keeps it with its name."""
    sc = dv.StatusCode
    code = sc.value if sc is not None else 0
    var = dv.Value
    value = plain(var.Value) if var is not None else None
    if code & _SEVERITY:
        return RawReading(key, None if code & _BAD else value, timestamp(dv), status_name(code))
    return RawReading(key, value, timestamp(dv), "")


# --- values going to the server --------------------------------------------------------

VT: TypeAlias = ua.VariantType  # asyncua is read as untyped (see pyproject): this names its type for the checker
_INT_RANGES = {
    VT.SByte: (-(2**7), 2**7 - 1),
    VT.Byte: (0, 2**8 - 1),
    VT.Int16: (-(2**15), 2**15 - 1),
    VT.UInt16: (0, 2**16 - 1),
    VT.Int32: (-(2**31), 2**31 - 1),
    VT.UInt32: (0, 2**32 - 1),
    VT.Int64: (-(2**63), 2**63 - 1),
    VT.UInt64: (0, 2**64 - 1),
}
# Standard ns=0 DataTypes that are not built-ins but subtypes of one, so no
# Browse is needed for the common cases.
_ALIASES = {
    ua.ObjectIds.Duration: VT.Double,
    ua.ObjectIds.UtcTime: VT.DateTime,
    ua.ObjectIds.Counter: VT.UInt32,
    ua.ObjectIds.IntegerId: VT.UInt32,
    ua.ObjectIds.LocaleId: VT.String,
    ua.ObjectIds.NumericRange: VT.String,
    ua.ObjectIds.Enumeration: VT.Int32,
    ua.ObjectIds.Image: VT.ByteString,
    ua.ObjectIds.Structure: VT.ExtensionObject,
}
_ABSTRACT = {ua.ObjectIds.BaseDataType, ua.ObjectIds.Number, ua.ObjectIds.Integer, ua.ObjectIds.UInteger}


def builtin_of(datatype: ua.NodeId) -> VT | bool | None:
    """The built-in type of a DataType NodeId if known without asking the server.

    Returns a VariantType, None for abstract types (the value decides), or False
    when the server must be asked for the supertype.
    """
    if datatype.NamespaceIndex != 0 or not isinstance(datatype.Identifier, int):
        return False
    ident = datatype.Identifier
    if ident in _ABSTRACT:
        return None
    if 1 <= ident <= 25:
        return VT(ident)
    if ident in _ALIASES:
        return _ALIASES[ident]
    return False


def _scalar(value: Any, vtype: VT, what: str) -> Any:
    if vtype in _INT_RANGES:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise TypeError(f"{what}: {value!r} is not an integer ({vtype.name})")
        lo, hi = _INT_RANGES[vtype]
        if not lo <= int(value) <= hi:
            raise TypeError(f"{what}: {value!r} is out of range for {vtype.name} ({lo}..{hi})")
        return int(value)
    if vtype in (VT.Float, VT.Double):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{what}: {value!r} is not a number ({vtype.name})")
        if vtype is VT.Float and math.isfinite(value) and abs(value) > 3.4028234663852886e38:
            raise TypeError(f"{what}: {value!r} is out of range for Float")
        return float(value)
    if vtype is VT.Boolean:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise TypeError(f"{what}: {value!r} is not a Boolean")
    if vtype is VT.String:
        if not isinstance(value, str):
            raise TypeError(f"{what}: {value!r} is not a String")
        return value
    if vtype is VT.DateTime:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        raise TypeError(f"{what}: {value!r} is not a DateTime (datetime or Unix seconds)")
    if vtype is VT.ByteString:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        raise TypeError(f"{what}: {value!r} is not a ByteString")
    if vtype is VT.LocalizedText and isinstance(value, str):
        return ua.LocalizedText(value)
    return value


def to_variant(value: Any, vtype: VT | None, what: str) -> ua.Variant:
    """A Variant of the declared built-in type; raises TypeError when the value cannot be one."""
    if isinstance(value, ua.Variant):
        return value
    if vtype is None or vtype is VT.Null or vtype is VT.Variant:
        return ua.Variant(value)
    if isinstance(value, (list, tuple)):
        return ua.Variant([_scalar(v, vtype, what) for v in value], vtype, is_array=True)
    return ua.Variant(_scalar(value, vtype, what), vtype)
