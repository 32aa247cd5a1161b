"""Sparkplug B payloads: the spec's variables as metrics, with their datatype, unit, range and quality.

Encoding is protobuf (`sparkplug_b.proto`, the specification's schema; `sparkplug_b_pb2` generated
from it). Chosen over a Sparkplug library because the ones on PyPI either carry no property sets
(pysparkplug 0.6: no engUnit, ranges or quality in births) or bring their own MQTT client; the
gateway needs the payload only, beside the aiomqtt connection it already has. Measured with
bench/forward.py --sparkplug: see bench/README.md.

Names. A metric is named by its spec path with "/" between levels and the array index as a level
of its own (`channel[3].voltage` is `channel/3/voltage`), as Sparkplug hosts show folders.
Quality travels as the metric property "Quality" in the OPC DA codes Sparkplug hosts use
(192 good, 64 uncertain, 0 bad), on every metric in a birth and on data metrics that are not good.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from gateway.forward.sparkplug import sparkplug_b_pb2
from gateway.samples import Quality
from interface_spec.model import Variable

Payload: Any = sparkplug_b_pb2.Payload  # type: ignore[attr-defined]  # protoc's module builds its classes at import

# Sparkplug B datatypes (specification 6.4.16).
INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64 = 1, 2, 3, 4, 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT = 9, 10, 11, 12, 13, 14
QUALITY = {Quality.GOOD: 192, Quality.UNCERTAIN: 64, Quality.BAD: 0}  # OPC DA quality codes
_INDEX = re.compile(r"\[(\d+)\]")
_INT_FIELD = {INT8, INT16, INT32, UINT8, UINT16, UINT32}  # carried in int_value (uint32 on the wire)
_LONG_FIELD = {INT64, UINT64, DATETIME}


def metric_name(path: str) -> str:
    return "/".join(_INDEX.sub(r"/\1", path).split("."))


def datatype(var: Variable | None, value: Any = None) -> int:
    """The Sparkplug datatype of a spec variable (or, outside the spec, of a value)."""
    if var is None:
        if isinstance(value, bool):
            return BOOLEAN
        if isinstance(value, int):
            return INT64
        if isinstance(value, float):
            return DOUBLE
        return STRING
    bits = var.bits or 32
    if var.type == "float":
        return DOUBLE if bits == 64 else FLOAT
    if var.type == "int":
        return {16: INT16, 32: INT32, 64: INT64}[bits]
    if var.type == "uint":
        return {16: UINT16, 32: UINT32, 64: UINT64}[bits]
    if var.type == "enum":
        return INT32  # the spec's code; the member names are in the spec's docs
    if var.type == "bool":
        return BOOLEAN
    if var.type == "timestamp":
        return DATETIME
    return STRING


def set_value(m: Any, dtype: int, value: Any) -> None:
    """Put `value` in the field its datatype uses; a value that does not fit is sent as null."""
    try:
        if value is None or (isinstance(value, float) and not math.isfinite(value) and dtype not in (FLOAT, DOUBLE)):
            m.is_null = True
        elif dtype in _INT_FIELD:
            # Signed values travel as their two's complement in the unsigned field (specification 6.4.16).
            m.int_value = int(value) & 0xFFFFFFFF
        elif dtype in _LONG_FIELD:
            m.long_value = (int(value * 1000) if dtype == DATETIME else int(value)) & 0xFFFFFFFFFFFFFFFF
        elif dtype == FLOAT:
            m.float_value = float(value)
        elif dtype == DOUBLE:
            m.double_value = float(value)
        elif dtype == BOOLEAN:
            m.boolean_value = bool(value)
        else:
            m.string_value = value if isinstance(value, str) else str(value)
    except (TypeError, ValueError, OverflowError):
        m.ClearField("value")
        m.is_null = True


def add_property(m: Any, key: str, value: Any) -> None:
    props = m.properties
    props.keys.append(key)
    pv = props.values.add()
    if isinstance(value, bool):
        pv.type, pv.boolean_value = BOOLEAN, value
    elif isinstance(value, int):
        pv.type, pv.int_value = INT32, value & 0xFFFFFFFF
    elif isinstance(value, float):
        pv.type, pv.double_value = DOUBLE, value
    else:
        pv.type, pv.string_value = STRING, str(value)


@dataclass(frozen=True)
class MetricDef:
    """A metric as its birth declares it."""

    path: str
    alias: int
    dtype: int
    var: Variable | None
    unit_symbol: str


def birth_metric(payload: Any, d: MetricDef, value: Any, quality: Quality | None, ts_ms: int) -> None:
    m = payload.metrics.add()
    m.name, m.alias, m.datatype, m.timestamp = metric_name(d.path), d.alias, d.dtype, ts_ms
    set_value(m, d.dtype, value)
    if d.unit_symbol:
        add_property(m, "engUnit", d.unit_symbol)
    if d.var is not None:
        if d.var.range is not None:
            add_property(m, "engLow", float(d.var.range[0]))
            add_property(m, "engHigh", float(d.var.range[1]))
        if d.var.doc:
            add_property(m, "Documentation", d.var.doc)
        if d.var.enum:
            add_property(m, "enum", d.var.enum)
    add_property(m, "Quality", QUALITY.get(quality, 0) if quality is not None else 0)


def data_metric(payload: Any, d: MetricDef, value: Any, quality: Quality, ts_ms: int, historical: bool) -> None:
    m = payload.metrics.add()
    # The datatype goes with data too (the specification says SHOULD NOT, not MUST NOT): Eclipse Tahu's
    # JavaScript decoder, under Node-RED's Sparkplug nodes, reads a value only with its type at hand.
    m.alias, m.timestamp, m.datatype = d.alias, ts_ms, d.dtype
    if historical:
        m.is_historical = True
    set_value(m, d.dtype, value)
    if quality != Quality.GOOD:
        add_property(m, "Quality", QUALITY.get(quality, 0))


def value_of(m: Any) -> Any:
    """A received metric's value (commands: NCMD, DCMD)."""
    field = m.WhichOneof("value")
    return None if field is None else getattr(m, field)
