"""The writer: the only connection that writes, on its own thread, and the queue that feeds it.

``write_samples`` appends to a bounded queue (counted drops when full); record
writes (``write``) hand the writer a small operation and await its commit, so
there is never a second writer waiting on SQLite's lock. The writer takes what
is queued (lingering up to ``commit_interval_s`` to fill a batch), gives each
sample its series id, appends the rows sorted by (series, time) with their
index (a ``blocks`` row per (series, 10 s cell), or a ``runs`` row for up to
64 series of one row each: schema.RUNS), runs the operations each in its own
savepoint, and commits. Between commits it runs retention and the disk budget
(gateway/store/sqlite/upkeep.py).

What the writer does in Python is done column-wise with map/zip (C speed, no
per-row objects for the cyclic GC to walk), and rows go into SQLite 4,096 per
INSERT: sqlite3 releases and retakes the GIL around every statement, and with
another thread busy in Python each retake can wait a switch interval (5 ms).
With a thread spinning in Python, one row per statement managed 5k rows/s;
4,096 per statement, 278k rows/s.

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
import functools
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from itertools import chain, islice
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np

from gateway.backoff import Backoff
from gateway.samples import Sample
from gateway.store.sqlite import reads
from gateway.store.sqlite.database import Database, StoreClosed
from gateway.store.sqlite.schema import CELL_S, FILE_CHECK_S, QUALITY_CODE, RUN_MAX, Row, encode_value, sealed
from gateway.store.sqlite.upkeep import Upkeep

log = logging.getLogger("linegw.store")

# Rows go in many per statement: sqlite3 releases and retakes the GIL around every statement,
# and with a busy event loop each retake can wait a whole switch interval. Measured with a
# thread spinning in Python: 5k rows/s one row per statement, 278k rows/s with 4,096.
ROWS_PER_INSERT = 4096
_COLUMNS = 7


_SAMPLES = "INSERT INTO samples (series_id, ts, gw, value, value_text, q, reason) VALUES "
_BLOCKS = "INSERT INTO blocks (series_id, cell, lo, hi) VALUES "
_RUNS = "INSERT INTO runs (cell, last_sid, first_sid, lo) VALUES "


@functools.lru_cache(maxsize=16)
def _insert_sql(head: str, columns: int, rows: int) -> str:
    return head + ",".join(["(" + ",".join("?" * columns) + ")"] * rows)


def _param_chunks(params: Iterator[Any], size: int, count: int) -> Iterator[Row]:
    """`count` parameter tuples of `size` values each, built as SQLite asks for them."""
    for _ in range(count):
        yield tuple(islice(params, size))


class _Index(NamedTuple):
    """The index rows of a commit's samples, flattened, as `_insert` takes them."""

    blocks: Iterator[Any]  # (series_id, cell, lo, hi)
    n_blocks: int
    runs: Iterator[Any]  # (cell, last_sid, first_sid, lo)
    n_runs: int


def _index_rows(sids: list[int], ts: list[float], lo: int) -> _Index:
    """The index of rows appended from rowid `lo` on, sorted by (series, ts), each in its table's key order.

    Every (series, cell) group of rows is a contiguous rowid range. Groups of one row, of consecutive
    series and the same cell, make runs of up to RUN_MAX (schema.RUNS); every other group is a block.
    Computed from the batch in hand rather than by reading the rows back (INSERT ... SELECT ... GROUP
    BY), which cost as much as the inserts themselves.
    """
    sid = np.array(sids, dtype=np.int64)
    cell = (np.array(ts, dtype=np.float64) / CELL_S).astype(np.int64)  # truncated, as CAST(ts / CELL_S AS INTEGER)
    n = len(sid)
    start = np.flatnonzero(np.concatenate(([True], (sid[1:] != sid[:-1]) | (cell[1:] != cell[:-1]))))
    end = np.append(start[1:], n) - 1
    gsid, gcell = sid[start], cell[start]
    single = start == end
    # A group continues the run of the one before it: both single rows, the next series, the same cell.
    joins = np.concatenate(([False], single[1:] & single[:-1] & (gsid[1:] == gsid[:-1] + 1) & (gcell[1:] == gcell[:-1])))
    first_of_run = np.maximum.accumulate(np.where(joins, 0, np.arange(len(start))))
    new_run = ((np.arange(len(start)) - first_of_run) % RUN_MAX) == 0  # runs longer than RUN_MAX are cut
    run_first = np.flatnonzero(new_run)
    run_last = np.append(run_first[1:], len(start)) - 1
    is_run = run_last > run_first
    # Groups in no run of two or more are blocks.
    in_run = np.repeat(is_run, run_last - run_first + 1)
    b = np.flatnonzero(~in_run)
    b = b[np.lexsort((start[b], gsid[b], gcell[b]))]  # (cell, series, lo): appended where the newest cell ends
    blocks = chain.from_iterable(zip(gsid[b].tolist(), gcell[b].tolist(), (start[b] + lo).tolist(),
                                     (end[b] + lo).tolist()))
    rf, rl = run_first[is_run], run_last[is_run]
    r = np.lexsort((start[rf], gsid[rl], gcell[rf]))  # (cell, last series, lo)
    rf, rl = rf[r], rl[r]
    runs = chain.from_iterable(zip(gcell[rf].tolist(), gsid[rl].tolist(), gsid[rf].tolist(), (start[rf] + lo).tolist()))
    return _Index(blocks, len(b), runs, len(rf))


_EQ, _PATH, _VALUE, _UNIT, _TS, _GW, _Q, _REASON = (itemgetter(i) for i in range(8))  # Sample fields


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
    return (isinstance(s, tuple) and len(s) in (8, 9) and all(type(s[i]) is str for i in (0, 1, 3))
            and all(type(s[i]) in _NUMBER and math.isfinite(s[i]) for i in (4, 5)))

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


class Writer:
    """The writer thread of one store, its queue, and what it keeps in memory: series ids and the latest samples."""

    def __init__(self, db: Database, upkeep: Upkeep, stats: dict[str, Any], *, max_queue: int, batch_rows: int,
                 max_batch_rows: int, commit_interval_s: float) -> None:
        self.db = db
        self.path = db.path
        self.upkeep = upkeep
        self.stats = stats
        self.max_queue = max_queue
        self.batch_rows = batch_rows
        self.max_batch_rows = max(max_batch_rows, batch_rows)
        self.commit_interval_s = commit_interval_s
        # (last rowid of a commit, monotonic time of the commit): which head rows are old enough to seal.
        self.commits: collections.deque[tuple[int, float]] = collections.deque()
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
        self._failed: BaseException | None = None
        self._holding = 0  # samples of the batch the writer keeps retrying

        self._loop: asyncio.AbstractEventLoop | None = None
        self._space: asyncio.Event | None = None
        self._space_waiters = 0
        self._thread: threading.Thread | None = None

        # Owned by the writer thread once started.
        self._sids: dict[str, dict[str, int]] = {}
        self.series_meta: dict[int, tuple[str, str, str]] = {}
        self._units: dict[int, str] = {}
        self._next_sid = 1
        self._insert_sizes: list[int] = [1]
        self._next_file_check = 0.0

        self._latest_lock = threading.Lock()
        self._latest: dict[int, Sample] = {}

    # --- lifecycle -----------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._failed is None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._space = asyncio.Event()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await asyncio.to_thread(self._open)
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._stopping = False
        self._thread = threading.Thread(target=self._writer_main, args=(conn, ready), name="sqlite-store-writer",
                                        daemon=True)
        self._thread.start()
        await asyncio.wrap_future(ready)

    async def stop(self) -> BaseException | None:
        """Commit everything queued and stop; what made the writer fail, if it did."""
        if self._thread is None:
            return None
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        thread = self._thread
        await asyncio.to_thread(thread.join)
        self._thread = None
        return self._failed

    def _open(self) -> sqlite3.Connection:
        """Open the file (created or migrated) and load what the writer keeps in memory from it."""
        conn = self.db.open_writer()
        widest = min(ROWS_PER_INSERT, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // _COLUMNS)
        self._insert_sizes = [n for n in (4096, 512, 64, 8, 1) if n <= widest] or [1]
        for sid, eq, path, unit in conn.execute("SELECT id, equipment, path, unit FROM series"):
            self._sids.setdefault(eq, {})[path] = sid
            self.series_meta[sid] = (eq, path, unit)
            self._units[sid] = unit
            self._next_sid = max(self._next_sid, sid + 1)
        latest = reads.latest(conn, self.series_meta)
        with self._latest_lock:
            self._latest = latest
        self.stats["db_size_bytes"] = self.db.size()
        top = conn.execute("SELECT max(rowid) FROM samples").fetchone()[0]
        if top is not None:
            self.commits.append((top, time.monotonic()))  # what is there at open counts as committed now
        self.stats["sealed_seq"] = sealed(conn)
        return conn

    def latest(self) -> list[Sample]:
        """The newest committed sample of every series."""
        with self._latest_lock:
            return list(self._latest.values())

    def snapshot(self) -> dict[str, Any]:
        """The stats, with the queue's figures taken under its lock."""
        with self._cv:
            out = dict(self.stats)
            out["records_deleted"] = dict(out["records_deleted"])
            out["queued"] = self._queued
            out["max_queue"] = self.max_queue
            out["held"] = self._queued + self._holding  # in memory, not yet committed
            out["pending_records"] = len(self._ops)
        out["series"] = len(self.series_meta)
        return out

    async def flush(self) -> None:
        """Wait until every sample and record enqueued so far is committed."""
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._cv:
            self.check_running()
            if self._committed >= self._accepted and not self._ops:
                return
            self._flushes.append((self._accepted, fut))
            self._cv.notify_all()
        await asyncio.wrap_future(fut)

    def check_running(self) -> None:
        if self._failed is not None:
            raise StoreClosed(f"the store's writer failed: {self._failed}") from self._failed
        if self._thread is None or self._stopping:
            raise StoreClosed(f"{self.path}: the store is not running (start() it first)")

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
            how = self.db.changed()
        except OSError as exc:  # the directory unreadable: nothing to compare; the commits say the rest
            log.debug("%s: cannot stat the store file (%s)", self.path, exc)
            return conn
        if how is None:
            return conn
        # The old file's connections close first: the -wal and -shm files go by the path, and the
        # new file must not be read through the old one's WAL.
        self.db.forget_readers()
        conn.close()
        saved = (self._sids, self.series_meta, self._units, self._next_sid, self.commits)
        self._sids, self.series_meta, self._units, self._next_sid = {}, {}, {}, 1
        self.commits = collections.deque()
        try:
            self.db.drop_side_files()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = self._open()
        except (sqlite3.Error, OSError) as exc:
            # The closed connection makes the next commit fail, and its retry comes back here.
            (self._sids, self.series_meta, self._units, self._next_sid, self.commits) = saved
            log.error("%s: the store file was %s under the gateway and cannot be opened again (%s); samples are "
                      "held while it is tried again", self.path, how, exc)
            return conn
        self.stats["file_reopened"] += 1
        log.error("%s: the store file was %s under the gateway; %s it, samples go there from now on", self.path,
                  how, "created" if how == "removed" else "opened")
        return fresh

    async def write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        op = _Op(fn)
        with self._cv:
            self.check_running()
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
                self.stats["dropped"] += n
                dropped, queued = self.stats["dropped"], self._queued
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
            self.check_running()
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
        next_retention = time.monotonic() + min(1.0, self.upkeep.retention_check_s)
        retention_pending = False
        try:
            while True:
                chunks, ops, rows = self._take(next_retention if self.upkeep.retains else None, retention_pending)
                if chunks or ops:
                    conn = self._commit_batch(conn, chunks, ops, rows)
                elif self._stopping_done():
                    break
                conn = self._same_file(conn)
                now = time.monotonic()
                if self.upkeep.retains and (retention_pending or now >= next_retention):
                    try:
                        retention_pending = self.upkeep.retention_step(conn)
                    except sqlite3.Error as exc:
                        # A storage fault is no reason to stop writing: the commits report it, retention waits.
                        log.warning("%s: retention failed (%s); tried again in %.0f s", self.path, exc,
                                    self.upkeep.retention_check_s)
                        retention_pending = False
                    if not retention_pending:
                        next_retention = now + self.upkeep.retention_check_s
        except BaseException as exc:
            # The writer is the only path to disk; stop taking writes and make every waiter see why.
            log.exception("%s: store writer failed", self.path)
            with self._cv:
                self._failed = exc
                pending = [op.future for op in self._ops] + [f for _, f in self._flushes]
                self._ops, self._flushes = [], []
                self.stats["dropped"] += self._queued
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
                        self.series_meta[sid] = (sample.equipment, sample.path, sample.unit)
                        unit_changes.append((sample.unit, sid))
            flat += chunk
            sid_of += known
        if rejected:
            self.stats["rejected"] += rejected
            log.error("%s: rejected %d malformed samples (need str equipment, path and unit, finite source_ts "
                      "and gateway_ts); %d so far", self.path, rejected, self.stats["rejected"])
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
                self.series_meta[sid] = (eq, path, unit)
                self._units[sid] = unit
                new_series.append((sid, eq, path, unit))
            ids.append(sid)
        return ids

    @staticmethod
    def _params(rows: list[Sample], sids: list[int], ts: list[float]) -> Iterator[Any]:
        """The row values of a batch's samples (in (series, ts) order, with their series ids and times), flattened."""
        values = list(map(_VALUE, rows))
        quality = list(map(QUALITY_CODE.__getitem__, map(_Q, rows)))
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
                    values[i], text[i], flag = encode_value(v)
                    quality[i] |= flag
        return chain.from_iterable(zip(sids, ts, map(_GW, rows), values, text, quality, map(_REASON, rows)))

    def _commit_batch(self, conn: sqlite3.Connection, chunks: list[list[Sample]], ops: list[_Op],
                      n: int) -> sqlite3.Connection:
        """Commit one batch, retrying through storage faults; the writer's connection afterwards."""
        t0 = time.perf_counter()
        batch = self._prepare(chunks)
        st = self.stats
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
                        latest[sid] = s if type(s) is Sample else Sample(*s)
        st = self.stats
        st["written"] += len(batch.order)
        st["batches"] += 1
        st["last_commit_ts"] = time.time()
        st["last_batch_rows"] = n
        st["last_batch_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        if st["batches"] % 64 == 1:
            self.stats["db_size_bytes"] = self.db.size()
        self.upkeep.after_commit(conn, n)  # before the flushes settle: a flushed store is within its budget
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
                rows = list(map(batch.flat.__getitem__, batch.order))
                sids = list(map(batch.sid_of.__getitem__, batch.order))
                ts = list(map(_TS, rows))
                self._insert(conn, _SAMPLES, _COLUMNS, self._params(rows, sids, ts), len(rows))
                hi = lo + len(rows) - 1
                last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
                if last != hi:
                    raise sqlite3.DatabaseError(f"samples rowids not contiguous ({lo}..{last}, expected ..{hi})")
                index = _index_rows(sids, ts, lo)
                self._insert(conn, _BLOCKS, 4, index.blocks, index.n_blocks)
                self._insert(conn, _RUNS, 4, index.runs, index.n_runs)
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
                self.commits.append((hi, time.monotonic()))
        except BaseException:
            # The series cache keeps the new ids: the retry inserts the same rows and series again.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def _insert(self, conn: sqlite3.Connection, head: str, columns: int, params: Iterator[Any], rows: int) -> None:
        """Insert `rows` rows of flattened `params`, as many rows per statement as SQLite takes."""
        for size in self._insert_sizes:
            count, rows = divmod(rows, size)
            if count:
                conn.executemany(_insert_sql(head, columns, size), _param_chunks(params, size * columns, count))

    def write_sync(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """`write` for threads other than the event loop's: hand the writer an operation, wait for its commit."""
        op = _Op(fn)
        with self._cv:
            self.check_running()
            self._ops.append(op)
            self._cv.notify_all()
        return op.future.result()
