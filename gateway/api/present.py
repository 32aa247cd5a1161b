"""How values look at the edge: enum names with codes, UCUM units with symbols, named quality,
floats rounded to the resolution the spec gives (1500.0000000000002 is shown as 1500.0).

The spec is the only source of names and units; lookups are cached per
(class, path) because the live stream presents every sample it sends.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from gateway.api.timeparams import iso
from gateway.samples import Quality, Sample
from interface_spec import Spec

QUALITY_NAMES = {int(q): q.name.lower() for q in Quality}
ROUNDED_AGGREGATES = ("avg", "min", "max", "first", "last", "twa")  # values of the variable; count and bad are not
JSON_FIELDS = ("payload", "args", "params")


class Presenter:
    def __init__(self, spec: Spec):
        self.spec = spec
        self._vars: dict[tuple[str, str], tuple[str | None, str]] = {}
        self._decimals: dict[tuple[str, str], int | None] = {}

    def unit(self, code: str | None) -> dict[str, str]:
        code = code or "1"  # samples carry "" for dimensionless and enums; the spec writes "1"
        u = self.spec.units.get(code)
        return {"code": code, "symbol": u.symbol if u else code}

    def var_info(self, cls: str, path: str) -> tuple[str | None, str]:
        """(enum name or None, spec unit) of a path; (None, "") for paths outside the spec."""
        key = (cls, path)
        info = self._vars.get(key)
        if info is None:
            try:
                var = self.spec.variable(cls, path).var
                info = (var.enum, var.unit)
            except KeyError:
                info = (None, "")
            self._vars[key] = info
        return info

    def decimals(self, cls: str, path: str) -> int | None:
        """Decimal places of the variable's resolution; None when the spec gives none (or the path is not the spec's)."""
        key = (cls, path)
        if key not in self._decimals:
            try:
                self._decimals[key] = self.spec.variable(cls, path).var.decimals
            except KeyError:
                self._decimals[key] = None
        return self._decimals[key]

    def rounded(self, cls: str, path: str, value: Any) -> Any:
        """A float to the variable's resolution; anything else as it is."""
        if type(value) is float and math.isfinite(value):
            places = self.decimals(cls, path)
            if places is not None:
                return round(value, places)
        return value

    def aggregate(self, cls: str, path: str, name: str, value: Any) -> Any:
        """One aggregate of a bucket as shown: values of the variable (means too) to its resolution, counts as
        they are. One rounding for all keeps min <= avg <= max true of what is shown (rounding is monotonic)."""
        return self.rounded(cls, path, value) if name in ROUNDED_AGGREGATES else value

    def bucket(self, cls: str, path: str, row: dict[str, Any]) -> dict[str, Any]:
        """A history bucket with its value aggregates rounded."""
        return {k: self.aggregate(cls, path, k, v) for k, v in row.items()}

    def enum_value(self, cls: str, path: str, value: Any) -> tuple[Any, int | None]:
        """(shown value, raw code): an enum code becomes its member name, a float is rounded to its resolution."""
        enum, _ = self.var_info(cls, path)
        if enum and isinstance(value, int) and not isinstance(value, bool):
            return self.spec.enum_name(enum, value) or value, value
        return self.rounded(cls, path, value), None

    def sample(self, cls: str, s: Sample) -> dict[str, Any]:
        value, raw = self.enum_value(cls, s.path, s.value)
        raw = s.raw if s.raw is not None else raw  # what the machine sent, where the gateway changed it
        return {
            "path": s.path,
            "value": value,
            "raw": raw,
            "unit": self.unit(s.unit or self.var_info(cls, s.path)[1]),
            "quality": QUALITY_NAMES.get(int(s.quality), str(s.quality)),
            "reason": s.reason,
            "source_ts": s.source_ts,
            "source_time": iso(s.source_ts),
            "gateway_ts": s.gateway_ts,
            "gateway_time": iso(s.gateway_ts),
        }

    def live_row(self, cls: str, row: list[Any]) -> dict[str, Any]:
        """One row of a live 'samples' message: [path, value, unit, quality, reason, source_ts, raw]."""
        path, value, unit, quality, reason, source_ts = row[:6]
        shown, raw = self.enum_value(cls, path, value)
        if len(row) > 6 and row[6] is not None:
            raw = row[6]  # what the machine sent, where the gateway changed it
        return {"path": path, "value": shown, "raw": raw, "unit": self.unit(unit or self.var_info(cls, path)[1]),
                "quality": QUALITY_NAMES.get(quality, str(quality)), "reason": reason, "source_ts": source_ts}

    @staticmethod
    def alarm(a: dict[str, Any]) -> dict[str, Any]:
        return {**a, "raised_time": iso(a.get("raised_ts"))}

    @staticmethod
    def row(row: Any) -> dict[str, Any]:
        """A store row as a dict; every epoch field "<x>_ts" (or "ts") gains an ISO twin "<x>_time"."""
        d = dict(row._asdict() if hasattr(row, "_asdict") else row)
        for key in JSON_FIELDS:
            if isinstance(d.get(key), str) and d[key][:1] in ("{", "["):
                d[key] = json.loads(d[key])  # a store may keep structured fields as JSON text
        for key in [k for k in d if k == "ts" or k.endswith("_ts")]:
            value = d[key]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                d["time" if key == "ts" else key[:-3] + "_time"] = iso(value)
        return d


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    # Brackets are literal (paths index arrays as "channel[3]"); * matches anything, ? one character.
    parts = []
    for ch in pattern:
        parts.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    return re.compile("".join(parts))


class PathFilter:
    """Glob patterns over spec paths: "channel[*].voltage", "dryer_zone[2].*", "state.*".

    Several patterns may be given (repeated, or comma-separated); a path matches any.
    """

    def __init__(self, patterns: Iterable[str] | None):
        pats = [p.strip() for raw in (patterns or []) for p in raw.split(",") if p.strip()]
        self.patterns = pats
        self._res = [_glob_regex(p) for p in pats]

    def __bool__(self) -> bool:
        return bool(self._res)

    def match(self, path: str) -> bool:
        return not self._res or any(r.fullmatch(path) for r in self._res)
