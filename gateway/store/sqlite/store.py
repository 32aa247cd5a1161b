"""SqliteStore: the embedded store's parts put together behind the `Store` protocol.

The parts (see this package's docstring for the design):

* ``database.py``  the file: connections, the reader pool, noticing a replaced file;
* ``schema.py``    the layout, its migration, values to and from columns;
* ``writer.py``    the writer thread and its queue: samples and records committed;
* ``reads.py``     history over chunks and the head, the latest samples;
* ``records.py``   alarms, events, audit, link status;
* ``outbox.py``    forwarding cursors, backlog, refused points, budget discards;
* ``upkeep.py``    retention and the disk budget (in the writer's thread);
* ``compactor.py`` sealing the head into compressed chunks (its own thread).

This class checks the settings, wires the parts, and answers each protocol
call by handing a part's function to the writer (writes) or to a read
connection (reads).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gateway.samples import Sample
from gateway.store.base import EventRecord, SampleColumns
from gateway.store.sqlite import outbox, reads, records
from gateway.store.sqlite.compactor import Compactor
from gateway.store.sqlite.database import Database, StoreClosed
from gateway.store.sqlite.schema import BUDGET_CHECK_S, COMPACT_CHECK_S, RECORD_RETENTION, RETENTION_CHECK_S, SEAL_AFTER_S, SEAL_ROWS, SEAL_SPAN_S
from gateway.store.sqlite.upkeep import Upkeep
from gateway.store.sqlite.writer import Writer

T = TypeVar("T")
log = logging.getLogger(__name__)
CLOSE_READS_WAIT_S = 30.0  # a read is one query; the busy timeout bounds its waits at 30 s too


class SqliteStore:
    """SQLite (WAL) store with one writer thread, pooled readers and a compactor. See gateway/store/sqlite/."""

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
        compress_in: str = "thread",
    ):
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous={synchronous!r}: use NORMAL or FULL")
        if retention_days is not None and retention_days <= 0:
            raise ValueError(f"retention_days={retention_days}: must be positive (or None to keep everything)")
        records_days = dict(records_retention_days or {})
        for kind, days in records_days.items():
            if kind not in RECORD_RETENTION:
                raise ValueError(f"records_retention_days: '{kind}' is not a record kind; use "
                                 f"{', '.join(RECORD_RETENTION)}")
            if not days > 0:
                raise ValueError(f"records_retention_days.{kind}={days}: must be positive (or left out to keep them)")
        if max_disk_mb is not None and max_disk_mb <= 0:
            raise ValueError(f"max_disk_mb={max_disk_mb}: must be positive (or None for no budget)")
        if seal_after_s < 0 or seal_span_s < 0 or seal_rows < 1 or compact_check_s <= 0:
            raise ValueError(f"seal_after_s={seal_after_s}, seal_span_s={seal_span_s}, seal_rows={seal_rows}, "
                             f"compact_check_s={compact_check_s}: times must not be negative (the check interval "
                             "positive), rows at least 1")
        self.path = Path(path)
        self.retention_days = retention_days
        self.records_retention_days = records_days
        self.max_disk_bytes = None if max_disk_mb is None else int(max_disk_mb * 1024 * 1024)
        # One dict of figures, each part keeping its own keys current; stats() reads it under the queue's lock.
        self._stats: dict[str, Any] = {
            "written": 0, "dropped": 0, "batches": 0, "last_commit_ts": None, "db_size_bytes": 0,
            "rejected": 0, "write_errors": 0, "last_error": "", "retention_deleted": 0, "retention_held_by": None,
            "last_batch_rows": 0, "last_batch_ms": 0.0, "db_used_bytes": 0, "max_disk_bytes": self.max_disk_bytes,
            "budget_deleted": 0, "budget_unforwarded": 0, "records_deleted": dict.fromkeys(RECORD_RETENTION, 0),
            "sealed_seq": 0, "sealed_samples": 0, "chunks_written": 0, "head_trimmed": 0, "compact_errors": 0,
            "last_compact_ms": 0.0, "compactor": "stopped",
            "commit_failures": 0, "failing_since": None, "file_reopened": 0,
        }
        self._db = Database(self.path, synchronous.upper(), cache_mb, readers)
        self._upkeep = Upkeep(self.path, self._stats, retention_days=retention_days,
                              records_retention_days=records_days, retention_chunk_rows=retention_chunk_rows,
                              retention_check_s=retention_check_s, max_disk_bytes=self.max_disk_bytes,
                              budget_check_s=budget_check_s)
        self._writer = Writer(self._db, self._upkeep, self._stats, max_queue=max_queue, batch_rows=batch_rows,
                              max_batch_rows=max_batch_rows, commit_interval_s=commit_interval_s)
        self._compactor = Compactor(self._db, self._writer, seal_after_s=seal_after_s, seal_span_s=seal_span_s,
                                    seal_rows=seal_rows, compact_check_s=compact_check_s,
                                    trim_rows=retention_chunk_rows, compress_in=compress_in)
        self.max_queue = max_queue

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        if self._writer.started:
            return
        await self._writer.start()
        self._compactor.start()

    async def close(self) -> None:
        """Commit everything queued, stop the writer, close all connections."""
        if not self._writer.started:
            return
        # The compactor first: it hands the writer operations, and the writer takes them until it stops.
        await self._compactor.stop()
        failed = await self._writer.stop()
        busy = await asyncio.to_thread(self._db.close_readers, CLOSE_READS_WAIT_S)
        if busy:
            log.warning("%s: closed with %d read(s) still running after %.0f s; each closes its connection when it "
                        "ends", self.path, busy, CLOSE_READS_WAIT_S)
        if failed is not None:
            raise StoreClosed(f"the store's writer failed: {failed}") from failed

    async def flush(self) -> None:
        """Wait until every sample and record enqueued so far is committed."""
        await self._writer.flush()

    async def __aenter__(self) -> SqliteStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._writer.started:
            raise StoreClosed(f"{self.path}: the store is not running (start() it first)")
        return await asyncio.to_thread(self._db.read, fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        result: T = await self._writer.write(fn)
        return result

    def _connect(self) -> sqlite3.Connection:
        return self._db.connect()

    # --- samples -------------------------------------------------------------------------
    def write_samples(self, samples: list[Sample]) -> bool:
        """Enqueue for the writer; never blocks. A full queue drops the list and counts it.

        Returns True once the queue is more than half full: a producer that can
        wait should then ``await room()`` before producing more (back-pressure),
        so that the queue never fills and nothing is dropped.
        The list itself is queued (no copy, this is the hot path): do not change it afterwards.
        """
        return self._writer.write_samples(samples)

    async def room(self) -> None:
        """Return once the write queue is at most half full (or the store has stopped taking writes)."""
        await self._writer.room()

    async def write_samples_async(self, samples: list[Sample]) -> None:
        """Enqueue, waiting for room rather than dropping (back-pressure for bulk producers)."""
        await self._writer.write_samples_async(samples)

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
        aggs = reads.checked_aggregates(agg, bucket_s)
        start, end = reads.bounded(start, end)
        if not end > start or limit <= 0:
            return []
        if bucket_s is None:
            return await self._read(functools.partial(reads.raw, equipment=equipment, path=path, start=start,
                                                      end=end, limit=limit))
        return await self._read(functools.partial(reads.bucketed, equipment=equipment, path=path, start=start,
                                                  end=end, bucket_s=bucket_s, aggs=aggs, limit=limit))

    async def history_columns(self, equipment: str, path: str, start: float, end: float,
                              limit: int = 10000) -> SampleColumns:
        """The raw samples of history() as columns."""
        start, end = reads.bounded(start, end)
        if not end > start or limit <= 0:
            return reads.no_samples()
        return await self._read(functools.partial(reads.raw_columns, equipment=equipment, path=path, start=start,
                                                  end=end, limit=limit))

    async def latest(self, equipment: str | None = None) -> list[Sample]:
        """The newest committed sample of every series, from memory."""
        values = self._writer.latest()
        if equipment is not None:
            values = [s for s in values if s.equipment == equipment]
        values.sort(key=lambda s: (s.equipment, s.path))
        return values

    async def series(self, equipment: str | None = None) -> list[tuple[str, str, str]]:
        return await self._read(functools.partial(reads.series, equipment=equipment))

    # --- records -------------------------------------------------------------------------
    async def record_alarm(self, equipment: str, occurrence_id: str, code: int, text: str, severity: int,
                           state: str, ts: float, stop_reason: bool, by: str | None = None) -> None:
        """One transition of an alarm occurrence: raised, acknowledged, or cleared."""
        if state not in records.ALARM_COLUMN:
            raise ValueError(f"alarm state {state!r}: use raised, cleared or acknowledged")
        await self._write(functools.partial(records.record_alarm, equipment=equipment, occurrence_id=occurrence_id,
                                            code=code, text=text, severity=severity, state=state, ts=ts,
                                            stop_reason=stop_reason, by=by))

    async def alarms(self, equipment: str | None = None, active_only: bool = False, start: float | None = None,
                     end: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Occurrences, newest raised first; start/end bound raised_ts."""
        return await self._read(functools.partial(records.alarms, equipment=equipment, active_only=active_only,
                                                  start=start, end=end, limit=limit))

    async def record_event(self, equipment: str, event_type: str, source_ts: float, seq: int,
                           payload: dict[str, Any], ids: Sequence[str] = ()) -> int:
        """Store an event (the same equipment/seq/type/time twice is stored once); returns its id."""
        (event_id,) = await self.record_events(equipment, [(event_type, source_ts, seq, payload, ids)])
        return event_id

    async def record_events(self, equipment: str, events: Sequence[EventRecord]) -> list[int]:
        rows = [(event_type, source_ts, seq, json.dumps(payload, separators=(",", ":"), default=str),
                 sorted({str(i) for i in ids if i not in (None, "")})) for event_type, source_ts, seq, payload, ids in events]
        recorded = time.time()

        def write(conn: sqlite3.Connection) -> list[int]:
            return [records.record_event(conn, equipment, event_type, source_ts, seq, text, id_values, recorded)
                    for event_type, source_ts, seq, text, id_values in rows]

        return await self._write(write)

    async def events(self, equipment: str | None = None, event_type: str | None = None, start: float | None = None,
                     end: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Events, newest first; start/end bound source_ts."""
        return await self._read(functools.partial(records.events, equipment=equipment, event_type=event_type,
                                                  start=start, end=end, limit=limit))

    async def events_referencing(self, id_value: str) -> list[dict[str, Any]]:
        """Every event that mentions a unit, material or job ID, oldest first."""
        return await self._read(functools.partial(records.events_referencing, id_value=id_value))

    async def record_audit(self, ts: float, user: str, role: str, equipment: str, command: str, args: dict[str, Any],
                           result_code: int, result: str, detail: str) -> None:
        row = (ts, user, role, equipment, command, json.dumps(args, separators=(",", ":"), default=str),
               int(result_code), result, detail)
        await self._write(functools.partial(records.record_audit, row=row))

    async def audit(self, limit: int = 200, equipment: str | None = None) -> list[dict[str, Any]]:
        """Command requests, newest first."""
        return await self._read(functools.partial(records.audit, limit=limit, equipment=equipment))

    async def record_link(self, equipment: str, ts: float, up: bool, reason: str) -> None:
        await self._write(functools.partial(records.record_link, equipment=equipment, ts=ts, up=up, reason=reason))

    async def link_history(self, equipment: str, start: float, end: float) -> list[dict[str, Any]]:
        """Link-down intervals overlapping [start, end), oldest first; up_ts None while still down."""
        return await self._read(functools.partial(records.link_history, equipment=equipment, start=start, end=end))

    # --- outbox --------------------------------------------------------------------------
    async def read_since(self, cursor: int, limit: int) -> tuple[list[tuple[int, Sample]], int]:
        """Stored samples with sequence > cursor, in commit order; and the cursor to pass next time."""
        return await self._read(functools.partial(outbox.read_since, cursor=cursor, limit=limit))

    async def get_cursor(self, name: str) -> int | None:
        return await self._read(functools.partial(outbox.get_cursor, name=name))

    async def set_cursor(self, name: str, value: int) -> None:
        await self._write(functools.partial(outbox.set_cursor, name=name, value=value))

    async def register_consumer(self, name: str) -> int:
        """Mark `name` as an outbox consumer that retention waits for; returns its cursor (0 when new)."""
        return await self._write(functools.partial(outbox.register_consumer, name=name))

    async def unregister_consumer(self, name: str) -> None:
        await self._write(functools.partial(outbox.unregister_consumer, name=name))

    async def outbox_backlog(self, cursor: int) -> tuple[int, float | None]:
        """Samples stored after `cursor`, and the recording time of the oldest of them."""
        return await self._read(functools.partial(outbox.backlog, cursor=cursor))

    async def record_reject(self, consumer: str, seq: int, point: str, error: str) -> None:
        """Keep a point a sink refused for good, with the sink's reason."""
        await self._write(functools.partial(outbox.record_reject, consumer=consumer, seq=seq, point=point,
                                            error=error))

    async def rejects(self, consumer: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest points set aside by forwarders, newest first."""
        return await self._read(functools.partial(outbox.rejects, consumer=consumer, limit=limit))

    async def reject_counts(self) -> dict[str, int]:
        return await self._read(outbox.reject_counts)

    async def discards(self, since: float | None = None) -> dict[str, int]:
        """Per outbox consumer: samples the disk budget deleted before the consumer had them (since a time)."""
        return await self._read(functools.partial(outbox.discards, since=since))

    # --- upkeep --------------------------------------------------------------------------
    async def apply_retention(self, now: float | None = None) -> int:
        """Run retention to the end now, in the writer; returns the samples deleted.

        The writer also does this on its own every retention_check_s, in chunks.
        """
        if not self._upkeep.retains:
            return 0
        return await self._write(functools.partial(self._upkeep.retain_all, now=time.time() if now is None else now))

    async def compact(self) -> int:
        """Seal into chunks and trim from the head now whatever is due; returns the samples sealed.

        The compactor thread does the same on its own every compact_check_s.
        """
        return await self._compactor.run_now()

    # --- health --------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        out = self._writer.snapshot()
        out["path"] = str(self.path)
        out["running"] = self._writer.running
        return out
