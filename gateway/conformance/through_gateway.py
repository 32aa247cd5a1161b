"""Integration mode: a machine that does not speak the spec, read by the gateway through its mapping file.

The probe runs the gateway's own `Device` (the runtime's supervisor of one
machine) with the mapping, on a store in a temporary folder, and observes
its normalised output as the API would: the samples, the events the gateway
derives from value changes (the mapping's triggers, state changes, alarms)
and the link. The common-model checks then run on that output: what the
integrator proves is that the mapping turns this machine into the common
model, complete and correctly scaled.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.config import Equipment
from gateway.mapping.compile import load_mapping
from gateway.runtime.device import Device
from gateway.runtime.ingest import to_samples
from gateway.runtime.view import LiveMessage
from gateway.samples import Quality, Sample
from gateway.store.sqlite import SqliteStore
from interface_spec import Spec, SpecError
from interface_spec.vendor import Mapping, vendor_path

from .probe import Probe, ProbeError


class GatewayRuntime:
    """The gateway's own Device for one machine, on a store in a temporary folder; its output goes to `on_live`.

    Integration mode reads a mapped machine with it; the resilience checks run
    it against a native machine through the kit's relay."""

    def __init__(self, spec: Spec, cls: str, protocol: str, endpoint: str, on_live: Callable[[LiveMessage], None], *,
                 mapping: str | None = None, machine: str | None = None, counts: dict[str, int] | None = None,
                 settings: dict[str, Any] | None = None, timeout_s: float = 10.0):
        self.spec = spec
        self.eq = Equipment.model_validate({"id": "dut", "class": cls, "protocol": protocol, "endpoint": endpoint,
                                            "mapping": mapping, "machine": machine, "counts": counts or {},
                                            "adapter": settings or {}})
        self.on_live = on_live
        self.timeout_s = timeout_s
        self.device: Device | None = None
        self.store: SqliteStore | None = None
        self._folder: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        return self.device is not None and self.device.view.available

    async def start(self, events_from: int | None = None) -> None:
        """Until the Device has its plan and the machine is available; `events_from`: the first event it fetches."""
        self._folder = tempfile.mkdtemp(prefix="linegw-conformance-")
        self.store = SqliteStore(Path(self._folder) / "store.sqlite")
        await self.store.start()
        if events_from is not None:
            await self.store.set_cursor(f"events:{self.eq.id}", max(0, events_from - 1))
        self.device = Device(self.spec, self.eq, self.store, self.on_live)
        self._task = asyncio.create_task(self.device.run(), name="conformance-gateway")
        deadline = time.monotonic() + self.timeout_s
        while not (self.device.ready.is_set() and self.device.view.available):
            if self._task.done() or time.monotonic() > deadline:
                why = self.device.view.link_reason or "no answer"
                if self._task.done() and self._task.exception() is not None:
                    why = str(self._task.exception())
                await self.stop()
                raise ProbeError(f"the gateway does not reach {self.eq.endpoint} within {self.timeout_s:g} s: {why}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.store is not None:
            await self.store.close()
            self.store = None
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


class GatewayProbe(Probe):
    mode = "integration"

    def __init__(self, spec: Spec, cls: str, protocol: str, endpoint: str, mapping: str | Path, *,
                 unit_id: int = 1, scan_ms: int = 200, timeout_s: float = 10.0, settings: dict[str, Any] | None = None):
        super().__init__(spec, cls)
        self.protocol = protocol
        self.endpoint = endpoint
        self.mapping_path = str(vendor_path(mapping))  # a path, or a shipped vendor file's name
        self.timeout_s = timeout_s
        self.settings = {"scan_interval_ms": scan_ms, "publishing_interval_ms": scan_ms,
                         "sampling_ms": min(scan_ms, 250), "device_id": unit_id, **(settings or {})}
        self.mapping: Mapping | None = None
        self.events: list[dict[str, Any]] = []
        self.runtime: GatewayRuntime | None = None

    @property
    def device(self) -> Device | None:
        return self.runtime.device if self.runtime else None

    async def open(self) -> None:
        try:
            self.mapping = load_mapping(self.mapping_path, self.spec)
        except (SpecError, OSError) as exc:
            raise ProbeError(f"the mapping cannot be used: {exc}") from None
        self._delivered = time.time()
        self.runtime = GatewayRuntime(self.spec, self.cls, self.protocol, self.endpoint, self._on_live,
                                      mapping=self.mapping_path, settings=self.settings, timeout_s=self.timeout_s)
        await self.runtime.start()
        assert self.device is not None
        deadline = time.monotonic() + self.timeout_s
        self.counts = dict(self.device.view.counts)
        self.plan = self.device.plan
        while time.monotonic() < deadline and not all(p in self.history for p in self.paths()):  # noqa: ASYNC110  (the history fills from the gateway's live fan-out, which signals nothing per path)
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.runtime is not None:
            await self.runtime.stop()

    # --- the gateway's output ---------------------------------------------------------------------------
    def _on_live(self, msg: LiveMessage) -> None:
        now = time.time()
        if msg.kind == "samples":
            samples = [Sample("dut", path, value, unit, ts, now, Quality(q), reason)
                       for path, value, unit, q, reason, ts, *_raw in msg.data["samples"]]
            # The gateway stamps Modbus readings when its scan delivers them: sampled after its previous delivery.
            asked, self._delivered = self._delivered, now
            self.take(samples, asked, self._unstamped(samples))
        elif msg.kind == "event":
            self.events.append({"type": msg.data["type"], "source_ts": msg.data["source_ts"],
                                "seq": msg.data["seq"], "payload": msg.data["payload"]})
        elif msg.kind == "link":
            self.link_log.append((msg.data["ts"], msg.data["available"], msg.data["reason"]))

    def _unstamped(self, samples: list[Sample]) -> set[str]:
        """Modbus carries no source timestamps: what the gateway stamps is when it read, ordered as such."""
        return {s.path for s in samples} if self.protocol == "modbus" else set()

    @property
    def nameplate(self) -> dict[str, str]:
        return dict(self.mapping.identification) if self.mapping else {}

    def nameplate_paths(self) -> set[str]:
        return {f"identification.{k}" for k in self.nameplate}

    def mapped_templates(self) -> set[str]:
        return {self.spec.variable(self.cls, p).template for p in self.paths()}

    def claimed_profiles(self) -> list[str]:
        """What a mapped machine provides: the core, its class, its data, and units made if the mapping derives them."""
        out = ["Core", "DataCollection", self.cls.capitalize()]
        if self.mapping and any(e.type == "UnitProcessed" for e in self.mapping.events):
            out.append("Traceability")
        return out

    @property
    def unresolved(self) -> dict[str, str]:
        """Spec paths whose source the adapter could not find (OPC UA nodes)."""
        if self.device is None or self.device.adapter is None or self.plan is None:
            return {}
        by_key = self.device.adapter.health().extra.get("unresolved", {})
        return {t.path: why for key, why in by_key.items() for t in self.plan.targets.get(key, [])}

    async def read_samples(self, paths: list[str]) -> dict[str, Sample]:
        """Fresh reads through the mapping's sources, transformed as the gateway does."""
        assert self.plan is not None and self.device is not None and self.device.adapter is not None
        keys = [k for k, ts in self.plan.targets.items() if any(t.path in paths for t in ts)]
        asked = time.time()
        readings = await self.device.adapter.read(keys)
        samples = [s for s in to_samples("dut", self.plan.targets, readings, time.time()) if s.path in paths]
        self.take(samples, asked, self._unstamped(samples))
        return {s.path: s for s in samples}

    def alarm_codes(self) -> tuple[list[int] | None, str]:
        assert self.device is not None
        return sorted(self.device.alarms.active), "the gateway's alarm tracker"

    async def self_description(self) -> tuple[str | None, str]:
        return None, "a mapped machine has no self-description; its mapping file describes it"
