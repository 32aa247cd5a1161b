"""MQTT forwarder: outbox -> `<base>/<line>/<equipment>/<sub_unit>/<variable>`, JSON payloads.

For a Unified Namespace, `base_topic` is the ISA-95 path above the line
(enterprise/site/area), `retain_values` keeps every variable's current value
retained, and `metadata` publishes beside each variable a retained
`<topic>/$meta` with its unit, datatype, range, resolution and description from
the spec, once per variable and connection.

The array index becomes its own topic level (`channel/12/voltage`). Identity,
state, availability and health are published retained, so a subscriber that
comes late learns what each machine is and what it is doing without waiting
for a change. The gateway status topic carries a retained "online" while the
gateway forwards, a retained "offline" published on a clean stop, and the same
"offline" as last will for when the connection dies without one. Reads the
outbox under its own cursor and advances it only after the QoS 1 publishes are
acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from typing import Any

import aiomqtt

from gateway.cancellation import raise_if_stopped, stop_requests
from gateway.forward.config import MqttForward
from gateway.forward.outage import Outage
from gateway.samples import Sample
from interface_spec import Spec

log = logging.getLogger("linegw.forward.mqtt")
_INDEX = re.compile(r"\[(\d+)\]")
RETAINED = ("identification.", "state.", "status.availability", "health.")
GOODBYE_TIMEOUT_S = 2.0  # how long a clean stop waits for the broker to take the retained "offline"


def topic_for(base: str, line: str, s: Sample) -> str:
    return "/".join([base, line, s.equipment, *_INDEX.sub(r"/\1", s.path).split(".")])


def payload_for(s: Sample) -> bytes:
    return json.dumps({"value": s.value, "unit": s.unit, "quality": s.quality.name, "reason": s.reason,
                       "source_ts": s.source_ts, "gateway_ts": s.gateway_ts}).encode()


def metadata_for(spec: Spec, cls: str | None, s: Sample) -> bytes | None:
    """The retained `$meta` of a variable: what the spec says of it; None for a path outside the spec."""
    if cls is None:
        return None
    try:
        var = spec.variable(cls, s.path).var
    except KeyError:
        return None
    unit = spec.units.get(var.unit)
    return json.dumps({"unit": var.unit, "unit_symbol": unit.symbol if unit else var.unit, "type": var.type,
                       "bits": var.bits, "enum": var.enum, "range": list(var.range) if var.range else None,
                       "resolution": var.resolution, "sampling_ms": var.sampling_ms, "description": var.doc,
                       "spec_version": spec.version}).encode()


class MqttForwarder:
    def __init__(self, store: Any, cfg: MqttForward, line: str, poll_s: float = 0.5,
                 classes: dict[str, str] | None = None, spec: Spec | None = None) -> None:
        self.store, self.cfg, self.line, self.consumer = store, cfg, line, cfg.consumer
        self.classes, self.spec = classes or {}, spec
        self._described: set[tuple[str, str]] = set()  # (machine, path) whose $meta went out on this connection
        self.batch_size, self.poll_s = cfg.batch_size, poll_s
        self.status_topic = f"{cfg.base_topic}/{line}/$gateway/status"
        self._stats: dict[str, Any] = {"published": 0, "reconnects": 0, "cursor": 0}
        self._outage = Outage(log, f"mqtt {cfg.host}:{cfg.port}", self._stats, cfg.backoff_max_s)

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)

    async def run(self) -> None:
        self._stats["cursor"] = await self.store.register_consumer(self.consumer)
        password = os.environ.get(self.cfg.password_env, "") if self.cfg.password_env else None
        before = stop_requests()  # aiomqtt can lose a stop: the loops look at the task's count (gateway/cancellation.py)
        while True:
            try:
                async with aiomqtt.Client(self.cfg.host, self.cfg.port, username=self.cfg.username, password=password,
                                          will=aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True)) as c:
                    await c.publish(self.status_topic, b"online", qos=1, retain=True)
                    self._described.clear()  # a broker that restarted without persistence lost them
                    self._outage.recovered()
                    try:
                        # Resumes after the last batch the broker acknowledged: a reconnect resends at most one.
                        await self._forward(c, self._stats["cursor"], before)
                    except asyncio.CancelledError:
                        await self._say_offline(c)
                        raise
            except aiomqtt.MqttError as e:  # broker away: reconnect with backoff, resume from the cursor
                raise_if_stopped(before)  # the disconnect on a stop can fail too: a stop, not an outage
                self._stats["reconnects"] += 1
                refused = isinstance(e, aiomqtt.MqttCodeError) and getattr(e.rc, "value", e.rc) in (4, 5, 134, 135)
                wait = self._outage.failed(f"{type(e).__name__}: {e}",
                                           "check username and password_env" if refused else "")
                await asyncio.sleep(wait)

    async def _forward(self, c: aiomqtt.Client, cursor: int, before: int) -> None:
        while True:
            raise_if_stopped(before)
            batch, nxt = await self.store.read_since(cursor, self.batch_size)
            if not batch:
                await asyncio.sleep(self.poll_s)
                continue
            for _, s in batch:
                topic = topic_for(self.cfg.base_topic, self.line, s)
                if self.cfg.metadata and self.spec is not None and (s.equipment, s.path) not in self._described:
                    meta = metadata_for(self.spec, self.classes.get(s.equipment), s)
                    if meta is not None:
                        await c.publish(f"{topic}/$meta", meta, qos=1, retain=True)
                    self._described.add((s.equipment, s.path))
                await c.publish(topic, payload_for(s), qos=1,
                                retain=self.cfg.retain_values or s.path.startswith(RETAINED))
            cursor = nxt
            await self.store.set_cursor(self.consumer, cursor)
            self._stats.update(published=self._stats["published"] + len(batch), cursor=cursor)

    async def _say_offline(self, c: aiomqtt.Client) -> None:
        """A clean stop: the retained status says "offline" before the DISCONNECT (which sends no will)."""
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(GOODBYE_TIMEOUT_S):
                await c.publish(self.status_topic, b"offline", qos=1, retain=True)
                return
        log.warning("mqtt: could not publish the retained 'offline' on stop; subscribers keep seeing 'online'")
