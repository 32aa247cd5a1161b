"""The store file's layout, and how values are kept in its rows.

Tables, the version of the layout and its migration, the SQL that more than one
part of the store runs, chunk rows, and values to and from SQLite columns.
See gateway/store/sqlite/__init__.py for the design.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gateway.samples import Quality
from gateway.store import codec
from gateway.store.aggregate import QMASK, partials

log = logging.getLogger("linegw.store")

Row = tuple[Any, ...]  # a row of SQLite parameters or results

CELL_S = 10  # width of a block's time cell, seconds
# 1: rollup cells, no chunks; 2: sealed chunks; 3: blocks keyed by cell first; 4: runs (all migrated)
SCHEMA_VERSION = 4
BOOL_FLAG = 4  # q flag: the value is a bool stored as 0/1
RETENTION_CHECK_S = 30.0
SEAL_AFTER_S = 120.0  # rows committed this long ago may be sealed into chunks
SEAL_SPAN_S = 600.0  # ... once the oldest of them is this much older again: a window's worth
# At most this many head rows sealed in one window. A window makes one chunk per series, and a chunk costs
# ~0.4 ms to encode whatever its length (pcodec's calls): on 8 racks' 70,000 series, windows of 2, 4 and 8 M
# rows took 17.1, 10.4 and 6.6 us of encoder CPU per value and kept 8.5, 5.9 and 4.6 bytes per value. Larger
# windows hold the encoder's read snapshot longer (54 s at 8 M rows) and spill a larger sort to disk.
SEAL_ROWS = 8_000_000
PAGE_SIZE = 16_384  # bytes, for new files
CHUNK_BYTES = 2_048  # a chunk's blob at most about this large: about eight rows to a page
CHUNK_ROWS = 16_384  # at most this many samples in one chunk: a short query decodes little
COMPACT_CHECK_S = 5.0
BUDGET_CHECK_S = 1.0  # how often the writer looks at the disk budget while writing
FILE_CHECK_S = 1.0  # how often the writer checks that its file is still the one at the path
FAR = 1e13  # seconds: beyond any real timestamp, small enough for integer cell numbers

# Keyed by cell first: a commit's blocks (one per series per cell) are appended where the newest cell
# ends, so a commit costs the same on a head of any size. Keyed by series first (layout 2) each commit
# inserted one row into every series' leaf: a 35,000-row commit took 0.27 s on an empty head and 1.2 s
# on a head of 8 M rows, and the gateway fell behind as the head grew. Reads walk the cells they need.
BLOCKS = """CREATE TABLE IF NOT EXISTS {name} (
    series_id INTEGER NOT NULL,
    cell INTEGER NOT NULL,  -- CAST(ts / CELL_S AS INTEGER)
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    PRIMARY KEY (cell, series_id, lo)
) WITHOUT ROWID;"""

# A run: consecutive series with one row each in a cell of one commit, in consecutive rowids; series
# first_sid + k is at rowid lo + k. A scan of racks writes one row per series per commit: as blocks, that
# was an index row per sample and cost the writer about as much as the samples' own rows; as runs of up to
# RUN_MAX series, one index row per RUN_MAX samples. Keyed by its last series: a read of series S seeks
# last_sid in [S, S + RUN_MAX - 1] of a cell, where the run holding S ends.
RUN_MAX = 64
# The key's columns first, in its order: SQLite 3.40's integrity_check misreads a WITHOUT ROWID table whose
# other columns are declared between them ("NULL value in runs.first_sid" for rows that have one).
RUNS = """CREATE TABLE IF NOT EXISTS runs (
    cell INTEGER NOT NULL,
    last_sid INTEGER NOT NULL,
    lo INTEGER NOT NULL,  -- the rowid of first_sid's row; last_sid's is lo + last_sid - first_sid
    first_sid INTEGER NOT NULL,
    PRIMARY KEY (cell, last_sid, lo)
) WITHOUT ROWID;"""

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
{BLOCKS.format(name="blocks")}
{RUNS}
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

# A sealed chunk: the columns of its samples as one codec blob and the summary of its GOOD numbers.
INSERT_CHUNK = ("INSERT INTO chunks (series_id, hi, t0, t1, gw0, gw1, n, ng, nv, nbad, sm, mn, mx, ft, fv, lt, lv, "
                "data) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
CHUNK_N = 6  # where n is in a chunk row


def chunk_rows(sid: int, hi: int, c: codec.Columns) -> list[Row]:
    """Chunk rows for INSERT_CHUNK from a series' columns in (time, sequence) order.

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
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: committed at the end of the block, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class QualityCodes(dict[Any, int]):
    """Quality as a plain int (binding an IntEnum takes a slower path in sqlite3); unknown ones are BAD."""

    def __missing__(self, key: Any) -> int:
        return int(Quality.BAD)


QUALITY_CODE = QualityCodes({0: 0, 1: 1, 2: 2})


def encode_value(value: Any) -> tuple[Any, str | None, int]:
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


def decode_value(value: Any, text: str | None, q: int) -> Any:
    if q & BOOL_FLAG:
        return bool(value)
    if value is None:
        return text
    return value


def quality_of(q: int) -> Quality:
    try:
        return Quality(q & QMASK)
    except ValueError:
        return Quality.BAD



def head_span(conn: sqlite3.Connection) -> tuple[Any, Any]:  # both ints, or both None
    """The oldest and the newest sequence (rowid) in the head; (None, None) when it is empty.

    Two subqueries on purpose: SQLite answers a lone min() or max() from one end of the b-tree, but min() and
    max() in one SELECT scan the whole table (3 s at 10 M rows), and this runs every few seconds.
    """
    head, top = conn.execute("SELECT (SELECT min(rowid) FROM samples), (SELECT max(rowid) FROM samples)").fetchone()
    return head, top


def sealed(conn: sqlite3.Connection) -> int:
    """The outbox sequence up to which samples are in chunks (history reads the head only above it)."""
    return int(conn.execute("SELECT value FROM meta WHERE key = 'sealed'").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables, or bring an older layout up to this one; refuse a newer one, saying what to do."""
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    version = None
    if has_meta:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        version = int(row[0]) if row else None
    if version is not None and version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"{path}: store layout {version} was written by a newer linegw; this version reads layouts 1 "
            f"to {SCHEMA_VERSION}. Run that newer version, or move the file away to start an empty store.")
    conn.executescript(SCHEMA)  # IF NOT EXISTS throughout: a layout 1 file gains the new tables, idempotently
    with immediate(conn):
        if version == 1:
            # Layout 1 kept a rollup row per (series, 10 s cell); the samples and blocks stay as they are
            # (the head, all unsealed) and the compactor seals them into chunks as it goes.
            log.warning("%s: store layout 1 migrated to %d: rollup cells dropped; the compactor seals the "
                        "existing samples into chunks from now on", path, SCHEMA_VERSION)
            conn.execute("DROP TABLE IF EXISTS rollup")
        if version in (1, 2):
            # The same block rows under the cell-first key (a head of minutes: seconds at most).
            log.warning("%s: store layout %d migrated to %d: the head's block index rebuilt by cell", path, version,
                        SCHEMA_VERSION)
            conn.execute("DROP TABLE IF EXISTS blocks_by_cell")
            conn.execute(BLOCKS.format(name="blocks_by_cell"))
            conn.execute("INSERT INTO blocks_by_cell SELECT series_id, cell, lo, hi FROM blocks")
            conn.execute("DROP TABLE blocks")
            conn.execute("ALTER TABLE blocks_by_cell RENAME TO blocks")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('cell_s', ?), ('sealed', '0')", (str(CELL_S),))
    cell = conn.execute("SELECT value FROM meta WHERE key = 'cell_s'").fetchone()[0]
    if int(cell) != CELL_S:
        raise sqlite3.DatabaseError(f"{path}: written with {cell} s cells, this version uses {CELL_S} s")
