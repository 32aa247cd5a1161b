"""MQTT forwarder: outbox -> `<base>/<line>/<equipment>/<sub_unit>/<variable>`, JSON payloads.

The array index becomes its own topic level (`channel/12/voltage`). Identity,
state, availability and health are published retained, so a subscriber that
comes late learns what each machine is and what it is doing without waiting
for a change. The gateway status topic carries a retained "online" and a
last-will "offline". Reads the outbox under its own cursor and advances it
only after the QoS 1 publishes are acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from typing import Any

import aiomqtt

from gateway.forward.config import MqttForward
from gateway.samples import Sample

log = logging.getLogger("linegw.forward.mqtt")
_INDEX = re.compile(r"\[(\d+)\]")
RETAINED = ("identification.", "state.", "status.availability", "health.")


def topic_for(base: str, line: str, s: Sample) -> str:
    return "/".join([base, line, s.equipment, *_INDEX.sub(r"/\1", s.path).split(".")])


def payload_for(s: Sample) -> bytes:
    return json.dumps({"value": s.value, "unit": s.unit, "quality": s.quality.name, "reason": s.reason,
                       "source_ts": s.source_ts, "gateway_ts": s.gateway_ts}).encode()


class MqttForwarder:
    def __init__(self, store: Any, cfg: MqttForward, line: str, poll_s: float = 0.5) -> None:
        self.store, self.cfg, self.line, self.consumer = store, cfg, line, cfg.consumer
        self.batch_size, self.poll_s = cfg.batch_size, poll_s
        self.status_topic = f"{cfg.base_topic}/{line}/$gateway/status"
        self._stats = {"connected": False, "published": 0, "reconnects": 0, "cursor": 0, "last_error": ""}

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)

    async def run(self) -> None:
        cursor = self._stats["cursor"] = await self.store.register_consumer(self.consumer)
        password = os.environ.get(self.cfg.password_env, "") if self.cfg.password_env else None
        delay = 0.5
        while True:
            try:
                async with aiomqtt.Client(self.cfg.host, self.cfg.port, username=self.cfg.username, password=password,
                                          will=aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True)) as c:
                    await c.publish(self.status_topic, b"online", qos=1, retain=True)
                    self._stats["connected"] = True
                    delay = 0.5
                    while True:
                        batch, nxt = await self.store.read_since(cursor, self.batch_size)
                        if not batch:
                            await asyncio.sleep(self.poll_s)
                            continue
                        for _, s in batch:
                            await c.publish(topic_for(self.cfg.base_topic, self.line, s), payload_for(s), qos=1,
                                            retain=s.path.startswith(RETAINED))
                        cursor = nxt
                        await self.store.set_cursor(self.consumer, cursor)
                        self._stats.update(published=self._stats["published"] + len(batch), cursor=cursor)
            except aiomqtt.MqttError as e:  # broker away: reconnect with backoff, resume from the cursor
                self._stats["reconnects"] += 1
                self._stats["connected"] = False
                self._stats["last_error"] = str(e)[:200]
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
