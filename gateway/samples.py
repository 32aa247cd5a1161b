"""The vocabulary that flows through the gateway's hot path.

Plain tuples, not pydantic models: millions of samples pass through here.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple


class Quality(IntEnum):
    """Quality of a value, after OPC UA StatusCode severity (good/uncertain/bad)."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


class Sample(NamedTuple):
    """One value of one spec variable of one machine, as the gateway recorded it."""

    equipment: str
    path: str  # spec path, e.g. "dryer_zone[2].air_temperature"
    value: Any  # float | int | bool | str | None (None only with BAD quality)
    unit: str  # UCUM code from the spec, "" for dimensionless/enums
    source_ts: float  # Unix seconds, from the equipment (or gateway time if it sends none)
    gateway_ts: float  # Unix seconds, when the gateway received it
    quality: Quality
    reason: str = ""  # why quality is not GOOD: "out_of_range", "nan", "link_down", ...
    # What the machine sent, where the gateway changed it (a vendor's enum code, an unscaled number, the word a bit
    # field came from); None where the value is what it sent. Shown live, not stored.
    raw: Any = None
