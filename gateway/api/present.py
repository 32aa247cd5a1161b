"""How values look at the edge: enum names with codes, UCUM units with symbols, named quality.

The spec is the only source of names and units; lookups are cached per
(class, path) because the live stream presents every sample it sends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from gateway.api.timeparams import iso
from gateway.samples import Quality, Sample
from interface_spec import Spec

QUALITY_NAMES = {int(q): q.name.lower() for q in Quality}
JSON_FIELDS = ("payload", "args", "params")


class Presenter:
    def __init__(self, spec: Spec):
        self.spec = spec
        self._vars: dict[tuple[str, str], tuple[str | None, str]] = {}

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

    def enum_value(self, cls: str, path: str, value: Any) -> tuple[Any, int | None]:
        """(shown value, raw code): an enum code becomes its member name."""
        enum, _ = self.var_info(cls, path)
        if enum and isinstance(value, int) and not isinstance(value, bool):
            return self.spec.enum_name(enum, value) or value, value
        return value, None

    def sample(self, cls: str, s: Sample) -> dict[str, Any]:
        value, raw = self.enum_value(cls, s.path, s.value)
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
        """One row of a live 'samples' message: [path, value, unit, quality, reason, source_ts]."""
        path, value, unit, quality, reason, source_ts = row[:6]
        shown, raw = self.enum_value(cls, path, value)
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
