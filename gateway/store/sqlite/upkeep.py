"""Keeping the file within its limits: retention by age and the disk budget, in the writer's thread.

Retention
---------
Samples go by recording time (gateway_ts, which follows commit order): head rows
from the head, chunks whole when all their samples are due (rewritten with the rest
when only some are); the head's index (blocks, runs) and link records by their time axis. Events, alarms and the audit log
are records of what happened to units and commands and are kept, unless
``records_retention_days`` gives days for some of them (``alarms`` by the time
they cleared, an active one is kept; ``events`` by source time; ``audit``). Retention
never deletes a sample that a registered outbox consumer (``register_consumer``)
has not passed: the rows are held, and ``stats()["retention_held_by"]`` names
the consumer doing so. A cursor that is not registered gets no such promise;
``read_since`` simply continues after the gap.

Disk budget
-----------
With ``max_disk_mb`` set, the writer checks the database's used pages after
commits; over the budget it deletes the oldest samples down to 90 % of it
(the chunks first, then the head; its index and link records older than what is kept),
whether or not every outbox consumer has them: a full disk would stop the
gateway recording at all. It logs an error naming each consumer and how many
samples it will never get, and keeps the count in ``outbox_discards``
(``discards()``), so what was lost is exact and survives a restart.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from gateway.store import codec
from gateway.store.sqlite.schema import CELL_S, INSERT_CHUNK, RECORD_RETENTION, chunk_rows, head_span, immediate, sealed

log = logging.getLogger("linegw.store")


class Upkeep:
    """Retention and the disk budget of one store; every method runs in the writer's thread, on its connection."""

    def __init__(self, path: Path, stats: dict[str, Any], *,
                 retention_days: float | None, records_retention_days: dict[str, float],
                 retention_chunk_rows: int, retention_check_s: float, max_disk_bytes: int | None,
                 budget_check_s: float) -> None:
        self.path = path
        self.stats = stats
        self.retention_days = retention_days
        self.records_retention_days = records_retention_days
        self.retention_chunk_rows = retention_chunk_rows
        self.retention_check_s = retention_check_s
        self.max_disk_bytes = max_disk_bytes
        self.budget_check_s = budget_check_s
        self.retains = bool(retention_days or records_retention_days)
        self._next_budget = 0.0
        self._budget_log_at = 0.0
        self._budget_unlogged: dict[str, int] = {}

    def after_commit(self, conn: sqlite3.Connection, rows: int) -> None:
        """After a batch of `rows` samples: keep to the disk budget, if one is set and a check is due.

        Over budget, it checks again right after the next batch until back under it.
        """
        if self.max_disk_bytes and rows and time.monotonic() >= self._next_budget:
            over = self._budget_step(conn)
            self._next_budget = time.monotonic() + (0.0 if over else self.budget_check_s)

    def retain_all(self, conn: sqlite3.Connection, now: float) -> int:
        """Retention to the end, in one transaction (the caller's); returns the samples deleted."""
        before: int = self.stats["retention_deleted"]
        if self.retention_days is not None:
            while self._retention_chunk(conn, now - self.retention_days * 86400.0):
                pass
        self._records_retention(conn, now)
        deleted: int = self.stats["retention_deleted"] - before
        return deleted

    def _budget_step(self, conn: sqlite3.Connection) -> bool:
        """Delete the oldest samples when the used pages exceed the budget; True when it deleted."""
        page_size, pages, free = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                                  for p in ("page_size", "page_count", "freelist_count"))
        used = (pages - free) * page_size
        self.stats["db_used_bytes"] = used
        assert self.max_disk_bytes is not None
        if used <= self.max_disk_bytes:
            return False
        share = (used - 0.9 * self.max_disk_bytes) / used  # down to 90 % of the budget, samples being most of it
        head, top = head_span(conn)
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
            deleted -= max(0, min(upto, sealed(conn)) - head + 1)  # counted once, not as row and as chunk
            conn.execute("DELETE FROM chunks WHERE hi <= ?", (upto,))
            # Blocks are much of the file for slow series: they go up to the oldest sample kept.
            self._trim_before(conn, conn.execute("SELECT min(gw) FROM samples").fetchone()[0])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.stats["budget_deleted"] += deleted
        self.stats["budget_unforwarded"] += sum(n for _, n in lost)
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
        with immediate(conn):
            upto, n = conn.execute("SELECT max(id), sum(n) FROM (SELECT id, n FROM chunks WHERE hi < ? ORDER BY id "
                                   "LIMIT ?)", (below, k)).fetchone()
            conn.execute("DELETE FROM chunks WHERE id <= ? AND hi < ?", (upto, below))
        self.stats["budget_deleted"] += n
        if time.monotonic() >= self._budget_log_at:
            log.error("%s: disk budget of %.1f MB exhausted (%.1f MB used): deleted the %d oldest chunks (%d samples)",
                      self.path, (self.max_disk_bytes or 0) / 2**20, used / 2**20, k, n)
            self._budget_log_at = time.monotonic() + 60.0
        return True

    def retention_step(self, conn: sqlite3.Connection) -> bool:
        """One chunk of retention in its own transaction; True while more expired rows remain."""
        now = time.time()
        with immediate(conn):
            more = self.retention_days is not None and self._retention_chunk(conn, now - self.retention_days * 86400.0)
            if not more:
                self._records_retention(conn, now)
        return more

    def _retention_chunk(self, conn: sqlite3.Connection, cutoff: float) -> bool:
        """Delete up to retention_chunk_rows expired samples from the head of the table.

        When no more samples are due, also trim blocks, chunks and link records.
        """
        head, top = head_span(conn)
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
                    deleted -= max(0, min(last_old, sealed(conn)) - head + 1)
                    more = last_old == upto and held_by is None
            if held_by is not None:
                # Only say the consumer holds retention when an expired row is actually kept for it.
                old = conn.execute("SELECT gw < ? FROM samples ORDER BY rowid LIMIT 1", (cutoff,)).fetchone()
                if not (old and old[0]):
                    held_by = None
        if not more:
            self._trim_before(conn, cutoff)
            deleted += self._expire_chunks(conn, cutoff)
        self.stats["retention_deleted"] += deleted
        if held_by != self.stats["retention_held_by"] and held_by is not None:
            log.warning("%s: retention holds expired samples for outbox consumer '%s'", self.path, held_by)
        self.stats["retention_held_by"] = held_by
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
            conn.executemany(INSERT_CHUNK, chunk_rows(sid, hi, codec.take(c, keep)))
        return deleted

    def _trim_before(self, conn: sqlite3.Connection, cutoff: float) -> None:
        """Delete the head's index (blocks, runs) and link records older than `cutoff` (the latest link per machine
        stays)."""
        conn.execute("DELETE FROM blocks WHERE cell < ?", (int(cutoff / CELL_S),))  # a range of the key
        conn.execute("DELETE FROM runs WHERE cell < ?", (int(cutoff / CELL_S),))
        conn.execute("DELETE FROM links WHERE ts < ? AND id NOT IN (SELECT max(id) FROM links GROUP BY equipment)",
                     (cutoff,))

    def _records_retention(self, conn: sqlite3.Connection, now: float) -> None:
        """Delete alarms (cleared ones only), events and audit entries older than their optional retention."""
        for kind, days in self.records_retention_days.items():
            cutoff = now - days * 86400.0
            if kind == "events":
                conn.execute("DELETE FROM event_ids WHERE event_id IN (SELECT id FROM events WHERE source_ts < ?)",
                             (cutoff,))
            self.stats["records_deleted"][kind] += conn.execute(RECORD_RETENTION[kind], (cutoff,)).rowcount
