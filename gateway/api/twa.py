"""The time-weighted average of a series per time bucket, from its raw samples.

The plain mean counts samples: a speed that went 30 -> 35 five seconds into a
minute and held 35 averages 32.5 over two samples, though it ran at 35 for
55 of the 60 seconds. The time-weighted average weighs each value by how long
it held: (30 x 5 + 35 x 55) / 60 = 34.58.

A GOOD sample's value holds until the next sample of the series, whatever its
quality; a BAD sample (a link-down marker, an out-of-range reading) holds
nothing, so the time after it counts for no value and the average is over
the time that was known. The last sample holds until the end of the range.
Buckets start at multiples of the bucket width (as the store's do), and only
buckets holding samples get a row: history never fabricates values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

GOOD = 0


def time_weighted(rows: Iterable[dict[str, Any]], start: float, end: float, bucket_s: float) -> dict[float, float | None]:
    """{bucket start: time-weighted average or None} for [start, end), from raw rows sorted by ts.

    Rows before `start` only say what value held when the range began.
    """
    area: dict[float, float] = {}
    known: dict[float, float] = {}
    holding: set[float] = set()  # buckets holding at least one sample
    prev_ts: float | None = None
    prev_value: float | None = None

    def hold(t0: float, t1: float, value: float) -> None:
        t0, t1 = max(t0, start), min(t1, end)
        while t0 < t1:
            b = math.floor(t0 / bucket_s) * bucket_s
            stop = min(t1, b + bucket_s)
            area[b] = area.get(b, 0.0) + value * (stop - t0)
            known[b] = known.get(b, 0.0) + (stop - t0)
            t0 = stop

    for r in rows:
        ts = r["ts"]
        if ts >= end:
            break
        if prev_ts is not None and prev_value is not None:
            hold(prev_ts, ts, prev_value)
        value = r.get("value")
        good = r.get("quality", GOOD) == GOOD and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
        prev_ts, prev_value = ts, (float(value) if good and value is not None else None)
        if ts >= start:
            holding.add(math.floor(ts / bucket_s) * bucket_s)
    if prev_ts is not None and prev_value is not None:
        hold(prev_ts, end, prev_value)
    return {b: (area[b] / known[b] if known.get(b) else None) for b in sorted(holding)}
