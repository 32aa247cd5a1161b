"""The line runtime: one supervised task per machine, the store, live fan-out.

Implements `LineView` for the API. A device that fails is restarted with
backoff by its own supervisor; it never takes the others down. The backoff
(gateway/backoff.py) has jitter and starts over once the machine's task has
run well for a minute, so a crash after a good day waits a second, not the cap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

from gateway.backoff import Backoff
from gateway.config import LineConfig
from gateway.runtime import commands
from gateway.runtime.device import Device
from gateway.runtime.looplag import LoopLag
from gateway.runtime.view import CommandResult, EquipmentView, LiveMessage
from gateway.samples import Sample
from gateway.store.base import Store
from interface_spec import Spec

log = logging.getLogger("linegw.runtime")

RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0


class LineRuntime:
    def __init__(self, config: LineConfig, spec: Spec, store: Store):
        self.config = config
        self.line_id = config.line
        self.spec = spec
        self.store = store
        self.devices = {eq.id: Device(spec, eq, store, self._publish) for eq in config.equipment}
        self._subscribers: set[asyncio.Queue[LiveMessage]] = set()
        self.live_dropped = 0
        self.started_ts = time.time()
        self.restarts: dict[str, int] = {eq.id: 0 for eq in config.equipment}
        self.loop_lag = LoopLag()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.loop_lag.run(), name="loop-lag")
            for dev in self.devices.values():
                tg.create_task(self._supervise(dev), name=f"supervise:{dev.eq.id}")

    async def _supervise(self, dev: Device) -> None:
        # Healthy after a minute of running: then a crash starts the delays over.
        backoff = Backoff(RESTART_FIRST_S, RESTART_MAX_S, healthy_after_s=RESTART_MAX_S)
        while True:
            backoff.healthy()  # counted from each start; next() looks at how long this run lasted
            try:
                await dev.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.restarts[dev.eq.id] += 1
                dev.view.available = False
                dev.view.link_reason = f"supervisor restart: {exc}"
                delay = backoff.next()
                log.exception("%s: device task failed; restarting in %.2f s", dev.eq.id, delay)
                await asyncio.sleep(delay)

    # --- LineView ----------------------------------------------------------------
    def equipment(self) -> list[EquipmentView]:
        return [d.view for d in self.devices.values()]

    def get(self, equipment_id: str) -> EquipmentView | None:
        dev = self.devices.get(equipment_id)
        return dev.view if dev else None

    def current(self, equipment_id: str) -> list[Sample]:
        dev = self.devices.get(equipment_id)
        return list(dev.latest.values()) if dev else []

    async def command(self, equipment_id: str, command: str, params: dict[str, Any], user: str, role: str) -> CommandResult:
        dev = self.devices.get(equipment_id)
        if dev is None:
            raise LookupError(f"no equipment '{equipment_id}' on line {self.line_id} (known: {', '.join(self.devices)})")
        return await commands.execute(dev, command, params, user, role)

    async def live(self, max_queue: int = 1000) -> AsyncGenerator[LiveMessage, None]:
        q: asyncio.Queue[LiveMessage] = asyncio.Queue(max_queue)
        self._subscribers.add(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._subscribers.discard(q)

    def _publish(self, msg: LiveMessage) -> None:
        for q in self._subscribers:
            if q.full():
                q.get_nowait()  # a slow subscriber loses the oldest, counted
                self.live_dropped += 1
            q.put_nowait(msg)

    def health(self) -> dict[str, Any]:
        return {
            "line": self.line_id,
            "uptime_s": round(time.time() - self.started_ts, 1),
            "equipment": {
                d.eq.id: {
                    "available": d.view.available,
                    "reason": d.view.link_reason,
                    "last_data_ts": d.view.last_data_ts,
                    "restarts": self.restarts[d.eq.id],
                    "records_dropped": d.records_dropped,
                    "record_queue": d.record_queue(),
                    "samples": d.samples_read,
                    "samples_stored": d.samples_stored,
                    "started": d.started,
                    "running": d.running,
                    "data_fault": d.data_fault(),
                    "adapter": d.adapter.health().__dict__ if d.adapter else None,
                }
                for d in self.devices.values()
            },
            "loop_lag": self.loop_lag.summary(),
            "live_subscribers": len(self._subscribers),
            "live_dropped": self.live_dropped,
            "store": self.store.stats(),
        }
