"""Reading samples back: history over chunks and the head, the newest sample of each series.

History = the chunks over the range, in sealing order, then the head's rows
above the sealed sequence: raw queries decode the chunks (numpy), bucketed ones
aggregate column-wise (gateway/store/aggregate.py) and take a chunk's summary
whole when the chunk lies within one bucket. Every function here takes a read
connection inside its transaction (Database.read).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np

from gateway.samples import Sample
from gateway.store import codec
from gateway.store.aggregate import QMASK, Agg, partials
from gateway.store.base import AGGREGATES, SampleColumns
from gateway.store.sqlite.schema import BOOL_FLAG, CELL_S, FAR, RUN_MAX, Row, decode_value, quality_of, sealed

# The chunks of one series that may hold samples in [start, end), in sealing order.
CHUNKS_IN_RANGE = "SELECT {cols} FROM chunks WHERE series_id = ? AND t1 >= ? AND t0 < ? ORDER BY id"

# The head's rows of one series in a range of cells: blocks point at contiguous rowid ranges, runs at
# one row per series (schema.RUNS); rows up to the sealed sequence are in chunks (the head keeps them only
# for the outbox until passed). Both are keyed by cell first: the query walks the cells present in
# [c0, c1], one seek each, and seeks the series' blocks and runs in each. `+s.series_id` keeps SQLite from
# building an index on samples: the rowid range is the way in.
# (SQLite's min(x, y) of two is NULL if either is: `min(cell) FROM (... UNION ALL ...)` takes the lower of two seeks.)
CELLS = f"""WITH RECURSIVE cells(cell) AS (
    SELECT (SELECT min(cell) FROM (SELECT min(cell) AS cell FROM blocks WHERE cell >= :c0
                                   UNION ALL SELECT min(cell) FROM runs WHERE cell >= :c0))
    UNION ALL
    SELECT (SELECT min(cell) FROM (SELECT min(cell) AS cell FROM blocks WHERE cell > c.cell
                                   UNION ALL SELECT min(cell) FROM runs WHERE cell > c.cell))
    FROM cells c WHERE c.cell < :c1
), spans(lo, hi) AS (
    SELECT b.lo, b.hi FROM cells c CROSS JOIN blocks b
    WHERE c.cell <= :c1 AND b.cell = c.cell AND b.series_id = :sid AND b.hi > :sealed
    UNION ALL
    SELECT r.lo + :sid - r.first_sid, r.lo + :sid - r.first_sid FROM cells c CROSS JOIN runs r
    WHERE c.cell <= :c1 AND r.cell = c.cell AND r.last_sid BETWEEN :sid AND :sid + {RUN_MAX} - 1
      AND r.first_sid <= :sid AND r.lo + :sid - r.first_sid > :sealed
)"""
SERIES_ROWS = """
FROM spans p CROSS JOIN samples s
WHERE s.rowid BETWEEN p.lo AND p.hi AND s.rowid > :sealed
  AND +s.series_id = :sid AND s.ts >= :start AND s.ts < :end
"""


def checked_aggregates(agg: str | Sequence[str], bucket_s: float | None) -> list[str]:
    """The aggregates asked for, or ValueError saying what is allowed."""
    aggs = [agg] if isinstance(agg, str) else list(agg)
    unknown = [a for a in aggs if a not in AGGREGATES]
    if unknown or not aggs:
        raise ValueError(f"agg {unknown or aggs}: use {', '.join(AGGREGATES)}")
    if bucket_s is not None and not bucket_s > 0:
        raise ValueError(f"bucket_s={bucket_s}: must be positive")
    return aggs


def bounded(start: float, end: float) -> tuple[float, float]:
    """"Everything" as +-inf stays within integer cells."""
    return max(start, -FAR), min(end, FAR)


def series(conn: sqlite3.Connection, equipment: str | None) -> list[tuple[str, str, str]]:
    if equipment is None:
        return conn.execute("SELECT equipment, path, unit FROM series ORDER BY equipment, path").fetchall()
    return conn.execute("SELECT equipment, path, unit FROM series WHERE equipment = ? ORDER BY path",
                        (equipment,)).fetchall()


def series_id(conn: sqlite3.Connection, equipment: str, path: str) -> int | None:
    row = conn.execute("SELECT id FROM series WHERE equipment = ? AND path = ?", (equipment, path)).fetchone()
    return row[0] if row else None


def head_rows(conn: sqlite3.Connection, sid: int, start: float, end: float) -> list[Row]:
    """(ts, gw, value, value_text, q, reason) of the head's unsealed rows of a series, in (time, sequence) order."""
    params = {"sid": sid, "c0": int(start / CELL_S), "c1": int(end / CELL_S), "start": start, "end": end,
              "sealed": sealed(conn)}
    return conn.execute(f"{CELLS} SELECT s.ts, s.gw, s.value, s.value_text, s.q, s.reason {SERIES_ROWS} "
                        "ORDER BY s.ts, s.rowid", params).fetchall()

def raw_columns(conn: sqlite3.Connection, equipment: str, path: str, start: float, end: float,
                limit: int) -> SampleColumns:
    sid = series_id(conn, equipment, path)
    parts: list[codec.Columns] = []
    if sid is not None:
        # Chunks in sealing order, then the head: within equal times that is sequence order, which the
        # stable sort below keeps.
        for (data,) in conn.execute(CHUNKS_IN_RANGE.format(cols="data"), (sid, start, end)):
            c = codec.decode(data)
            lo, hi = np.searchsorted(c.ts, (start, end)).tolist()
            if lo < hi:
                parts.append(codec.window(c, lo, hi))
        head = head_rows(conn, sid, start, end)
        if head:
            parts.append(codec.columns(*zip(*head)))
    if not parts:
        return no_samples()
    c = codec.concat(parts)
    if (c.ts[1:] >= c.ts[:-1]).all():  # in time order already (late data is rare): the sort would keep it
        c = codec.window(c, 0, min(limit, len(c.ts)))
    else:
        c = codec.take(c, np.argsort(c.ts, kind="stable")[:limit])
    values = c.values()
    flags = c.q & BOOL_FLAG
    if flags.any():
        values = [bool(v) if f else v for v, f in zip(values, flags.tolist())]
    return SampleColumns(c.ts, c.gw, c.q & QMASK, c.numbers(), values, c.reasons)


def no_samples() -> SampleColumns:
    return SampleColumns(np.empty(0), np.empty(0), np.empty(0, np.uint8), np.empty(0), [], [])


def raw(conn: sqlite3.Connection, equipment: str, path: str, start: float, end: float,
        limit: int) -> list[dict[str, Any]]:
    c = raw_columns(conn, equipment, path, start, end, limit)
    return [{"ts": t, "value": v, "quality": q, "reason": r, "gateway_ts": g} for t, v, q, r, g in
            zip(c.ts.tolist(), c.values, c.quality.tolist(), c.reasons, c.gateway_ts.tolist())]


def bucketed(conn: sqlite3.Connection, equipment: str, path: str, start: float, end: float,
              bucket_s: float, aggs: list[str], limit: int) -> list[dict[str, Any]]:
    sid = series_id(conn, equipment, path)
    if sid is None:
        return []
    bucket = float(bucket_s)
    buckets: dict[int, Agg] = {}
    pending: list[tuple[np.ndarray, ...]] = []  # decoded (ts, q, kind, number) runs, in sequence order

    def flush() -> None:
        # Runs that follow one another in time are aggregated in one pass; overlapping ones (late
        # data) one by one. Either way partials are merged in sequence order: first/last ties go by it.
        if not pending:
            return
        ordered = all(pending[i][0][0] >= pending[i - 1][0][-1] for i in range(1, len(pending)))
        for run in ([pending] if ordered else [[p] for p in pending]):
            ts, q, kind, num = (np.concatenate(col) for col in zip(*run))
            for k, p in partials(np.floor(ts / bucket).astype(np.int64), ts, q, kind, num):
                b = buckets.get(k)
                if b is None:
                    b = buckets[k] = Agg()
                b.merge(p)
        pending.clear()

    for t0, t1, *summary, data in conn.execute(
            CHUNKS_IN_RANGE.format(cols="t0, t1, ng, nv, nbad, sm, mn, mx, ft, fv, lt, lv, data"),
            (sid, start, end)):
        k0 = math.floor(t0 / bucket)
        if t0 >= start and t1 < end and k0 == math.floor(t1 / bucket):
            # The whole chunk in one bucket: its summary is the answer, nothing to decode.
            flush()
            b = buckets.get(k0)
            if b is None:
                b = buckets[k0] = Agg()
            b.merge(summary)
            continue
        c = codec.decode(data, texts=False, gw=False)
        lo, hi = np.searchsorted(c.ts, (start, end)).tolist()
        if lo < hi:
            pending.append((c.ts[lo:hi], c.q[lo:hi], c.kind[lo:hi], c.numbers()[lo:hi]))
    head = head_rows(conn, sid, start, end)
    if head:
        c = codec.columns(*zip(*head))
        pending.append((c.ts, c.q, c.kind, c.numbers()))
    flush()
    return [buckets[k].row(k * bucket, aggs) for k in sorted(buckets)[:limit]]


def latest(conn: sqlite3.Connection, series_meta: dict[int, tuple[str, str, str]]) -> dict[int, Sample]:
    """The newest stored sample of every series, by id: the head's above the sealed sequence, or its newest chunk's."""
    top_sealed = sealed(conn)
    newest_cell = _newest_cells(conn, set(series_meta), top_sealed)
    sql = f"""WITH spans(lo, hi) AS (
                 SELECT lo, hi FROM blocks WHERE cell = :cell AND series_id = :sid AND hi > :sealed
                 UNION ALL
                 SELECT lo + :sid - first_sid, lo + :sid - first_sid FROM runs
                 WHERE cell = :cell AND last_sid BETWEEN :sid AND :sid + {RUN_MAX} - 1 AND first_sid <= :sid)
             SELECT s.ts, s.gw, s.value, s.value_text, s.q, s.reason FROM spans p CROSS JOIN samples s
             WHERE s.rowid BETWEEN p.lo AND p.hi AND +s.series_id = :sid AND s.rowid > :sealed
             ORDER BY s.ts DESC, s.rowid DESC LIMIT 1"""
    newest_chunk = "SELECT data FROM chunks WHERE series_id = ? ORDER BY t1 DESC, id DESC LIMIT 1"
    out = {}
    for sid, (eq, path, unit) in series_meta.items():
        cell = newest_cell.get(sid)
        row = None if cell is None else conn.execute(sql, {"cell": cell, "sid": sid, "sealed": top_sealed}).fetchone()
        chunk = conn.execute(newest_chunk, (sid,)).fetchone()
        if chunk and (row is None or row[0] < codec.decode(chunk[0], texts=False).ts[-1]):
            # Rows are in (time, sequence) order in a chunk: its last is its newest.
            c = codec.decode(chunk[0])
            i = len(c.ts) - 1
            q = int(c.q[i])
            row = (float(c.ts[i]), float(c.gw[i]), c.values()[i], None, q, c.reasons[i])
        if row:
            ts, gw, value, text, q, reason = row
            out[sid] = Sample(eq, path, decode_value(value, text, q), unit, ts, gw, quality_of(q), reason or "")
    return out


def _newest_cells(conn: sqlite3.Connection, wanted: set[int], top_sealed: int) -> dict[int, int]:
    """The newest cell holding unsealed head rows of each series, walking the cells from the newest down.

    A machine's series are all in its newest cell while it records, so the walk usually ends there;
    it stops for a series once the cells below can only hold rows older than its newest chunk's.
    """
    found: dict[int, int] = {}
    chunk_t1: dict[int, float | None] = {}  # the newest chunk's time, asked once for a series not found at once
    cell = _cell_below(conn, None)
    while cell is not None and wanted:
        here = {sid for (sid,) in conn.execute("SELECT series_id FROM blocks WHERE cell = ? AND hi > ?",
                                                (cell, top_sealed))}
        for first, last, lo in conn.execute("SELECT first_sid, last_sid, lo FROM runs WHERE cell = ? "
                                            "AND lo + last_sid - first_sid > ?", (cell, top_sealed)):
            here.update(range(max(first, first + top_sealed + 1 - lo), last + 1))  # the run's unsealed rows
        here &= wanted
        for sid in here:
            found[sid] = cell
        wanted -= here
        below = cell * CELL_S  # every row in a lower cell is older than this
        for sid in wanted - set(chunk_t1):
            chunk_t1[sid] = conn.execute("SELECT max(t1) FROM chunks WHERE series_id = ?", (sid,)).fetchone()[0]
        wanted = {sid for sid in wanted if (t1 := chunk_t1[sid]) is None or t1 < below}
        cell = _cell_below(conn, cell)
    return found


def _cell_below(conn: sqlite3.Connection, cell: int | None) -> int | None:
    """The newest cell of the head's index below `cell` (None: the newest of all), or None."""
    below = FAR if cell is None else cell
    found: int | None = conn.execute("SELECT max(cell) FROM (SELECT max(cell) AS cell FROM blocks WHERE cell < ?1 "
                                     "UNION ALL SELECT max(cell) FROM runs WHERE cell < ?1)", (below,)).fetchone()[0]
    return found
