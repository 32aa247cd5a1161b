"""The store file: opening its connections, and noticing when the file at the path is another one.

The writer's connection is opened with the pragmas and the layout check; read
connections come from a small pool, each read one transaction (one snapshot).
No connection maps the file into memory: a mapped page whose file goes away,
shrinks or fails to read (file made immutable, disk error, a checkpoint
truncating it) is a SIGBUS that kills the process without a word; read()
returns an error instead.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.store.sqlite.schema import PAGE_SIZE, migrate


class StoreClosed(RuntimeError):
    """The store is not running (not started, closed, or its writer failed)."""


class Database:
    """Connections to one store file. Thread-safe: readers are taken and released from any thread."""

    def __init__(self, path: Path, synchronous: str, cache_mb: int, readers: int) -> None:
        self.path = path
        self.synchronous = synchronous
        self.cache_mb = cache_mb
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._reader_sem = threading.BoundedSemaphore(readers)
        self._reader_slots = readers
        self._closed = False
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self.file_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the file the writer opened
        self.side_ids: dict[str, tuple[int, int] | None] = {}  # ... and of its -wal and -shm files
        self.generation = 0  # opens of the file; the compactor reconnects when it changes

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA mmap_size = 0")  # see the module docstring
        conn.execute(f"PRAGMA cache_size = -{self.cache_mb * 1024}")
        conn.execute("PRAGMA temp_store = MEMORY")
        return conn

    def open_writer(self) -> sqlite3.Connection:
        """The writing connection, the file created or migrated to this layout, and its identity noted."""
        conn = self.connect()
        try:
            # A new file gets 16 KiB pages (an existing one keeps its own): a chunk row is 1-2 KiB, and 4 KiB
            # pages held two of them, a third of each page empty (formation rack: 3.4 bytes per value in the
            # chunks' pages against 2.2 in the blobs; 2.7 with 16 KiB pages).
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"{self.path}: cannot use WAL mode (got {mode}); is it on a network "
                                               "share?")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            # Larger checkpoints amortise their cost; the limit truncates the WAL once checkpointed.
            conn.execute("PRAGMA wal_autocheckpoint = 4000")
            conn.execute(f"PRAGMA journal_size_limit = {64 * 1024 * 1024}")
            migrate(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._closed = False
        self.file_id = self.identity("")
        self.side_ids = {suffix: self.identity(suffix) for suffix in ("-wal", "-shm")}
        self.generation += 1
        return conn

    def identity(self, suffix: str) -> tuple[int, int] | None:
        try:
            st = os.stat(f"{self.path}{suffix}")
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def size(self) -> int:
        """Bytes of the file and its WAL."""
        size = 0
        for suffix in ("", "-wal"):
            try:
                size += os.path.getsize(f"{self.path}{suffix}")
            except FileNotFoundError:
                continue
        return size

    def changed(self) -> str | None:
        """"removed" or "replaced" when the file at the path is not the one opened; None when it is.

        Writing into a removed file succeeds, so only the path's device and inode tell.
        Raises OSError when the path cannot be examined.
        """
        found = self.identity("")
        if found == self.file_id:
            return None
        return "removed" if found is None else "replaced"

    def forget_readers(self) -> None:
        """The file is to be opened again: idle readers close now, busy ones when released."""
        with self._readers_lock:
            self._all_readers = []
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break

    def drop_side_files(self) -> None:
        """The old file's -wal and -shm, if still at the path (another connection, the compactor's, keeps
        them): they go by the path, and the new file must not be read through them."""
        for suffix, ident in self.side_ids.items():
            if ident is not None and self.identity(suffix) == ident:
                os.unlink(f"{self.path}{suffix}")

    # --- readers -------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        self._reader_sem.acquire()
        if self._closed:  # a read queued for a thread before the store closed
            self._reader_sem.release()
            raise StoreClosed(f"{self.path}: the store is closed")
        try:
            return self._readers.get_nowait()
        except queue.Empty:
            pass
        try:
            conn = self.connect()
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

    def read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """fn(connection) in one read transaction: every statement of a query sees the same snapshot."""
        conn = self._reader()
        try:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")
        finally:
            self._release(conn)

    def close_readers(self, wait_s: float = 30.0) -> int:
        """No new reads; wait up to wait_s for those running, then close every reader.

        A task cancelled mid-read leaves its read running in a worker thread: closing the connection under it
        fails the read or crashes the process. A read still running after wait_s closes its connection itself
        when it ends. Returns how many were still running.
        """
        self._closed = True
        deadline = time.monotonic() + wait_s
        held = 0
        while held < self._reader_slots and self._reader_sem.acquire(timeout=max(0.0, deadline - time.monotonic())):
            held += 1
        self.forget_readers()
        for _ in range(held):
            self._reader_sem.release()
        return self._reader_slots - held
