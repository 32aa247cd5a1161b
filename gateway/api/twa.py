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

import numpy as np

from gateway.store.base import SampleColumns

GOOD = 0


def time_weighted(c: SampleColumns, start: float, end: float, bucket_s: float) -> dict[float, float | None]:
    """{bucket start: time-weighted average or None} for [start, end), from a series' raw samples (oldest first).

    Samples before `start` only say what value held when the range began. Column-wise: a day at 5 Hz is
    432,000 samples, and each interval a value held is cut at the bucket edges it crosses in one pass.
    """
    n = int(np.searchsorted(c.ts, end, side="left"))
    if n == 0:
        return {}
    ts = c.ts[:n]
    numeric = np.fromiter((v.__class__ is float or v.__class__ is int for v in c.values[:n]), dtype=bool, count=n)
    good = (c.quality[:n] == GOOD) & numeric & np.isfinite(c.number[:n])
    # Each GOOD sample's value holds until the next sample (whatever its quality), the last until `end`.
    held_from = np.clip(ts, start, end)
    held_to = np.clip(np.append(ts[1:], end), start, end)
    keep = good & (held_to > held_from)
    s, e, v = held_from[keep], held_to[keep], c.number[:n][keep]
    first = np.floor(s / bucket_s).astype(np.int64)
    pieces = np.ceil(e / bucket_s).astype(np.int64) - first  # the buckets each interval crosses
    pieces = np.maximum(pieces, 1)
    which = np.repeat(np.arange(len(s)), pieces)
    bucket = first[which] + (np.arange(len(which)) - np.repeat(np.cumsum(pieces) - pieces, pieces))
    lo = np.maximum(s[which], bucket * bucket_s)
    hi = np.minimum(e[which], (bucket + 1) * bucket_s)
    span = np.maximum(hi - lo, 0.0)
    area: dict[int, float] = {}
    known: dict[int, float] = {}
    if len(bucket):
        keys, inverse = np.unique(bucket, return_inverse=True)
        for k, a, t in zip(keys.tolist(), np.bincount(inverse, v[which] * span).tolist(),
                           np.bincount(inverse, span).tolist()):
            area[k], known[k] = a, t
    holding = np.unique(np.floor(ts[ts >= start] / bucket_s).astype(np.int64)).tolist()  # buckets holding a sample
    return {k * bucket_s: (area[k] / known[k] if known.get(k) else None) for k in holding}
