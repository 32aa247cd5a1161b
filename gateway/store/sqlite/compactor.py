"""Sealing the head into compressed chunks, on the compactor's own thread.

A window is the head rows committed at least ``seal_after_s`` ago, once the
oldest of them is ``seal_span_s`` older again (at most ``seal_rows``): SQLite
sorts it by (series, ts, rowid) (spilling to a temporary file if it is large),
the codec packs each series' rows (gateway/store/codec.py), and the writer
stores the chunks and moves the sealed sequence (``meta.sealed``) in one
transaction, so a crash can never leave a window half sealed or sealed twice.
Rows up to the sealed sequence are read from chunks only; the head keeps them
for the outbox until every registered consumer has passed them, then the
compactor has the writer drop them a range at a time.

Where the window is read and encoded (``compress_in``): in the compactor's thread,
or in a process of its own (``EncodeProcess``). Sealing costs more CPU per value
than writing it (bench/store.py: 7.6 µs sealed against 5.5 written), and in a
thread its Python parts take turns with the event loop for the GIL, in bursts of
a window (millions of rows, tens of seconds). In a process it runs on the other
core; only the window's bounds go there and only its compressed chunks come back.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import sqlite3
import threading
import time
from itertools import groupby
from multiprocessing.connection import Connection
from operator import itemgetter
from pathlib import Path
from typing import Any

from gateway.store import codec
from gateway.store.sqlite import schema
from gateway.store.sqlite.database import Database, StoreClosed
from gateway.store.sqlite.schema import CELL_S, CHUNK_N, INSERT_CHUNK, Row, chunk_rows
from gateway.store.sqlite.writer import Writer

log = logging.getLogger("linegw.store")
_SID = itemgetter(0)
COMPRESS_IN = ("thread", "process")
Encoded = tuple[list[Row], list[Row]]  # (chunk rows, block cells to drop)


class EncoderLost(Exception):
    """The encoding process ended or failed; the window stays in the head and is tried again."""


def cell_ranges(cells: list[Row]) -> list[tuple[int, int]]:
    """The (first, last) cells of a window's series merged into disjoint ranges, in order."""
    merged: list[list[int]] = []
    for _, c0, c1, _ in sorted(cells, key=lambda r: r[1]):
        if merged and c0 <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], c1)
        else:
            merged.append([c0, c1])
    return [(c0, c1) for c0, c1 in merged]


def window_connection(db: Database) -> sqlite3.Connection:
    conn = db.connect()
    conn.execute("PRAGMA query_only = ON")
    # A window's sort can be larger than memory should hold: SQLite spills it to a temporary file.
    conn.execute("PRAGMA temp_store = FILE")
    return conn


def encode_window(conn: sqlite3.Connection, a: int, b: int, stop: threading.Event | None = None) -> Encoded | None:
    """The chunks of head rows [a, b], per series in (time, sequence) order; None when `stop` is set meanwhile."""
    chunks: list[Row] = []
    cells: list[Row] = []
    conn.execute("BEGIN")
    try:
        cur = conn.execute("SELECT series_id, ts, gw, value, value_text, q, reason FROM samples "
                           "WHERE rowid BETWEEN ? AND ? ORDER BY series_id, ts, rowid", (a, b))
        for sid, group in groupby(cur, key=_SID):
            if stop is not None and stop.is_set():
                return None
            rows = list(group)
            _, ts, gw, value, text, q, reason = zip(*rows)
            chunks += chunk_rows(sid, b, codec.columns(ts, gw, value, text, q, reason))
            cells.append((sid, int(rows[0][1] / CELL_S), int(rows[-1][1] / CELL_S), b))
    finally:
        conn.execute("COMMIT")
    return chunks, cells


def _encoder_main(conn: Connection, path: str, cache_mb: int) -> None:
    """The encoding process: windows in, chunks out, until the compactor closes the pipe (or is gone)."""
    db = Database(Path(path), "NORMAL", cache_mb, 1)
    while True:
        try:
            a, b = conn.recv()
        except (EOFError, OSError):
            return
        try:
            read = window_connection(db)  # a connection per window: the file at the path may be another by now
            try:
                conn.send((True, encode_window(read, a, b)))
            finally:
                read.close()
        except (sqlite3.Error, codec.CodecError) as exc:
            conn.send((False, f"{type(exc).__name__}: {exc}"))


class EncodeProcess:
    """Windows encoded in a process of its own, started when first needed and again after it ends."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._proc: Any = None  # a spawn-context Process
        self._conn: Connection | None = None
        self.starts = 0

    def encode(self, a: int, b: int, stop: threading.Event) -> Encoded | None:
        """The window's chunks; None when `stop` is set meanwhile (the process is then ended)."""
        if self._proc is None or not self._proc.is_alive():
            self._start()
        assert self._conn is not None and self._proc is not None
        try:
            self._conn.send((a, b))
            while not self._conn.poll(0.1):
                if stop.is_set():
                    self.close()
                    return None
                if not self._proc.is_alive():
                    code = self._proc.exitcode
                    self.close()
                    raise EncoderLost(f"the encoding process ended (exit code {code})")
            ok, got = self._conn.recv()
        except (EOFError, OSError) as exc:
            self.close()
            raise EncoderLost(f"the encoding process is gone ({type(exc).__name__}: {exc})") from exc
        if not ok:
            raise EncoderLost(got)
        result: Encoded = got
        return result

    def _start(self) -> None:
        self.close()
        # Spawned, not forked: the gateway has threads (writer, readers, this one), and a fork copies their locks.
        ctx = multiprocessing.get_context("spawn")
        mine, theirs = ctx.Pipe()
        self._proc = ctx.Process(target=_encoder_main, args=(theirs, str(self.db.path), self.db.cache_mb),
                                 name="linegw-store-encoder", daemon=True)
        self._proc.start()
        theirs.close()
        self._conn = mine
        self.starts += 1

    def close(self) -> None:
        proc, conn, self._proc, self._conn = self._proc, self._conn, None, None
        if conn is not None:
            conn.close()
        if proc is not None:
            proc.terminate()
            proc.join(5)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None


class Compactor:
    """The compactor thread of one store; it reads on its own connection and writes through the writer."""

    def __init__(self, db: Database, writer: Writer, *, seal_after_s: float, seal_span_s: float, seal_rows: int,
                 compact_check_s: float, trim_rows: int, compress_in: str = "thread") -> None:
        if compress_in not in COMPRESS_IN:
            raise ValueError(f"compress_in={compress_in!r}: use {' or '.join(COMPRESS_IN)}")
        self.db = db
        self.writer = writer
        self.stats = writer.stats
        self.path = db.path
        self.seal_after_s = seal_after_s
        self.seal_span_s = seal_span_s
        self.seal_rows = seal_rows
        self.compact_check_s = compact_check_s
        self.retention_chunk_rows = trim_rows  # head rows deleted per transaction
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.encoder = EncodeProcess(db) if compress_in == "process" else None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._main, name="sqlite-store-compactor", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self.encoder is not None:
            await asyncio.to_thread(self.encoder.close)

    def _connect(self) -> sqlite3.Connection:
        return window_connection(self.db)

    def _main(self) -> None:
        self.stats["compactor"] = "running"
        conn: sqlite3.Connection | None = None
        try:
            conn, gen = self._connect(), self.db.generation
            while not self._stop.wait(self.compact_check_s):
                if gen != self.db.generation:  # the writer opened the file at the path again (removed, replaced)
                    conn.close()
                    conn, gen = self._connect(), self.db.generation
                try:
                    while not self._stop.is_set() and self._step(conn):
                        pass
                except (sqlite3.Error, codec.CodecError, EncoderLost) as exc:
                    # The samples stay in the head, where history and the outbox read them; tried again later.
                    self.stats["compact_errors"] += 1
                    self.stats["last_error"] = f"compaction: {type(exc).__name__}: {exc}"
                    log.error("%s: sealing samples into chunks failed (%s); they stay in the head, tried again in "
                              "%.0f s", self.path, exc, self.compact_check_s)
            self.stats["compactor"] = "stopped"
        except StoreClosed as exc:
            self.stats["compactor"] = f"stopped: {exc}"
        except BaseException as exc:
            self.stats["compactor"] = f"failed: {type(exc).__name__}: {exc}"
            log.exception("%s: the compactor stopped; samples are kept in the head from now on", self.path)
            raise
        finally:
            if conn is not None:
                conn.close()

    async def run_now(self) -> int:
        """Seal into chunks and trim from the head now whatever is due; returns the samples sealed.

        The compactor thread does the same on its own every compact_check_s.
        """
        before = self.stats["sealed_samples"]

        def run() -> None:
            conn = self._connect()
            try:
                while self._step(conn):
                    pass
            finally:
                conn.close()

        self.writer.check_running()
        await asyncio.to_thread(run)
        result: int = self.stats["sealed_samples"] - before
        return result

    def _step(self, conn: sqlite3.Connection) -> bool:
        """Trim the head of what is sealed and passed, else seal one window; True when it did either."""
        with self._lock:
            conn.execute("BEGIN")
            try:
                head, top = schema.head_span(conn)
                sealed = schema.sealed(conn)
            finally:
                conn.execute("COMMIT")
            if head is None:
                return False
            while self.writer.commits and len(self.writer.commits) > 1 and self.writer.commits[0][0] <= sealed:
                self.writer.commits.popleft()
            if min(sealed, top - 1) >= head:
                trimmed = self.writer.write_sync(self._trim_head)
                if trimmed:
                    self.stats["head_trimmed"] += trimmed
                    return True
            window = self._window(max(sealed + 1, head), top)
            if window is None:
                return False
            a, b = window
            t0 = time.perf_counter()
            encoded = (self.encoder.encode(a, b, self._stop) if self.encoder is not None
                       else encode_window(conn, a, b, self._stop))
            if encoded is None:
                return False  # stopping
            chunks, cells = encoded
            if not self.writer.write_sync(lambda c: self._seal(c, sealed, a, b, chunks, cells)):
                return False  # rows of the window went meanwhile (retention, disk budget): the next pass sees
            st = self.stats
            st["sealed_seq"] = b
            st["sealed_samples"] += sum(c[CHUNK_N] for c in chunks)
            st["chunks_written"] += len(chunks)
            st["last_compact_ms"] = round((time.perf_counter() - t0) * 1000, 3)
            return True

    def _window(self, a: int, top: int) -> tuple[int, int] | None:
        """The head rows [a, b] to seal now: committed seal_after_s ago, and a window's worth of them."""
        now = time.monotonic()
        commits = list(self.writer.commits)
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

    def _seal(self, conn: sqlite3.Connection, sealed: int, a: int, b: int, chunks: list[Row],
              cells: list[Row]) -> bool:
        """In the writer: store a window's chunks and move the sealed sequence to b, if its rows are all still there."""
        head = conn.execute("SELECT min(rowid) FROM samples").fetchone()[0]
        if schema.sealed(conn) != sealed or head is None or head > a:
            return False
        conn.executemany(INSERT_CHUNK, chunks)
        # Blocks wholly within the window point at sealed rows only; one straddling b stays for the rest.
        # Every block ending at or below b is sealed, whatever its series: one range of cells at a time.
        ranges = [(c0, c1, b) for c0, c1 in cell_ranges(cells)]
        conn.executemany("DELETE FROM blocks WHERE cell BETWEEN ? AND ? AND hi <= ?", ranges)
        conn.executemany("DELETE FROM runs WHERE cell BETWEEN ? AND ? AND lo + last_sid - first_sid <= ?", ranges)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'sealed'", (str(b),))
        return True

    def _trim_head(self, conn: sqlite3.Connection) -> int:
        """In the writer: delete head rows that are sealed and passed by every outbox consumer, a chunk at a time."""
        head, top = schema.head_span(conn)
        if head is None:
            return 0
        # The newest row stays so that rowids (the outbox sequence) never restart.
        upto = min(schema.sealed(conn), top - 1, head + self.retention_chunk_rows - 1)
        hold = conn.execute("SELECT min(value) FROM cursors WHERE consumer = 1").fetchone()[0]
        if hold is not None:
            upto = min(upto, hold)
        if upto < head:
            return 0
        return conn.execute("DELETE FROM samples WHERE rowid <= ?", (upto,)).rowcount
