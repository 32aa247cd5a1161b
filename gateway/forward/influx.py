"""InfluxDB forwarder: outbox -> InfluxDB v2 write API, at-least-once, nothing dropped.

Schema: measurement = equipment class (or the equipment name when unknown);
tags line, equipment, sub_unit (the path before the last segment, array index
split into tag `index`) and unit (the spec's unit string; fixed per path, so a
series keeps one tag set); fields `<variable>` (value) and `<variable>_q`
(quality code); timestamp = source_ts in ns. A point is identified by
measurement+tags+timestamp, so replaying after a crash overwrites, never duplicates.

What the server answers decides what happens to a batch:
  * 400 (bad line protocol, partial write), 413 (too large), 422 (unprocessable)
    are about the points: the batch is halved until each refused point is
    alone, and that point is set aside in the store with the server's reason.
  * Everything else (401/403 bad token, 404 missing org or bucket, other 4xx,
    429, 5xx, no answer at all) is about the sink: the cursor holds, the
    batch is retried with capped backoff (a Retry-After is honoured), and the
    status says what the sink answered.

The synchronous WriteApi runs in a worker thread: its status codes surface as
exceptions we can classify, and the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import re
import time
from typing import Any

import urllib3
from influxdb_client.rest import ApiException

from gateway.forward.config import InfluxForward
from gateway.forward.outage import Outage
from gateway.samples import Sample

log = logging.getLogger("linegw.forward.influx")

_INDEX = re.compile(r"^(.*)\[(\d+)\]$")
POINT_REFUSALS = frozenset({400, 413, 422})
_HINTS = {401: "check the token in the environment variable named by token_env",
          403: "the token may not write to this bucket",
          404: "check org and bucket"}
_LINE_BREAK = re.compile(r"[\r\n]")
SINK_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)


class Unwritable(ValueError):
    """A sample that line protocol cannot carry (a line break in a name or tag)."""


def _esc_tag(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field(v: Any) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v) if v == v and v not in (float("inf"), float("-inf")) else None
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return None


def to_line(s: Sample, line: str, classes: dict[str, str]) -> str:
    """One sample as one line-protocol point; raises Unwritable when line protocol cannot carry it."""
    head, _, variable = s.path.rpartition(".")
    tags = {"line": line, "equipment": s.equipment, "unit": s.unit}
    if head:
        m = _INDEX.match(head)
        if m:
            tags["sub_unit"], tags["index"] = m.group(1), m.group(2)
        else:
            tags["sub_unit"] = head
    measurement = classes.get(s.equipment, s.equipment)
    for what, text in (("measurement", measurement), ("field", variable), *tags.items()):
        if _LINE_BREAK.search(text):
            raise Unwritable(f"{what} {text!r} contains a line break, which line protocol cannot carry")
    fields = [f"{_esc_tag(variable)}_q={int(s.quality)}i"]
    value = _field(s.value)
    if value is not None:
        fields.insert(0, f"{_esc_tag(variable)}={value}")
    tagtext = ",".join(f"{k}={_esc_tag(v)}" for k, v in sorted(tags.items()) if v)
    return f"{_esc_tag(measurement)},{tagtext} {','.join(fields)} {round(s.source_ts * 1e9)}"


def _retry_after(e: BaseException) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), None without one."""
    value = getattr(e, "retry_after", None)
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _describe(e: BaseException) -> str:
    if isinstance(e, ApiException):
        message = getattr(e, "message", None) or e.reason or ""
        if isinstance(message, bytes):
            message = message.decode(errors="replace")
        return f"HTTP {e.status} {e.reason or ''}: {str(message).strip()}".strip().rstrip(":")
    return f"{type(e).__name__}: {e}"


class InfluxForwarder:
    """Reads the outbox under its own cursor and writes to InfluxDB."""

    def __init__(self, store: Any, cfg: InfluxForward, line: str, classes: dict[str, str] | None = None) -> None:
        self.store, self.cfg, self.line = store, cfg, line
        self.classes = classes or {}
        self.consumer = cfg.consumer
        self._stats: dict[str, Any] = {"written": 0, "batches": 0, "rejected": 0, "cursor": 0,
                                       "last_write_ts": None,
                                       "last_status": None}  # HTTP status of the last failed write
        self._outage = Outage(log, f"influx {cfg.url}", self._stats, cfg.backoff_max_s)
        self._done = 0  # the last outbox sequence written or set aside, in order

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)

    def _write_sync(self, api: Any, lines: list[str]) -> None:
        api.write(bucket=self.cfg.bucket, org=self.cfg.org, record=lines)

    async def _set_aside(self, seq: int, point: str, reason: str) -> None:
        await self.store.record_reject(self.consumer, seq, point, reason[:500])
        self._stats["rejected"] += 1
        self._done = seq
        log.warning("influx refused point seq %d, set aside: %s", seq, reason[:500])

    async def _write(self, api: Any, lines: list[tuple[int, str]]) -> None:
        """Write in order, bisecting on a point refusal so that only the refused points are set aside."""
        if not lines:
            return
        try:
            await asyncio.to_thread(self._write_sync, api, [x for _, x in lines])
        except ApiException as e:
            if e.status not in POINT_REFUSALS:
                raise
            if len(lines) == 1:  # this point is refused: set it aside in the store, with the server's reason
                await self._set_aside(lines[0][0], lines[0][1], f"HTTP {e.status}: {e.body!s}")
                return
            mid = len(lines) // 2
            await self._write(api, lines[:mid])
            await self._write(api, lines[mid:])
            return
        self._done = lines[-1][0]
        self._stats["written"] += len(lines)

    async def _deliver(self, api: Any, batch: list[tuple[int, Sample]]) -> None:
        """Write a batch in outbox order; a sample line protocol cannot carry is set aside where it stands."""
        run: list[tuple[int, str]] = []
        for seq, s in batch:
            try:
                run.append((seq, to_line(s, self.line, self.classes)))
            except Unwritable as e:
                await self._write(api, run)
                run = []
                await self._set_aside(seq, repr(s), f"not sent: {e}")
        await self._write(api, run)

    async def run(self) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        cursor = self._stats["cursor"] = await self.store.register_consumer(self.cfg.consumer)
        token = os.environ.get(self.cfg.token_env, "") if self.cfg.token_env else ""
        client = InfluxDBClient(url=self.cfg.url, token=token, org=self.cfg.org, enable_gzip=True, timeout=10_000)
        api = client.write_api(write_options=SYNCHRONOUS)
        try:
            while True:
                batch, nxt = await self.store.read_since(cursor, self.cfg.batch_size)
                if not batch:
                    await asyncio.sleep(self.cfg.poll_s)
                    continue
                self._done = cursor
                try:
                    await self._deliver(api, batch)
                except SINK_ERRORS as e:  # the sink, not the points: hold the cursor, retry in order
                    if self._done > cursor:  # what landed before the failure stays landed
                        cursor = self._stats["cursor"] = self._done
                        await self.store.set_cursor(self.cfg.consumer, cursor)
                    status = e.status if isinstance(e, ApiException) else None
                    self._stats["last_status"] = status
                    wait = self._outage.failed(_describe(e), _HINTS.get(status or 0, ""),
                                               _retry_after(e) if status in (429, 503) else None)
                    await asyncio.sleep(wait)
                    continue
                cursor = nxt
                await self.store.set_cursor(self.cfg.consumer, cursor)  # only after the write landed
                self._outage.recovered()
                self._stats.update(batches=self._stats["batches"] + 1, cursor=cursor, last_write_ts=time.time())
        finally:
            await asyncio.to_thread(client.close)
