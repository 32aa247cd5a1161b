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
``blocks(series_id, cell, lo, hi)`` row per such range, or, where consecutive
series have one row each (a scan of a rack, every commit), one
``runs(cell, last_sid, first_sid, lo)`` row per up to 64 of them: an index row
per sample cost the writer about as much as the sample's own row (the store's paced
write of 8 racks' scans, 70,000 values/s: 4.1-4.5 us of CPU per value with a block
each, 3.2 with runs). The rowid is the
outbox sequence (``read_since``), and commits are as small and as frequent as
acquisition makes them. Blocks are keyed by (cell, series): a commit appends
its blocks where the newest cell ends, so its cost does not grow with the head
(keyed by series first, a 35,000-row commit took 0.27 s on an empty head and
1.2 s at 8 M rows: each commit touched a leaf of every series). A series' head
rows are read by walking the cells of the range, one index seek each (in
blocks and in runs).

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
* in operation a window is cut at seal_rows head rows, which at 8 racks is
  well short of 10 minutes: with 4 M rows (57 values per chunk) the chunks of
  a 20-minute `bench/line.py` run held 5.9 bytes per value, and the encoder
  spent 10.4 us per value, most of it a fixed ~0.4 ms per chunk. Windows of
  8 M rows: 4.6 bytes and 6.6 us (schema.SEAL_ROWS).
* history: a day of one series at 10 Hz in 1-minute buckets 45-143 ms
  (median 68; the target is 50); the last hour of 512 channels, one query
  per channel, 1.5-2.2 s raw (1.8 M rows as dicts) and 0.40-0.45 s in
  1-minute buckets.

Values
------
Numbers go to ``value``, a column with no type affinity, so ints stay INTEGER
and floats REAL and both aggregate in C; bools are stored as 0/1 with a flag in
``q`` (quality in the low two bits, schema.BOOL_FLAG above them) so they come back as bools;
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

The parts of the store are listed in store.py; retention and the disk budget
are described in upkeep.py, storage faults in writer.py.
"""

from gateway.store.sqlite.database import StoreClosed
from gateway.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore", "StoreClosed"]
