"""Real simulators on loopback and the conformance kit run against them.

Runs are expensive (an observation window, a link drop, a PackML tour), so
each test module starts its simulators once and runs the kit against several
of them at a time (`at_most`), then its tests look at the runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any

from gateway.conformance.runner import Options, Run, run_conformance
from interface_spec import load_spec
from simulators.line import SimConfig, SimLine
from simulators.machine import LOCAL_PANEL
from simulators.simulator import Simulator
from tests.waiting import wait_for

SPEC = load_spec()
CLASSES = ("coater", "winder", "formation")
PROTOCOLS = ("opcua", "modbus")
COUNTS = {"coater": {"dryer_zone": 3, "lane": 2}, "winder": {}, "formation": {"channel": 8}}
# Simulated seconds per wall second: a coater roll, a jelly roll, a formed tray within seconds.
TIME_SCALE = {"coater": 60.0, "winder": 20.0, "formation": 3000.0}
OPTIONS = {"coater": {"alarm_interval_s": 0, "roll_length_m": 60.0, "electrode": "cathode"},
           "winder": {"alarm_interval_s": 0}, "formation": {"alarm_interval_s": 0}}
# Short windows: the simulators' clocks run on the simulated time scale, the heartbeat on wall time.
KIT = dict(observe_s=2.5, command_timeout_s=3.0, outage_s=0.5, operator_timeout_s=5.0, events_max=200,
           unit_wait_s=10.0)
# Kit runs at a time. A run mostly waits (observation windows, command answers, a link drop): six at a time use
# little more CPU than two, and `make kit-stress` at six, a CPU burner beside them, found no false failure in 60 runs.
PARALLEL = 6


def sim_config(cls: str, protocol: str, equipment_id: str = "dut", **kw: Any) -> SimConfig:
    # Acting states take one simulator tick (0.1 s wall), so a PackML tour takes seconds.
    return SimConfig(equipment_id, cls, protocol, counts=COUNTS[cls], time_scale=TIME_SCALE[cls],
                     options=dict(OPTIONS[cls]), acting_s=TIME_SCALE[cls] * 0.05, **kw)


async def start(config: SimConfig) -> SimLine:
    """A simulator, producing (Execute) before the kit looks at it."""
    line = SimLine(SPEC)
    await line.start([config])
    sim = only(line)
    await wait_for(lambda: sim.machine.state() == "Execute", f"{config.equipment_id} in Execute", timeout=20)
    return line


async def produce(sim: Simulator) -> None:
    """The operator at the panel starts a stopped machine again."""
    for command, state in (("Reset", "Idle"), ("Start", "Execute")):
        sim.machine.execute(command, {}, source=LOCAL_PANEL)
        await wait_for(lambda s=state: sim.machine.state() == s, f"{sim.equipment_id} in {state}", timeout=10)


def only(line: SimLine) -> Simulator:
    (sim,) = line.simulators.values()
    return sim


def endpoint(line: SimLine) -> str:
    return only(line).url.removeprefix("modbus://")


class Operator:
    """Does at the simulated machine's panel what the kit asks for, and remembers what it was asked."""

    def __init__(self, sim: Simulator):
        self.sim = sim
        self.steps: list[str] = []

    def __call__(self, text: str) -> None:
        self.steps.append(text)
        for authority in ("Local", "Remote"):
            if f"to {authority}" in text:
                self.sim.machine.set_control_authority(authority)


async def run_kit(line: SimLine, **options: Any) -> Run:
    sim = only(line)
    # DC-SAMPLING-002 needs three changes of a value in the window: formation samples at 1 s, so it looks longer.
    opts = {**KIT, **({"observe_s": 4.0} if sim.config.cls == "formation" else {}), **options}
    return await run_conformance(Options(cls=sim.config.cls, protocol=sim.config.protocol, endpoint=endpoint(line),
                                         **opts), SPEC, operator=Operator(sim))


async def at_most(n: int, jobs: Iterable[Awaitable[Any]]) -> list[Any]:
    """Await the jobs, n at a time; results in order."""
    gate = asyncio.Semaphore(n)

    async def one(job: Awaitable[Any]) -> Any:
        async with gate:
            return await job

    return await asyncio.gather(*(one(j) for j in jobs))


def failures(run: Run) -> str:
    """The cases that did not pass, for assertion messages."""
    return "\n".join(f"{r.case.id} {r.status}: {r.message}" for r in run.results
                     if r.status not in ("pass", "not_applicable", "not_tested"))
