"""Alarms, events, the audit log and link status: what happened to machines, units and commands.

Each `record_*` runs in the writer's transaction (SqliteStore hands it to the
writer, which commits it with the next batch); each query runs on a read
connection. Small tables with their own indexes: none of this is on the
samples' hot path.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.store.sqlite.schema import Row

ALARM_COLUMN = {"raised": "raised_ts", "cleared": "cleared_ts", "acknowledged": "acked_ts"}


def _where(conditions: Iterable[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """ WHERE clause and its parameters from (condition with one ?, value) pairs whose value is not None."""
    taken = [(cond, value) for cond, value in conditions if value is not None]
    if not taken:
        return "", []
    return " WHERE " + " AND ".join(c for c, _ in taken), [v for _, v in taken]


# --- alarms ------------------------------------------------------------------------------
def record_alarm(conn: sqlite3.Connection, equipment: str, occurrence_id: str, code: int, text: str, severity: int,
                 state: str, ts: float, stop_reason: bool, by: str | None) -> None:
    """One transition of an alarm occurrence: raised, acknowledged, or cleared."""
    column = ALARM_COLUMN[state]
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


def alarms(conn: sqlite3.Connection, equipment: str | None, active_only: bool, start: float | None,
           end: float | None, limit: int) -> list[dict[str, Any]]:
    """Occurrences, newest raised first; start/end bound raised_ts."""
    where, params = _where([("equipment = ?", equipment), ("raised_ts >= ?", start), ("raised_ts < ?", end)])
    if active_only:
        where += (" AND" if where else " WHERE") + " cleared_ts IS NULL"
    sql = ("SELECT equipment, occurrence_id, code, text, severity, stop_reason, raised_ts, cleared_ts, acked_ts, "
           f"acked_by FROM alarms{where} ORDER BY raised_ts DESC, occurrence_id DESC LIMIT ?")
    out = []
    for eq, occ, code, text, sev, stop, raised, cleared, acked, by in conn.execute(sql, [*params, limit]):
        out.append({"equipment": eq, "occurrence_id": occ, "code": code, "text": text, "severity": sev,
                    "stop_reason": bool(stop), "raised_ts": raised, "cleared_ts": cleared, "acked_ts": acked,
                    "acked_by": by, "active": cleared is None, "acknowledged": acked is not None})
    return out


# --- events ------------------------------------------------------------------------------
def record_event(conn: sqlite3.Connection, equipment: str, event_type: str, source_ts: float, seq: int, text: str,
                 id_values: Sequence[str], recorded: float) -> int:
    """Store an event (the same equipment/seq/type/time twice is stored once); returns its id."""
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


def _event_rows(cur: Iterable[Row]) -> list[dict[str, Any]]:
    return [{"id": i, "equipment": eq, "type": t, "source_ts": ts, "seq": seq, "payload": json.loads(p),
             "recorded_ts": rec} for i, eq, t, ts, seq, p, rec in cur]


def events(conn: sqlite3.Connection, equipment: str | None, event_type: str | None, start: float | None,
           end: float | None, limit: int) -> list[dict[str, Any]]:
    """Events, newest first; start/end bound source_ts."""
    where, params = _where([("equipment = ?", equipment), ("type = ?", event_type), ("source_ts >= ?", start),
                            ("source_ts < ?", end)])
    sql = (f"SELECT id, equipment, type, source_ts, seq, payload, recorded_ts FROM events{where} "
           "ORDER BY source_ts DESC, id DESC LIMIT ?")
    return _event_rows(conn.execute(sql, [*params, limit]))


def events_referencing(conn: sqlite3.Connection, id_value: str) -> list[dict[str, Any]]:
    """Every event that mentions a unit, material or job ID, oldest first."""
    sql = ("SELECT e.id, e.equipment, e.type, e.source_ts, e.seq, e.payload, e.recorded_ts "
           "FROM event_ids x JOIN events e ON e.id = x.event_id WHERE x.id_value = ? ORDER BY e.source_ts, e.id")
    return _event_rows(conn.execute(sql, (str(id_value),)))


# --- audit -------------------------------------------------------------------------------
def record_audit(conn: sqlite3.Connection, row: Row) -> None:
    conn.execute("INSERT INTO audit (ts, user, role, equipment, command, args, result_code, result, detail) "
                 "VALUES (?,?,?,?,?,?,?,?,?)", row)


def audit(conn: sqlite3.Connection, limit: int, equipment: str | None) -> list[dict[str, Any]]:
    """Command requests, newest first."""
    where, params = _where([("equipment = ?", equipment)])
    sql = f"SELECT id, ts, user, role, equipment, command, args, result_code, result, detail FROM audit{where} " \
          "ORDER BY id DESC LIMIT ?"
    return [{"id": i, "ts": ts, "user": u, "role": r, "equipment": eq, "command": cmd, "args": json.loads(a),
             "result_code": code, "result": res, "detail": d}
            for i, ts, u, r, eq, cmd, a, code, res, d in conn.execute(sql, [*params, limit])]


# --- link status -------------------------------------------------------------------------
def record_link(conn: sqlite3.Connection, equipment: str, ts: float, up: bool, reason: str) -> None:
    conn.execute("INSERT INTO links (equipment, ts, up, reason) VALUES (?,?,?,?)",
                 (equipment, ts, int(bool(up)), reason or ""))


def link_history(conn: sqlite3.Connection, equipment: str, start: float, end: float) -> list[dict[str, Any]]:
    """Link-down intervals overlapping [start, end), oldest first; up_ts None while still down."""
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
