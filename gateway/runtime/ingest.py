"""The hot path: raw readings in, validated spec samples out.

Every value is checked against the spec: NaN and wrong types become BAD,
out-of-range values UNCERTAIN (kept, so nothing is lost), unknown enum codes
BAD. A failed read is a BAD sample with the adapter's reason — never the last
good value re-sent as fresh.
"""

from __future__ import annotations

import math

from gateway.adapters.base import RawReading
from gateway.mapping.compile import Target
from gateway.samples import Quality, Sample

GOOD, UNCERTAIN, BAD = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD


def convert(equipment: str, t: Target, raw: object, source_ts: float, gateway_ts: float) -> Sample:
    kind = t.kind
    if t.bit is not None and isinstance(raw, int) and not isinstance(raw, bool):
        raw = (raw >> t.bit) & t.bit_mask
    if kind == "str":
        if isinstance(raw, str):
            return Sample(equipment, t.path, raw.rstrip("\x00 "), t.unit, source_ts, gateway_ts, GOOD)
        return Sample(equipment, t.path, None, t.unit, source_ts, gateway_ts, BAD, "wrong_type")
    if isinstance(raw, bool):
        raw = int(raw)
    if not isinstance(raw, (int, float)):
        return Sample(equipment, t.path, None, t.unit, source_ts, gateway_ts, BAD, "wrong_type")
    if isinstance(raw, float) and not math.isfinite(raw) and kind != "num":
        # No code or flag is NaN or infinite; int() of one would raise out of the hot path.
        return Sample(equipment, t.path, None, t.unit, source_ts, gateway_ts, BAD, "nan" if math.isnan(raw) else "infinite")
    if kind == "enum":
        code = int(raw)
        if t.enum_map is not None:
            mapped = t.enum_map.get(code)
            if mapped is None:
                return Sample(equipment, t.path, code, t.unit, source_ts, gateway_ts, BAD, f"unknown_vendor_code:{code}")
            code = mapped
        if t.enum_codes is not None and code not in t.enum_codes:
            return Sample(equipment, t.path, code, t.unit, source_ts, gateway_ts, BAD, "unknown_enum_code")
        return Sample(equipment, t.path, code, t.unit, source_ts, gateway_ts, GOOD)
    if kind == "bool":
        return Sample(equipment, t.path, bool(raw), t.unit, source_ts, gateway_ts, GOOD)
    value = raw * t.scale + t.offset if (t.scale != 1.0 or t.offset != 0.0) else raw
    if isinstance(value, float) and not math.isfinite(value):
        return Sample(equipment, t.path, None, t.unit, source_ts, gateway_ts, BAD, "nan" if math.isnan(value) else "infinite")
    if value < t.lo or value > t.hi:
        return Sample(equipment, t.path, value, t.unit, source_ts, gateway_ts, UNCERTAIN, "out_of_range")
    return Sample(equipment, t.path, value, t.unit, source_ts, gateway_ts, GOOD)


def to_samples(
    equipment: str, targets: dict[str, list[Target]], readings: list[RawReading], gateway_ts: float
) -> list[Sample]:
    out: list[Sample] = []
    append = out.append
    for r in readings:
        ts_list = targets.get(r.key)
        if not ts_list:
            continue
        ts = r.source_ts if r.source_ts is not None else gateway_ts
        if r.error:
            if r.value is not None and r.error.startswith("Uncertain"):
                # OPC UA Uncertain*: the value is usable but not trusted; keep it, say why.
                for t in ts_list:
                    s = convert(equipment, t, r.value, ts, gateway_ts)
                    append(s._replace(quality=max(s.quality, UNCERTAIN), reason=s.reason or r.error,
                                      raw=r.value if t.keeps_raw else None))
                continue
            for t in ts_list:
                append(Sample(equipment, t.path, None, t.unit, ts, gateway_ts, BAD, r.error))
            continue
        raw = r.value
        for t in ts_list:
            if t.keeps_raw:
                # What the machine sent rides along only where the gateway changed it: plain values pay nothing.
                append(convert(equipment, t, raw, ts, gateway_ts)._replace(raw=raw))
                continue
            # The common case inline (a number, in range, as it came): what convert() would return, without its call.
            if t.kind == "num" and t.bit is None and t.scale == 1.0 and t.offset == 0.0 \
                    and (raw.__class__ is float or raw.__class__ is int) \
                    and t.lo <= raw <= t.hi and raw - raw == 0:  # NaN fails the range, an infinity the difference
                append(Sample(equipment, t.path, raw, t.unit, ts, gateway_ts, GOOD))
                continue
            append(convert(equipment, t, raw, ts, gateway_ts))
    return out
