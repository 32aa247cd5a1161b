"""Times and durations as the API accepts and shows them.

Accepted times: ISO 8601 ("2026-11-23T08:00:00Z", a naive time is UTC),
epoch seconds ("1795420800.5"), relative to now ("-1h", "-15m", "now").
Shown times: epoch seconds and ISO 8601 UTC with milliseconds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi import HTTPException

UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
# Spellings people write for the same units ("10min", "2 hours"); each maps to one of UNIT_SECONDS.
UNIT_NAMES = {
    "ms": "ms", "msec": "ms", "millisecond": "ms", "milliseconds": "ms",
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "d": "d", "day": "d", "days": "d",
    "w": "w", "wk": "w", "week": "w", "weeks": "w",
}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")
DURATION_FORMS = ("a number with a unit: 500ms, 30s, 10min (or 10m), 2h, 1d, 1w; units may be spelled "
                  "ms, s/sec/seconds, m/min/minutes, h/hr/hours, d/days, w/weeks; a bare number is seconds")
TIME_FORMS = "ISO 8601 (2026-11-23T08:00:00Z), epoch seconds (1795420800) or relative to now (-1h, -15min, now)"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_duration(text: str, name: str) -> float:
    """"60s", "5m", "10min", "1h", "2 hours", "500ms", "30" (seconds) -> seconds."""
    m = _DURATION.fullmatch(text)
    unit = UNIT_NAMES.get(m.group(2).lower() if m.group(2) else "s") if m else None
    if m is None or unit is None:
        raise HTTPException(422, f"{name}: '{text}' is not a duration; give {DURATION_FORMS}")
    seconds = float(m.group(1)) * UNIT_SECONDS[unit]
    if seconds <= 0:
        raise HTTPException(422, f"{name}: '{text}' must be longer than zero")
    return seconds


def parse_time(text: str, name: str, now: float) -> float:
    """One point in time -> epoch seconds; 422 naming the parameter when it is not one."""
    value = text.strip()
    if value == "now":
        return now
    if value.startswith("-") and value[1:2].isdigit() and value[-1].isalpha():
        return now - parse_duration(value[1:], name)
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise HTTPException(422, f"{name}: '{text}' is not a time; give {TIME_FORMS}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # the line runs on UTC; a local guess would shift data silently
    return dt.timestamp()


def time_range(start: str | None, end: str | None, now: float, default_span: float) -> tuple[float, float]:
    """[start, end] in epoch seconds; end defaults to now, start to end - default_span."""
    t_end = parse_time(end, "end", now) if end else now
    t_start = parse_time(start, "start", now) if start else t_end - default_span
    if t_end < t_start:
        raise HTTPException(422, f"end ({iso(t_end)}) is before start ({iso(t_start)}); swap them or move end later")
    return t_start, t_end


def report_range(start: str | None, end: str | None, now: float, default_span: float,
                 max_span: float) -> tuple[float, float]:
    """A report's range: it must last, and last at most `max_span` (one request stays seconds, not minutes)."""
    t0, t1 = time_range(start, end, now, default_span)
    if t1 <= t0:
        raise HTTPException(422, "start and end are the same time; give a range that lasts")
    if t1 - t0 > max_span:
        raise HTTPException(422, f"the range lasts {(t1 - t0) / 86400:.0f} days; ask at most "
                                 f"{max_span / 86400:.0f} days at once, e.g. month by month")
    return t0, t1


def optional_range(start: str | None, end: str | None, now: float) -> tuple[float | None, float | None]:
    """Both ends optional (open range); still 422 when end is before start."""
    t_start = parse_time(start, "start", now) if start else None
    t_end = parse_time(end, "end", now) if end else None
    if t_start is not None and t_end is not None and t_end < t_start:
        raise HTTPException(422, f"end ({iso(t_end)}) is before start ({iso(t_start)}); swap them or move end later")
    return t_start, t_end
