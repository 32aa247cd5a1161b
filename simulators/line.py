"""A simulated line: several simulators sharing one material flow.

    line = SimLine()
    await line.start([SimConfig("coater1", "coater", "opcua"), SimConfig("winder1", "winder", "modbus")])
    line.endpoints()            # {"coater1": "opc.tcp://127.0.0.1:49152/linegw/coater1", "winder1": "modbus://127.0.0.1:49153"}
    line.simulators["winder1"].machine.raise_alarm(2002)
    await line.simulators["coater1"].faults.restart()
    await line.stop()

`serve(configs)` runs a line until it is cancelled. The line owns one task
that runs every simulator's clock in a TaskGroup; `stop()` cancels and awaits
it, then closes every server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from interface_spec import Spec, load_spec
from simulators.material import MaterialFlow
from simulators.servers.opcua_server import OpcUaSecurity
from simulators.simulator import Simulator, opcua_security

log = logging.getLogger("linegw.sim.line")


@dataclass
class SimConfig:
    """How to simulate one machine."""

    equipment_id: str
    cls: str  # coater, winder, formation
    protocol: str = "opcua"  # opcua | modbus
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, chosen at start
    dialect: str = "conforming"  # or a vendor file: a shipped name (interface_spec/vendors/<name>.yaml) or a path
    seed: int = 1
    time_scale: float = 1.0  # simulated seconds per wall second
    counts: dict[str, int] = field(default_factory=dict)  # array sizes, e.g. {"channel": 64}
    faults: Any = field(default_factory=list)  # start-up faults, see simulators.faults
    defects: Any = field(default_factory=list)  # deliberate non-conformities, see simulators.defects
    machine_name: str | None = None  # OPC UA machine object name; the equipment id when None
    security: OpcUaSecurity | dict[str, Any] | None = None  # OPC UA: {modes: [...], username, password}
    options: dict[str, Any] = field(default_factory=dict)  # process model options, see simulators.models
    identification: dict[str, str] = field(default_factory=dict)  # manufacturer, model, serial_number, ...
    profiles: list[str] | None = None  # the profiles the machine claims; None: every profile of its class
    auto_start: bool = True  # the operator starts the machine after power-on
    auto_recover: bool = True  # ... and restarts it when an alarm that stopped it clears
    acting_s: float = 2.0  # simulated seconds an acting state (Starting, Stopping, ...) takes

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError(f"{self.equipment_id}: time_scale must be > 0")
        if self.protocol not in ("opcua", "modbus"):
            raise ValueError(f"{self.equipment_id}: protocol must be opcua or modbus, got '{self.protocol}'")
        if self.machine_name is None:
            self.machine_name = self.equipment_id

    def opcua_security(self) -> OpcUaSecurity | None:
        return opcua_security(self.security)


class SimLine:
    """Simulators for a line, started together with one shared MaterialFlow."""

    def __init__(self, spec: Spec | None = None):
        self.spec = spec or load_spec()
        self.flow = MaterialFlow()
        self.simulators: dict[str, Simulator] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self, configs: list[SimConfig]) -> None:
        """Start every simulator's server, then their clocks; returns once all are listening."""
        if self._task is not None:
            raise RuntimeError("this line is already running")
        ids = [c.equipment_id for c in configs]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"equipment ids used twice: {dupes}")
        sims = [Simulator(c, self.spec, self.flow) for c in configs]
        started: list[Simulator] = []
        try:
            for sim in sims:
                await sim.start()
                started.append(sim)
        except BaseException:
            for sim in started:
                await sim.stop()
            raise
        self.simulators = {s.equipment_id: s for s in sims}
        self._task = asyncio.get_running_loop().create_task(self._run(), name="simline")

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for sim in self.simulators.values():
                tg.create_task(sim.run(), name=f"sim:{sim.equipment_id}")

    def endpoints(self) -> dict[str, str]:
        return {eid: sim.url for eid, sim in self.simulators.items()}

    async def stop(self) -> None:
        task, self._task = self._task, None
        try:
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        finally:
            for sim in self.simulators.values():
                await sim.stop()

    async def wait(self) -> None:
        """Until the line's clocks end: on cancellation, or when a simulator fails (its error is raised)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def __aenter__(self) -> SimLine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve(configs: list[SimConfig], spec: Spec | None = None,
                on_start: Callable[[SimLine], None] | None = None) -> None:
    """Run a simulated line until cancelled; `on_start` sees the line once every server listens."""
    line = SimLine(spec)
    await line.start(configs)
    try:
        for eid, url in line.endpoints().items():
            log.info("simulating %s at %s", eid, url)
        if on_start is not None:
            on_start(line)
        await line.wait()
    finally:
        await line.stop()
