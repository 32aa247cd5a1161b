"""The line runtime: one supervised task per machine, the store, live fan-out.

Implements `LineView` for the API. A device that fails is restarted with
backoff by its own supervisor; it never takes the others down. The backoff
(gateway/backoff.py) has jitter and starts over once the machine's task has
run well for a minute, so a crash after a good day waits a second, not the cap.

`reload` applies a new line configuration while running: a machine whose entry
(or mapping file) changed is restarted, a new one started, a removed one
stopped; every other machine's task is not touched, so its data has no gap.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncGenerator
from functools import partial
from pathlib import Path
from typing import Any

from gateway.backoff import Backoff
from gateway.config import Api, Equipment, LineConfig
from gateway.runtime import commands
from gateway.runtime.device import Device
from gateway.runtime.gctime import GcTime
from gateway.runtime.looplag import LoopLag
from gateway.runtime.view import CommandResult, EquipmentView, LiveMessage
from gateway.runtime.workers import AcquisitionWorkers
from gateway.samples import Sample
from gateway.store.base import Store
from interface_spec import Spec

log = logging.getLogger("linegw.runtime")

RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0
# Sections a running gateway cannot take over; a restart applies them.
RESTART_ONLY = ("api", "store", "forward", "acquisition")
SCAN_CHECK_S = 60.0  # how often the machines' missed scan ticks are looked at (see LineRuntime._watch_scans)


class ReloadRefused(ValueError):
    """The new configuration cannot be applied while running; the running one stays."""


def _but_keys(section: Any) -> Any:
    """A section as a restart would see it: the API's keys are applied live."""
    return section.model_copy(update={"keys": []}) if isinstance(section, Api) else section


def fingerprint(eq: Equipment) -> str:
    """What a machine's task is built from: its entry, and the content of its mapping file."""
    entry = json.dumps(eq.model_dump(mode="json", by_alias=True), sort_keys=True)
    mapping = hashlib.sha256(Path(eq.mapping).read_bytes()).hexdigest() if eq.mapping else ""
    return f"{entry}|{mapping}"


GC_TIME = GcTime()  # the process's collector, whichever runtime reports it


class LineRuntime:
    def __init__(self, config: LineConfig, spec: Spec, store: Store):
        self.config = config
        self.line_id = config.line
        self.spec = spec
        self.store = store
        self.workers = AcquisitionWorkers(config.acquisition.workers)
        self.devices = {eq.id: self._device(eq) for eq in config.equipment}
        # queue -> (its overflow event, the one machine it follows or None for all)
        self._subscribers: dict[asyncio.Queue[LiveMessage], tuple[asyncio.Event | None, str | None]] = {}
        self.live_dropped = 0
        self.started_ts = time.time()
        self.restarts: dict[str, int] = {eq.id: 0 for eq in config.equipment}
        self.loop_lag = LoopLag()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._reload_lock = asyncio.Lock()
        self.scan_check_s = SCAN_CHECK_S

    def _device(self, eq: Equipment) -> Device:
        factory = self.workers.factory(eq.id, eq.protocol) if self.workers else None
        return Device(self.spec, eq, self.store, self._publish, partial(self._listening, eq.id), factory)

    async def run(self) -> None:
        GC_TIME.install()
        try:
            async with asyncio.TaskGroup() as tg:
                self._group = tg
                tg.create_task(self.loop_lag.run(), name="loop-lag")
                tg.create_task(self._watch_scans(), name="scan-watch")
                for dev in self.devices.values():
                    self._start(dev)
        finally:
            self._group = None
            await self.workers.stop()

    def _start(self, dev: Device) -> None:
        assert self._group is not None
        self._tasks[dev.eq.id] = self._group.create_task(self._supervise(dev), name=f"supervise:{dev.eq.id}")

    async def _stop(self, equipment_id: str) -> None:
        task = self._tasks.pop(equipment_id, None)
        if task is not None:
            task.cancel()
            # A cancelled child does not cancel its TaskGroup: the other machines go on.
            await asyncio.gather(task, return_exceptions=True)

    async def reload(self, new: LineConfig) -> dict[str, list[str]]:
        """Apply a new line configuration to the running line; what was added, changed, removed, left alone.

        Devices for the new and changed entries are built before anything stops, so an entry
        that cannot be built refuses the whole reload and the running line stays as it was.
        Sections only a restart can apply (api, store, forward) are named in "needs_restart"
        and keep their running values.
        """
        if self._group is None:
            raise ReloadRefused("the line is not running")
        if new.line != self.line_id:
            raise ReloadRefused(f"line: '{new.line}' is not the running line '{self.line_id}'; another line name "
                                "needs a restart")
        async with self._reload_lock:
            old = {eq.id: fingerprint(eq) for eq in self.config.equipment}
            fresh = {eq.id: fingerprint(eq) for eq in new.equipment}
            added = [i for i in fresh if i not in old]
            removed = [i for i in old if i not in fresh]
            changed = [i for i in fresh if i in old and fresh[i] != old[i]]
            built = {eq.id: self._device(eq) for eq in new.equipment if eq.id in added or eq.id in changed}
            for equipment_id in removed + changed:
                await self._stop(equipment_id)
                self.restarts.pop(equipment_id, None)
            for equipment_id in removed:
                self.workers.release(equipment_id)
            self.devices = {eq.id: built.get(eq.id) or self.devices[eq.id] for eq in new.equipment}
            for equipment_id in added + changed:
                self.restarts[equipment_id] = 0
                self._start(self.devices[equipment_id])
            # API keys are taken live (the API swaps its key ring); the rest of those sections waits for a restart.
            needs_restart = [s for s in RESTART_ONLY if _but_keys(getattr(new, s)) != _but_keys(getattr(self.config, s))]
            applied = ["api.keys"] if new.api.keys != self.config.api.keys else []
            kept = {s: getattr(self.config, s) for s in needs_restart}
            if "api" in kept:
                kept["api"] = kept["api"].model_copy(update={"keys": new.api.keys})
            self.config = new.model_copy(update=kept)
        result = {"added": added, "changed": changed, "removed": removed,
                  "unchanged": [i for i in fresh if i in old and i not in changed], "applied": applied,
                  "needs_restart": needs_restart}
        log.info("line reloaded: %s", "; ".join(f"{k} {', '.join(v)}" for k, v in result.items() if v) or "no change")
        return result

    async def _watch_scans(self) -> None:
        """Scans that miss their ticks in two checks running: said once, with what would help, rather than left for
        the health to show (one slow check is a start: connecting, discovering array sizes)."""
        seen: dict[str, float] = {}
        was_late = False
        while True:
            await asyncio.sleep(self.scan_check_s)
            missed: dict[str, float] = {}
            for d in self.devices.values():
                count = d.adapter.health().extra.get("overruns") if d.adapter is not None else None
                if isinstance(count, (int, float)):
                    last = seen.get(d.eq.id, 0.0)
                    missed[d.eq.id] = count - last if count >= last else count  # an adapter built anew counts from 0
                    seen[d.eq.id] = count
            late = {k: v for k, v in missed.items() if v > 0}
            was_late, twice = bool(late), was_late and bool(late)
            if not twice:
                continue
            workers, cores = len(self.workers), os.cpu_count() or 1
            help_ = (f"this box has {cores} cores: 'acquisition: {{workers: {min(cores, 2)}}}' in the line file runs the "
                     "machines' adapters in processes of their own (deploy/README.md)" if workers == 0 and cores > 1
                     else "a longer scan_interval_ms, fewer points per machine, or the line split between gateways")
            log.warning("scans missed %d ticks in the last %.0f s (%s): the gateway is not keeping up with the "
                        "machines' scan intervals; %s", sum(late.values()), self.scan_check_s,
                        ", ".join(f"{k} {v:.0f}" for k, v in sorted(late.items())), help_)
            return  # once: the health and /metrics count them from here on

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

    async def live(self, max_queue: int = 1000, overflow: asyncio.Event | None = None,
                   equipment: str | None = None) -> AsyncGenerator[LiveMessage, None]:
        q: asyncio.Queue[LiveMessage] = asyncio.Queue(max_queue)
        self._subscribers[q] = (overflow, equipment)
        try:
            while True:
                yield await q.get()
        finally:
            self._subscribers.pop(q, None)

    def _listening(self, equipment_id: str) -> bool:
        """Someone follows this machine: its live messages are worth building."""
        return any(eq is None or eq == equipment_id for _, eq in self._subscribers.values())

    def _publish(self, msg: LiveMessage) -> None:
        for q, (overflow, eq) in self._subscribers.items():
            if eq is not None and eq != msg.equipment:
                continue  # another machine's: it would only fill this queue and push out what it follows
            if q.full():
                q.get_nowait()  # a slow subscriber loses the oldest, counted; its owner is told
                self.live_dropped += 1
                if overflow is not None:
                    overflow.set()
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
                    "since": d.since,
                    "running": d.running,
                    "data_fault": d.data_fault(),
                    "adapter": d.adapter.health().__dict__ if d.adapter else None,
                }
                for d in self.devices.values()
            },
            "loop_lag": self.loop_lag.summary(),
            "gc": GC_TIME.summary(),
            "tasks": len(asyncio.all_tasks()),  # flat over a long run, or something leaks
            "live_subscribers": len(self._subscribers),
            "live_dropped": self.live_dropped,
            "store": self.store.stats(),
            "acquisition_workers": self.workers.health(),
        }
