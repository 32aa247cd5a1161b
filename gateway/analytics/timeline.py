"""Timelines read from the store: what a state variable was when, and when a counter moved.

Method. A series is sample-and-hold: a stored value holds from its source time
until the next sample. A BAD sample (the gateway's link-down marker) starts an
unobserved stretch (value None) that lasts until the next usable sample, and
every link-down interval of `link_history` is unobserved whatever the samples
say. The value in force at the start of a range is the last GOOD value before
it.

Cost. A state series sampled every 200 ms has 432,000 rows a day, nearly all
repeating the same value. The range is therefore read bucketed first (buckets
that are multiples of 10 s come from the store's rollup); only a bucket whose
min, max, first and last are not all the value already in force, or that holds
a non-GOOD sample, is read raw. A steady day is a few thousand bucket rows and
the raw rows of the few minutes in which something changed.

Times are integer microseconds inside this room, so durations add up to a range
exactly; they are shown as seconds.
"""

from __future__ import annotations

import asyncio
import bisect
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.store.base import Store

T = TypeVar("T")
BAD = 2  # Quality.BAD as the store returns it
US = 1_000_000
RAW_PAGE = 10_000
LOOKBACKS_S = (3600.0, 30 * 86400.0)  # where to look for the value in force before a range
MAX_BUCKETS = 20_000
# Buckets to read raw less than this apart are read as one range: a read costs a query and the decoding
# of whole chunks, so reading the steady minutes between two changes is cheaper than a second read
# (a sealed day of 300 stops per machine: 1.7-3.0 s at 300 s against 3.8-4.9 s reading each bucket alone).
MERGE_GAP_S = 300.0
COUNTER_BUCKET_S = 60.0  # increments need no exact time: a unit is placed in its minute
# Store reads in flight at once for one report: the embedded store reads on a pool of 4 threads.
READS_IN_FLIGHT = 4
UINT32 = 1 << 32


def us(t: float) -> int:
    return round(t * US)


def seconds(t_us: int) -> float:
    return t_us / US


@dataclass(frozen=True)
class Segment:
    start: int  # µs, inclusive
    end: int  # µs, exclusive
    value: Any  # None: unobserved

    @property
    def length(self) -> int:
        return self.end - self.start


Timeline = list[Segment]


def bucket_for(t0: float, t1: float, smallest: float = 10.0) -> float:
    """A multiple of 10 s (the store's rollup cell), at least `smallest`, giving at most MAX_BUCKETS buckets.

    Small buckets make the raw reads around a state change short: a raw read
    costs about 2 ms plus the rows it returns, a bucket row far less.
    """
    span = max(t1 - t0, 1.0)
    return max(smallest, 10.0 * -(-span // (10.0 * MAX_BUCKETS)))


async def raw_rows(store: Store, equipment: str, path: str, t0: float, t1: float) -> AsyncIterator[dict[str, Any]]:
    """Every raw sample with t0 <= ts < t1, oldest first, paged (rows sharing a timestamp are not lost)."""
    start, skip = t0, 0
    while True:
        rows = await store.history(equipment, path, start, t1, limit=RAW_PAGE)
        for row in rows[skip:]:
            yield row
        if len(rows) < RAW_PAGE:
            return
        last = rows[-1]["ts"]
        same = sum(1 for r in rows if r["ts"] == last)
        if same == len(rows):
            raise RuntimeError(f"{equipment} {path}: more than {RAW_PAGE} samples share the time {last}")
        start, skip = last, same


async def value_before(store: Store, equipment: str, path: str, t: float) -> Any:
    """The last GOOD numeric value of a series before t (None when there is none within 30 days)."""
    for span in LOOKBACKS_S:
        rows = await store.history(equipment, path, t - span, t, bucket_s=span, agg=["last"])
        found = [r["last"] for r in rows if r.get("last") is not None]
        if found:
            return found[-1]
    return None


async def changes(store: Store, equipment: str, path: str, t0: float, t1: float,
                  initial: Any) -> list[tuple[float, Any]]:
    """(ts, new value) of every change in [t0, t1) after `initial`; a BAD sample changes it to None."""
    bucket = bucket_for(t0, t1)
    rows = await store.history(equipment, path, t0, t1, bucket_s=bucket, agg=["first", "last", "min", "max"],
                               limit=int((t1 - t0) / bucket) + 3)
    # A bucket is read raw unless it holds only the value the bucket before it ended on (values hold across
    # buckets without samples); after a bucket with a BAD sample the next is read too, since "last" is over
    # GOOD samples only and the value may have ended unobserved.
    wanted: list[float] = []
    held, after_bad = initial, False
    for row in rows:
        if after_bad or row["bad"] or row["min"] is None or not (
                row["min"] == row["max"] == row["first"] == row["last"] == held):
            wanted.append(row["ts"])
        held, after_bad = row["last"], row["bad"] > 0
    out: list[tuple[float, Any]] = []
    current = initial
    for samples in await _read_buckets(store, equipment, path, wanted, bucket, t0, t1):
        for s in samples:
            value = None if s["quality"] == BAD else s["value"]
            if value != current:
                out.append((s["ts"], value))
                current = value
    return out


async def _read_buckets(store: Store, equipment: str, path: str, starts: list[float], bucket: float,
                        t0: float, t1: float) -> list[list[dict[str, Any]]]:
    """The raw samples of the given buckets, those less than MERGE_GAP_S apart read as one range."""
    ranges: list[list[float]] = []
    for b in starts:
        if ranges and b - ranges[-1][1] < MERGE_GAP_S:
            ranges[-1][1] = b + bucket
        else:
            ranges.append([b, b + bucket])

    async def read(a: float, b: float) -> list[dict[str, Any]]:
        return [r async for r in raw_rows(store, equipment, path, max(a, t0), min(b, t1))]

    return await bounded([read(a, b) for a, b in ranges])


async def bounded(coros: Sequence[Awaitable[T]]) -> list[T]:
    """Await the coroutines, READS_IN_FLIGHT at a time, their results in order."""
    out: list[T] = []
    try:
        for i in range(0, len(coros), READS_IN_FLIGHT):
            out += await asyncio.gather(*coros[i:i + READS_IN_FLIGHT])
    finally:
        for c in coros:  # after a failure, the ones never started are closed, not left unawaited
            if inspect.iscoroutine(c) and inspect.getcoroutinestate(c) == inspect.CORO_CREATED:
                c.close()
    return out


def build(t0: float, t1: float, initial: Any, moves: Sequence[tuple[float, Any]]) -> Timeline:
    """Contiguous segments covering [t0, t1) exactly, merging equal neighbours; moves are (seconds, value)."""
    return build_us(us(t0), us(t1), initial, [(us(ts), v) for ts, v in moves])


def build_us(a: int, b: int, initial: Any, moves: Sequence[tuple[int, Any]]) -> Timeline:
    out: Timeline = []
    start, value = a, initial
    for t, new in moves:
        t = min(max(t, a), b)
        if new == value:
            continue
        if t > start:
            out.append(Segment(start, t, value))
        start, value = t, new
    if b > start:
        out.append(Segment(start, b, value))
    return out


def intervals_line(a: int, b: int, intervals: Sequence[tuple[int, int]]) -> Timeline:
    """A True/False timeline over [a, b) µs: True inside any of the (overlapping or not) µs intervals."""
    edges = sorted([(s, 1) for s, e in intervals if e > s] + [(e, -1) for s, e in intervals if e > s],
                   key=lambda m: (m[0], -m[1]))
    moves, depth = [], 0
    for t, d in edges:
        depth += d
        moves.append((t, depth > 0))
    return build_us(a, b, False, moves)


def unobserve(line: Timeline, gaps: Sequence[tuple[int, int]]) -> Timeline:
    """`line` with the µs intervals of `gaps` set to None (unobserved)."""
    if not gaps or not line:
        return line
    return combine([line, intervals_line(line[0].start, line[-1].end, gaps)], lambda v, gap: None if gap else v)


def combine(lines: Sequence[Timeline], fn: Callable[..., Any]) -> Timeline:
    """One timeline from several over the same range: fn(value of each) on every piece between their boundaries."""
    if not lines or not lines[0]:
        return []
    a, b = lines[0][0].start, lines[0][-1].end
    cuts = sorted({s.start for line in lines for s in line} | {b})
    starts = [[s.start for s in line] for line in lines]
    moves = [(lo, fn(*[line[bisect.bisect_right(st, lo) - 1].value for line, st in zip(lines, starts)]))
             for lo in cuts[:-1]]
    return build_us(a, b, moves[0][1] if moves else None, moves[1:])


def at(line: Timeline, t_us: int) -> Any:
    """The value in force at a µs time (None outside the timeline)."""
    i = bisect.bisect_right([s.start for s in line], t_us) - 1
    return line[i].value if 0 <= i < len(line) and t_us < line[i].end else None


async def state_line(store: Store, equipment: str, path: str, t0: float, t1: float) -> Timeline:
    """The timeline of one state series over [t0, t1) (link-down intervals not yet applied)."""
    initial = await value_before(store, equipment, path, t0)
    return build(t0, t1, initial, await changes(store, equipment, path, t0, t1, initial))


async def link_gaps(store: Store, equipment: str, t0: float, t1: float) -> list[tuple[int, int]]:
    """Link-down intervals (µs), clipped to [t0, t1); one still down runs to t1."""
    out = []
    for row in await store.link_history(equipment, t0, t1):
        down, up = row["down_ts"], row["up_ts"] if row["up_ts"] is not None else t1
        if min(up, t1) > max(down, t0):
            out.append((us(max(down, t0)), us(min(up, t1))))
    return out


async def increments(store: Store, equipment: str, path: str, t0: float, t1: float) -> list[tuple[float, int]]:
    """(ts, units added) of a resettable counter over [t0, t1).

    A value below the one before is a reset (counted from 0), or a wrap of the
    uint32 when the one before was within the top 1 % of its range. The first
    value seen after a stretch without any baseline only sets the baseline.
    """
    prev = await value_before(store, equipment, path, t0)
    bucket = bucket_for(t0, t1, COUNTER_BUCKET_S)
    rows = await store.history(equipment, path, t0, t1, bucket_s=bucket, agg=["first", "last", "min", "max"],
                               limit=int((t1 - t0) / bucket) + 3)
    out: list[tuple[float, int]] = []

    def step(ts: float, value: Any) -> None:
        nonlocal prev
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return
        value = int(value)
        if prev is not None:
            if value >= prev:
                delta = value - prev
            elif prev > UINT32 * 0.99:
                delta = value + UINT32 - prev
            else:
                delta = value  # reset to 0, then counted up to value
            if delta:
                out.append((ts, delta))
        prev = value

    for row in rows:
        monotone = (row["bad"] == 0 and row["min"] is not None and row["min"] == row["first"]
                    and row["max"] == row["last"] and (prev is None or row["first"] >= prev))
        if monotone:
            step(row["ts"], row["first"])
            step(row["ts"], row["last"])
            continue
        async for s in raw_rows(store, equipment, path, max(row["ts"], t0), min(row["ts"] + bucket, t1)):
            if s["quality"] != BAD:
                step(s["ts"], s["value"])
    return out
