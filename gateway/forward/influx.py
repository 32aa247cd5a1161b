"""InfluxDB forwarder: outbox -> InfluxDB v2 write API, at-least-once, nothing dropped.

Schema: measurement = equipment class (or the equipment name when unknown);
tags line, equipment, sub_unit (the path before the last segment, array index
split into tag `index`); fields `<variable>` (value) and `<variable>_q`
(quality code); timestamp = source_ts in ns. A point is identified by
measurement+tags+timestamp, so replaying after a crash overwrites, never duplicates.

The synchronous WriteApi runs in a worker thread: its status codes surface as
exceptions we can classify (retry vs. bisect), and the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Any

from gateway.forward.config import InfluxForward
from gateway.samples import Sample

log = logging.getLogger("linegw.forward.influx")

_INDEX = re.compile(r"^(.*)\[(\d+)\]$")


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
    """One sample as one line-protocol point."""
    head, _, variable = s.path.rpartition(".")
    tags = {"line": line, "equipment": s.equipment}
    if head:
        m = _INDEX.match(head)
        if m:
            tags["sub_unit"], tags["index"] = m.group(1), m.group(2)
        else:
            tags["sub_unit"] = head
    fields = [f"{_esc_tag(variable)}_q={int(s.quality)}i"]
    value = _field(s.value)
    if value is not None:
        fields.insert(0, f"{_esc_tag(variable)}={value}")
    tagtext = ",".join(f"{k}={_esc_tag(v)}" for k, v in sorted(tags.items()) if v)
    return f"{_esc_tag(classes.get(s.equipment, s.equipment))},{tagtext} {','.join(fields)} {round(s.source_ts * 1e9)}"


class InfluxForwarder:
    """Reads the outbox under its own cursor and writes to InfluxDB."""

    def __init__(self, store: Any, cfg: InfluxForward, line: str, classes: dict[str, str] | None = None) -> None:
        self.store, self.cfg, self.line = store, cfg, line
        self.classes = classes or {}
        self.consumer = cfg.consumer
        self._stats = {"connected": False, "written": 0, "batches": 0, "retries": 0, "rejected": 0, "cursor": 0,
                       "last_write_ts": None, "last_error": ""}

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)

    def _write_sync(self, api: Any, lines: list[str]) -> None:
        api.write(bucket=self.cfg.bucket, org=self.cfg.org, record=lines)

    async def _write(self, api: Any, lines: list[tuple[int, str]]) -> None:
        """Write, bisecting on a client error so that only the bad points are set aside."""
        from influxdb_client.rest import ApiException
        try:
            await asyncio.to_thread(self._write_sync, api, [x for _, x in lines])
        except ApiException as e:
            if e.status is None or e.status == 429 or e.status >= 500:
                raise
            if len(lines) == 1:  # this point is bad: set it aside in the store, with the server's reason
                reason = f"HTTP {e.status}: {e.body!s}"[:500]
                await self.store.record_reject(self.consumer, lines[0][0], lines[0][1], reason)
                self._stats["rejected"] += 1
                log.warning("influx refused point seq %d, set aside: %s", lines[0][0], reason)
                return
            mid = len(lines) // 2
            await self._write(api, lines[:mid])
            await self._write(api, lines[mid:])

    async def run(self) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        cursor = self._stats["cursor"] = await self.store.register_consumer(self.cfg.consumer)
        token = os.environ.get(self.cfg.token_env, "")
        client = InfluxDBClient(url=self.cfg.url, token=token, org=self.cfg.org, enable_gzip=True, timeout=10_000)
        api = client.write_api(write_options=SYNCHRONOUS)
        delay = 0.5
        try:
            while True:
                batch, nxt = await self.store.read_since(cursor, self.cfg.batch_size)
                if not batch:
                    await asyncio.sleep(self.cfg.poll_s)
                    continue
                lines = [(seq, to_line(s, self.line, self.classes)) for seq, s in batch]
                try:
                    await self._write(api, lines)
                except Exception as e:  # connection errors, 429, 5xx: fall behind, retry in order
                    self._stats["retries"] += 1
                    self._stats["connected"] = False
                    self._stats["last_error"] = f"{type(e).__name__}: {e}"[:200]
                    log.warning("influx write failed, retrying in %.1f s: %s", delay, self._stats["last_error"])
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.cfg.backoff_max_s)
                    continue
                delay = 0.5
                cursor = nxt
                await self.store.set_cursor(self.cfg.consumer, cursor)  # only after the write landed
                self._stats.update(written=self._stats["written"] + len(batch), batches=self._stats["batches"] + 1,
                                   cursor=cursor, last_write_ts=time.time(), connected=True)
        finally:
            await asyncio.to_thread(client.close)
