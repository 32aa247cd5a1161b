"""The embedded store: SQLite in WAL mode, in-process, the gateway's zero-setup default.

Everything the gateway keeps (samples, alarms, events, audit, link status,
outbox cursors) lives in one database file next to the gateway.

Layout, and why
---------------
Samples live in two places: the head, where they are written and forwarded from,
and chunks, where they are kept compressed.

The head. Measured on the development machine (2 cores, SQLite 3.40, Python
3.11): plain appends to a rowid table reach ~670k rows/s SQL-side; a B-tree
index on (series_id, ts) costs every row an insertion among 1,000 scattered
leaves and cut that to ~280k rows/s (a clustered (series, ts) key: ~70k). So
samples are appended to one rowid table, ``samples(series_id, ts, gw, value,
value_text, q, reason)``, with no secondary index. Per batch the writer sorts
the rows by (series, ts) before appending them, so that the rows of one series
in one 10-second cell are a contiguous rowid range, and records one
``blocks(series_id, cell, lo, hi)`` row per such range. The rowid is the
outbox sequence (``read_since``), and commits are as small and as frequent as
acquisition makes them.

Chunks. A compactor thread seals the head's rows into ``chunks``: one row per
(series, window of the head), holding the rows' columns as one blob
(gateway/store/codec.py: pcodec for times and numbers, zstd for quality bytes
and text) and the summary of its GOOD numbers (count, sum, min, max, first,
last). A window is the head rows committed at least ``seal_after_s`` ago, once
the oldest of them is ``seal_span_s`` older again (at most ``seal_rows``):
SQLite sorts it by (series, ts, rowid) (spilling to a temporary file if it is
large) and the writer stores its chunks and moves the sealed sequence
(``meta.sealed``) in one transaction. Rows up to the sealed sequence are read
from chunks only; the head keeps them for the outbox until every registered
consumer has passed them, then drops them from its head a range at a time.
So forwarding and crash safety are the head's, untouched, and the file holds
each sample about once.

History = the chunks over the range, in sealing order, then the head's rows
above the sealed sequence: raw queries decode the chunks (numpy), bucketed ones
aggregate column-wise (gateway/store/aggregate.py) and take a chunk's summary
whole when the chunk lies within one bucket. The old per-batch rollup upsert
(14 % of the writer's time under load) is gone; its work moved into the
compactor, off the commit path.

Why SQLite holding compressed blocks, rather than DuckDB or Parquet segments:
the head, the outbox, the records and their transactional guarantees stay in
one file and one writer, and a chunk is one more row committed with the
sealed sequence, so a crash can never leave a window half sealed or sealed
twice. DuckDB would be a second engine beside SQLite for the records (it is
not a row store for small transactions); Parquet files would need their own
crash-safe bookkeeping. The codec was chosen by measurement (codec.py).

Measured (bench/store.py, bench/results/store.json; a 2-core VM, load
average 2 at the start; 3 runs, min-max and median):

* bytes per value on disk, sealed: a 512-channel formation rack read over
  Modbus every second 2.67 in the chunks' pages (2.88 counting the whole
  file), a coater over OPC UA 3.57 (4.36), a winder 4.31 (6.74: an hour of
  one machine is 148k values, and a file's fixed pages weigh). The layout
  before chunks took 67-68 on the same racks. What remains is mostly the
  scan's own clock jitter: a Modbus value's time is when its response came,
  ~1.9 bytes a value, which no lossless codec per series takes away (the
  series of one scan share it: a chunk of many series would).
* 4 racks' scans (35k values/s, phased as independent devices, 8,748 values
  a commit): the write path 5.4-5.6 us of process CPU per value (the layout
  before: 9.7-10.9 under more load, with the rollup upsert); sealing a
  10-minute window costs 7.6 more per value (SQLite's sort of the window,
  its rows as tuples, the codec per series): 13.2 in all. Unpaced, the store
  takes 285k-298k values/s (before: 45k-88k).
* on a store already holding a simulated day of a rack (756 M values,
  1.9 GiB in chunks) the first run costs what it does on an empty store
  (5.3 us); later runs, with nothing sealed in between, 8.2 and 12.0: the
  head's block index (one row per series per commit at these rates) grows
  with the head, not with the day. Sealing keeps the head to about
  seal_after_s + seal_span_s of data.
* history: a day of one series at 10 Hz in 1-minute buckets 45-143 ms
  (median 68; the target is 50); the last hour of 512 channels, one query
  per channel, 1.5-2.2 s raw (1.8 M rows as dicts) and 0.40-0.45 s in
  1-minute buckets.

What the writer does in Python is done column-wise with map/zip (C speed, no
per-row objects for the cyclic GC to walk), and rows go into SQLite 4,096 per
INSERT: sqlite3 releases and retakes the GIL around every statement, and with
another thread busy in Python each retake can wait a switch interval (5 ms).
With a thread spinning in Python, one row per statement managed 5k rows/s;
4,096 per statement, 278k rows/s.

Values
------
Numbers go to ``value``, a column with no type affinity, so ints stay INTEGER
and floats REAL and both aggregate in C; bools are stored as 0/1 with a flag in
``q`` (quality in the low two bits, BOOL_FLAG above) so they come back as bools;
strings go to ``value_text`` and do not disturb numeric aggregation.

Durability
----------
WAL with synchronous=NORMAL: a commit is written to the WAL file before
``flush()`` or a ``record_*`` call returns, so it survives the process being
killed (SIGKILL, OOM); only an operating-system crash or power loss can lose
the last commits before a checkpoint. Pass ``synchronous="FULL"`` to fsync
every commit when that matters more than write rate.

Threads
-------
One writer thread owns the only writing connection. ``write_samples`` appends
to a bounded queue (counted drops when full); ``record_*`` and ``set_cursor``
hand the writer a small operation and await its commit, so there is never a
second writer waiting on SQLite's lock. Reads run on a small pool of read-only
connections via ``asyncio.to_thread``; WAL lets them read while the writer writes.

Disk budget
-----------
With ``max_disk_mb`` set, the writer checks the database's used pages after
commits; over the budget it deletes the oldest samples down to 90 % of it
(the chunks first, then the head; blocks and link records older than what is kept),
whether or not every outbox consumer has them: a full disk would stop the
gateway recording at all. It logs an error naming each consumer and how many
samples it will never get, and keeps the count in ``outbox_discards``
(``discards()``), so what was lost is exact and survives a restart.

Retention
---------
Samples go by recording time (gateway_ts, which follows commit order): head rows
from the head, chunks whole when all their samples are due (rewritten with the rest
when only some are); blocks and link records by their time axis. Events, alarms and the audit log
are records of what happened to units and commands and are kept, unless
``records_retention_days`` gives days for some of them (``alarms`` by the time
they cleared, an active one is kept; ``events`` by source time; ``audit``). Retention
never deletes a sample that a registered outbox consumer (``register_consumer``)
has not passed: the rows are held, and ``stats()["retention_held_by"]`` names
the consumer doing so. A cursor that is not registered gets no such promise;
``read_since`` simply continues after the gap.

Storage faults
--------------
A commit that fails (disk full, read-only or immutable file, I/O error) keeps
its batch and is retried with the gateway's backoff while acquisition goes on
into the bounded queue; one error line when commits start failing (with the
samples held), one when they succeed again (with the samples caught up), and
``stats()`` says when the last commit succeeded, how many have failed in a row,
why, and how many samples are held against ``max_queue``. A store file removed
or replaced under the running gateway (its device and inode changed, or gone)
is reopened or created again, with an error logged, rather than written into
an unlinked file forever.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import json
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, groupby, islice
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from gateway.backoff import Backoff
from gateway.samples import Quality, Sample
from gateway.store import codec
from gateway.store.aggregate import QMASK, Agg, partials
from gateway.store.base import AGGREGATES

log = logging.getLogger("linegw.store")

Row = tuple[Any, ...]  # a row of SQLite parameters or results

CELL_S = 10  # width of a block's time cell, seconds
SCHEMA_VERSION = 2  # 1: rollup cells, no chunks (migrated at open); 2: sealed chunks
BOOL_FLAG = 4  # q flag: the value is a bool stored as 0/1
RETENTION_CHECK_S = 30.0
SEAL_AFTER_S = 120.0  # rows committed this long ago may be sealed into chunks
SEAL_SPAN_S = 600.0  # ... once the oldest of them is this much older again: a window's worth
SEAL_ROWS = 4_000_000  # at most this many head rows sealed in one window
PAGE_SIZE = 16_384  # bytes, for new files
CHUNK_BYTES = 2_048  # a chunk's blob at most about this large: about eight rows to a page
CHUNK_ROWS = 16_384  # at most this many samples in one chunk: a short query decodes little
COMPACT_CHECK_S = 5.0
BUDGET_CHECK_S = 1.0  # how often the writer looks at the disk budget while writing
FILE_CHECK_S = 1.0  # how often the writer checks that its file is still the one at the path
_FAR = 1e13  # seconds: beyond any real timestamp, small enough for integer cell numbers

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    equipment TEXT NOT NULL,
    path TEXT NOT NULL,
    unit TEXT NOT NULL DEFAULT '',
    UNIQUE (equipment, path)
);
-- value has no declared type on purpose: ints and floats keep their storage class.
CREATE TABLE IF NOT EXISTS samples (
    series_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    gw REAL NOT NULL,
    value,
    value_text TEXT,
    q INTEGER NOT NULL,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS blocks (
    series_id INTEGER NOT NULL,
    cell INTEGER NOT NULL,  -- CAST(ts / {CELL_S} AS INTEGER)
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    PRIMARY KEY (series_id, cell, lo)
) WITHOUT ROWID;
-- Sealed samples: one row per (series, window of the head), the rows' columns as one codec blob
-- (gateway/store/codec.py) and the summary of its GOOD numbers, as aggregate.partials gives it.
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    t0 REAL NOT NULL,        -- oldest source time
    t1 REAL NOT NULL,        -- newest source time
    gw0 REAL NOT NULL,       -- oldest gateway time: retention
    gw1 REAL NOT NULL,       -- newest gateway time
    hi INTEGER NOT NULL,     -- the sealed sequence of its window: every sample in it has a lower or equal one
    n INTEGER NOT NULL,      -- samples
    ng INTEGER NOT NULL,     -- GOOD samples
    nv INTEGER NOT NULL,     -- GOOD samples with a numeric value
    nbad INTEGER NOT NULL,   -- UNCERTAIN or BAD samples
    sm REAL NOT NULL,
    mn, mx,
    ft REAL, fv,
    lt REAL, lv,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_series ON chunks (series_id, t1);
CREATE INDEX IF NOT EXISTS chunks_gw ON chunks (gw0);
CREATE INDEX IF NOT EXISTS chunks_hi ON chunks (hi);
CREATE TABLE IF NOT EXISTS alarms (
    equipment TEXT NOT NULL,
    occurrence_id TEXT NOT NULL,
    code INTEGER NOT NULL,
    text TEXT NOT NULL,
    severity INTEGER NOT NULL,
    stop_reason INTEGER NOT NULL,
    raised_ts REAL,
    cleared_ts REAL,
    acked_ts REAL,
    acked_by TEXT,
    PRIMARY KEY (equipment, occurrence_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alarms_raised ON alarms (raised_ts);
CREATE INDEX IF NOT EXISTS alarms_active ON alarms (equipment, raised_ts) WHERE cleared_ts IS NULL;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    equipment TEXT NOT NULL,
    type TEXT NOT NULL,
    source_ts REAL NOT NULL,
    seq INTEGER NOT NULL,
    payload TEXT NOT NULL,
    recorded_ts REAL NOT NULL,
    UNIQUE (equipment, seq, type, source_ts)
);
CREATE INDEX IF NOT EXISTS events_ts ON events (source_ts);
CREATE INDEX IF NOT EXISTS events_eq_ts ON events (equipment, source_ts);
CREATE INDEX IF NOT EXISTS events_type_ts ON events (type, source_ts);
CREATE TABLE IF NOT EXISTS event_ids (
    id_value TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    PRIMARY KEY (id_value, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    equipment TEXT NOT NULL,
    command TEXT NOT NULL,
    args TEXT NOT NULL,
    result_code INTEGER NOT NULL,
    result TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_eq ON audit (equipment, id);
CREATE TABLE IF NOT EXISTS links (
    id INTEGER PRIMARY KEY,
    equipment TEXT NOT NULL,
    ts REAL NOT NULL,
    up INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS links_eq_ts ON links (equipment, ts);
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    consumer INTEGER NOT NULL DEFAULT 0,  -- 1: an outbox consumer that holds retention
    updated_ts REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox_discards (  -- samples the disk budget deleted before a consumer had them
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    consumer TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    samples INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS forward_rejects (  -- points a sink refused for good (4xx), set aside
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    consumer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    point TEXT NOT NULL,
    error TEXT NOT NULL
);
"""

# Optional retention of the records, by their time axis; an alarm still active is kept however old.
RECORD_RETENTION = {
    "alarms": "DELETE FROM alarms WHERE cleared_ts IS NOT NULL AND cleared_ts < ?",
    "events": "DELETE FROM events WHERE source_ts < ?",
    "audit": "DELETE FROM audit WHERE ts < ?",
}


# Rows go in many per statement: sqlite3 releases and retakes the GIL around every statement,
# and with a busy event loop each retake can wait a whole switch interval. Measured with a
# thread spinning in Python: 5k rows/s one row per statement, 278k rows/s with 4,096.
ROWS_PER_INSERT = 4096
_COLUMNS = 7


@functools.lru_cache(maxsize=16)
def _insert_sql(rows: int) -> str:
    return ("INSERT INTO samples (series_id, ts, gw, value, value_text, q, reason) VALUES "
            + ",".join(["(?,?,?,?,?,?,?)"] * rows))


def _param_chunks(params: Iterator[Any], size: int, count: int) -> Iterator[Row]:
    """`count` parameter tuples of `size` values each, built as SQLite asks for them."""
    for _ in range(count):
        yield tuple(islice(params, size))


# Rows of a batch are sorted by (series, ts), so one (series, cell) group is one contiguous rowid range.
INSERT_BLOCKS = f"""
INSERT INTO blocks (series_id, cell, lo, hi)
SELECT series_id, CAST(ts / {CELL_S} AS INTEGER), min(rowid), max(rowid)
FROM samples WHERE rowid BETWEEN ?1 AND ?2 GROUP BY 1, 2
"""

# The chunks of one series that may hold samples in [start, end), in sealing order.
_CHUNKS_IN_RANGE = "SELECT {cols} FROM chunks WHERE series_id = ? AND t1 >= ? AND t0 < ? ORDER BY id"

# The head's rows of one series in a range of cells: blocks point at contiguous rowid ranges; rows up
# to the sealed sequence are in chunks (the head keeps them only for the outbox until passed).
_SERIES_ROWS = """
FROM blocks b JOIN samples s ON s.rowid BETWEEN b.lo AND b.hi
WHERE b.series_id = :sid AND b.cell BETWEEN :c0 AND :c1 AND b.hi > :sealed
  AND s.series_id = :sid AND s.ts >= :start AND s.ts < :end AND s.rowid > :sealed
"""


_INSERT_CHUNK = ("INSERT INTO chunks (series_id, hi, t0, t1, gw0, gw1, n, ng, nv, nbad, sm, mn, mx, ft, fv, lt, lv, "
                 "data) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_CHUNK_N = 6  # where n is in a chunk row


def _chunk_rows(sid: int, hi: int, c: codec.Columns) -> list[Row]:
    """Chunk rows for _INSERT_CHUNK from a series' columns in (time, sequence) order.

    A blob larger than CHUNK_BYTES is cut into as many chunks of equal rows as it takes:
    a row that fills most of a page leaves the rest of the page empty.
    """
    n = len(c.ts)
    blob = codec.pack(c) if n <= CHUNK_ROWS else b""
    parts = max(-(-n // CHUNK_ROWS), -(-len(blob) // CHUNK_BYTES), 1)
    step = -(-n // parts)
    out = []
    for i in range(0, n, step):
        part = c if parts == 1 else codec.take(c, np.arange(i, min(i + step, n)))
        _, summary = next(partials(np.zeros(len(part.ts), np.int64), part.ts, part.q, part.kind, part.numbers()))
        out.append((sid, hi, float(part.ts[0]), float(part.ts[-1]), float(part.gw.min()), float(part.gw.max()),
                    len(part.ts), *summary, blob if parts == 1 else codec.pack(part)))
    return out


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: committed at the end of the block, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class _QualityCodes(dict[Any, int]):
    """Quality as a plain int (binding an IntEnum takes a slower path in sqlite3); unknown ones are BAD."""

    def __missing__(self, key: Any) -> int:
        return int(Quality.BAD)


_QUALITY = _QualityCodes({0: 0, 1: 1, 2: 2})
_EQ, _PATH, _VALUE, _UNIT, _TS, _GW, _Q, _REASON = (itemgetter(i) for i in range(8))  # Sample fields
_SID = itemgetter(0)


class _Batch(NamedTuple):
    flat: list[Sample]  # the samples of the batch, as enqueued
    sid_of: list[int]  # series id of flat[i]
    order: list[int]  # indices of flat in (series, ts) order: the order rows are appended
    new_series: list[tuple[int, str, str, str]]
    unit_changes: list[tuple[str, int]]


_NUMBER = {float, int}


def _well_formed(samples: list[Sample]) -> bool:
    """The whole batch at C speed: real Samples, str units, finite times.

    Equipment and path need no check here: a known pair is valid by construction,
    and a new one is checked where its series is created.
    """
    if not samples:
        return True
    if set(map(type, samples)) != {Sample} or not set(map(type, map(_UNIT, samples))) <= {str}:
        return False
    try:
        # A sum is finite only if every term is; None or a str raises.
        return math.isfinite(sum(map(_TS, samples))) and math.isfinite(sum(map(_GW, samples)))
    except TypeError:
        return False


def _sample_ok(s: Any) -> bool:
    return (isinstance(s, tuple) and len(s) == 8 and all(type(s[i]) is str for i in (0, 1, 3))
            and all(type(s[i]) in _NUMBER and math.isfinite(s[i]) for i in (4, 5)))


def _encode(value: Any) -> tuple[Any, str | None, int]:
    """(numeric, text, flag) for a value of a type outside the fast path."""
    if value is None:
        return None, None, 0
    if isinstance(value, bool):
        return int(value), None, BOOL_FLAG
    if isinstance(value, int):
        # SQLite integers are 64-bit; larger ones keep their magnitude as a float.
        return (value if -(2**63) <= value < 2**63 else float(value)), None, 0
    if isinstance(value, float):
        return value, None, 0
    if isinstance(value, str):
        return None, value, 0
    if isinstance(value, (bytes, bytearray)):
        return None, bytes(value).hex(), 0
    # Lists and other structured values (arrays read from a device) are kept as JSON text.
    try:
        return None, json.dumps(value, default=str), 0
    except (TypeError, ValueError):  # e.g. a list that contains itself
        return None, repr(value), 0


def _decode(value: Any, text: str | None, q: int) -> Any:
    if q & BOOL_FLAG:
        return bool(value)
    if value is None:
        return text
    return value


def _quality(q: int) -> Quality:
    try:
        return Quality(q & QMASK)
    except ValueError:
        return Quality.BAD


class _Op:
    """A write handed to the writer thread; its future resolves after the commit."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any]):
        self.fn = fn
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()


def _settle(future: concurrent.futures.Future[Any], ok: bool, value: Any) -> None:
    """Complete a caller's future; a caller that was cancelled meanwhile must not kill the writer."""
    try:
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    except concurrent.futures.InvalidStateError:
        pass  # the awaiting task was cancelled; its operation still committed


class StoreClosed(RuntimeError):
    """The store is not running (not started, closed, or its writer failed)."""


class SqliteStore:
    """SQLite (WAL) store with one writer thread and pooled readers. See the module docstring."""

    def __init__(
        self,
        path: str | Path,
        retention_days: float | None = None,
        *,
        max_queue: int = 500_000,
        batch_rows: int = 20_000,
        max_batch_rows: int = 100_000,
        commit_interval_s: float = 0.05,
        synchronous: str = "NORMAL",
        readers: int = 4,
        cache_mb: int = 64,
        retention_chunk_rows: int = 100_000,
        retention_check_s: float = RETENTION_CHECK_S,
        max_disk_mb: float | None = None,
        budget_check_s: float = BUDGET_CHECK_S,
        records_retention_days: dict[str, float] | None = None,
        seal_after_s: float = SEAL_AFTER_S,
        seal_span_s: float = SEAL_SPAN_S,
        seal_rows: int = SEAL_ROWS,
        compact_check_s: float = COMPACT_CHECK_S,
    ):
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous={synchronous!r}: use NORMAL or FULL")
        if retention_days is not None and retention_days <= 0:
            raise ValueError(f"retention_days={retention_days}: must be positive (or None to keep everything)")
        self.path = Path(path)
        self.retention_days = retention_days
        self.records_retention_days = dict(records_retention_days or {})
        for kind, days in self.records_retention_days.items():
            if kind not in RECORD_RETENTION:
                raise ValueError(f"records_retention_days: '{kind}' is not a record kind; use "
                                 f"{', '.join(RECORD_RETENTION)}")
            if not days > 0:
                raise ValueError(f"records_retention_days.{kind}={days}: must be positive (or left out to keep them)")
        self._retains = bool(retention_days or self.records_retention_days)
        self.max_queue = max_queue
        self.batch_rows = batch_rows
        self.max_batch_rows = max(max_batch_rows, batch_rows)
        self.commit_interval_s = commit_interval_s
        self.synchronous = synchronous.upper()
        self.cache_mb = cache_mb
        self.retention_chunk_rows = retention_chunk_rows
        self.retention_check_s = retention_check_s
        if max_disk_mb is not None and max_disk_mb <= 0:
            raise ValueError(f"max_disk_mb={max_disk_mb}: must be positive (or None for no budget)")
        self.max_disk_bytes = None if max_disk_mb is None else int(max_disk_mb * 1024 * 1024)
        self.budget_check_s = budget_check_s
        if seal_after_s < 0 or seal_span_s < 0 or seal_rows < 1 or compact_check_s <= 0:
            raise ValueError(f"seal_after_s={seal_after_s}, seal_span_s={seal_span_s}, seal_rows={seal_rows}, "
                             f"compact_check_s={compact_check_s}: times must not be negative (the check interval "
                             "positive), rows at least 1")
        self.seal_after_s = seal_after_s
        self.seal_span_s = seal_span_s
        self.seal_rows = seal_rows
        self.compact_check_s = compact_check_s
        # (last rowid of a commit, monotonic time of the commit): which head rows are old enough to seal.
        self._commits: collections.deque[tuple[int, float]] = collections.deque()
        self._compactor: threading.Thread | None = None
        self._compact_stop = threading.Event()
        self._compact_lock = threading.Lock()
        self._next_budget = 0.0
        self._budget_log_at = 0.0
        self._budget_unlogged: dict[str, int] = {}
        self._drop_log_at = 0.0

        # Queue shared by the event loop (producer) and the writer thread (consumer).
        self._cv = threading.Condition(threading.Lock())
        self._chunks: collections.deque[list[Sample]] = collections.deque()
        self._queued = 0
        self._ops: list[_Op] = []
        self._flushes: list[tuple[int, concurrent.futures.Future[None]]] = []
        self._accepted = 0  # samples accepted into the queue, ever
        self._committed = 0  # of those, committed
        self._writer_idle = False  # waiting for any work
        self._lingering = False  # waiting for a batch to fill
        self._stopping = False
        self._running = False
        self._failed: BaseException | None = None

        self._loop: asyncio.AbstractEventLoop | None = None
        self._space: asyncio.Event | None = None
        self._space_waiters = 0
        self._thread: threading.Thread | None = None

        # Owned by the writer thread once started.
        self._sids: dict[str, dict[str, int]] = {}
        self._series_meta: dict[int, tuple[str, str, str]] = {}
        self._units: dict[int, str] = {}
        self._next_sid = 1
        self._insert_sizes: list[int] = [1]

        self._latest_lock = threading.Lock()
        self._latest: dict[int, Sample] = {}

        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._reader_sem = threading.BoundedSemaphore(readers)
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

        self._stats: dict[str, Any] = {
            "written": 0, "dropped": 0, "batches": 0, "last_commit_ts": None, "db_size_bytes": 0,
            "rejected": 0, "write_errors": 0, "last_error": "", "retention_deleted": 0, "retention_held_by": None,
            "last_batch_rows": 0, "last_batch_ms": 0.0, "db_used_bytes": 0, "max_disk_bytes": self.max_disk_bytes,
            "budget_deleted": 0, "budget_unforwarded": 0, "records_deleted": dict.fromkeys(RECORD_RETENTION, 0),
            "sealed_seq": 0, "sealed_samples": 0, "chunks_written": 0, "head_trimmed": 0, "compact_errors": 0,
            "last_compact_ms": 0.0, "compactor": "stopped",
            "commit_failures": 0, "failing_since": None, "file_reopened": 0,
        }
        self._holding = 0  # samples of the batch the writer keeps retrying
        self._file_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the file the writer opened
        self._side_ids: dict[str, tuple[int, int] | None] = {}  # ... and of its -wal and -shm files
        self._file_gen = 0  # opens of the file; the compactor reconnects when it changes
        self._next_file_check = 0.0

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        self._space = asyncio.Event()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await asyncio.to_thread(self._open_writer)
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._stopping = False
        self._thread = threading.Thread(target=self._writer_main, args=(conn, ready), name="sqlite-store-writer",
                                        daemon=True)
        self._thread.start()
        await asyncio.wrap_future(ready)
        self._running = True
        self._compact_stop.clear()
        self._compactor = threading.Thread(target=self._compactor_main, name="sqlite-store-compactor", daemon=True)
        self._compactor.start()

    async def close(self) -> None:
        """Commit everything queued, stop the writer, close all connections."""
        if self._thread is None:
            return
        # The compactor first: it hands the writer operations, and the writer takes them until it stops.
        self._compact_stop.set()
        if self._compactor is not None:
            await asyncio.to_thread(self._compactor.join)
            self._compactor = None
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        thread = self._thread
        await asyncio.to_thread(thread.join)
        self._thread = None
        self._running = False
        with self._readers_lock:
            readers, self._all_readers = self._all_readers, []
        for c in readers:
            c.close()
        self._readers = queue.SimpleQueue()
        if self._failed is not None:
            raise StoreClosed(f"the store's writer failed: {self._failed}") from self._failed

    async def flush(self) -> None:
        """Wait until every sample and record enqueued so far is committed."""
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._cv:
            self._check_running()
            if self._committed >= self._accepted and not self._ops:
                return
            self._flushes.append((self._accepted, fut))
            self._cv.notify_all()
        await asyncio.wrap_future(fut)

    async def __aenter__(self) -> SqliteStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_running(self) -> None:
        if self._failed is not None:
            raise StoreClosed(f"the store's writer failed: {self._failed}") from self._failed
        if self._thread is None or self._stopping:
            raise StoreClosed(f"{self.path}: the store is not running (start() it first)")

    # --- connections ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        # No memory-mapped I/O on any connection: a mapped page whose file goes away, shrinks or
        # fails to read under the gateway (file made immutable, disk error, a checkpoint truncating
        # it) is a SIGBUS that kills the process without a word; read() returns an error instead.
        conn.execute("PRAGMA mmap_size = 0")
        conn.execute(f"PRAGMA cache_size = -{self.cache_mb * 1024}")
        conn.execute("PRAGMA temp_store = MEMORY")
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        # A new file gets 16 KiB pages (an existing one keeps its own): a chunk row is 1-2 KiB, and 4 KiB
        # pages held two of them, a third of each page empty (formation rack: 3.4 bytes per value in the
        # chunks' pages against 2.2 in the blobs; 2.7 with 16 KiB pages).
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"{self.path}: cannot use WAL mode (got {mode}); is it on a network share?")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        # Larger checkpoints amortise their cost; the limit truncates the WAL once checkpointed.
        conn.execute("PRAGMA wal_autocheckpoint = 4000")
        conn.execute(f"PRAGMA journal_size_limit = {64 * 1024 * 1024}")
        self._migrate(conn)
        widest = min(ROWS_PER_INSERT, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // _COLUMNS)
        self._insert_sizes = [n for n in (4096, 512, 64, 8, 1) if n <= widest] or [1]
        cell = conn.execute("SELECT value FROM meta WHERE key = 'cell_s'").fetchone()[0]
        if int(cell) != CELL_S:
            raise sqlite3.DatabaseError(f"{self.path}: written with {cell} s cells, this version uses {CELL_S} s")
        for sid, eq, path, unit in conn.execute("SELECT id, equipment, path, unit FROM series"):
            self._sids.setdefault(eq, {})[path] = sid
            self._series_meta[sid] = (eq, path, unit)
            self._units[sid] = unit
            self._next_sid = max(self._next_sid, sid + 1)
        self._load_latest(conn)
        self._update_size()
        top = conn.execute("SELECT max(rowid) FROM samples").fetchone()[0]
        if top is not None:
            self._commits.append((top, time.monotonic()))  # what is there at open counts as committed now
        self._stats["sealed_seq"] = self._sealed(conn)
        self._file_id = self._identity("")
        self._side_ids = {suffix: self._identity(suffix) for suffix in ("-wal", "-shm")}
        self._file_gen += 1
        return conn

    def _identity(self, suffix: str) -> tuple[int, int] | None:
        try:
            st = os.stat(f"{self.path}{suffix}")
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def _same_file(self, conn: sqlite3.Connection, now: bool = False) -> sqlite3.Connection:
        """The writer's connection, opened again if the file at the path is no longer the one it writes.

        Checked every FILE_CHECK_S (at once with `now`): writing into a removed file succeeds, so
        only the path's device and inode tell. The new file gets what is written from now on; what
        the old one held is wherever it was moved (or gone with it).
        """
        if not now and time.monotonic() < self._next_file_check:
            return conn
        self._next_file_check = time.monotonic() + FILE_CHECK_S
        try:
            found = self._identity("")
        except OSError as exc:  # the directory unreadable: nothing to compare; the commits say the rest
            log.debug("%s: cannot stat the store file (%s)", self.path, exc)
            return conn
        if found == self._file_id:
            return conn
        how = "removed" if found is None else "replaced"
        # The old file's connections close first: the -wal and -shm files go by the path, and the
        # new file must not be read through the old one's WAL. Idle readers close now, busy ones
        # when they are released.
        with self._readers_lock:
            self._all_readers = []
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break
        conn.close()
        saved = (self._sids, self._series_meta, self._units, self._next_sid, self._commits)
        self._sids, self._series_meta, self._units, self._next_sid = {}, {}, {}, 1
        self._commits = collections.deque()
        try:
            for suffix, ident in self._side_ids.items():
                # The old file's WAL and shared memory, if still at the path (another connection, the
                # compactor's, keeps them): the new file must not be read through them.
                if ident is not None and self._identity(suffix) == ident:
                    os.unlink(f"{self.path}{suffix}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = self._open_writer()
        except (sqlite3.Error, OSError) as exc:
            # The closed connection makes the next commit fail, and its retry comes back here.
            (self._sids, self._series_meta, self._units, self._next_sid, self._commits) = saved
            log.error("%s: the store file was %s under the gateway and cannot be opened again (%s); samples are "
                      "held while it is tried again", self.path, how, exc)
            return conn
        self._stats["file_reopened"] += 1
        log.error("%s: the store file was %s under the gateway; %s it, samples go there from now on", self.path,
                  how, "created" if found is None else "opened")
        return fresh

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Create the tables, or bring an older layout up to this one; refuse a newer one, saying what to do."""
        has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        version = None
        if has_meta:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            version = int(row[0]) if row else None
        if version is not None and version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"{self.path}: store layout {version} was written by a newer linegw; this version reads layouts 1 "
                f"to {SCHEMA_VERSION}. Run that newer version, or move the file away to start an empty store.")
        conn.executescript(SCHEMA)  # IF NOT EXISTS throughout: a layout 1 file gains the new tables, idempotently
        with _immediate(conn):
            if version == 1:
                # Layout 1 kept a rollup row per (series, 10 s cell); the samples and blocks stay as they are
                # (the head, all unsealed) and the compactor seals them into chunks as it goes.
                log.warning("%s: store layout 1 migrated to %d: rollup cells dropped; the compactor seals the "
                            "existing samples into chunks from now on", self.path, SCHEMA_VERSION)
                conn.execute("DROP TABLE IF EXISTS rollup")
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('cell_s', ?), ('sealed', '0')", (str(CELL_S),))

    @staticmethod
    def _sealed(conn: sqlite3.Connection) -> int:
        """The outbox sequence up to which samples are in chunks (history reads the head only above it)."""
        return int(conn.execute("SELECT value FROM meta WHERE key = 'sealed'").fetchone()[0])

    def _load_latest(self, conn: sqlite3.Connection) -> None:
        sealed = self._sealed(conn)
        sql = """SELECT s.ts, s.gw, s.value, s.value_text, s.q, s.reason
                 FROM blocks b JOIN samples s ON s.rowid BETWEEN b.lo AND b.hi
                 WHERE b.series_id = ?1 AND s.series_id = ?1 AND s.rowid > ?2
                   AND b.cell = (SELECT max(cell) FROM blocks WHERE series_id = ?1 AND hi > ?2)
                 ORDER BY s.ts DESC, s.rowid DESC LIMIT 1"""
        newest_chunk = "SELECT data FROM chunks WHERE series_id = ? ORDER BY t1 DESC, id DESC LIMIT 1"
        latest = {}
        for sid, (eq, path, unit) in self._series_meta.items():
            row = conn.execute(sql, (sid, sealed)).fetchone()
            chunk = conn.execute(newest_chunk, (sid,)).fetchone()
            if chunk and (row is None or row[0] < codec.decode(chunk[0], texts=False).ts[-1]):
                # Rows are in (time, sequence) order in a chunk: its last is its newest.
                c = codec.decode(chunk[0])
                i = len(c.ts) - 1
                q = int(c.q[i])
                row = (float(c.ts[i]), float(c.gw[i]), c.values()[i], None, q, c.reasons[i])
            if row:
                ts, gw, value, text, q, reason = row
                latest[sid] = Sample(eq, path, _decode(value, text, q), unit, ts, gw, _quality(q), reason or "")
        with self._latest_lock:
            self._latest = latest

    def _reader(self) -> sqlite3.Connection:
        self._reader_sem.acquire()
        try:
            return self._readers.get_nowait()
        except queue.Empty:
            pass
        try:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
        except BaseException:
            self._reader_sem.release()
            raise
        with self._readers_lock:
            self._all_readers.append(conn)
        return conn

    def _release(self, conn: sqlite3.Connection) -> None:
        with self._readers_lock:
            current = conn in self._all_readers
        if current:
            self._readers.put(conn)
        else:  # opened on a store file since removed or replaced
            conn.close()
        self._reader_sem.release()

    def _read_sync(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        conn = self._reader()
        try:
            # One read transaction: every statement of a query sees the same snapshot.
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")
        finally:
            self._release(conn)

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._thread is None:
            raise StoreClosed(f"{self.path}: the store is not running (start() it first)")
        return await asyncio.to_thread(self._read_sync, fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        op = _Op(fn)
        with self._cv:
            self._check_running()
            self._ops.append(op)
            self._cv.notify_all()
        return await asyncio.wrap_future(op.future)

    # --- samples: the hot path -----------------------------------------------------------
    def write_samples(self, samples: list[Sample]) -> bool:
        """Enqueue for the writer; never blocks. A full queue drops the list and counts it.

        Returns True once the queue is more than half full: a producer that can
        wait should then ``await room()`` before producing more (back-pressure),
        so that the queue never fills and nothing is dropped.
        The list itself is queued (no copy, this is the hot path): do not change it afterwards.
        """
        n = len(samples)
        if not n:
            return False
        with self._cv:
            if not self._taking() or (self._queued and self._queued + n > self.max_queue):
                self._stats["dropped"] += n
                dropped, queued = self._stats["dropped"], self._queued
            else:
                dropped = 0
                self._enqueue(samples)
            behind = self._queued > self.max_queue // 2
        if dropped and time.monotonic() >= self._drop_log_at:
            # Loud, but one line a minute at most; the exact count is in stats()["dropped"] and /health.
            self._drop_log_at = time.monotonic() + 60.0
            log.error("%s: %d samples dropped so far, not stored and never forwarded: %s", self.path, dropped,
                      f"the write queue is full ({queued} of {self.max_queue} samples; the disk is too slow)"
                      if queued else "the store is not running")
        return behind

    async def room(self) -> None:
        """Return once the write queue is at most half full (or the store has stopped taking writes)."""
        await self._wait_space(lambda: self._queued <= self.max_queue // 2 or not self._taking())

    async def write_samples_async(self, samples: list[Sample]) -> None:
        """Enqueue, waiting for room rather than dropping (back-pressure for bulk producers)."""
        n = len(samples)
        if not n:
            return

        def enqueued() -> bool:
            self._check_running()
            if self._queued and self._queued + n > self.max_queue:
                return False
            self._enqueue(samples)
            return True

        await self._wait_space(enqueued)

    def _taking(self) -> bool:
        """Whether writes are accepted now (call with the lock held)."""
        return self._thread is not None and not self._stopping and self._failed is None

    def _enqueue(self, samples: list[Sample]) -> None:
        """Queue one list for the writer (call with the lock held)."""
        self._chunks.append(samples)
        self._queued += len(samples)
        self._accepted += len(samples)
        if self._writer_idle or (self._lingering and self._queued >= self.batch_rows):
            self._cv.notify()

    async def _wait_space(self, done: Callable[[], bool]) -> None:
        """Wait until done(), called with the lock held, says so; the writer wakes waiters as it takes rows."""
        space = self._space
        assert space is not None, "start() the store first"
        while True:
            with self._cv:
                if done():
                    return
                self._space_waiters += 1
                space.clear()
            try:
                await space.wait()
            finally:
                with self._cv:
                    self._space_waiters -= 1

    # --- the writer thread ---------------------------------------------------------------
    def _writer_main(self, conn: sqlite3.Connection, ready: concurrent.futures.Future[None]) -> None:
        ready.set_result(None)
        next_retention = time.monotonic() + min(1.0, self.retention_check_s)
        retention_pending = False
        try:
            while True:
                chunks, ops, rows = self._take(next_retention if self._retains else None, retention_pending)
                if chunks or ops:
                    conn = self._commit_batch(conn, chunks, ops, rows)
                elif self._stopping_done():
                    break
                conn = self._same_file(conn)
                now = time.monotonic()
                if self._retains and (retention_pending or now >= next_retention):
                    try:
                        retention_pending = self._retention_step(conn)
                    except sqlite3.Error as exc:
                        # A storage fault is no reason to stop writing: the commits report it, retention waits.
                        log.warning("%s: retention failed (%s); tried again in %.0f s", self.path, exc,
                                    self.retention_check_s)
                        retention_pending = False
                    if not retention_pending:
                        next_retention = now + self.retention_check_s
        except BaseException as exc:
            # The writer is the only path to disk; stop taking writes and make every waiter see why.
            log.exception("%s: store writer failed", self.path)
            with self._cv:
                self._failed = exc
                pending = [op.future for op in self._ops] + [f for _, f in self._flushes]
                self._ops, self._flushes = [], []
                self._stats["dropped"] += self._queued
                self._chunks.clear()
                self._queued = 0
            for f in pending:
                _settle(f, False, StoreClosed(f"the store's writer failed: {exc}"))
            self._wake_space()
        finally:
            conn.close()

    def _stopping_done(self) -> bool:
        with self._cv:
            return self._stopping and not self._chunks and not self._ops

    def _take(self, retention_at: float | None, retention_pending: bool) -> tuple[list[list[Sample]], list[_Op], int]:
        """Wait for work, linger up to commit_interval_s to fill a batch, then take it."""
        with self._cv:
            while not self._chunks and not self._ops and not self._stopping:
                if retention_pending:
                    break
                timeout = None if retention_at is None else max(0.0, retention_at - time.monotonic())
                if timeout == 0.0:
                    break
                self._writer_idle = True
                self._cv.wait(timeout)
                self._writer_idle = False
            if self._chunks and not self._ops and not self._flushes and not self._stopping:
                deadline = time.monotonic() + self.commit_interval_s
                while self._queued < self.batch_rows and not self._ops and not self._flushes and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._lingering = True
                    self._cv.wait(left)
                    self._lingering = False
            chunks: list[list[Sample]] = []
            rows = 0
            while self._chunks and rows < self.max_batch_rows:
                c = self._chunks.popleft()
                chunks.append(c)
                rows += len(c)
            self._queued -= rows
            ops, self._ops = self._ops, []
        if rows:
            self._wake_space()
        return chunks, ops, rows

    def _wake_space(self) -> None:
        if self._space_waiters and self._loop is not None and self._space is not None:
            try:
                self._loop.call_soon_threadsafe(self._space.set)
            except RuntimeError:
                log.debug("%s: event loop closed; nobody left waiting for queue room", self.path)

    def _prepare(self, chunks: list[list[Sample]]) -> _Batch:
        """Series ids and the (series, ts) order of a batch.

        Column-wise, with map/zip doing the per-sample work in C: the writer holds the
        GIL only while it runs Python, and every microsecond it holds it per sample is
        taken from the event loop. Nothing is built per row that outlives the row, so
        the cyclic GC has nothing to walk.
        """
        rejected = 0
        if not _well_formed(list(chain.from_iterable(chunks))):
            # Checked before the series cache is touched: a bad sample is counted, never retried.
            kept = [[s for s in chunk if _sample_ok(s)] for chunk in chunks]
            rejected = sum(map(len, chunks)) - sum(map(len, kept))
            chunks = [c for c in kept if c]
        flat: list[Sample] = []
        sid_of: list[int] = []
        new_series: list[tuple[int, str, str, str]] = []
        unit_changes: list[tuple[str, int]] = []
        units = self._units
        for chunk in chunks:
            ids: list[int | None] | None = None
            try:
                eqs = set(map(_EQ, chunk))
                if len(eqs) == 1:
                    eq_sids = self._sids.get(eqs.pop())
                    if eq_sids is not None:
                        ids = list(map(eq_sids.get, map(_PATH, chunk)))
                        if None in ids:
                            ids = None
            except TypeError:  # an unhashable name: the slow path below rejects it
                ids = None
            if ids is None:
                ids = self._series_ids(chunk, new_series)
                if None in ids:
                    keep = [i for i, sid in enumerate(ids) if sid is not None]
                    rejected += len(chunk) - len(keep)
                    chunk, ids = [chunk[i] for i in keep], [ids[i] for i in keep]
            known: list[int] = ids  # type: ignore[assignment]  # the Nones were taken out just above
            if list(map(units.__getitem__, known)) != list(map(_UNIT, chunk)):
                for sid, sample in zip(known, chunk):
                    if units[sid] != sample.unit:
                        units[sid] = sample.unit
                        self._series_meta[sid] = (sample.equipment, sample.path, sample.unit)
                        unit_changes.append((sample.unit, sid))
            flat += chunk
            sid_of += known
        if rejected:
            self._stats["rejected"] += rejected
            log.error("%s: rejected %d malformed samples (need str equipment, path and unit, finite source_ts "
                      "and gateway_ts); %d so far", self.path, rejected, self._stats["rejected"])
        order = sorted(range(len(flat)), key=list(map(_TS, flat)).__getitem__)
        order.sort(key=sid_of.__getitem__)  # stable: (series, ts)
        return _Batch(flat, sid_of, order, new_series, unit_changes)

    def _series_ids(self, chunk: list[Sample], new_series: list[tuple[int, str, str, str]]) -> list[int | None]:
        """Series ids sample by sample, creating the series not seen before; None for a bad name."""
        ids: list[int | None] = []
        for eq, path, _, unit, *_ in chunk:
            if type(eq) is not str or type(path) is not str:
                ids.append(None)
                continue
            eq_sids = self._sids.get(eq)
            if eq_sids is None:
                eq_sids = self._sids[eq] = {}
            sid = eq_sids.get(path)
            if sid is None:
                sid = eq_sids[path] = self._next_sid
                self._next_sid += 1
                self._series_meta[sid] = (eq, path, unit)
                self._units[sid] = unit
                new_series.append((sid, eq, path, unit))
            ids.append(sid)
        return ids

    @staticmethod
    def _params(batch: _Batch) -> Iterator[Any]:
        """The batch's row values, row after row, flattened, in (series, ts) order."""
        rows = list(map(batch.flat.__getitem__, batch.order))
        values = list(map(_VALUE, rows))
        quality = list(map(_QUALITY.__getitem__, map(_Q, rows)))
        text: list[str | None] = [None] * len(rows)
        if not set(map(type, values)) <= {float}:
            # Anything but a float: ints in SQLite's range stay, the rest is encoded.
            for i, v in enumerate(values):
                cls = v.__class__
                if cls is float or (cls is int and -9223372036854775808 <= v <= 9223372036854775807):
                    continue
                if cls is str:
                    values[i], text[i] = None, v
                else:
                    values[i], text[i], flag = _encode(v)
                    quality[i] |= flag
        return chain.from_iterable(zip(map(batch.sid_of.__getitem__, batch.order), map(_TS, rows),
                                       map(_GW, rows), values, text, quality, map(_REASON, rows)))

    def _commit_batch(self, conn: sqlite3.Connection, chunks: list[list[Sample]], ops: list[_Op],
                      n: int) -> sqlite3.Connection:
        """Commit one batch, retrying through storage faults; the writer's connection afterwards."""
        t0 = time.perf_counter()
        batch = self._prepare(chunks)
        st = self._stats
        backoff = Backoff(0.5, 8.0)
        dropped_before = st["dropped"]
        while True:
            try:
                results = self._transaction(conn, batch, ops)
                break
            except sqlite3.Error as exc:
                # Disk full, read-only or immutable file, I/O error, a locked file: keep the batch and
                # try again; the bounded queue meanwhile holds what comes in and counts what it cannot.
                with self._cv:
                    self._holding = n
                    held = n + self._queued
                st["write_errors"] += 1
                st["commit_failures"] += 1
                st["last_error"] = f"{type(exc).__name__}: {exc}"
                delay = backoff.next()
                if st["failing_since"] is None:
                    st["failing_since"] = time.time()
                    log.error("%s: commits fail (%s); holding %d samples (up to %d) and %d records, retrying with "
                              "backoff", self.path, exc, held, self.max_queue, len(ops))
                else:
                    log.debug("%s: commit failed again (%s); %d samples held; next try in %.1f s", self.path, exc,
                              held, delay)
                if self._stopping and backoff.attempt > 5:
                    raise
                time.sleep(delay)
                fresh = self._same_file(conn, now=True)
                if fresh is not conn:  # a new file: series ids are its own
                    conn, batch = fresh, self._prepare(chunks)
        if st["failing_since"] is not None:
            with self._cv:
                self._holding = 0
                caught_up = n + self._queued
            log.warning("%s: commits succeed again after %d failures over %.0f s; the %d samples held are being "
                        "caught up, %d dropped meanwhile (queue full)", self.path, st["commit_failures"],
                        time.time() - st["failing_since"], caught_up, st["dropped"] - dropped_before)
            st["commit_failures"] = 0
            st["failing_since"] = None
        if batch.order:
            # The last index per series in (series, ts) order is its newest sample.
            newest = dict(zip(map(batch.sid_of.__getitem__, batch.order), batch.order))
            flat = batch.flat
            with self._latest_lock:
                latest = self._latest
                for sid, i in newest.items():
                    s = flat[i]
                    prev = latest.get(sid)
                    if prev is None or s[4] >= prev.source_ts:
                        latest[sid] = s if type(s) is Sample else Sample._make(s)
        st = self._stats
        st["written"] += len(batch.order)
        st["batches"] += 1
        st["last_commit_ts"] = time.time()
        st["last_batch_rows"] = n
        st["last_batch_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        if st["batches"] % 64 == 1:
            self._update_size()
        if self.max_disk_bytes and n and time.monotonic() >= self._next_budget:
            # Before the flushes settle, so that a flushed store is within budget. Over budget:
            # check again right after the next batch until back under it.
            over = self._budget_step(conn)
            self._next_budget = time.monotonic() + (0.0 if over else self.budget_check_s)
        for op, (ok, value) in zip(ops, results):
            _settle(op.future, ok, value)
        with self._cv:
            self._committed += n
            done = [f for target, f in self._flushes if target <= self._committed]
            self._flushes = [(t, f) for t, f in self._flushes if t > self._committed]
        for f in done:
            _settle(f, True, None)
        return conn

    def _transaction(self, conn: sqlite3.Connection, batch: _Batch, ops: list[_Op]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        hi = None
        conn.execute("BEGIN IMMEDIATE")
        try:
            if batch.new_series:
                conn.executemany("INSERT INTO series (id, equipment, path, unit) VALUES (?,?,?,?)", batch.new_series)
            if batch.unit_changes:
                conn.executemany("UPDATE series SET unit = ? WHERE id = ?", batch.unit_changes)
            if batch.order:
                lo = conn.execute("SELECT coalesce(max(rowid), 0) + 1 FROM samples").fetchone()[0]
                params = self._params(batch)
                left = len(batch.order)
                for size in self._insert_sizes:
                    count, left = divmod(left, size)
                    if count:
                        conn.executemany(_insert_sql(size), _param_chunks(params, size * _COLUMNS, count))
                hi = lo + len(batch.order) - 1
                last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
                if last != hi:
                    raise sqlite3.DatabaseError(f"samples rowids not contiguous ({lo}..{last}, expected ..{hi})")
                conn.execute(INSERT_BLOCKS, (lo, hi))
            for op in ops:
                # Each record in its own savepoint: a bad one fails alone, the batch still commits.
                conn.execute("SAVEPOINT op")
                try:
                    results.append((True, op.fn(conn)))
                    conn.execute("RELEASE op")
                except sqlite3.OperationalError:
                    raise  # disk or lock trouble: the whole batch is retried
                except Exception as exc:  # the caller awaiting this record gets the error
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, exc))
            conn.execute("COMMIT")
            if hi is not None:
                self._commits.append((hi, time.monotonic()))
        except BaseException:
            # The series cache keeps the new ids: the retry inserts the same rows and series again.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def _update_size(self) -> None:
        size = 0
        for suffix in ("", "-wal"):
            try:
                size += os.path.getsize(f"{self.path}{suffix}")
            except FileNotFoundError:
                continue
        self._stats["db_size_bytes"] = size

    # --- disk budget (writer thread) -----------------------------------------------------
    def _budget_step(self, conn: sqlite3.Connection) -> bool:
        """Delete the oldest samples when the used pages exceed the budget; True when it deleted."""
        page_size, pages, free = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                                  for p in ("page_size", "page_count", "freelist_count"))
        used = (pages - free) * page_size
        self._stats["db_used_bytes"] = used
        assert self.max_disk_bytes is not None
        if used <= self.max_disk_bytes:
            return False
        share = (used - 0.9 * self.max_disk_bytes) / used  # down to 90 % of the budget, samples being most of it
        head, top = conn.execute("SELECT min(rowid), max(rowid) FROM samples").fetchone()
        if self._budget_chunks(conn, share, used, head):
            return True
        if head is None or head == top:
            log.error("%s: disk budget of %.1f MB exhausted with no samples left to delete (%.1f MB used)",
                      self.path, self.max_disk_bytes / 2**20, used / 2**20)
            return False
        upto = min(top - 1, head + max(1, math.ceil((top - head + 1) * share)) - 1)  # the newest row stays
        conn.execute("BEGIN IMMEDIATE")
        try:
            lost = []
            now = time.time()
            for name, cursor in conn.execute("SELECT name, value FROM cursors WHERE consumer = 1").fetchall():
                if cursor >= upto:
                    continue
                first = max(cursor + 1, head)
                n = conn.execute("SELECT count(*) FROM samples WHERE rowid BETWEEN ? AND ?", (first, upto)).fetchone()[0]
                if n:
                    conn.execute("INSERT INTO outbox_discards (ts, consumer, first_seq, last_seq, samples) "
                                 "VALUES (?,?,?,?,?)", (now, name, first, upto, n))
                    lost.append((name, n))
            deleted = conn.execute("DELETE FROM samples WHERE rowid <= ?", (upto,)).rowcount
            # The same samples' sealed copies: a chunk goes once every sample of its window does.
            deleted += conn.execute("SELECT coalesce(sum(n), 0) FROM chunks WHERE hi <= ?", (upto,)).fetchone()[0]
            deleted -= max(0, min(upto, self._sealed(conn)) - head + 1)  # counted once, not as row and as chunk
            conn.execute("DELETE FROM chunks WHERE hi <= ?", (upto,))
            # Blocks are much of the file for slow series: they go up to the oldest sample kept.
            self._trim_before(conn, conn.execute("SELECT min(gw) FROM samples").fetchone()[0])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._stats["budget_deleted"] += deleted
        self._stats["budget_unforwarded"] += sum(n for _, n in lost)
        # Loud, but one line a minute at most: a sink down for a day would otherwise flood the log.
        pending = self._budget_unlogged
        pending["deleted"] = pending.get("deleted", 0) + deleted
        for name, n in lost:
            pending[name] = pending.get(name, 0) + n
        if time.monotonic() >= self._budget_log_at:
            total = pending.pop("deleted")
            log.error("%s: disk budget of %.1f MB exhausted (%.1f MB used): deleted %d oldest samples up to seq %d%s",
                      self.path, self.max_disk_bytes / 2**20, used / 2**20, total, upto,
                      "; never forwarded: " + ", ".join(f"{n} to '{c}'" for c, n in pending.items()) if pending else "")
            self._budget_unlogged = {}
            self._budget_log_at = time.monotonic() + 60.0
        return True

    def _budget_chunks(self, conn: sqlite3.Connection, share: float, used: int, head: int | None) -> bool:
        """Over budget, chunks older than anything in the head go first, oldest first; True when it deleted.

        Their samples left the head once every consumer had passed them, so nothing here
        is lost to forwarding. Chunks whose window the head still holds (for a consumer
        that has not passed it) go with those rows, in _budget_step.
        """
        below = (head if head is not None else 2**63 - 1)
        count = conn.execute("SELECT count(*) FROM chunks WHERE hi < ?", (below,)).fetchone()[0]
        if not count:
            return False
        k = max(1, math.ceil(count * share))
        with _immediate(conn):
            upto, n = conn.execute("SELECT max(id), sum(n) FROM (SELECT id, n FROM chunks WHERE hi < ? ORDER BY id "
                                   "LIMIT ?)", (below, k)).fetchone()
            conn.execute("DELETE FROM chunks WHERE id <= ? AND hi < ?", (upto, below))
        self._stats["budget_deleted"] += n
        if time.monotonic() >= self._budget_log_at:
            log.error("%s: disk budget of %.1f MB exhausted (%.1f MB used): deleted the %d oldest chunks (%d samples)",
                      self.path, (self.max_disk_bytes or 0) / 2**20, used / 2**20, k, n)
            self._budget_log_at = time.monotonic() + 60.0
        return True

    async def discards(self, since: float | None = None) -> dict[str, int]:
        """Per outbox consumer: samples the disk budget deleted before the consumer had them (since a time)."""
        return dict(await self._read(lambda c: c.execute(
            "SELECT consumer, sum(samples) FROM outbox_discards WHERE ts >= ? GROUP BY consumer",
            (since or 0.0,)).fetchall()))

    # --- retention (writer thread) -------------------------------------------------------
    def _retention_step(self, conn: sqlite3.Connection) -> bool:
        """One chunk of retention in its own transaction; True while more expired rows remain."""
        now = time.time()
        with _immediate(conn):
            more = self.retention_days is not None and self._retention_chunk(conn, now - self.retention_days * 86400.0)
            if not more:
                self._records_retention(conn, now)
        return more

    def _retention_chunk(self, conn: sqlite3.Connection, cutoff: float) -> bool:
        """Delete up to retention_chunk_rows expired samples from the head of the table.

        When no more samples are due, also trim blocks, chunks and link records.
        """
        head, top = conn.execute("SELECT min(rowid), max(rowid) FROM samples").fetchone()
        more = False
        deleted = 0
        held_by = None
        if head is not None:
            # The newest row stays so that rowids (the outbox sequence) never restart.
            upto = min(head + self.retention_chunk_rows - 1, top - 1)
            hold = conn.execute("SELECT name, value FROM cursors WHERE consumer = 1 ORDER BY value LIMIT 1").fetchone()
            if hold is not None and hold[1] < upto:
                upto, held_by = hold[1], hold[0]
            if upto >= head:
                last_old = conn.execute("SELECT max(rowid) FROM samples WHERE rowid BETWEEN ? AND ? AND gw < ?",
                                        (head, upto, cutoff)).fetchone()[0]
                if last_old is not None:
                    deleted = conn.execute("DELETE FROM samples WHERE rowid <= ?", (last_old,)).rowcount
                    # Rows up to the sealed sequence were the outbox's copies: their samples are in chunks.
                    deleted -= max(0, min(last_old, self._sealed(conn)) - head + 1)
                    more = last_old == upto and held_by is None
            if held_by is not None:
                # Only say the consumer holds retention when an expired row is actually kept for it.
                old = conn.execute("SELECT gw < ? FROM samples ORDER BY rowid LIMIT 1", (cutoff,)).fetchone()
                if not (old and old[0]):
                    held_by = None
        if not more:
            self._trim_before(conn, cutoff)
            deleted += self._expire_chunks(conn, cutoff)
        self._stats["retention_deleted"] += deleted
        if held_by != self._stats["retention_held_by"] and held_by is not None:
            log.warning("%s: retention holds expired samples for outbox consumer '%s'", self.path, held_by)
        self._stats["retention_held_by"] = held_by
        return more

    @staticmethod
    def _expire_chunks(conn: sqlite3.Connection, cutoff: float) -> int:
        """Delete the samples of chunks recorded before `cutoff`; returns how many.

        A chunk wholly older goes; one that straddles the cutoff is rewritten with its
        newer rows. Their outbox copies left the head once every consumer had passed
        them, or stay there for the consumers that have not.
        """
        deleted = 0
        for cid, sid, hi, gw1, n, data in conn.execute(
                "SELECT id, series_id, hi, gw1, n, data FROM chunks WHERE gw0 < ?", (cutoff,)).fetchall():
            conn.execute("DELETE FROM chunks WHERE id = ?", (cid,))
            if gw1 < cutoff:
                deleted += n
                continue
            c = codec.decode(data)
            keep = np.flatnonzero(c.gw >= cutoff)
            deleted += n - len(keep)
            conn.executemany(_INSERT_CHUNK, _chunk_rows(sid, hi, codec.take(c, keep)))
        return deleted

    def _trim_before(self, conn: sqlite3.Connection, cutoff: float) -> None:
        """Delete blocks and link records older than `cutoff` (the latest link per machine stays)."""
        cutoff_cell = int(cutoff / CELL_S)
        for sid in list(self._series_meta):
            conn.execute("DELETE FROM blocks WHERE series_id = ? AND cell < ?", (sid, cutoff_cell))
        conn.execute("DELETE FROM links WHERE ts < ? AND id NOT IN (SELECT max(id) FROM links GROUP BY equipment)",
                     (cutoff,))

    def _records_retention(self, conn: sqlite3.Connection, now: float) -> None:
        """Delete alarms (cleared ones only), events and audit entries older than their optional retention."""
        for kind, days in self.records_retention_days.items():
            cutoff = now - days * 86400.0
            if kind == "events":
                conn.execute("DELETE FROM event_ids WHERE event_id IN (SELECT id FROM events WHERE source_ts < ?)",
                             (cutoff,))
            self._stats["records_deleted"][kind] += conn.execute(RECORD_RETENTION[kind], (cutoff,)).rowcount

    async def apply_retention(self, now: float | None = None) -> int:
        """Run retention to the end now, in the writer; returns the samples deleted.

        The writer also does this on its own every retention_check_s, in chunks.
        """
        if not self._retains:
            return 0
        now = time.time() if now is None else now

        def op(conn: sqlite3.Connection) -> int:
            before = self._stats["retention_deleted"]
            if self.retention_days is not None:
                while self._retention_chunk(conn, now - self.retention_days * 86400.0):
                    pass
            self._records_retention(conn, now)
            result: int = self._stats["retention_deleted"] - before
            return result
        result: int = await self._write(op)
        return result

    # --- compaction (its own thread; it writes through the writer) ---------------------------
    def _compact_conn(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA query_only = ON")
        # A window's sort can be larger than memory should hold: SQLite spills it to a temporary file.
        conn.execute("PRAGMA temp_store = FILE")
        return conn

    def _compactor_main(self) -> None:
        self._stats["compactor"] = "running"
        conn: sqlite3.Connection | None = None
        try:
            conn, gen = self._compact_conn(), self._file_gen
            while not self._compact_stop.wait(self.compact_check_s):
                if gen != self._file_gen:  # the writer opened the file at the path again (removed, replaced)
                    conn.close()
                    conn, gen = self._compact_conn(), self._file_gen
                try:
                    while not self._compact_stop.is_set() and self._compact_step(conn):
                        pass
                except (sqlite3.Error, codec.CodecError) as exc:
                    # The samples stay in the head, where history and the outbox read them; tried again later.
                    self._stats["compact_errors"] += 1
                    self._stats["last_error"] = f"compaction: {type(exc).__name__}: {exc}"
                    log.error("%s: sealing samples into chunks failed (%s); they stay in the head, tried again in "
                              "%.0f s", self.path, exc, self.compact_check_s)
            self._stats["compactor"] = "stopped"
        except StoreClosed as exc:
            self._stats["compactor"] = f"stopped: {exc}"
        except BaseException as exc:
            self._stats["compactor"] = f"failed: {type(exc).__name__}: {exc}"
            log.exception("%s: the compactor stopped; samples are kept in the head from now on", self.path)
            raise
        finally:
            if conn is not None:
                conn.close()

    async def compact(self) -> int:
        """Seal into chunks and trim from the head now whatever is due; returns the samples sealed.

        The compactor thread does the same on its own every compact_check_s.
        """
        before = self._stats["sealed_samples"]

        def run() -> None:
            conn = self._compact_conn()
            try:
                while self._compact_step(conn):
                    pass
            finally:
                conn.close()

        self._check_running()
        await asyncio.to_thread(run)
        result: int = self._stats["sealed_samples"] - before
        return result

    def _write_sync(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """`_write` for threads other than the event loop's: hand the writer an operation, wait for its commit."""
        op = _Op(fn)
        with self._cv:
            self._check_running()
            self._ops.append(op)
            self._cv.notify_all()
        return op.future.result()

    def _compact_step(self, conn: sqlite3.Connection) -> bool:
        """Trim the head of what is sealed and passed, else seal one window; True when it did either."""
        with self._compact_lock:
            conn.execute("BEGIN")
            try:
                head, top = conn.execute("SELECT min(rowid), max(rowid) FROM samples").fetchone()
                sealed = self._sealed(conn)
            finally:
                conn.execute("COMMIT")
            if head is None:
                return False
            while self._commits and len(self._commits) > 1 and self._commits[0][0] <= sealed:
                self._commits.popleft()
            if min(sealed, top - 1) >= head:
                trimmed = self._write_sync(self._trim_head)
                if trimmed:
                    self._stats["head_trimmed"] += trimmed
                    return True
            window = self._window(max(sealed + 1, head), top)
            if window is None:
                return False
            a, b = window
            t0 = time.perf_counter()
            encoded = self._encode_window(conn, a, b)
            if encoded is None:
                return False  # stopping
            chunks, cells = encoded
            if not self._write_sync(lambda c: self._seal(c, sealed, a, b, chunks, cells)):
                return False  # rows of the window went meanwhile (retention, disk budget): the next pass sees
            st = self._stats
            st["sealed_seq"] = b
            st["sealed_samples"] += sum(c[_CHUNK_N] for c in chunks)
            st["chunks_written"] += len(chunks)
            st["last_compact_ms"] = round((time.perf_counter() - t0) * 1000, 3)
            return True

    def _window(self, a: int, top: int) -> tuple[int, int] | None:
        """The head rows [a, b] to seal now: committed seal_after_s ago, and a window's worth of them."""
        now = time.monotonic()
        commits = list(self._commits)
        old = [hi for hi, t in commits if t <= now - self.seal_after_s]
        if not old:
            return None
        b = min(max(old), top)
        if b < a:
            return None
        first = next((t for hi, t in commits if hi >= a), now)
        if b - a + 1 < self.seal_rows and now - first < self.seal_after_s + self.seal_span_s:
            return None
        return a, min(b, a + self.seal_rows - 1)

    def _encode_window(self, conn: sqlite3.Connection, a: int, b: int) -> tuple[list[Row], list[Row]] | None:
        """The chunks of head rows [a, b], per series in (time, sequence) order; None when stopping."""
        chunks: list[Row] = []
        cells: list[Row] = []
        conn.execute("BEGIN")
        try:
            cur = conn.execute("SELECT series_id, ts, gw, value, value_text, q, reason FROM samples "
                               "WHERE rowid BETWEEN ? AND ? ORDER BY series_id, ts, rowid", (a, b))
            for sid, group in groupby(cur, key=_SID):
                if self._compact_stop.is_set():
                    return None
                rows = list(group)
                _, ts, gw, value, text, q, reason = zip(*rows)
                chunks += _chunk_rows(sid, b, codec.columns(ts, gw, value, text, q, reason))
                cells.append((sid, int(rows[0][1] / CELL_S), int(rows[-1][1] / CELL_S), b))
        finally:
            conn.execute("COMMIT")
        return chunks, cells

    def _seal(self, conn: sqlite3.Connection, sealed: int, a: int, b: int, chunks: list[Row],
              cells: list[Row]) -> bool:
        """In the writer: store a window's chunks and move the sealed sequence to b, if its rows are all still there."""
        head = conn.execute("SELECT min(rowid) FROM samples").fetchone()[0]
        if self._sealed(conn) != sealed or head is None or head > a:
            return False
        conn.executemany(_INSERT_CHUNK, chunks)
        # Blocks wholly within the window point at sealed rows only; one straddling b stays for the rest.
        conn.executemany("DELETE FROM blocks WHERE series_id = ? AND cell BETWEEN ? AND ? AND hi <= ?", cells)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'sealed'", (str(b),))
        return True

    def _trim_head(self, conn: sqlite3.Connection) -> int:
        """In the writer: delete head rows that are sealed and passed by every outbox consumer, a chunk at a time."""
        head, top = conn.execute("SELECT min(rowid), max(rowid) FROM samples").fetchone()
        if head is None:
            return 0
        # The newest row stays so that rowids (the outbox sequence) never restart.
        upto = min(self._sealed(conn), top - 1, head + self.retention_chunk_rows - 1)
        hold = conn.execute("SELECT min(value) FROM cursors WHERE consumer = 1").fetchone()[0]
        if hold is not None:
            upto = min(upto, hold)
        if upto < head:
            return 0
        return conn.execute("DELETE FROM samples WHERE rowid <= ?", (upto,)).rowcount

    # --- history -------------------------------------------------------------------------
    async def history(
        self,
        equipment: str,
        path: str,
        start: float,
        end: float,
        bucket_s: float | None = None,
        agg: str | Sequence[str] = "avg",
        limit: int = 10000,
    ) -> list[dict[str, Any]]:
        """Samples with start <= source_ts < end, oldest first; raw, or bucketed over GOOD samples.

        Buckets are aligned to multiples of bucket_s since the epoch; "ts" is the
        bucket start; "bad" counts UNCERTAIN and BAD samples. A bucket without
        samples has no row; a bucket with only bad samples has None aggregates.
        Numeric aggregates ignore string values; "count" counts every GOOD sample.
        """
        aggs = [agg] if isinstance(agg, str) else list(agg)
        unknown = [a for a in aggs if a not in AGGREGATES]
        if unknown or not aggs:
            raise ValueError(f"agg {unknown or aggs}: use {', '.join(AGGREGATES)}")
        if bucket_s is not None and not bucket_s > 0:
            raise ValueError(f"bucket_s={bucket_s}: must be positive")
        start, end = max(start, -_FAR), min(end, _FAR)  # "everything" as +-inf stays within integer cells
        if not end > start or limit <= 0:
            return []
        rows: list[dict[str, Any]]
        if bucket_s is None:
            rows = await self._read(lambda c: self._raw(c, equipment, path, start, end, limit))
        else:
            rows = await self._read(lambda c: self._bucketed(c, equipment, path, start, end, bucket_s, aggs, limit))
        return rows

    @staticmethod
    def _sid(conn: sqlite3.Connection, equipment: str, path: str) -> int | None:
        row = conn.execute("SELECT id FROM series WHERE equipment = ? AND path = ?", (equipment, path)).fetchone()
        return row[0] if row else None

    def _head_rows(self, conn: sqlite3.Connection, sid: int, start: float, end: float) -> list[Row]:
        """(ts, gw, value, value_text, q, reason) of the head's unsealed rows of a series, in (time, sequence) order."""
        params = {"sid": sid, "c0": int(start / CELL_S), "c1": int(end / CELL_S), "start": start, "end": end,
                  "sealed": self._sealed(conn)}
        return conn.execute(f"SELECT s.ts, s.gw, s.value, s.value_text, s.q, s.reason {_SERIES_ROWS} "
                            "ORDER BY s.ts, s.rowid", params).fetchall()

    def _raw(self, conn: sqlite3.Connection, equipment: str, path: str, start: float, end: float,
             limit: int) -> list[dict[str, Any]]:
        sid = self._sid(conn, equipment, path)
        if sid is None:
            return []
        ts_parts: list[np.ndarray] = []
        gw_parts: list[np.ndarray] = []
        q_parts: list[np.ndarray] = []
        values: list[Any] = []
        reasons: list[str] = []
        # Chunks in sealing order, then the head: within equal times that is sequence order, which the
        # stable sort below keeps.
        for (data,) in conn.execute(_CHUNKS_IN_RANGE.format(cols="data"), (sid, start, end)):
            c = codec.decode(data)
            lo, hi = np.searchsorted(c.ts, (start, end)).tolist()
            if lo == hi:
                continue
            ts_parts.append(c.ts[lo:hi])
            gw_parts.append(c.gw[lo:hi])
            q_parts.append(c.q[lo:hi].astype(np.int64))
            values += c.values()[lo:hi]
            reasons += c.reasons[lo:hi]
        head = self._head_rows(conn, sid, start, end)
        if head:
            ts, gw, value, text, qcol, reason = zip(*head)
            ts_parts.append(np.array(ts, dtype=np.float64))
            gw_parts.append(np.array(gw, dtype=np.float64))
            q_parts.append(np.array(qcol, dtype=np.int64))
            values += [v if t is None else t for v, t in zip(value, text)]
            reasons += [r or "" for r in reason]
        if not ts_parts:
            return []
        all_ts = np.concatenate(ts_parts)
        order = np.argsort(all_ts, kind="stable")[:limit]
        q = np.concatenate(q_parts)[order]
        picked = order.tolist()
        if picked != list(range(len(picked))):
            values = [values[i] for i in picked]
            reasons = [reasons[i] for i in picked]
        if (q & BOOL_FLAG).any():
            values = [bool(v) if f else v for v, f in zip(values, (q & BOOL_FLAG).tolist())]
        return [{"ts": t, "value": v, "quality": qv, "reason": r, "gateway_ts": g} for t, v, qv, r, g in
                zip(all_ts[order].tolist(), values, (q & QMASK).tolist(), reasons, np.concatenate(gw_parts)[order].tolist())]

    def _bucketed(self, conn: sqlite3.Connection, equipment: str, path: str, start: float, end: float,
                  bucket_s: float, aggs: list[str], limit: int) -> list[dict[str, Any]]:
        sid = self._sid(conn, equipment, path)
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
                _CHUNKS_IN_RANGE.format(cols="t0, t1, ng, nv, nbad, sm, mn, mx, ft, fv, lt, lv, data"),
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
        head = self._head_rows(conn, sid, start, end)
        if head:
            c = codec.columns(*zip(*head))
            pending.append((c.ts, c.q, c.kind, c.numbers()))
        flush()
        return [buckets[k].row(k * bucket, aggs) for k in sorted(buckets)[:limit]]

    # --- latest and series ---------------------------------------------------------------
    async def latest(self, equipment: str | None = None) -> list[Sample]:
        """The newest committed sample of every series, from memory."""
        with self._latest_lock:
            values = list(self._latest.values())
        if equipment is not None:
            values = [s for s in values if s.equipment == equipment]
        values.sort(key=lambda s: (s.equipment, s.path))
        return values

    async def series(self, equipment: str | None = None) -> list[tuple[str, str, str]]:
        def q(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
            if equipment is None:
                return conn.execute("SELECT equipment, path, unit FROM series ORDER BY equipment, path").fetchall()
            return conn.execute("SELECT equipment, path, unit FROM series WHERE equipment = ? ORDER BY path",
                                (equipment,)).fetchall()
        result: list[tuple[str, str, str]] = await self._read(q)
        return result

    # --- alarms --------------------------------------------------------------------------
    async def record_alarm(self, equipment: str, occurrence_id: str, code: int, text: str, severity: int,
                           state: str, ts: float, stop_reason: bool, by: str | None = None) -> None:
        """One transition of an alarm occurrence: raised, acknowledged, or cleared."""
        if state not in ("raised", "cleared", "acknowledged"):
            raise ValueError(f"alarm state {state!r}: use raised, cleared or acknowledged")
        column = {"raised": "raised_ts", "cleared": "cleared_ts", "acknowledged": "acked_ts"}[state]

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO alarms (equipment, occurrence_id, code, text, severity, stop_reason) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT DO UPDATE SET text = excluded.text, severity = excluded.severity",
                (equipment, str(occurrence_id), int(code), text, int(severity), int(bool(stop_reason))))
            # A repeated transition keeps its first time (the machine may report it again).
            conn.execute(f"UPDATE alarms SET {column} = coalesce({column}, ?) WHERE equipment = ? AND occurrence_id = ?",
                         (ts, equipment, str(occurrence_id)))
            if state == "acknowledged":
                conn.execute("UPDATE alarms SET acked_by = coalesce(acked_by, ?) WHERE equipment = ? AND occurrence_id = ?",
                             (by, equipment, str(occurrence_id)))

        await self._write(op)

    async def alarms(self, equipment: str | None = None, active_only: bool = False, start: float | None = None,
                     end: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Occurrences, newest raised first; start/end bound raised_ts."""
        where: list[str] = []
        params: list[Any] = []
        if equipment is not None:
            where.append("equipment = ?")
            params.append(equipment)
        if active_only:
            where.append("cleared_ts IS NULL")
        if start is not None:
            where.append("raised_ts >= ?")
            params.append(start)
        if end is not None:
            where.append("raised_ts < ?")
            params.append(end)
        sql = ("SELECT equipment, occurrence_id, code, text, severity, stop_reason, raised_ts, cleared_ts, acked_ts, "
               "acked_by FROM alarms" + (" WHERE " + " AND ".join(where) if where else "") +
               " ORDER BY raised_ts DESC, occurrence_id DESC LIMIT ?")
        params.append(limit)

        def q(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            out = []
            for eq, occ, code, text, sev, stop, raised, cleared, acked, by in conn.execute(sql, params):
                out.append({"equipment": eq, "occurrence_id": occ, "code": code, "text": text, "severity": sev,
                            "stop_reason": bool(stop), "raised_ts": raised, "cleared_ts": cleared, "acked_ts": acked,
                            "acked_by": by, "active": cleared is None, "acknowledged": acked is not None})
            return out
        result: list[dict[str, Any]] = await self._read(q)
        return result

    # --- events --------------------------------------------------------------------------
    async def record_event(self, equipment: str, event_type: str, source_ts: float, seq: int,
                           payload: dict[str, Any], ids: Sequence[str] = ()) -> int:
        """Store an event (the same equipment/seq/type/time twice is stored once); returns its id."""
        text = json.dumps(payload, separators=(",", ":"), default=str)
        id_values = sorted({str(i) for i in ids if i not in (None, "")})
        recorded = time.time()

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO events (equipment, type, source_ts, seq, payload, recorded_ts) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT DO NOTHING", (equipment, event_type, source_ts, int(seq), text, recorded))
            if cur.rowcount == 0:
                known: int = conn.execute("SELECT id FROM events WHERE equipment = ? AND seq = ? AND type = ? AND source_ts = ?",
                                          (equipment, int(seq), event_type, source_ts)).fetchone()[0]
                return known
            event_id = cur.lastrowid
            assert event_id is not None  # an INSERT that inserted a row
            conn.executemany("INSERT OR IGNORE INTO event_ids (id_value, event_id) VALUES (?, ?)",
                             [(v, event_id) for v in id_values])
            return event_id

        result: int = await self._write(op)
        return result

    @staticmethod
    def _event_rows(cur: Iterable[Row]) -> list[dict[str, Any]]:
        return [{"id": i, "equipment": eq, "type": t, "source_ts": ts, "seq": seq, "payload": json.loads(p),
                 "recorded_ts": rec} for i, eq, t, ts, seq, p, rec in cur]

    async def events(self, equipment: str | None = None, event_type: str | None = None, start: float | None = None,
                     end: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Events, newest first; start/end bound source_ts."""
        where: list[str] = []
        params: list[Any] = []
        if equipment is not None:
            where.append("equipment = ?")
            params.append(equipment)
        if event_type is not None:
            where.append("type = ?")
            params.append(event_type)
        if start is not None:
            where.append("source_ts >= ?")
            params.append(start)
        if end is not None:
            where.append("source_ts < ?")
            params.append(end)
        sql = ("SELECT id, equipment, type, source_ts, seq, payload, recorded_ts FROM events" +
               (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY source_ts DESC, id DESC LIMIT ?")
        params.append(limit)
        result: list[dict[str, Any]] = await self._read(lambda c: self._event_rows(c.execute(sql, params)))
        return result

    async def events_referencing(self, id_value: str) -> list[dict[str, Any]]:
        """Every event that mentions a unit, material or job ID, oldest first."""
        sql = ("SELECT e.id, e.equipment, e.type, e.source_ts, e.seq, e.payload, e.recorded_ts "
               "FROM event_ids x JOIN events e ON e.id = x.event_id WHERE x.id_value = ? ORDER BY e.source_ts, e.id")
        result: list[dict[str, Any]] = await self._read(lambda c: self._event_rows(c.execute(sql, (str(id_value),))))
        return result

    # --- audit ---------------------------------------------------------------------------
    async def record_audit(self, ts: float, user: str, role: str, equipment: str, command: str, args: dict[str, Any],
                           result_code: int, result: str, detail: str) -> None:
        row = (ts, user, role, equipment, command, json.dumps(args, separators=(",", ":"), default=str),
               int(result_code), result, detail)
        await self._write(lambda c: c.execute(
            "INSERT INTO audit (ts, user, role, equipment, command, args, result_code, result, detail) "
            "VALUES (?,?,?,?,?,?,?,?,?)", row).lastrowid)

    async def audit(self, limit: int = 200, equipment: str | None = None) -> list[dict[str, Any]]:
        """Command requests, newest first."""
        sql = "SELECT id, ts, user, role, equipment, command, args, result_code, result, detail FROM audit"
        params: list[Any] = []
        if equipment is not None:
            sql += " WHERE equipment = ?"
            params.append(equipment)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)

        def q(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            return [{"id": i, "ts": ts, "user": u, "role": r, "equipment": eq, "command": cmd, "args": json.loads(a),
                     "result_code": code, "result": res, "detail": d}
                    for i, ts, u, r, eq, cmd, a, code, res, d in conn.execute(sql, params)]
        result: list[dict[str, Any]] = await self._read(q)
        return result

    # --- link status ---------------------------------------------------------------------
    async def record_link(self, equipment: str, ts: float, up: bool, reason: str) -> None:
        await self._write(lambda c: c.execute("INSERT INTO links (equipment, ts, up, reason) VALUES (?,?,?,?)",
                                              (equipment, ts, int(bool(up)), reason or "")).lastrowid)

    async def link_history(self, equipment: str, start: float, end: float) -> list[dict[str, Any]]:
        """Link-down intervals overlapping [start, end), oldest first; up_ts None while still down."""
        def q(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            before = conn.execute("SELECT ts, up, reason FROM links WHERE equipment = ? AND ts < ? "
                                  "ORDER BY ts DESC, id DESC LIMIT 1", (equipment, start)).fetchall()
            changes = before + conn.execute("SELECT ts, up, reason FROM links WHERE equipment = ? AND ts >= ? AND ts < ? "
                                            "ORDER BY ts, id", (equipment, start, end)).fetchall()
            after = conn.execute("SELECT ts FROM links WHERE equipment = ? AND ts >= ? AND up = 1 ORDER BY ts, id LIMIT 1",
                                 (equipment, end)).fetchone()
            out: list[dict[str, Any]] = []
            down: dict[str, Any] | None = None
            for ts, up, reason in changes:
                if not up and down is None:
                    down = {"down_ts": ts, "up_ts": None, "reason": reason}
                elif up and down is not None:
                    down["up_ts"] = ts
                    out.append(down)
                    down = None
            if down is not None:
                down["up_ts"] = after[0] if after else None
                out.append(down)
            return out
        result: list[dict[str, Any]] = await self._read(q)
        return result

    # --- outbox --------------------------------------------------------------------------
    async def read_since(self, cursor: int, limit: int) -> tuple[list[tuple[int, Sample]], int]:
        """Stored samples with sequence > cursor, in commit order; and the cursor to pass next time."""
        def q(conn: sqlite3.Connection) -> tuple[list[tuple[int, Sample]], int]:
            rows = conn.execute("SELECT rowid, series_id, ts, gw, value, value_text, q, reason FROM samples "
                                "WHERE rowid > ? ORDER BY rowid LIMIT ?", (cursor, limit)).fetchall()
            if not rows:
                return [], cursor
            needed = {r[1] for r in rows}
            meta = {sid: (eq, path, unit) for sid, eq, path, unit in conn.execute(
                f"SELECT id, equipment, path, unit FROM series WHERE id IN ({','.join('?' * len(needed))})",
                list(needed))}
            out = []
            for seq, sid, ts, gw, value, text, qv, reason in rows:
                eq, path, unit = meta[sid]
                out.append((seq, Sample(eq, path, _decode(value, text, qv), unit, ts, gw, _quality(qv), reason or "")))
            return out, rows[-1][0]
        result: tuple[list[tuple[int, Sample]], int] = await self._read(q)
        return result

    async def get_cursor(self, name: str) -> int | None:
        def q(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
            return row[0] if row else None
        result: int | None = await self._read(q)
        return result

    async def set_cursor(self, name: str, value: int) -> None:
        await self._write(lambda c: c.execute(
            "INSERT INTO cursors (name, value, updated_ts) VALUES (?,?,?) "
            "ON CONFLICT DO UPDATE SET value = excluded.value, updated_ts = excluded.updated_ts",
            (name, int(value), time.time())).rowcount)

    async def register_consumer(self, name: str) -> int:
        """Mark `name` as an outbox consumer that retention waits for; returns its cursor (0 when new)."""
        def op(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO cursors (name, value, consumer, updated_ts) VALUES (?, 0, 1, ?) "
                         "ON CONFLICT DO UPDATE SET consumer = 1", (name, time.time()))
            result: int = conn.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()[0]
            return result
        result: int = await self._write(op)
        return result

    async def outbox_backlog(self, cursor: int) -> tuple[int, float | None]:
        """Samples stored after `cursor`, and the recording time of the oldest of them.

        Rowids are the commit sequence and only the head is ever deleted, so the
        count is the difference of two rowids, not a scan of the backlog.
        """
        def q(conn: sqlite3.Connection) -> tuple[int, float | None]:
            head, top = conn.execute("SELECT min(rowid), max(rowid) FROM samples").fetchone()
            if top is None or top <= cursor:
                return 0, None
            oldest = conn.execute("SELECT gw FROM samples WHERE rowid > ? ORDER BY rowid LIMIT 1", (cursor,)).fetchone()
            return top - max(cursor, head - 1), oldest[0]
        result: tuple[int, float | None] = await self._read(q)
        return result

    async def record_reject(self, consumer: str, seq: int, point: str, error: str) -> None:
        """Keep a point a sink refused for good, with the sink's reason."""
        await self._write(lambda c: c.execute(
            "INSERT INTO forward_rejects (ts, consumer, seq, point, error) VALUES (?,?,?,?,?)",
            (time.time(), consumer, seq, point, error)).rowcount)

    async def rejects(self, consumer: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest points set aside by forwarders, newest first."""
        def q(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            where, args = ("WHERE consumer = ?", [consumer]) if consumer else ("", [])
            cur = conn.execute(f"SELECT ts, consumer, seq, point, error FROM forward_rejects {where} "
                               "ORDER BY id DESC LIMIT ?", (*args, limit))
            return [dict(zip(("ts", "consumer", "seq", "point", "error"), r)) for r in cur]
        result: list[dict[str, Any]] = await self._read(q)
        return result

    async def reject_counts(self) -> dict[str, int]:
        return dict(await self._read(lambda c: c.execute(
            "SELECT consumer, count(*) FROM forward_rejects GROUP BY consumer").fetchall()))

    async def unregister_consumer(self, name: str) -> None:
        await self._write(lambda c: c.execute("UPDATE cursors SET consumer = 0 WHERE name = ?", (name,)).rowcount)

    # --- health --------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._cv:
            out = dict(self._stats)
            out["records_deleted"] = dict(out["records_deleted"])
            out["queued"] = self._queued
            out["max_queue"] = self.max_queue
            out["held"] = self._queued + self._holding  # in memory, not yet committed
            out["pending_records"] = len(self._ops)
        out["series"] = len(self._series_meta)
        out["path"] = str(self.path)
        out["running"] = self._thread is not None and self._failed is None
        return out
