"""The outbox: stored samples handed to forwarders in commit order, under named cursors.

The head's rowid is the outbox sequence. A registered consumer holds retention
and the head's trimming until it has passed a row; the disk budget does not
wait, and records what each consumer lost (outbox_discards). Points a sink
refused for good are set aside in forward_rejects with the sink's reason.
Writes run in the writer's transaction, queries on a read connection.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from gateway.samples import Sample
from gateway.store.sqlite.schema import decode_value, head_span, quality_of


def read_since(conn: sqlite3.Connection, cursor: int, limit: int) -> tuple[list[tuple[int, Sample]], int]:
    """Stored samples with sequence > cursor, in commit order; and the cursor to pass next time."""
    rows = conn.execute("SELECT rowid, series_id, ts, gw, value, value_text, q, reason FROM samples "
                        "WHERE rowid > ? ORDER BY rowid LIMIT ?", (cursor, limit)).fetchall()
    if not rows:
        return [], cursor
    needed = {r[1] for r in rows}
    meta = {sid: (eq, path, unit) for sid, eq, path, unit in conn.execute(
        f"SELECT id, equipment, path, unit FROM series WHERE id IN ({','.join('?' * len(needed))})", list(needed))}
    out = []
    for seq, sid, ts, gw, value, text, qv, reason in rows:
        eq, path, unit = meta[sid]
        out.append((seq, Sample(eq, path, decode_value(value, text, qv), unit, ts, gw, quality_of(qv), reason or "")))
    return out, rows[-1][0]


def get_cursor(conn: sqlite3.Connection, name: str) -> int | None:
    row = conn.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def set_cursor(conn: sqlite3.Connection, name: str, value: int) -> None:
    conn.execute("INSERT INTO cursors (name, value, updated_ts) VALUES (?,?,?) "
                 "ON CONFLICT DO UPDATE SET value = excluded.value, updated_ts = excluded.updated_ts",
                 (name, int(value), time.time()))


def register_consumer(conn: sqlite3.Connection, name: str) -> int:
    """Mark `name` as an outbox consumer that retention waits for; returns its cursor (0 when new)."""
    conn.execute("INSERT INTO cursors (name, value, consumer, updated_ts) VALUES (?, 0, 1, ?) "
                 "ON CONFLICT DO UPDATE SET consumer = 1", (name, time.time()))
    value: int = conn.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()[0]
    return value


def unregister_consumer(conn: sqlite3.Connection, name: str) -> None:
    conn.execute("UPDATE cursors SET consumer = 0 WHERE name = ?", (name,))


def backlog(conn: sqlite3.Connection, cursor: int) -> tuple[int, float | None]:
    """Samples stored after `cursor`, and the recording time of the oldest of them.

    Rowids are the commit sequence and only the head is ever deleted, so the
    count is the difference of two rowids, not a scan of the backlog.
    """
    head, top = head_span(conn)
    if top is None or top <= cursor:
        return 0, None
    oldest = conn.execute("SELECT gw FROM samples WHERE rowid > ? ORDER BY rowid LIMIT 1", (cursor,)).fetchone()
    return top - max(cursor, head - 1), oldest[0]


def record_reject(conn: sqlite3.Connection, consumer: str, seq: int, point: str, error: str) -> None:
    conn.execute("INSERT INTO forward_rejects (ts, consumer, seq, point, error) VALUES (?,?,?,?,?)",
                 (time.time(), consumer, seq, point, error))


def rejects(conn: sqlite3.Connection, consumer: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest points set aside by forwarders, newest first."""
    where, args = ("WHERE consumer = ?", [consumer]) if consumer else ("", [])
    cur = conn.execute(f"SELECT ts, consumer, seq, point, error FROM forward_rejects {where} "
                       "ORDER BY id DESC LIMIT ?", (*args, limit))
    return [dict(zip(("ts", "consumer", "seq", "point", "error"), r)) for r in cur]


def reject_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT consumer, count(*) FROM forward_rejects GROUP BY consumer").fetchall())


def discards(conn: sqlite3.Connection, since: float | None) -> dict[str, int]:
    """Per consumer: samples the disk budget deleted before the consumer had them (since a time)."""
    return dict(conn.execute("SELECT consumer, sum(samples) FROM outbox_discards WHERE ts >= ? GROUP BY consumer",
                             (since or 0.0,)).fetchall())
