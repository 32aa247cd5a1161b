"""The line's forwarders as one service: started with the gateway, reported by the API.

Each forwarder reads the store's outbox under its own cursor, so a sink that is
down only makes its own backlog grow; ingest and the other sinks go on. Status
per sink joins what the forwarder knows (connected, written, retries, refused
points) with what the store knows (backlog after the cursor, age of the oldest
sample waiting, samples the disk budget deleted before the sink had them, and
samples the store could not take at all). `problems` names, per sink, what
makes /health say "degraded": failing, too far behind, or losing samples.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from gateway.backoff import Backoff
from gateway.forward.config import ForwardConfig
from gateway.runtime.view import LineView
from interface_spec import Spec

log = logging.getLogger("linegw.forward")

DISCARD_WINDOW_S = 3600.0  # a disk-budget discard keeps /health degraded this long after it happened
RESTART_FIRST_S = 5.0  # a forwarder that failed (a defect, not its sink) is restarted after this, doubling
RESTART_MAX_S = 120.0


class Forwarding:
    def __init__(self, store: Any, cfg: ForwardConfig | None, line: str, classes: dict[str, str],
                 spec: Spec | None = None, view: LineView | None = None) -> None:
        self.store = store
        self.sinks: dict[str, Any] = {}
        if cfg is not None and cfg.influx is not None:
            from gateway.forward.influx import InfluxForwarder
            self.sinks["influx"] = InfluxForwarder(store, cfg.influx, line, classes)
        if cfg is not None and cfg.mqtt is not None:
            from gateway.forward.mqtt import MqttForwarder
            self.sinks["mqtt"] = MqttForwarder(store, cfg.mqtt, line, classes=classes,
                                               spec=self._spec(spec) if cfg.mqtt.metadata else spec)
        if cfg is not None and cfg.sparkplug is not None:
            from gateway.forward.sparkplug import SparkplugForwarder
            self.sinks["sparkplug"] = SparkplugForwarder(store, cfg.sparkplug, line, classes, self._spec(spec), view)
        consumers = [f.consumer for f in self.sinks.values()]
        if len(set(consumers)) != len(consumers):
            raise ValueError(f"forward: two sinks share the outbox cursor name {consumers}; give each its own 'consumer'")

    @staticmethod
    def _spec(given: Spec | None) -> Spec:
        """The spec the sinks describe variables by (the gateway passes its own; a bare Forwarding loads it)."""
        from interface_spec import load_spec

        return given if given is not None else load_spec()

    async def run(self) -> None:
        """Run every forwarder until cancelled; one failing is logged and restarted, never fatal to the rest."""
        if not self.sinks:
            return
        async with asyncio.TaskGroup() as tg:
            for name, fwd in self.sinks.items():
                tg.create_task(self._keep_running(name, fwd), name=f"forward-{name}")

    @staticmethod
    async def _keep_running(name: str, fwd: Any) -> None:
        # A defect that strikes at every start must not log a traceback every 5 s for ever;
        # one that strikes once a day restarts after 5 s again.
        backoff = Backoff(RESTART_FIRST_S, RESTART_MAX_S)
        while True:
            backoff.healthy()
            try:
                await fwd.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or an unexpected library error: the outbox keeps everything, try again
                delay = backoff.next()
                log.exception("forwarder '%s' failed; restarting in %.1f s from its stored cursor", name, delay)
                await asyncio.sleep(delay)

    async def status(self) -> dict[str, Any]:
        """Per sink: the forwarder's counters plus backlog, lag and discards from the store, and its problems."""
        if not self.sinks:
            return {}
        now = time.time()
        discards = await self.store.discards()
        recent = await self.store.discards(since=now - DISCARD_WINDOW_S)
        refused = await self.store.reject_counts()
        dropped = self.store.stats().get("dropped", 0)  # samples the store could not take: no sink gets them
        out = {}
        for name, fwd in self.sinks.items():
            st = fwd.stats()
            backlog, oldest = await self.store.outbox_backlog(st["cursor"])
            lag = round(now - oldest, 3) if oldest is not None else 0.0
            problems = []
            if st["failing_since"] is not None:
                # failing_since can be set after `now` was read (the awaits above yield): never a negative age
                failing_for = max(0.0, time.time() - st["failing_since"])
                problems.append(f"{name}: not delivering for {failing_for:.0f} s "
                                f"({st['retries']} retries): {st['last_error']}")
            if lag > fwd.cfg.max_lag_s:
                problems.append(f"{name}: {backlog} samples waiting, the oldest {lag:.0f} s old "
                                f"(max_lag_s {fwd.cfg.max_lag_s:g})")
            if recent.get(fwd.consumer):
                problems.append(f"{name}: the disk budget deleted {recent[fwd.consumer]} samples before they "
                                f"were forwarded (within the last {DISCARD_WINDOW_S / 3600:g} h)")
            if dropped:
                problems.append(f"{name}: {dropped} samples never reached the store (its queue was full)")
            out[name] = {**st, "consumer": fwd.consumer, "backlog": backlog, "lag_s": lag,
                         "rejected_total": refused.get(fwd.consumer, 0),
                         "discarded": discards.get(fwd.consumer, 0), "not_stored": dropped, "problems": problems}
        return out
