"""The line's shift calendar (`shifts:` in the line file) and the shift occurrences in a time range.

```yaml
shifts:
  timezone: Europe/Berlin        # IANA name; UTC when left out
  calendar:
    - {name: early, start: "06:00", end: "14:00"}
    - {name: late,  start: "14:00", end: "22:00"}
    - {name: night, start: "22:00", end: "06:00"}   # ends the next day
```

Every shift runs every day, from its start to its end in local time (an end at
or before the start is on the next day). Shifts may leave gaps (time outside
every shift is simply not reported per shift) but may not overlap: a second of
the line belongs to at most one shift, so per-shift figures add up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def iana_zone(value: str) -> str:
    """A time zone setting: an IANA name, checked where it is read."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{value}' is not an IANA time zone (e.g. UTC, Europe/Berlin, Asia/Shanghai)") from None
    return value


TimeZone = Annotated[str, AfterValidator(iana_zone)]


class Shift(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_ -]*$")
    start: str  # "HH:MM", local time
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"'{value}' is not a time of day; write HH:MM, e.g. \"06:00\"")
        return value

    def minutes(self) -> tuple[int, int]:
        """Start and end in minutes after local midnight; the end is after the start (+1440 for the next day)."""
        s = int(self.start[:2]) * 60 + int(self.start[3:])
        e = int(self.end[:2]) * 60 + int(self.end[3:])
        return s, e if e > s else e + 1440


class Shifts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: TimeZone = "UTC"
    calendar: list[Shift] = Field(min_length=1)

    @model_validator(mode="after")
    def _no_overlap(self) -> Shifts:
        names: set[str] = set()
        spans: list[tuple[int, int, str]] = []
        for i, sh in enumerate(self.calendar):
            if sh.name in names:
                raise ValueError(f"calendar[{i}].name: '{sh.name}' is used twice")
            names.add(sh.name)
            s, e = sh.minutes()
            spans += [(s, e, sh.name), (s + 1440, e + 1440, sh.name)]  # a night shift reaches into the next day
        for s1, e1, n1 in spans:
            for s2, e2, n2 in spans:
                if n1 < n2 and s1 < e2 and s2 < e1:
                    raise ValueError(f"shifts '{n1}' and '{n2}' overlap; a moment belongs to one shift at most")
        return self


@dataclass(frozen=True)
class Occurrence:
    name: str
    day: date  # the local date the shift starts on
    start: float  # epoch seconds, clipped to the asked range
    end: float


def occurrences(shifts: Shifts, t0: float, t1: float) -> list[Occurrence]:
    """Every shift occurrence overlapping [t0, t1), clipped to it, in time order."""
    tz = ZoneInfo(shifts.timezone)
    first = datetime.fromtimestamp(t0, UTC).astimezone(tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(t1, UTC).astimezone(tz).date()
    out = []
    day = first
    while day <= last:
        midnight = datetime.combine(day, time(0), tz)
        for sh in shifts.calendar:
            s, e = sh.minutes()
            # Wall-clock arithmetic in the zone, then to UTC: a shift keeps its local hours across DST.
            a = _local(midnight, s, tz).timestamp()
            b = _local(midnight, e, tz).timestamp()
            lo, hi = max(a, t0), min(b, t1)
            if hi > lo:
                out.append(Occurrence(sh.name, day, lo, hi))
        day += timedelta(days=1)
    return sorted(out, key=lambda o: o.start)


def _local(midnight: datetime, minutes: int, tz: ZoneInfo) -> datetime:
    d = midnight.date() + timedelta(days=minutes // 1440)
    m = minutes % 1440
    return datetime.combine(d, time(m // 60, m % 60), tz)
